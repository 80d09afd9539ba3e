"""Tabular displays: bar chart, waterfall, force strip, beeswarm summary and dependence scatter.

Tabular attributions are ``(N, F)`` (samples x features); feature names come from
``explanation.feature_names`` (else ``x0, x1, ...``), feature values from ``explanation.inputs``. Positive
contributions are red, negative blue, in every display.

Example:
    >>> WaterfallDisplay.from_explanation(e, index=0, base_value=0.3).plot().save("waterfall.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from .base import Display, check_explanation, check_index, check_k, pick_input
from .colors import NEGATIVE_COLOR, POSITIVE_COLOR, to_numpy


def _sign_colors(values: np.ndarray) -> list[str]:
    return [POSITIVE_COLOR if v >= 0 else NEGATIVE_COLOR for v in values]


def feature_names_for(names: Sequence[str] | None, n: int, owner: str) -> list[str]:
    if names is None:
        return [f"x{j}" for j in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValidationError(f"{owner}: feature_names has {len(names)} names for {n} features")
    return names


def tabular_arrays(explanation: Explanation, owner: str, input_index: int = 0
                   ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(attributions (N, F), inputs (N, F) or None, names)`` of a tabular explanation, checked."""
    check_explanation(explanation, owner)
    attributions, inputs = pick_input(explanation, input_index, owner)
    if attributions.ndim != 2:
        raise ValidationError(f"{owner}: needs tabular attributions (N, features), got shape {attributions.shape}; "
                              "for images use HeatmapDisplay, for tokens TextDisplay")
    if inputs is not None and inputs.shape != attributions.shape:
        inputs = None
    return attributions, inputs, feature_names_for(explanation.feature_names, attributions.shape[1], owner)


