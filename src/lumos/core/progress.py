"""Progress bars for long work (tqdm), off with ``progress=False`` or ``LUMOS_PROGRESS=0``."""

from __future__ import annotations

from tqdm.auto import tqdm

from .config import progress_default


def progress_bar(total: int, *, desc: str, progress: bool | None, unit: str = "batch") -> tqdm:
    """A tqdm bar over ``total`` steps.

    ``progress=None`` follows ``LUMOS_PROGRESS`` and otherwise shows the bar only on a terminal and only
    when there is more than one step.
    """
    if progress is None:
        progress = progress_default()
    if progress is None:
        disable: bool | None = True if total <= 1 else None  # None: tqdm shows it only on a TTY
    else:
        disable = not progress
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False)
