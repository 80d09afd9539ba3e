"""The Display base class: a plot as an object with ``figure_``/``ax_``, saveable to PNG/SVG/PDF.

Displays never call ``plt.show()`` and never touch pyplot: with no ``ax`` given, ``plot()`` creates a
``matplotlib.figure.Figure`` directly (no global figure registry, nothing left open, the user's backend
unchanged; saving renders with Agg/SVG/PDF whatever the backend). With ``ax`` given, the display draws into
it and ``figure_`` is that axes' figure. matplotlib is imported lazily, inside functions.

Example:
    >>> display = BarDisplay.from_explanation(explanation, index=0).plot()   # doctest: +SKIP
    >>> display.save("bar.svg")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from .colors import to_numpy

SAVE_FORMATS = ("png", "svg", "pdf")


def new_figure(figsize: tuple[float, float]) -> Any:
    """A ``Figure`` outside pyplot, with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def root_figure(ax: Any) -> Any:
    """The top-level Figure of an Axes (through SubFigures)."""
    fig = ax.figure
    while getattr(fig, "figure", fig) is not fig and fig.figure is not None:
        fig = fig.figure
    return fig


def check_axes(ax: Any, owner: str) -> None:
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise ValidationError(f"{owner}.plot: ax must be a matplotlib Axes or None, got {type(ax).__name__}")


class Display:
    """Base of every lumos plot. Subclasses implement ``plot(ax=None, **kwargs) -> self``.

    Attributes (after ``plot``):
        figure_: the matplotlib Figure drawn on.
        ax_: the main Axes (grids also set ``axes_``, a 2-D array of Axes).
    """

    figure_: Any = None
    ax_: Any = None

    # -------------------------------------------------------------- helpers for subclasses
    def _axes(self, ax: Any, figsize: tuple[float, float]) -> Any:
        """Use ``ax`` or create a new Figure with one Axes; sets ``figure_`` and ``ax_``."""
        if ax is None:
            fig = new_figure(figsize)
            ax = fig.add_subplot()
        else:
            check_axes(ax, type(self).__name__)
        self.ax_ = ax
        self.figure_ = root_figure(ax)
        return ax

    def _grid(self, ax: Any, shape: tuple[int, int], figsize: tuple[float, float]) -> np.ndarray:
        """A (rows, cols) array of Axes: new, or the user's array of that shape; sets ``axes_`` and ``ax_``."""
        if ax is None:
            fig = new_figure(figsize)
            axes = np.asarray(fig.subplots(*shape, squeeze=False))
        else:
            axes = np.asarray(ax, dtype=object)
            if axes.size != shape[0] * shape[1]:
                raise ValidationError(
                    f"{type(self).__name__}.plot: ax must be None or {shape[0]} x {shape[1]} Axes, got {axes.size}"
                )
            axes = axes.reshape(shape)
            for item in axes.ravel():
                check_axes(item, type(self).__name__)
        self.axes_ = axes
        self.ax_ = axes[0, 0]
        self.figure_ = root_figure(self.ax_)
        return axes

    # -------------------------------------------------------------- output
    def plot(self, ax: Any = None, **kwargs: Any) -> Display:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ensure_plotted(self) -> None:
        if self.figure_ is None:
            self.plot()

    def save(self, path: str | Path, format: str | None = None, dpi: float = 150, **kwargs: Any) -> Path:
        """Write the figure to ``path``: PNG, SVG or PDF, from ``format`` or else the file extension.

        Plots first if ``plot()`` was not called. Extra ``kwargs`` go to ``Figure.savefig``.
        """
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in SAVE_FORMATS:
            raise ValidationError(
                f"{type(self).__name__}.save: format must be one of {list(SAVE_FORMATS)} (or a path ending in "
                f"one), got {format!r} for {str(path)!r}"
            )
        self._ensure_plotted()
        kwargs.setdefault("bbox_inches", "tight")
        if fmt in ("svg", "pdf"):
            kwargs.setdefault("metadata", {"Date": None} if fmt == "svg" else {"CreationDate": None})
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure_.savefig(path, format=fmt, dpi=dpi, **kwargs)
        return path

    def to_bytes(self, format: str = "png", dpi: float = 100) -> bytes:
        """The figure encoded as PNG/SVG/PDF bytes (plots first if needed)."""
        fmt = format.lower()
        if fmt not in SAVE_FORMATS:
            raise ValidationError(f"{type(self).__name__}.to_bytes: format must be one of {list(SAVE_FORMATS)}, "
                                  f"got {format!r}")
        self._ensure_plotted()
        buffer = io.BytesIO()
        self.figure_.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        """PNG for Jupyter's rich display (no pyplot, no inline backend needed)."""
        return self.to_bytes("png")

    def __repr__(self) -> str:
        state = "plotted" if self.figure_ is not None else "not plotted"
        return f"{type(self).__name__}({state})"


# ------------------------------------------------------------------ input helpers shared by the displays
def check_explanation(explanation: Any, owner: str) -> Explanation:
    if not isinstance(explanation, Explanation):
        raise ValidationError(f"{owner}.from_explanation: explanation must be a lumos Explanation, "
                              f"got {type(explanation).__name__}")
    return explanation


def pick_input(explanation: Explanation, input_index: int, owner: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The attributions and inputs (numpy, float) of one input of a (possibly tuple) explanation."""
    arrays = explanation.attribution_arrays()
    if not isinstance(input_index, int) or not 0 <= input_index < len(arrays):
        raise ValidationError(f"{owner}: input_index must be an int in [0, {len(arrays)}), got {input_index!r}")
    attributions = to_numpy(arrays[input_index], owner=owner, name="attributions")
    inputs = explanation.inputs
    if isinstance(inputs, tuple):
        inputs = inputs[input_index] if input_index < len(inputs) else None
    if inputs is not None:
        try:
            inputs = to_numpy(inputs, owner=owner, name="inputs")
        except ValidationError:  # e.g. strings: not drawable, simply left out
            inputs = None
    return attributions, inputs


def check_index(index: Any, n: int, owner: str, name: str = "index") -> int:
    """An int in [-n, n) normalised to [0, n)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= int(index) < n:
        raise ValidationError(f"{owner}: {name} must be an int in [0, {n}) (negative counts from the end), "
                              f"got {index!r}")
    return int(index) % n


def check_k(k: Any, owner: str, name: str = "k") -> int | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"{owner}: {name} must be an int >= 1 or None, got {k!r}")
    return int(k)


def check_choice(value: Any, allowed: tuple, owner: str, name: str) -> Any:
    if value not in allowed:
        raise ValidationError(f"{owner}: {name} must be one of {list(allowed)}, got {value!r}")
    return value
