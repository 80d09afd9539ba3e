"""Similarity of two explanations of the same samples, per sample: the measures of the randomisation tests.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018), "Sanity Checks for Saliency Maps", NeurIPS,
compare the explanation of the trained model with that of a randomised one by

- Spearman rank correlation of the absolute values (:func:`spearman_similarity`, ``absolute=True``) and of the
  signed values (``absolute=False``): ``rho = pearson(rank(a), rank(b))``, ties get average ranks;
- SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, IEEE TIP) of the maps rescaled to [0, 1]
  (:func:`ssim_similarity`): ``SSIM = mean_windows ((2 mu_a mu_b + C1)(2 s_ab + C2)) /
  ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` over 7x7 uniform windows, ``C1 = (0.01 L)^2``,
  ``C2 = (0.03 L)^2``, ``L = 1`` (the conventions of ``skimage.metrics.structural_similarity``);
- the Pearson correlation of the histograms of oriented gradients (Dalal & Triggs 2005, CVPR) of the maps
  (:func:`hog_similarity`, ``skimage.feature.hog``).

Every measure lies in [-1, 1] (SSIM and HOG of non-negative maps in practice in [0, 1]); 1 = the same
explanation. For a sanity check LOWER is better: a trustworthy method's explanation changes when the model
changes. Correlations of a constant row are undefined; here they are 0 when exactly one of the two rows is
constant (the structure of one map vanished, so none is shared) and NaN when both are (two empty
explanations: nothing to compare; means over samples leave NaN out). SSIM is defined for constant maps too
(two constant maps are identical: SSIM 1), but for consistency it follows the same rule: NaN when both
maps are constant, so every measure leaves out the same samples.

Maps: :func:`explanation_maps` turns attributions into one map per sample. Images (N, C, H, W) become 2-D
maps (N, H, W): ``sum_c |a_c|`` for the absolute measures and ``sum_c a_c`` for the signed Spearman; any
other shape is flattened into one vector per sample (SSIM and HOG need 2-D maps of at least 7x7 pixels and
are not defined for vectors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ValidationError
from .arrays import attribution_parts

#: the similarity measures of the randomisation tests, in report order
SIMILARITY_MEASURES = ("spearman_abs", "spearman", "ssim", "hog")
#: the measures that need 2-D maps of at least SSIM_WINDOW x SSIM_WINDOW pixels
MAP_MEASURES = ("ssim", "hog")
SSIM_WINDOW = 7


@dataclass
class ExplanationMaps:
    """One explanation as the arrays the measures compare: ``magnitude`` (N, H, W) or (N, d), >= 0, and
    ``signed`` of the same shape; ``is_image`` when the maps are 2-D."""

    magnitude: np.ndarray
    signed: np.ndarray

    @property
    def is_image(self) -> bool:
        return self.magnitude.ndim == 3

    @property
    def n(self) -> int:
        return int(self.magnitude.shape[0])


def explanation_maps(attributions: Any, *, owner: str = "explanation_maps") -> ExplanationMaps:
    """Attributions (an Explanation, tensor, array or tuple) as per-sample maps (see the module doc).

    Example::

        maps = explanation_maps(explanation)       # images (N, C, H, W) -> maps.magnitude (N, H, W)
    """
    parts = attribution_parts(attributions, owner=owner)
    if len(parts) == 1 and parts[0].ndim == 4:
        a = parts[0]
        return ExplanationMaps(np.abs(a).sum(axis=1), a.sum(axis=1))
    flat = np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)
    return ExplanationMaps(np.abs(flat), flat)


def _rows(a: np.ndarray, b: np.ndarray, owner: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValidationError(f"{owner}: needs two arrays of the same shape (samples, ...), got {a.shape} and {b.shape}")
    return a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)


def row_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (2-D arrays of one shape).

    ``r = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2)``; 0 when exactly one row
    is constant, NaN when both are.
    """
    ca = a - a.mean(axis=1, keepdims=True)
    cb = b - b.mean(axis=1, keepdims=True)
    va = (ca * ca).sum(axis=1)
    vb = (cb * cb).sum(axis=1)
    # a row is constant when its spread is at rounding level of its values
    scale_a = np.maximum(np.abs(a).max(axis=1), np.finfo(np.float64).tiny) ** 2 * a.shape[1]
    scale_b = np.maximum(np.abs(b).max(axis=1), np.finfo(np.float64).tiny) ** 2 * b.shape[1]
    flat_a = va <= 1e-24 * scale_a
    flat_b = vb <= 1e-24 * scale_b
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ca * cb).sum(axis=1) / np.sqrt(va * vb)
    r = np.where(flat_a | flat_b, np.where(flat_a & flat_b, np.nan, 0.0), r)
    return np.clip(r, -1.0, 1.0)


