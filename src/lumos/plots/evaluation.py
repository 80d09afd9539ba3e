"""Evaluation displays, from plain arrays: deletion/insertion curves, the method x metric table, the
agreement matrix and the sanity-check (model randomisation) cascade.

Example:
    >>> CurveDisplay({"ig": [0.9, 0.5, 0.2], "saliency": [0.9, 0.7, 0.4]}, kind="deletion").plot()  # doctest: +SKIP
    >>> AgreementMatrixDisplay(*lumos.metrics.agreement_matrix(explanations)).plot()                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from .base import Display, check_choice
from .colors import DIVERGING_CMAP, pool_channels, to_numpy
from .images import draw_map_rows

CURVE_LABELS = {
    "deletion": ("fraction of features removed", "score"),
    "insertion": ("fraction of features inserted", "score"),
    None: ("fraction of features", "score"),
}


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under ``y(x)`` by the trapezoidal rule: ``sum (y[i] + y[i+1]) / 2 * (x[i+1] - x[i])``."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _text_color(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on ``rgba`` (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


class CurveDisplay(Display):
    """Deletion / insertion curves: x = fraction of features removed (inserted), y = score; AUC in the legend.

    Args:
        curves: ``{method: y}`` with y of shape ``(n_points,)`` or ``(n_samples, n_points)`` (averaged over
            samples, with a band of +- one standard deviation).
        x: the fractions (default ``linspace(0, 1, n_points)``), increasing.
        kind: ``"deletion"`` (lower AUC is better), ``"insertion"`` (higher is better) or ``None``; sets labels.

    Attributes: ``x_``, ``mean_`` ({name: mean curve}), ``auc_`` ({name: trapezoidal AUC of the mean curve});
    after ``plot`` ``lines_`` ({name: Line2D}), ``legend_``.
    """

    def __init__(self, curves: Mapping[str, Any], x: Any = None, *, kind: str | None = "deletion",
                 title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> None:
        owner = type(self).__name__
        check_choice(kind, tuple(CURVE_LABELS), owner, "kind")
        if not isinstance(curves, Mapping) or not curves:
            raise ValidationError(f"{owner}: curves must be a non-empty {{method: y}} dict, "
                                  f"got {type(curves).__name__}")
        self.mean_, self.std_ = {}, {}
        n_points = None
        for name, y in curves.items():
            y = to_numpy(y, owner=owner, name=f"curves[{name!r}]")
            if y.ndim not in (1, 2) or y.shape[-1] < 2:
                raise ValidationError(f"{owner}: curves[{name!r}] must be (n_points,) or (n_samples, n_points) with "
                                      f"n_points >= 2, got shape {y.shape}")
            if n_points is not None and y.shape[-1] != n_points:
                raise ValidationError(f"{owner}: every curve needs the same number of points, got {n_points} and "
                                      f"{y.shape[-1]}")
            n_points = y.shape[-1]
            self.mean_[str(name)] = y if y.ndim == 1 else y.mean(axis=0)
            self.std_[str(name)] = None if y.ndim == 1 else y.std(axis=0)
        self.x_ = np.linspace(0.0, 1.0, n_points) if x is None else to_numpy(x, owner=owner, name="x").ravel()
        if self.x_.shape != (n_points,) or np.any(np.diff(self.x_) <= 0):
            raise ValidationError(f"{owner}: x must be {n_points} increasing values, got {x!r}")
        self.auc_ = {name: trapezoid(y, self.x_) for name, y in self.mean_.items()}
        default_x, default_y = CURVE_LABELS[kind]
        self.kind, self.title = kind, title
        self.xlabel, self.ylabel = xlabel or default_x, ylabel or default_y

    def plot(self, ax: Any = None, *, band: bool = True) -> CurveDisplay:
        ax = self._axes(ax, (5.2, 3.8))
        self.lines_ = {}
        for name, y in self.mean_.items():
            (line,) = ax.plot(self.x_, y, label=f"{name} (AUC = {self.auc_[name]:.3f})", linewidth=1.6)
            self.lines_[name] = line
            if band and self.std_[name] is not None:
                ax.fill_between(self.x_, y - self.std_[name], y + self.std_[name], color=line.get_color(), alpha=0.15,
                                linewidth=0)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        hint = {"deletion": " (lower AUC is better)", "insertion": " (higher AUC is better)"}.get(self.kind, "")
        ax.set_title(self.title if self.title is not None else f"{self.kind or 'curves'}{hint}")
        self.legend_ = ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        return self


def _better_flags(higher_is_better: bool | Sequence[bool] | Mapping[str, bool], metrics: list[str],
                  owner: str) -> np.ndarray:
    if isinstance(higher_is_better, bool):
        return np.full(len(metrics), higher_is_better)
    if isinstance(higher_is_better, Mapping):
        unknown = sorted(set(higher_is_better) - set(metrics))
        if unknown:
            raise ValidationError(f"{owner}: higher_is_better names unknown metrics {unknown}; metrics: {metrics}")
        return np.array([bool(higher_is_better.get(m, True)) for m in metrics])
    flags = list(higher_is_better)
    if len(flags) != len(metrics):
        raise ValidationError(f"{owner}: higher_is_better has {len(flags)} flags for {len(metrics)} metrics")
    return np.array([bool(f) for f in flags])


class MetricTableDisplay(Display):
    """The method x metric table as a heatmap with the values written in the cells.

    Each column is coloured on its own scale, ``(v - min) / (max - min)`` over the methods, flipped where a
    metric is better when lower (``higher_is_better``: one bool, one per metric, or ``{metric: bool}``), so the
    best method of every metric is the darkest green. NaN cells are grey and read ``"n/a"``.

    Attributes: ``values``, ``goodness_`` (the per-column scaled scores in [0, 1]); after ``plot``
    ``image_``, ``texts_`` (methods x metrics array of Text).
    """

    def __init__(self, values: Any, methods: Sequence[str], metrics: Sequence[str], *,
                 higher_is_better: bool | Sequence[bool] | Mapping[str, bool] = True, fmt: str = "{:.3g}",
                 title: str | None = None, cmap: str = "Greens") -> None:
        owner = type(self).__name__
        self.values = to_numpy(values, owner=owner, name="values")
        self.methods, self.metrics = [str(m) for m in methods], [str(m) for m in metrics]
        if self.values.shape != (len(self.methods), len(self.metrics)):
            raise ValidationError(f"{owner}: values must be (methods, metrics) = ({len(self.methods)}, "
                                  f"{len(self.metrics)}), got shape {self.values.shape}")
        self.higher_is_better = _better_flags(higher_is_better, self.metrics, owner)
        self.fmt, self.title, self.cmap = fmt, title, cmap
        goodness = np.full(self.values.shape, np.nan)
        for j in range(self.values.shape[1]):
            column = self.values[:, j]
            finite = np.isfinite(column)
            if not finite.any():
                continue
            lo, hi = column[finite].min(), column[finite].max()
            scaled = (column - lo) / (hi - lo) if hi > lo else np.where(finite, 0.5, np.nan)
            goodness[:, j] = scaled if self.higher_is_better[j] else 1.0 - scaled
        self.goodness_ = goodness

    @classmethod
    def from_dict(cls, table: Mapping[str, Mapping[str, float]], **kwargs: Any) -> MetricTableDisplay:
        """From ``{method: {metric: value}}`` (metrics in order of first appearance; missing values are NaN)."""
        methods = list(table)
        metrics: list[str] = []
        for row in table.values():
            metrics += [m for m in row if m not in metrics]
        values = [[float(table[m].get(k, np.nan)) for k in metrics] for m in methods]
        return cls(np.array(values, dtype=float).reshape(len(methods), len(metrics)), methods, metrics, **kwargs)

    def plot(self, ax: Any = None, *, colorbar: bool = False) -> MetricTableDisplay:
        from matplotlib import colormaps

        n_rows, n_cols = self.values.shape
        ax = self._axes(ax, (1.8 + 1.15 * n_cols, 1.0 + 0.45 * n_rows))
        cmap = colormaps[self.cmap].with_extremes(bad="0.85")
        self.image_ = ax.imshow(np.ma.masked_invalid(self.goodness_), cmap=cmap, vmin=-0.15, vmax=1.0, aspect="auto")
        self.texts_ = np.empty(self.values.shape, dtype=object)
        for i in range(n_rows):
            for j in range(n_cols):
                v = self.values[i, j]
                text = self.fmt.format(v) if np.isfinite(v) else "n/a"
                color = "black" if not np.isfinite(self.goodness_[i, j]) else _text_color(
                    cmap((self.goodness_[i, j] + 0.15) / 1.15))
                self.texts_[i, j] = ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
        arrows = ["\u2191" if h else "\u2193" for h in self.higher_is_better]
        ax.set_xticks(range(n_cols), [f"{m} {a}" for m, a in zip(self.metrics, arrows, strict=True)],
                      rotation=30, ha="right")
        ax.set_yticks(range(n_rows), self.methods)
        ax.tick_params(length=0)
        if colorbar:
            bar = self.figure_.colorbar(self.image_, ax=ax, ticks=[0, 1])
            bar.ax.set_yticklabels(["worst", "best"])
        if self.title:
            ax.set_title(self.title)
        return self


class AgreementMatrixDisplay(Display):
    """A square names x names matrix of agreement values, with the values in the cells.

    From ``(names, matrix)`` as returned by ``lumos.metrics.agreement_matrix``. The colour scale is
    ``[0, max(1, max)]`` (sequential) for non-negative matrices, else diverging symmetric around 0 (rank
    correlations).

    Attributes: after ``plot`` ``image_``, ``texts_`` (n x n Text), ``colorbar_``.
    """

    def __init__(self, names: Sequence[str], matrix: Any, *, metric: str | None = None, fmt: str = "{:.2f}",
                 title: str | None = None, cmap: str | None = None) -> None:
        owner = type(self).__name__
        self.names = [str(n) for n in names]
        self.matrix = to_numpy(matrix, owner=owner, name="matrix")
        n = len(self.names)
        if self.matrix.shape != (n, n):
            raise ValidationError(f"{owner}: matrix must be square ({n}, {n}) for {n} names, got shape "
                                  f"{self.matrix.shape}")
        finite = self.matrix[np.isfinite(self.matrix)]
        self.signed_ = bool(finite.size and finite.min() < 0)
        top = float(np.abs(finite).max()) if finite.size else 1.0
        self.vmin_, self.vmax_ = (-max(top, 1e-12), max(top, 1e-12)) if self.signed_ else (0.0, max(1.0, top))
        self.cmap = cmap or (DIVERGING_CMAP if self.signed_ else "viridis")
        self.metric, self.fmt = metric, fmt
        self.title = title if title is not None else ("agreement" + (f" ({metric})" if metric else ""))

    def plot(self, ax: Any = None, *, colorbar: bool = True) -> AgreementMatrixDisplay:
        from matplotlib import colormaps

        n = len(self.names)
        ax = self._axes(ax, (2.2 + 0.8 * n, 1.6 + 0.7 * n))
        cmap = colormaps[self.cmap].with_extremes(bad="0.85")
        self.image_ = ax.imshow(np.ma.masked_invalid(self.matrix), cmap=cmap, vmin=self.vmin_, vmax=self.vmax_)
        self.texts_ = np.empty((n, n), dtype=object)
        for i in range(n):
            for j in range(n):
                v = self.matrix[i, j]
                color = "black" if not np.isfinite(v) else _text_color(self.image_.to_rgba(v))
                self.texts_[i, j] = ax.text(j, i, self.fmt.format(v) if np.isfinite(v) else "n/a", ha="center",
                                            va="center", fontsize=9, color=color)
        ax.set_xticks(range(n), self.names, rotation=30, ha="right")
        ax.set_yticks(range(n), self.names)
        self.colorbar_ = self.figure_.colorbar(self.image_, ax=ax) if colorbar else None
        if self.title:
            ax.set_title(self.title)
        return self


class SanityCascadeDisplay(Display):
    """The model-randomisation sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"):
    rows = methods, columns = ``"original"`` then each randomised layer (cascading, top layer first), cells =
    the maps. A method that passes shows maps that degrade as layers are randomised.

    Args:
        maps: ``{method: {column name: 2-D map}}`` (columns in order, the first the original model), or
            ``{method: [map, ...]}`` with ``columns`` naming them. Maps may be ``(C, H, W)`` (pooled with
            ``reduce``). absolute: draw |map| (as in the paper) instead of the signed map.
        scores: optional ``{method: [similarity to the original per column]}`` written under the cells.
        scale: ``"cell"`` (default, each map its own limits) or ``"row"``.

    Attributes: ``columns``, ``names``, ``rows`` (the maps drawn, methods x columns); after ``plot``
    ``axes_`` (methods x columns), ``cell_images_``, ``limits_``.

    Example:
        >>> report = lumos.sanity_check(model, x, ["saliency", "guided_backprop"], keep_maps=2)        # doctest: +SKIP
        >>> SanityCascadeDisplay.from_results(report.results["cascading"], index=0).plot()          # doctest: +SKIP
    """

    def __init__(self, maps: Mapping[str, Mapping[str, Any] | Sequence[Any]], columns: Sequence[str] | None = None,
                 *, scores: Mapping[str, Sequence[float]] | None = None, absolute: bool = False, reduce: str = "sum",
                 scale: str = "cell", clip_percentile: float = 99.5, title: str | None = None) -> None:
        owner = type(self).__name__
        if not isinstance(maps, Mapping) or not maps:
            raise ValidationError(f"{owner}: maps must be a non-empty {{method: {{layer: map}}}} or "
                                  f"{{method: [maps]}} dict, got {type(maps).__name__}")
        self.names, self.rows = [str(n) for n in maps], []
        for name, row in maps.items():
            if isinstance(row, Mapping):
                row_columns, cells = [str(c) for c in row], list(row.values())
                if columns is None:
                    columns = row_columns
                elif row_columns != [str(c) for c in columns]:
                    raise ValidationError(f"{owner}: maps[{name!r}] has columns {row_columns}, "
                                          f"expected {list(columns)}")
            else:
                cells = list(row)
            pooled = []
            for c, cell in enumerate(cells):
                value = pool_channels(to_numpy(cell, owner=owner, name=f"maps[{name!r}][{c}]"), reduce, owner=owner)
                pooled.append(np.abs(value) if absolute else value)
            self.rows.append(pooled)
        n_cols = {len(r) for r in self.rows}
        if len(n_cols) != 1:
            raise ValidationError(f"{owner}: every method needs the same number of maps, got {sorted(n_cols)}")
        n = n_cols.pop()
        if columns is None:
            columns = ["original"] + [f"randomised {i}" for i in range(1, n)]
        if len(columns) != n:
            raise ValidationError(f"{owner}: columns has {len(columns)} names for {n} maps per method")
        self.columns = [str(c) for c in columns]
        self.scores = None
        if scores is not None:
            self.scores = {}
            for name in self.names:
                if name not in scores or len(scores[name]) != n:
                    raise ValidationError(f"{owner}: scores needs {n} values for every method, missing or wrong for "
                                          f"{name!r}")
                self.scores[name] = [float(s) for s in scores[name]]
        check_choice(scale, ("cell", "row"), owner, "scale")
        self.scale, self.clip_percentile, self.title = scale, clip_percentile, title

    @classmethod
    def from_results(cls, results: Mapping[str, Any], *, index: int = 0, measure: str | None = "spearman_abs",
                     max_columns: int | None = 8, **kwargs: Any) -> SanityCascadeDisplay:
        """From one test's results ``{method: RandomisationResult}`` (``report.results["cascading"]``), using the
        maps they kept (``sanity_check(..., keep_maps=k)``): sample ``index`` (< k), the trained model's map
        then the map after each step, with the sample's ``measure`` similarity to the original under each cell
        (1 under the original).

        With more steps than ``max_columns - 1``, evenly spaced steps are drawn, always the first and the last
        (``None`` draws every step). Methods that kept no maps are left out.
        """
        owner = cls.__name__
        if not isinstance(results, Mapping) or not results:
            raise ValidationError(f"{owner}: results must be a non-empty {{method: RandomisationResult}} dict, "
                                  f"got {type(results).__name__}")
        if max_columns is not None and (isinstance(max_columns, bool) or not isinstance(max_columns, int)
                                        or max_columns < 2):
            raise ValidationError(f"{owner}: max_columns must be an int >= 2 or None, got {max_columns!r}")
        kept = {name: r for name, r in results.items() if getattr(r, "maps", None) is not None}
        if not kept:
            raise ValidationError(f"{owner}: no result kept its maps (run sanity_check with keep_maps >= 1)")
        first = next(iter(kept.values()))
        n_steps, steps = len(first.steps), list(first.steps)
        if max_columns is None or n_steps + 1 <= max_columns:
            chosen = list(range(n_steps))
        else:
            chosen = sorted({int(round(v)) for v in np.linspace(0, n_steps - 1, max_columns - 1)})
        maps, scores = {}, {}
        for name, result in kept.items():
            stored = np.asarray(result.maps)
            if list(result.steps) != steps or stored.shape[0] != n_steps + 1:
                raise ValidationError(f"{owner}: results[{name!r}] has steps {list(result.steps)} and "
                                      f"{stored.shape[0]} maps; expected the steps {steps} and {n_steps + 1} maps")
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < stored.shape[1]:
                raise ValidationError(f"{owner}: index must be an int in [0, {stored.shape[1]}) (the samples whose "
                                      f"maps were kept), got {index!r}")
            if stored.ndim != 4:
                raise ValidationError(f"{owner}: results[{name!r}] kept maps of shape {stored.shape[2:]}; the cascade "
                                      "needs 2-D (height, width) maps")
            maps[str(name)] = [stored[0, index], *[stored[k + 1, index] for k in chosen]]
            if measure is not None:
                if measure not in result.similarity:
                    raise ValidationError(f"{owner}: measure must be one of {sorted(result.similarity)}, got "
                                          f"{measure!r}")
                values = np.asarray(result.similarity[measure])
                scores[str(name)] = [1.0, *[float(values[k, index]) for k in chosen]]
        columns = ["original", *[steps[k] for k in chosen]]
        return cls(maps, columns, scores=scores if measure is not None else None, **kwargs)

    def plot(self, ax: Any = None, *, cell_size: float = 1.5) -> SanityCascadeDisplay:
        shape = (len(self.rows), len(self.columns))
        axes = self._grid(ax, shape, (1.2 + cell_size * shape[1], 0.6 + cell_size * shape[0]))
        self.cell_images_, self.limits_ = draw_map_rows(
            axes, self.rows, first_row=0, scale=self.scale, signed=None, clip_percentile=self.clip_percentile,
            cmap=None, owner=type(self).__name__)
        for c, name in enumerate(self.columns):
            axes[0, c].set_title(name, fontsize=8.5)
        for r, name in enumerate(self.names):
            axes[r, 0].set_ylabel(name.replace("_", " "), fontsize=9)
            if self.scores is not None:
                for c, s in enumerate(self.scores[name]):
                    axes[r, c].set_xlabel(f"{s:.2f}", fontsize=8)
        self.figure_.suptitle(self.title if self.title is not None else "sanity check: cascading randomisation")
        return self
