"""Superpixels: one integer label map per image, the features of image LIME (and any coalition method).

Algorithms (scikit-image, imported lazily; ``scikit-image>=0.22``):

- ``"slic"`` (Achanta et al. 2012, k-means in colour + position), defaults ``n_segments=50``,
  ``compactness=10`` for 3-channel images (Lab colour), ``0.1`` otherwise, ``start_label=0``;
- ``"quickshift"`` (Vedaldi & Soatto 2008, the lime package's choice), defaults as lime: ``kernel_size=4``,
  ``max_dist=200``, ``ratio=0.2`` (Lab conversion only for 3-channel images);
- ``"felzenszwalb"`` (Felzenszwalb & Huttenlocher 2004), defaults ``scale=100``, ``sigma=0.5``,
  ``min_size=50``;
- ``"grid"``: a regular grid of ``g_h x g_w`` cells with ``g_h = round(sqrt(n_segments * H / W))`` and
  ``g_w = round(n_segments / g_h)`` (each clipped to 1 .. the side), so exactly ``g_h * g_w`` segments;
  ``n_segments=16`` on a square image is 4 x 4. Cell ``(a, b)`` holds pixels ``(r, c)`` with
  ``r * g_h // H == a`` and ``c * g_w // W == b``.
- a callable ``fn(image (H, W, C) float ndarray) -> (H, W) int labels``;
- a user map: pass ``feature_groups=`` to ``explain`` instead (one map, or one per image).

Images are ``(C, H, W)`` (channels first, as the models take them). Before segmentation each image is moved
to ``[0, 1]`` by its own min and max (the algorithms' colour parameters assume that range); labels are
renumbered ``0 .. k-1`` per image.

Example::

    labels = segment_images(images.numpy(), "slic", n_segments=100)   # (N, H, W) int64
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import ValidationError

SEGMENTATIONS = ("slic", "quickshift", "felzenszwalb", "grid")


def grid_segments(height: int, width: int, n_segments: int = 50) -> np.ndarray:
    """A regular grid label map ``(H, W)`` with ``g_h * g_w`` cells (see the module doc)."""
    g_h = int(min(height, max(1, round(np.sqrt(n_segments * height / width)))))
    g_w = int(min(width, max(1, round(n_segments / g_h))))
    rows = np.arange(height) * g_h // height
    cols = np.arange(width) * g_w // width
    return (rows[:, None] * g_w + cols[None, :]).astype(np.int64)


def segment_image(image: np.ndarray, method: str | Callable[[np.ndarray], Any], *, owner: str = "segment_image",
                  **params: Any) -> np.ndarray:
    """Label map ``(H, W)`` of one ``(C, H, W)`` image, labels ``0 .. k-1``."""
    if image.ndim != 3:
        raise ValidationError(f"{owner}: superpixels need images of shape (C, H, W), got shape {image.shape}")
    channels, height, width = image.shape
    hwc = np.moveaxis(np.asarray(image, dtype=np.float64), 0, -1)
    low, high = hwc.min(), hwc.max()
    hwc = (hwc - low) / (high - low) if high > low else np.zeros_like(hwc)
    if callable(method):
        labels = np.asarray(method(hwc))
        if labels.shape != (height, width) or not np.issubdtype(labels.dtype, np.integer):
            raise ValidationError(f"{owner}: the segmentation function must return an integer label map of shape "
                                  f"({height}, {width}), got {labels.dtype} of shape {labels.shape}")
    elif method == "grid":
        labels = grid_segments(height, width, **{"n_segments": 50, **params})
    elif method in SEGMENTATIONS:
        from skimage import segmentation as sk  # lazy: scikit-image is only needed for superpixels

        rgb = channels == 3
        img = hwc if channels > 1 else hwc[..., 0]
        axis = -1 if channels > 1 else None
        try:
            if method == "slic":
                kw = {"n_segments": 50, "compactness": 10.0 if rgb else 0.1, "start_label": 0, **params}
                labels = sk.slic(img, channel_axis=axis, convert2lab=rgb, **kw)
            elif method == "quickshift":
                kw = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, "rng": 0, **params}
                img = hwc if channels != 1 else np.repeat(hwc, 3, axis=-1)
                labels = sk.quickshift(img, convert2lab=rgb, channel_axis=-1, **kw)
            else:
                kw = {"scale": 100, "sigma": 0.5, "min_size": 50, **params}
                labels = sk.felzenszwalb(img, channel_axis=axis, **kw)
        except TypeError as exc:
            raise ValidationError(f"{owner}: bad segmentation_params for {method!r}: {exc}") from exc
    else:
        raise ValidationError(f"{owner}: segmentation must be one of {', '.join(map(repr, SEGMENTATIONS))} or a "
                              f"callable image -> labels, got {method!r}")
    return np.unique(labels, return_inverse=True)[1].reshape(height, width).astype(np.int64)


def segment_images(images: np.ndarray, method: str | Callable[[np.ndarray], Any], *,
                   owner: str = "segment_images", **params: Any) -> np.ndarray:
    """Label maps ``(N, H, W)`` of ``(N, C, H, W)`` images, one segmentation per image."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValidationError(f"{owner}: superpixels need images of shape (N, C, H, W), got shape {images.shape}")
    return np.stack([segment_image(image, method, owner=owner, **params) for image in images])
