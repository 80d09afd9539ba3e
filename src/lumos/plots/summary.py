"""Tabular summaries over many rows: the beeswarm (every feature, every row) and one feature's dependence.

Example:
    >>> BeeswarmDisplay.from_explanation(e, k=8).plot().save("summary.svg")                  # doctest: +SKIP
    >>> DependenceDisplay.from_explanation(e, "age", color_by="income").plot()             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from .base import Display, check_k
from .colors import POSITIVE_COLOR, to_numpy
from .tabular import feature_names_for, tabular_arrays

FEATURE_CMAP = "coolwarm"


def _scaled(column: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """Feature values mapped to [0, 1] between their ``clip`` and ``100 - clip`` percentiles (NaN kept)."""
    finite = column[np.isfinite(column)]
    if finite.size == 0:
        return np.full_like(column, np.nan)
    lo, hi = np.percentile(finite, [clip, 100 - clip])
    if hi <= lo:
        lo, hi = finite.min(), finite.max()
    if hi <= lo:
        return np.where(np.isfinite(column), 0.5, np.nan)
    return np.clip((column - lo) / (hi - lo), 0.0, 1.0)


def swarm_offsets(x: np.ndarray, rng: np.random.Generator, *, width: float = 0.4, n_bins: int = 40) -> np.ndarray:
    """Vertical offsets of a beeswarm row: uniform jitter whose amplitude follows the local density of ``x``.

    A dot in the densest bin gets offsets in ``[-width, width]``; a lone dot stays near the centre line.
    """
    finite = np.isfinite(x)
    offsets = np.zeros_like(x)
    if finite.sum() == 0:
        return offsets
    counts, edges = np.histogram(x[finite], bins=n_bins)
    which = np.clip(np.searchsorted(edges, x[finite], side="right") - 1, 0, n_bins - 1)
    amplitude = width * np.sqrt(counts[which] / counts.max())
    offsets[finite] = amplitude * rng.uniform(-1.0, 1.0, size=finite.sum())
    return offsets


class BeeswarmDisplay(Display):
    """Summary over many rows: one line per feature (sorted by mean |attribution|), one dot per row.

    The dot's x is the attribution, its y the feature's line plus a seeded, density-scaled jitter, its colour
    the feature's value (low blue to high red, between the feature's 5th and 95th percentiles; grey when no
    feature values are known).

    Args:
        values: ``(N, F)`` attributions. feature_values: ``(N, F)`` inputs or ``None``.
        feature_names: F names. k: how many features (the most important), ``None`` for all.
        seed: of the jitter (the plot is deterministic).

    Attributes: ``order_`` (feature indices by decreasing mean |value|), ``mean_abs_``; after ``plot``
    ``shown_``, ``collections_`` (one scatter per shown feature, top first), ``colorbar_``.
    """

    def __init__(self, values: Any, feature_values: Any = None, *, feature_names: Sequence[str] | None = None,
                 k: int | None = 10, seed: int = 0, title: str | None = None) -> None:
        owner = type(self).__name__
        self.values = to_numpy(values, owner=owner, name="values")
        if self.values.ndim != 2 or 0 in self.values.shape:
            raise ValidationError(f"{owner}: values must be (N, features), got shape {self.values.shape}")
        self.feature_values = None if feature_values is None else to_numpy(feature_values, owner=owner,
                                                                             name="feature_values")
        if self.feature_values is not None and self.feature_values.shape != self.values.shape:
            raise ValidationError(f"{owner}: feature_values has shape {self.feature_values.shape}, "
                                  f"values {self.values.shape}")
        self.feature_names = feature_names_for(feature_names, self.values.shape[1], owner)
        self.k, self.seed, self.title = check_k(k, owner), seed, title
        self.mean_abs_ = np.nanmean(np.abs(self.values), axis=0)
        self.order_ = np.argsort(-self.mean_abs_, kind="stable")

    @classmethod
    def from_explanation(cls, explanation: Explanation, *, input_index: int = 0, **kwargs: Any) -> BeeswarmDisplay:
        attributions, inputs, names = tabular_arrays(explanation, cls.__name__, input_index)
        kwargs.setdefault("title", explanation.method or None)
        return cls(attributions, inputs, feature_names=names, **kwargs)

    def plot(self, ax: Any = None, *, xlabel: str = "attribution", dot_size: float = 12.0) -> BeeswarmDisplay:
        shown = self.order_[: self.k] if self.k else self.order_
        ax = self._axes(ax, (6.5, 1.0 + 0.45 * len(shown)))
        from matplotlib import colormaps

        cmap = colormaps[FEATURE_CMAP].with_extremes(bad="0.6")  # NaN feature values: grey
        rng = np.random.default_rng(self.seed)
        self.shown_, self.collections_, self.colorbar_ = shown, [], None
        for row, j in enumerate(shown):
            x = self.values[:, j]
            y = (len(shown) - 1 - row) + swarm_offsets(x, rng)
            if self.feature_values is None:
                dots = ax.scatter(x, y, s=dot_size, color=POSITIVE_COLOR, linewidths=0)
            else:
                dots = ax.scatter(x, y, s=dot_size, c=_scaled(self.feature_values[:, j]), cmap=cmap,
                                  vmin=0.0, vmax=1.0, linewidths=0, plotnonfinite=True)
            self.collections_.append(dots)
        ax.set_yticks(np.arange(len(shown))[::-1], [self.feature_names[j] for j in shown])
        ax.axvline(0.0, color="0.4", linewidth=0.8)
        ax.set_ylim(-0.7, len(shown) - 0.3)
        ax.set_xlabel(xlabel)
        if self.feature_values is not None and self.collections_:
            self.colorbar_ = self.figure_.colorbar(self.collections_[0], ax=ax, ticks=[0, 1], aspect=30)
            self.colorbar_.ax.set_yticklabels(["low", "high"])
            self.colorbar_.set_label("feature value")
        if self.title:
            ax.set_title(self.title)
        return self


def _feature_index(feature: Any, names: list[str], owner: str, arg: str) -> int:
    if isinstance(feature, str):
        if feature not in names:
            raise ValidationError(f"{owner}: {arg} {feature!r} is not a feature name; known: {names}")
        return names.index(feature)
    if isinstance(feature, (int, np.integer)) and not isinstance(feature, bool) and -len(names) <= feature < len(names):
        return int(feature) % len(names)
    raise ValidationError(f"{owner}: {arg} must be a feature name or an int in [0, {len(names)}), got {feature!r}")


class DependenceDisplay(Display):
    """One feature's value (x) against its attribution (y), optionally coloured by another feature's value.

    Attributes (after ``plot``): ``scatter_`` (offsets = (feature values, attributions)), ``colorbar_``.
    """

    def __init__(self, feature_values: Any, attributions: Any, *, feature_name: str = "feature",
                 color_values: Any = None, color_name: str | None = None, title: str | None = None) -> None:
        owner = type(self).__name__
        self.x = to_numpy(feature_values, owner=owner, name="feature_values").ravel()
        self.y = to_numpy(attributions, owner=owner, name="attributions").ravel()
        if self.x.shape != self.y.shape:
            raise ValidationError(f"{owner}: feature_values has {self.x.size} values, attributions {self.y.size}")
        self.c = None if color_values is None else to_numpy(color_values, owner=owner, name="color_values").ravel()
        if self.c is not None and self.c.shape != self.x.shape:
            raise ValidationError(f"{owner}: color_values has {self.c.size} values, feature_values {self.x.size}")
        self.feature_name, self.color_name, self.title = feature_name, color_name, title
        self.scatter_ = self.colorbar_ = None

    @classmethod
    def from_explanation(cls, explanation: Explanation, feature: str | int, *, color_by: str | int | None = None,
                         input_index: int = 0, **kwargs: Any) -> DependenceDisplay:
        """``feature`` (name or index) of a tabular explanation whose ``inputs`` are known."""
        owner = cls.__name__
        attributions, inputs, names = tabular_arrays(explanation, owner, input_index)
        if inputs is None:
            raise ValidationError(f"{owner}: needs the feature values: the explanation has no (N, features) inputs")
        j = _feature_index(feature, names, owner, "feature")
        extra = {}
        if color_by is not None:
            c = _feature_index(color_by, names, owner, "color_by")
            extra = {"color_values": inputs[:, c], "color_name": names[c]}
        kwargs.setdefault("title", explanation.method or None)
        return cls(inputs[:, j], attributions[:, j], feature_name=names[j], **extra, **kwargs)

    def plot(self, ax: Any = None, *, dot_size: float = 16.0, cmap: str = FEATURE_CMAP) -> DependenceDisplay:
        ax = self._axes(ax, (5.2, 3.8))
        if self.c is None:
            self.scatter_ = ax.scatter(self.x, self.y, s=dot_size, color=POSITIVE_COLOR, linewidths=0)
        else:
            self.scatter_ = ax.scatter(self.x, self.y, s=dot_size, c=self.c, cmap=cmap, linewidths=0)
            self.colorbar_ = self.figure_.colorbar(self.scatter_, ax=ax)
            self.colorbar_.set_label(self.color_name or "color")
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set_xlabel(self.feature_name)
        ax.set_ylabel(f"attribution of {self.feature_name}")
        if self.title:
            ax.set_title(self.title)
        return self
