"""``python -m lumos.cli``: the ``lumos`` command."""

import sys

from . import main

sys.exit(main())
