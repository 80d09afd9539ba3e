"""Process-wide settings: the memory budget of the batching engine and the default for progress bars.

Both can be set in code (``lumos.config.set_memory_budget("4GB")``) or by environment variables:
``LUMOS_MEMORY_BUDGET`` (bytes, or a number with KB/MB/GB) and ``LUMOS_PROGRESS`` (``0`` turns every
progress bar off, ``1`` forces them on).
"""

from __future__ import annotations

import os
import re

from ..errors import ValidationError

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # 2 GiB: a laptop-sized budget for one model call's activations

_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_memory_budget: int | None = None


def parse_bytes(value: int | float | str, *, owner: str = "lumos.config") -> int:
    """Read a size such as ``2147483648``, ``"512MB"`` or ``"2 GB"`` as a number of bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValidationError(f"{owner}: a memory budget must be > 0 bytes, got {value}")
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", value.upper())
        if match:
            number, unit = match.groups()
            unit = unit if unit.endswith("B") or unit == "" else unit + "B"
            size = int(float(number) * _UNITS[unit])
            if size > 0:
                return size
    raise ValidationError(
        f"{owner}: a memory budget must be a positive number of bytes or a string like '512MB' or '2GB', "
        f"got {value!r}"
    )


def set_memory_budget(value: int | str | None) -> None:
    """Set the memory the batching engine may use for one model call (``None`` restores the default)."""
    global _memory_budget
    _memory_budget = None if value is None else parse_bytes(value, owner="lumos.config.set_memory_budget")


def memory_budget() -> int:
    """The memory budget in bytes: set in code, else ``LUMOS_MEMORY_BUDGET``, else 2 GiB."""
    if _memory_budget is not None:
        return _memory_budget
    env = os.environ.get("LUMOS_MEMORY_BUDGET")
    if env:
        return parse_bytes(env, owner="LUMOS_MEMORY_BUDGET")
    return DEFAULT_MEMORY_BUDGET


def progress_default() -> bool | None:
    """``False`` when ``LUMOS_PROGRESS=0``, ``True`` when ``=1``, else ``None`` (shown on a terminal only)."""
    env = os.environ.get("LUMOS_PROGRESS", "").strip().lower()
    if env in {"0", "false", "no", "off"}:
        return False
    if env in {"1", "true", "yes", "on"}:
        return True
    return None