def _one_row(values: Any, feature_values: Any, names: Sequence[str] | None, owner: str
             ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    v = to_numpy(values, owner=owner, name="values")
    if v.ndim != 1 or v.size == 0:
        raise ValidationError(f"{owner}: values must be 1-D (one attribution per feature), got shape {v.shape}")
    fv = None if feature_values is None else to_numpy(feature_values, owner=owner, name="feature_values")
    if fv is not None and fv.shape != v.shape:
        raise ValidationError(f"{owner}: feature_values has shape {fv.shape}, values {v.shape}")
    return v, fv, feature_names_for(names, v.size, owner)


def _label(name: str, value: float | None) -> str:
    return name if value is None else f"{name} = {value:.4g}"


def base_value_of(explanation: Explanation, index: int, given: float | None, owner: str) -> float:
    """The base value E f: given, else ``explanation.extras["base_value"]`` (scalar or one per sample)."""
    if given is not None:
        return float(given)
    if "base_value" not in explanation.extras:
        raise ValidationError(f"{owner}: needs a base value: explanation.extras has no 'base_value'; "
                              "pass base_value=")
    base = to_numpy(explanation.extras["base_value"], owner=owner, name="extras['base_value']")
    if base.size == 1:
        return float(base.ravel()[0])
    if base.ndim == 1 and base.size == len(explanation):
        return float(base[index])
    raise ValidationError(f"{owner}: extras['base_value'] must be a scalar or one value per sample, got shape "
                          f"{base.shape}; pass base_value=")


class _RowDisplay(Display):
    """Shared constructor of the one-sample displays: values (F,), names, feature values, k."""

    def __init__(self, values: Any, *, feature_names: Sequence[str] | None = None, feature_values: Any = None,
                 k: int | None = 10, title: str | None = None) -> None:
        owner = type(self).__name__
        self.values, self.feature_values, self.feature_names = _one_row(values, feature_values, feature_names, owner)
        self.k = check_k(k, owner)
        self.title = title
        self.order_ = np.argsort(-np.abs(self.values), kind="stable")

    @classmethod
    def from_explanation(cls, explanation: Explanation, index: int = 0, *, input_index: int = 0,
                         **kwargs: Any) -> Any:
        """Sample ``index`` of a tabular explanation (names and feature values from it)."""
        owner = cls.__name__
        attributions, inputs, names = tabular_arrays(explanation, owner, input_index)
        i = check_index(index, len(attributions), owner)
        if cls._needs_base:
            kwargs["base_value"] = base_value_of(explanation, i, kwargs.get("base_value"), owner)
        kwargs.setdefault("title", f"{explanation.method or 'attributions'} - sample {i}")
        return cls(attributions[i], feature_names=names, feature_values=None if inputs is None else inputs[i],
                   **kwargs)

    _needs_base = False

    def _name(self, j: int) -> str:
        fv = None if self.feature_values is None else float(self.feature_values[j])
        return _label(self.feature_names[j], fv)


class BarDisplay(_RowDisplay):
    """One sample's ``k`` largest attributions by |value|, as horizontal bars (largest on top, signed colours).

    Attributes (after ``plot``): ``order_`` (feature indices, most important first), ``shown_`` (the k shown),
    ``bars_`` (Rectangles, ``bars_[i]`` is feature ``shown_[i]``), ``value_texts_``.
    """

    def plot(self, ax: Any = None, *, value_labels: bool = True, xlabel: str = "attribution") -> BarDisplay:
        shown = self.order_[: self.k] if self.k else self.order_
        ax = self._axes(ax, (6.0, 0.9 + 0.4 * len(shown)))
        y = np.arange(len(shown))[::-1]
        heights = self.values[shown]
        self.shown_ = shown
        self.bars_ = list(ax.barh(y, heights, color=_sign_colors(heights), height=0.7))
        ax.set_yticks(y, [self._name(j) for j in shown])
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        self.value_texts_ = []
        if value_labels:
            for yy, h in zip(y, heights, strict=True):
                self.value_texts_.append(ax.text(h, yy, f" {h:+.3g} ", va="center", fontsize=8,
                                                 ha="left" if h >= 0 else "right"))
            lo, hi = min(0.0, heights.min()), max(0.0, heights.max())
            pad = 0.2 * (hi - lo or 1.0)
            ax.set_xlim(lo - (pad if lo < 0 else 0.05 * pad), hi + (pad if hi > 0 else 0.05 * pad))
        ax.set_xlabel(xlabel)
        if self.title:
            ax.set_title(self.title)
        return self


class WaterfallDisplay(_RowDisplay):
    """From the base value E f to f(x) = E f + sum of attributions, one feature per step.

    Steps are sorted by |value|: the largest at the top ending at f(x); when there are more than ``k``
    features the ``k - 1`` largest are shown and the rest grouped into ``"other (n features)"`` (bottom row,
    starting at the base value). The final value is exact for complete attributions (Shapley values, IG, ...).

    Attributes (after ``plot``): ``steps_`` (bottom to top: ``(label, value, start, end)``), ``cumulative_``
    (``[E f, ..., f(x)]``), ``bars_``.
    """

    _needs_base = True

    def __init__(self, values: Any, base_value: float, **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        if isinstance(base_value, bool) or not np.isfinite(np.asarray(base_value, dtype=float)).all():
            raise ValidationError(f"{type(self).__name__}: base_value must be a finite number, got {base_value!r}")
        self.base_value = float(base_value)
        self.prediction_ = self.base_value + float(self.values.sum())

    def _steps(self) -> list[tuple[str, float, float, float]]:
        n = len(self.values)
        if self.k is None or n <= self.k:
            top, rest = self.order_, self.order_[:0]
        else:
            top, rest = self.order_[: self.k - 1], self.order_[self.k - 1:]
        items = []
        if len(rest):
            items.append((f"other ({len(rest)} features)", float(self.values[rest].sum())))
        items += [(self._name(j), float(self.values[j])) for j in top[::-1]]
        steps, level = [], self.base_value
        for label, value in items:
            steps.append((label, value, level, level + value))
            level += value
        return steps

    def plot(self, ax: Any = None, *, xlabel: str = "model output") -> WaterfallDisplay:
        steps = self._steps()
        ax = self._axes(ax, (6.5, 1.3 + 0.42 * len(steps)))
        self.steps_ = steps
        self.cumulative_ = np.array([self.base_value] + [s[3] for s in steps])
        self.bars_ = []
        for y, (_, value, start, end) in enumerate(steps):
            bar = ax.barh(y, value, left=start, color=POSITIVE_COLOR if value >= 0 else NEGATIVE_COLOR, height=0.65)
            self.bars_.append(bar[0])
            ax.text(max(start, end), y, f" {value:+.3g}", va="center", ha="left", fontsize=8)
            if y + 1 < len(steps):
                ax.plot([end, end], [y + 0.33, y + 0.67], color="0.4", linewidth=0.8)
        ax.set_yticks(range(len(steps)), [s[0] for s in steps])
        for x, text, yy in ((self.base_value, f"E[f(X)] = {self.base_value:.4g}", -0.9),
                            (self.prediction_, f"f(x) = {self.prediction_:.4g}", len(steps) - 0.1)):
            ax.axvline(x, color="0.5", linestyle="--", linewidth=0.8)
            ax.text(x, yy, text, ha="center", va="bottom", fontsize=8.5,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
        ax.set_ylim(-1.1, len(steps) + 0.5)
        lo, hi = self.cumulative_.min(), self.cumulative_.max()
        pad = 0.15 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + 1.5 * pad)
        ax.set_xlabel(xlabel)
        if self.title:
            ax.set_title(self.title)
        return self


class ForceDisplay(_RowDisplay):
    """A force-style strip: positive contributions push right, negative push left, meeting at f(x).

    Positive segments fill ``[f(x) - sum(pos), f(x)]`` (the largest next to f(x)), negative segments
    ``[f(x), f(x) + sum(|neg|)]`` (the largest next to f(x)); the base value E f lies where the pushes
    balance. The ``k`` largest features by |value| are labelled.

    Attributes (after ``plot``): ``segments_`` (``(feature index, value, start, end)`` left to right),
    ``patches_``, ``prediction_``.
    """

    _needs_base = True

    def __init__(self, values: Any, base_value: float, **kwargs: Any) -> None:
        super().__init__(values, **kwargs)
        self.base_value = float(base_value)
        self.prediction_ = self.base_value + float(self.values.sum())

    def _segments(self) -> list[tuple[int, float, float, float]]:
        v = self.values
        pos = [j for j in np.argsort(v, kind="stable") if v[j] > 0]          # small to large: largest at f(x)
        neg = [j for j in np.argsort(v, kind="stable") if v[j] < 0]          # most negative first: at f(x)
        segments, x = [], self.prediction_ - float(v[pos].sum()) if pos else self.prediction_
        for j in pos + neg:
            width = abs(float(v[j]))
            segments.append((int(j), float(v[j]), x, x + width))
            x += width
        return segments

    def plot(self, ax: Any = None, *, xlabel: str = "model output") -> ForceDisplay:
        from matplotlib.patches import Polygon

        ax = self._axes(ax, (9.0, 2.4))
        self.segments_ = self._segments()
        labelled = set(int(j) for j in (self.order_[: self.k] if self.k else self.order_))
        total = sum(abs(s[1]) for s in self.segments_) or 1.0
        tip = 0.012 * total
        self.patches_ = []
        for j, value, start, end in self.segments_:
            point = min(tip, 0.5 * (end - start))
            if value > 0:   # chevron pointing right
                xy = [(start, 0), (end - point, 0), (end, 0.5), (end - point, 1), (start, 1), (start + point, 0.5)]
            else:           # chevron pointing left
                xy = [(start + point, 0), (end, 0), (end - point, 0.5), (end, 1), (start + point, 1), (start, 0.5)]
            patch = Polygon(xy, closed=True, facecolor=POSITIVE_COLOR if value > 0 else NEGATIVE_COLOR,
                            edgecolor="white", linewidth=0.8)
            ax.add_patch(patch)
            self.patches_.append(patch)
            if j in labelled:
                ax.text(0.5 * (start + end), -0.15, self._name(j), rotation=30, ha="right", va="top", fontsize=7.5)
        for x, text, color in ((self.prediction_, f"f(x) = {self.prediction_:.4g}", "black"),
                               (self.base_value, f"base = {self.base_value:.4g}", "0.45")):
            ax.plot([x, x], [-0.05, 1.25], color=color, linewidth=1.0)
            ax.text(x, 1.3, text, ha="center", va="bottom", fontsize=8.5, color=color)
        edges = [s[2] for s in self.segments_] + [s[3] for s in self.segments_] + [self.base_value, self.prediction_]
        lo, hi = min(edges), max(edges)
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-1.6, 1.8)
        ax.set_yticks([])
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel(xlabel)
        if self.title:
            ax.set_title(self.title)
        return self
