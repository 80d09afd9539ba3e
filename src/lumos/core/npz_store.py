"""One file format for every saved lumos result: a compressed ``.npz`` of arrays plus JSON metadata.

The metadata is stored as a ``uint8`` array named ``__meta__`` (UTF-8 JSON), so a file is read back with
``np.load(..., allow_pickle=False)``: nothing is ever unpickled. Used by ``Explanation.save`` / ``lumos.load``,
``Evaluation.save`` / ``load_evaluation`` and ``SanityReport.save`` / ``load_sanity_report``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError

META_KEY = "__meta__"


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], *, owner: str) -> Path:
    """Write ``arrays`` and the JSON ``meta`` to ``path`` (parent folders created); returns ``path``."""
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise ValidationError(f"{owner}: metadata is not JSON-serialisable: {exc}") from exc
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **payload)
    return path


def read_npz(path: str | Path, *, owner: str, what: str = "lumos file") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_npz`: ``(meta, arrays)``, without unpickling anything."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{owner}: no such file: {path}")
    with np.load(path, allow_pickle=False) as data:
        if META_KEY not in data.files:
            raise ValidationError(f"{owner}: {path} is not a {what} (no metadata)")
        meta = json.loads(bytes(data[META_KEY]).decode("utf-8"))
        arrays = {name: data[name] for name in data.files if name != META_KEY}
    return meta, arrays