def average_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks 1..m of each row of a 2-D array, ties given their average rank (``scipy.stats.rankdata(rows,
    axis=1)``, method ``"average"``), from one unstable sort instead of rankdata's stable merge sort.

    In each row, a run of ``c`` equal values starting at sorted position ``p`` (0-based) gets ``p + (c + 1) / 2``;
    a row holding a NaN gets NaN ranks.
    """
    rows = np.asarray(rows, dtype=np.float64)
    n, m = rows.shape
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.ones((n, m), dtype=bool)  # where a run of equal values begins
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    flat_starts = starts.ravel()
    run = np.cumsum(flat_starts) - 1  # the run of every sorted position, numbered over all rows
    first = np.tile(np.arange(m, dtype=np.float64), n)[flat_starts]
    mean_rank = first + (np.bincount(run) + 1) / 2.0
    ranks = np.empty((n, m), dtype=np.float64)
    np.put_along_axis(ranks, order, mean_rank[run].reshape(n, m), axis=1)
    ranks[np.isnan(rows).any(axis=1)] = np.nan  # as rankdata: a row with a NaN has no ranks
    return ranks


def spearman_similarity(a: np.ndarray, b: np.ndarray, *, absolute: bool = True) -> np.ndarray:
    """Spearman rank correlation of ``a`` and ``b`` per sample (rows; any trailing shape is flattened).

    ``rho = pearson(rank(a), rank(b))`` with average ranks for ties (``scipy.stats.spearmanr`` per row);
    with ``absolute=True`` the ranks of ``|a|`` and ``|b|`` (Adebayo et al. 2018). Higher = more similar;
    a sanity check wants it LOW after randomisation.

    Example::

        spearman_similarity(maps_before, maps_after)      # shape (n_samples,)
    """
    left, right = _rows(a, b, "spearman_similarity")
    if absolute:
        left, right = np.abs(left), np.abs(right)
    return row_correlation(average_ranks(left), average_ranks(right))


def _unit_range(maps: np.ndarray) -> np.ndarray:
    """Each map min-max rescaled to [0, 1] (a constant map becomes 0)."""
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


def _check_maps(a: np.ndarray, b: np.ndarray, owner: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or min(a.shape[1:]) < SSIM_WINDOW:
        raise ValidationError(
            f"{owner}: needs two stacks of 2-D maps of one shape (samples, height, width) with height and width "
            f">= {SSIM_WINDOW}, got {a.shape} and {b.shape}"
        )
    return a, b


def ssim_similarity(a: np.ndarray, b: np.ndarray, *, rescale: bool = True) -> np.ndarray:
    """Structural similarity of two stacks of 2-D maps (N, H, W), per sample, batched over samples.

    Each map is first rescaled to [0, 1] (``rescale=True``; min-max per map, so only the shape of the map
    counts, not its scale), then ``SSIM = mean over 7x7 windows of ((2 mu_a mu_b + C1)(2 s_ab + C2)) /
    ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with window means ``mu``, unbiased window (co)variances
    ``s``, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, data range ``L = 1``, averaged over the windows that lie
    inside the map: the same value as ``skimage.metrics.structural_similarity(a_i, b_i, data_range=1)``.

    Wang, Bovik, Sheikh & Simoncelli (2004), "Image Quality Assessment: From Error Visibility to Structural
    Similarity", IEEE TIP; used on explanations by Adebayo et al. (2018). Higher = more similar.

    Example::

        ssim_similarity(maps_before, maps_after)          # shape (n_samples,)
    """
    a, b = _check_maps(a, b, "ssim_similarity")
    if rescale:
        a, b = _unit_range(a), _unit_range(b)
    size = (1, SSIM_WINDOW, SSIM_WINDOW)
    n_pixels = SSIM_WINDOW * SSIM_WINDOW
    unbias = n_pixels / (n_pixels - 1.0)

    def mean(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size=size, mode="reflect")

    mu_a, mu_b = mean(a), mean(b)
    var_a = unbias * (mean(a * a) - mu_a * mu_a)
    var_b = unbias * (mean(b * b) - mu_b * mu_b)
    cov = unbias * (mean(a * b) - mu_a * mu_b)
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = (SSIM_WINDOW - 1) // 2
    value = index[:, pad:-pad, pad:-pad].mean(axis=(1, 2))
    both_constant = (np.ptp(a.reshape(len(a), -1), axis=1) == 0) & (np.ptp(b.reshape(len(b), -1), axis=1) == 0)
    return np.where(both_constant, np.nan, value)


def hog_cell(shape: tuple[int, ...], *, n_cells: int = 4) -> int:
    """Pixels per (square) HOG cell so that the shorter side holds about ``n_cells`` cells (at least 2 px)."""
    return max(2, min(int(s) for s in shape) // n_cells)


def hog_features(maps: np.ndarray, *, n_cells: int = 4, orientations: int = 9) -> np.ndarray:
    """Histogram-of-oriented-gradients features of each 2-D map (N, H, W) -> (N, n_features).

    ``skimage.feature.hog`` with ``orientations`` bins, square cells of :func:`hog_cell` pixels (about
    ``n_cells`` cells along the shorter side), 2x2-cell blocks and L2-Hys block normalisation. The maps are
    rescaled to [0, 1] first (so a map's scale does not matter). Dalal & Triggs (2005), CVPR.
    """
    from skimage.feature import hog

    maps = _unit_range(np.asarray(maps, dtype=np.float64))
    cell = hog_cell(maps.shape[1:], n_cells=n_cells)
    if min(maps.shape[1:]) < 2 * cell:
        raise ValidationError(f"hog_features: maps of shape {maps.shape[1:]} are too small for 2x2 cells of {cell} px")
    return np.stack([hog(m, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                         block_norm="L2-Hys", feature_vector=True) for m in maps])


def hog_similarity(a: np.ndarray, b: np.ndarray, *, n_cells: int = 4, orientations: int = 9) -> np.ndarray:
    """Pearson correlation of the HOG features (:func:`hog_features`) of two stacks of 2-D maps, per sample.

    ``r = pearson(HOG(a_i), HOG(b_i))`` (0 when exactly one HOG vector is constant, NaN when both are).
    Adebayo et al. (2018) compare explanations by their histograms of gradients; higher = more similar.

    Example::

        hog_similarity(maps_before, maps_after)           # shape (n_samples,)
    """
    a, b = _check_maps(a, b, "hog_similarity")
    return row_correlation(hog_features(a, n_cells=n_cells, orientations=orientations),
                           hog_features(b, n_cells=n_cells, orientations=orientations))


def check_measures(measures: Any, *, owner: str) -> tuple[str, ...]:
    """Validate a sequence of measure names against :data:`SIMILARITY_MEASURES`."""
    if isinstance(measures, str):
        measures = (measures,)
    try:
        names = tuple(measures)
    except TypeError:
        names = ()
    if not names or any(m not in SIMILARITY_MEASURES for m in names) or len(set(names)) != len(names):
        raise ValidationError(
            f"{owner}: measures must be distinct names from {list(SIMILARITY_MEASURES)}, got {measures!r}"
        )
    return names


class MapComparer:
    """Compares many explanations with one reference, caching what depends only on the reference (its ranks
    and HOG features), so each comparison costs one pass over the new explanation.

    Measures that need 2-D maps are skipped for vectors (they are missing from the result).
    """

    def __init__(self, reference: ExplanationMaps, measures: tuple[str, ...]) -> None:
        self.reference = reference
        self.measures = tuple(m for m in measures if reference.is_image or m not in MAP_MEASURES)
        if reference.is_image and min(reference.magnitude.shape[1:]) < SSIM_WINDOW:
            self.measures = tuple(m for m in self.measures if m not in MAP_MEASURES)
        self._cache: dict[str, np.ndarray] = {}

    def _ref(self, key: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def compare(self, other: ExplanationMaps) -> dict[str, np.ndarray]:
        """``{measure: similarity per sample}`` of ``other`` with the reference."""
        ref = self.reference
        if other.magnitude.shape != ref.magnitude.shape:
            raise ValidationError(f"the explanations to compare have shapes {other.magnitude.shape} and "
                                  f"{ref.magnitude.shape}")
        n = ref.n
        out: dict[str, np.ndarray] = {}
        for measure in self.measures:
            if measure == "spearman_abs":
                ranks = self._ref(measure, lambda: average_ranks(ref.magnitude.reshape(n, -1)))
                out[measure] = row_correlation(ranks, average_ranks(other.magnitude.reshape(n, -1)))
            elif measure == "spearman":
                ranks = self._ref(measure, lambda: average_ranks(ref.signed.reshape(n, -1)))
                out[measure] = row_correlation(ranks, average_ranks(other.signed.reshape(n, -1)))
            elif measure == "ssim":
                out[measure] = ssim_similarity(ref.magnitude, other.magnitude)
            else:
                features = self._ref(measure, lambda: hog_features(ref.magnitude))
                out[measure] = row_correlation(features, hog_features(other.magnitude))
        return out
