"""Colour scales for attribution plots: channel pooling, symmetric/percentile-clipped limits, token colours.

No matplotlib here: these are plain numpy functions, shared by every display and easy to test.

Rules:

- A map is drawn *signed* (diverging colour map, limits symmetric around 0 so that 0 is always the neutral
  colour) when it has negative values, *sequential* otherwise (absolute values: 0 is the lightest/darkest
  end). ``signed=None`` picks automatically; an all-negative map is also drawn signed so that its colours keep
  their meaning.
- The colour limit is the ``clip_percentile``-th percentile of ``|values|`` (signed) or of the values
  (sequential), so that one extreme pixel does not wash out the rest of the map; values beyond are clipped
  to the end colour.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError, describe_value

#: default diverging colour map (red: toward the target, blue: against it) and sequential colour map
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "inferno"
#: bar/segment/token colours of positive and negative contributions (the ends of ``RdBu_r``)
POSITIVE_COLOR = "#d6604d"
NEGATIVE_COLOR = "#4393c3"
POSITIVE_RGB = (214, 96, 77)
NEGATIVE_RGB = (67, 147, 195)

REDUCTIONS = ("sum", "abs_sum", "max_abs")


def to_numpy(value: Any, *, owner: str, name: str) -> np.ndarray:
    """``value`` (numpy array, torch tensor on any device, nested list) as a float64 numpy array."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{owner}: {name} must be numeric array-like, got {describe_value(value)}") from exc
    return array


def pool_channels(attributions: np.ndarray, reduce: str = "sum", *, owner: str = "pool_channels") -> np.ndarray:
    """One 2-D map per image from channels-first attributions.

    ``(C, H, W) -> (H, W)`` with ``reduce``: ``"sum"`` (signed sum over channels, the default: keeps the
    completeness of the attributions), ``"abs_sum"`` (sum of ``|a|``: magnitude, unsigned) or ``"max_abs"``
    (the largest ``|a|`` over channels, unsigned). A ``(H, W)`` map is returned unchanged.

    Example:
        >>> pool_channels(np.ones((3, 2, 2))).tolist()
        [[3.0, 3.0], [3.0, 3.0]]
    """
    if reduce not in REDUCTIONS:
        raise ValidationError(f"{owner}: reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim == 2:
        return a
    if a.ndim != 3:
        raise ValidationError(f"{owner}: a map must be (H, W) or (C, H, W), got shape {a.shape}")
    if reduce == "sum":
        return a.sum(axis=0)
    if reduce == "abs_sum":
        return np.abs(a).sum(axis=0)
    return np.abs(a).max(axis=0)


def check_percentile(value: float, *, owner: str, name: str = "clip_percentile") -> float:
    """A percentile in (0, 100]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
        0 < float(value) <= 100
    ):
        raise ValidationError(f"{owner}: {name} must be a number in (0, 100], got {value!r}")
    return float(value)


def is_signed(values: np.ndarray) -> bool:
    """Whether a map needs a diverging scale: it has (finite) negative values."""
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() < 0)


def color_limits(values: np.ndarray, *, signed: bool | None = None, clip_percentile: float = 99.5,
                 owner: str = "color_limits") -> tuple[float, float, bool]:
    """``(vmin, vmax, signed)`` of the colour scale of ``values``.

    Signed: ``vmax = percentile(|v|, p)``, ``vmin = -vmax``. Sequential: ``vmax = percentile(v, p)`` and
    ``vmin = 0`` for non-negative maps (else ``percentile(v, 100 - p)``). NaN/inf are ignored; a constant or
    empty map gets a non-degenerate scale (``vmax = vmin + 1``).

    Example:
        >>> color_limits(np.array([-1.0, 0.5, 2.0]), clip_percentile=100)
        (-2.0, 2.0, True)
    """
    p = check_percentile(clip_percentile, owner=owner)
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    signed = is_signed(v) if signed is None else bool(signed)
    if finite.size == 0:
        return (-1.0, 1.0, signed) if signed else (0.0, 1.0, signed)
    if signed:
        vmax = float(np.percentile(np.abs(finite), p))
        if vmax <= 0:
            vmax = 1.0
        return -vmax, vmax, True
    vmax = float(np.percentile(finite, p))
    vmin = 0.0 if finite.min() >= 0 else float(np.percentile(finite, 100 - p))
    if vmax <= vmin:
        vmax = vmin + 1.0
    return vmin, vmax, False


def top_region_mask(values: np.ndarray, percent: float, *, by: str = "value",
                    owner: str = "top_region_mask") -> np.ndarray:
    """Boolean mask of the top ``percent`` % of the entries of a map.

    ``by="value"`` ranks by the signed value (the evidence *for* the target), ``"abs"`` by magnitude. Exactly
    ``ceil(percent / 100 * size)`` entries are selected (ties broken by position, stable).
    """
    p = check_percentile(percent, owner=owner, name="percent")
    if by not in ("value", "abs"):
        raise ValidationError(f"{owner}: by must be 'value' or 'abs', got {by!r}")
    v = np.asarray(values, dtype=np.float64)
    key = np.abs(v) if by == "abs" else v
    key = np.where(np.isfinite(key), key, -np.inf).ravel()
    k = int(np.ceil(p * key.size / 100.0 - 1e-9))  # (the tolerance: 7 / 100 * 100 is 7.000000000000001)
    mask = np.zeros(key.size, dtype=bool)
    mask[np.argsort(-key, kind="stable")[:k]] = True
    return mask.reshape(v.shape)


def image_for_display(image: np.ndarray, *, owner: str = "image_for_display") -> tuple[np.ndarray, bool]:
    """An input image ready for ``imshow``: ``(H, W)`` gray or ``(H, W, 3)`` RGB, min-max scaled to [0, 1].

    Accepts ``(H, W)``, channels-first ``(C, H, W)`` (C == 1: gray, C == 3: RGB, other C: mean over
    channels, gray) or channels-last ``(H, W, 3)``. Returns ``(array, is_gray)``.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 3 and x.shape[0] == 3:
        x = np.moveaxis(x, 0, -1)
    elif x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] not in (3, 4):
        x = x[..., :3]
    elif x.ndim == 3:
        x = x.mean(axis=0)
    elif x.ndim != 2:
        raise ValidationError(f"{owner}: an image must be (H, W), (C, H, W) or (H, W, 3), got shape {x.shape}")
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    lo, hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 0.0)
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x, x.ndim == 2


def token_rgba(values: np.ndarray, scale: float | None = None) -> list[tuple[int, int, int, float]]:
    """Background colour of each token: red for positive, blue for negative, opacity ``min(1, |v| / scale)``.

    ``scale`` defaults to ``max |v|`` (the strongest token is fully opaque). Returns ``(r, g, b, alpha)``.
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if scale is None:
        scale = float(np.abs(v).max()) if v.size else 1.0
    scale = scale if scale > 0 else 1.0
    alpha = np.clip(np.abs(v) / scale, 0.0, 1.0)
    return [(*(POSITIVE_RGB if x >= 0 else NEGATIVE_RGB), round(float(a), 3)) for x, a in zip(v, alpha, strict=True)]
