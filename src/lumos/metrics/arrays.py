"""Turning explanations into the arrays metrics work on.

Every metric accepts an :class:`~lumos.explanation.Explanation`, a tensor, a numpy array or a tuple of them
(one per input of a multi-input model), batch first. :func:`per_sample` flattens each sample's attributions
into one row of float64 values (tuple parts concatenated in order); :func:`pooled_map` reduces image
attributions (N, C, H, W) over the channel axis to one heatmap per sample for the localisation metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ValidationError, describe_value
from ..explanation import Explanation

#: how channels are pooled into one heatmap (Arras et al. 2022, CLEVR-XAI, sec. 4.2)
POOLINGS = ("sum_pos", "sum", "sum_abs", "max_abs", "none")


def _array(value: Any, *, owner: str, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        return value.astype(np.float64, copy=False)
    raise ValidationError(f"{owner}: {name} must be an Explanation, a tensor or a numpy array, got "
                          f"{describe_value(value)}")


def attribution_parts(attributions: Any, *, owner: str, name: str = "attributions") -> list[np.ndarray]:
    """The attributions as a list of float64 arrays (one per input), batch first, all with the same batch."""
    if isinstance(attributions, Explanation):
        attributions = attributions.attributions
    parts = list(attributions) if isinstance(attributions, (tuple, list)) else [attributions]
    if not parts:
        raise ValidationError(f"{owner}: {name} is empty")
    arrays = [_array(p, owner=owner, name=name) for p in parts]
    n = arrays[0].shape[0] if arrays[0].ndim else None
    for array in arrays:
        if array.ndim < 2:
            raise ValidationError(
                f"{owner}: {name} must have a batch axis and at least one feature axis, got shape {array.shape}"
            )
        if array.shape[0] != n:
            raise ValidationError(f"{owner}: the parts of {name} have different batch sizes "
                                  f"({[a.shape[0] for a in arrays]})")
        if not np.isfinite(array).all():
            raise ValidationError(f"{owner}: {name} contain NaN or infinite values")
    return arrays


def per_sample(attributions: Any, *, owner: str, name: str = "attributions") -> np.ndarray:
    """Each sample's attributions flattened into one float64 row: shape (n_samples, n_features)."""
    parts = attribution_parts(attributions, owner=owner, name=name)
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def pooled_map(attributions: Any, *, pooling: str, owner: str) -> np.ndarray:
    """One heatmap per sample: image attributions (N, C, H, W) pooled over C; other shapes kept as they are.

    ``pooling``: ``"sum_pos"`` (positive part of the channel sum, the default of Arras et al. 2022),
    ``"sum"``, ``"sum_abs"`` (absolute value of the sum), ``"max_abs"`` (largest magnitude over channels) or
    ``"none"`` (no pooling: masks then have the attributions' full shape).
    """
    if pooling not in POOLINGS:
        raise ValidationError(f"{owner}: pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    parts = attribution_parts(attributions, owner=owner)
    if len(parts) != 1:
        raise ValidationError(f"{owner}: localisation needs single-input attributions, got {len(parts)} inputs")
    a = parts[0]
    if pooling == "none" or a.ndim != 4:
        return a
    if pooling == "max_abs":
        return np.abs(a).max(axis=1)
    summed = a.sum(axis=1)
    if pooling == "sum_pos":
        return np.maximum(summed, 0.0)
    if pooling == "sum_abs":
        return np.abs(summed)
    return summed


def sample_masks(masks: Any, shape: tuple[int, ...], *, owner: str) -> np.ndarray:
    """Ground-truth masks as booleans of ``shape`` (n_samples, ...); one mask may serve every sample."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValidationError(f"{owner}: masks must be boolean or 0/1, got values other than 0 and 1")
        masks = masks.astype(bool)
    if masks.shape == shape[1:]:
        masks = np.broadcast_to(masks, shape)
    if masks.shape != shape:
        raise ValidationError(
            f"{owner}: masks must have shape {shape} (one per sample) or {shape[1:]} (shared), got {masks.shape}"
        )
    return masks
