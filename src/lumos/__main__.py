"""``python -m lumos``: the ``lumos`` command."""

import sys

from .cli import main

sys.exit(main())
