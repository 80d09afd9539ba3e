"""Localisation: does the explanation point at the ground-truth region? (one value per sample, higher better)

Masks are boolean (or 0/1) arrays, one per sample, with the shape of the pooled heatmap: (H, W) for image
attributions (N, C, H, W) pooled over channels (``pooling=``, see :func:`lumos.metrics.arrays.pooled_map`),
else the attributions' own per-sample shape. One mask of that shape is shared by every sample.

- :func:`pointing_game` (Zhang et al. 2018): is the peak inside the mask?
- :func:`relevance_mass_accuracy` (Arras et al. 2022): share of the relevance inside the mask;
- :func:`relevance_rank_accuracy` (Arras et al. 2022): share of the K top-ranked positions inside the mask,
  K = mask size;
- :func:`top_k_intersection` (Theiner et al. 2021): share of the k top-ranked positions inside the mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ValidationError
from .arrays import pooled_map, sample_masks


def _prepare(attributions: Any, masks: Any, pooling: str, owner: str) -> tuple[np.ndarray, np.ndarray]:
    heat = pooled_map(attributions, pooling=pooling, owner=owner)
    mask = sample_masks(masks, heat.shape, owner=owner)
    return heat.reshape(heat.shape[0], -1), mask.reshape(mask.shape[0], -1)


def _top_positions(heat: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row (ties broken by position, stable)."""
    return np.argsort(-heat, axis=1, kind="stable")[:, :k]


def pointing_game(attributions: Any, masks: Any, *, pooling: str = "sum_pos", tolerance: int = 0) -> np.ndarray:
    """1.0 where the heatmap's maximum lies inside the mask (grown by ``tolerance`` pixels), else 0.0.

    Zhang et al. (2018), "Top-down Neural Attention by Excitation Backprop", IJCV (they use a 15-pixel
    tolerance on full-size images). Ties at the maximum: the first position in row-major order counts.
    """
    owner = "pointing_game"
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValidationError(f"{owner}: tolerance must be an int >= 0 (pixels), got {tolerance!r}")
    heat_maps = pooled_map(attributions, pooling=pooling, owner=owner)
    mask = sample_masks(masks, heat_maps.shape, owner=owner)
    if tolerance:
        structure = np.zeros((1,) + (3,) * (mask.ndim - 1), dtype=bool)
        structure[(0,) + (slice(None),) * (mask.ndim - 1)] = ndimage.generate_binary_structure(mask.ndim - 1, 1)
        mask = ndimage.binary_dilation(mask, structure=structure, iterations=tolerance)
    heat = heat_maps.reshape(heat_maps.shape[0], -1)
    flat_mask = mask.reshape(mask.shape[0], -1)
    peak = np.argmax(heat, axis=1)
    return flat_mask[np.arange(len(peak)), peak].astype(np.float64)


def relevance_mass_accuracy(attributions: Any, masks: Any, *, pooling: str = "sum_pos") -> np.ndarray:
    """Share of the total relevance that falls inside the mask: ``sum_{p in mask} R_p / sum_p R_p``.

    Arras, Osman & Samek (2022), "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural
    network explanations", Information Fusion. With the default ``pooling="sum_pos"`` only positive
    relevance counts, as in the paper, and the value lies in [0, 1]. A sample with zero total relevance
    scores 0.
    """
    heat, mask = _prepare(attributions, masks, pooling, "relevance_mass_accuracy")
    total = heat.sum(axis=1)
    inside = np.where(mask, heat, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, inside / total, 0.0)


def relevance_rank_accuracy(attributions: Any, masks: Any, *, pooling: str = "sum_pos") -> np.ndarray:
    """Share of the K highest-relevance positions that lie inside the mask, K = number of mask positions.

    Arras, Osman & Samek (2022), CLEVR-XAI. Ties broken by position (row-major). In [0, 1]; a sample with an
    empty mask scores 0.
    """
    heat, mask = _prepare(attributions, masks, pooling, "relevance_rank_accuracy")
    sizes = mask.sum(axis=1)
    order = np.argsort(-heat, axis=1, kind="stable")
    ranked_inside = np.take_along_axis(mask, order, axis=1)
    within_k = np.arange(heat.shape[1])[None, :] < sizes[:, None]
    hits = (ranked_inside & within_k).sum(axis=1)
    return np.divide(hits, sizes, out=np.zeros(len(sizes)), where=sizes > 0)


def top_k_intersection(attributions: Any, masks: Any, *, k: int, pooling: str = "sum_abs") -> np.ndarray:
    """Share of the ``k`` highest-ranked positions that lie inside the mask: ``|top_k(R) & mask| / k``.

    Theiner, Müller-Budack & Ewerth (2022), "Interpretable Semantic Photo Geolocation", WACV. Positions are
    ranked by the pooled value (default: magnitude of the channel sum).
    """
    owner = "top_k_intersection"
    heat, mask = _prepare(attributions, masks, pooling, owner)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= heat.shape[1]:
        raise ValidationError(f"{owner}: k must be an int in [1, {heat.shape[1]}], got {k!r}")
    top = _top_positions(heat, int(k))
    return np.take_along_axis(mask, top, axis=1).sum(axis=1) / float(k)
