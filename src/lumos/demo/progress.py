"""One overall progress bar for ``lumos demo``: over the datasets, each advancing by its steps.

The bar follows the library's progress setting: ``show=False`` or ``LUMOS_PROGRESS=0`` turn it off,
``show=True`` or ``LUMOS_PROGRESS=1`` force it on, and otherwise (``show=None``) it is shown only on a
terminal and only while the demo logs (``lumos demo --quiet`` passes no log, so it shows no bar). The
methods' own bars (``lumos demo --progress``) open below it and disappear when done (``leave=False``); log
lines are written above it without breaking it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..core.config import progress_default

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"


def resolve_show(show: bool | None, logging: bool) -> bool | None:
    """``True``/``False`` (decided) or ``None`` (tqdm decides: shown on a terminal only)."""
    if show is not None:
        return bool(show)
    setting = progress_default()
    if setting is not None:
        return setting
    return None if logging else False


class OverallProgress:
    """A bar of ``len(units)`` units (datasets); :meth:`begin` a unit, :meth:`steps` says how many steps it has,
    :meth:`step` names the next one (advancing by one step), :meth:`end` completes the unit.

    Attributes: ``bar`` (the tqdm bar), ``done`` (completed steps of the current unit), ``n_steps``.
    """

    def __init__(self, units: list[str] | tuple[str, ...], *, show: bool | None, logging: bool,
                 desc: str = "lumos demo", unit: str = "dataset", **tqdm_kwargs: Any) -> None:
        from tqdm.auto import tqdm

        decided = resolve_show(show, logging)
        self.bar = tqdm(total=len(units), desc=desc, unit=unit, disable=None if decided is None else not decided,
                        leave=False, bar_format=BAR_FORMAT, **tqdm_kwargs)
        self.enabled = not self.bar.disable
        self.unit_name, self.completed, self.done, self.n_steps = "", 0, 0, 1

    def begin(self, name: str, first_step: str) -> None:
        self.unit_name, self.done, self.n_steps = name, 0, 1
        self._label(first_step)

    def steps(self, n_steps: int) -> None:
        """The current unit has ``n_steps`` steps in all (counting those already done)."""
        self.n_steps = max(int(n_steps), self.done + 1)

    def step(self, label: str) -> None:
        """The previous step is done; ``label`` runs next."""
        if self.done + 1 < self.n_steps:
            self.done += 1
            self._set(self.completed + self.done / self.n_steps)
        self._label(label)

    def end(self) -> None:
        self.completed += 1
        self.done = 0
        self._set(self.completed)

    def _set(self, value: float) -> None:
        self.bar.update(value - self.bar.n)

    def _label(self, label: str) -> None:
        self.bar.set_postfix_str(f"{self.unit_name}: {label}")

    def wrap_log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` writing above the bar (the bar is cleared and redrawn around each line)."""
        if not self.enabled:
            return log

        def write(text: str) -> None:
            with self.bar.external_write_mode():
                log(text)
        return write

    def close(self) -> None:
        self.bar.close()


@contextmanager
def overall_progress(units: list[str] | tuple[str, ...], *, show: bool | None, logging: bool,
                     **kwargs: Any) -> Iterator[OverallProgress]:
    """:class:`OverallProgress` as a context manager (closed even when the demo raises)."""
    progress = OverallProgress(units, show=show, logging=logging, **kwargs)
    try:
        yield progress
    finally:
        progress.close()
