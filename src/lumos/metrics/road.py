"""ROAD: RemOve And Debias (Rong et al. 2022), with noisy linear imputation for images and a conditional-mean
imputation for tabular data.

Removing features by a constant leaks which features were removed (the mask shape itself carries class
information); ROAD fills removed pixels from their neighbours instead, so the model cannot read the mask.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import torch
from scipy import ndimage

from ..core.inputs import as_tensor
from ..core.seeding import derive_seed, numpy_generator
from ..errors import ValidationError, describe_value
from .perturb import (
    MetricResult,
    check_choice,
    check_positive,
    features,
    flat_attributions,
    pool,
    ranks,
    scoring,
    unpack,
)

#: neighbour offsets (dy, dx) and weights of the noisy linear imputation (Rong et al. 2022, sec. 4.2):
#: direct neighbours 1/6, diagonal ones 1/12 (normalised over the neighbours inside the image)
NEIGHBOURS = (((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
              ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12))
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: the neighbour weights as a 3x3 correlation kernel (centre 0)
_KERNEL = np.zeros((3, 3))
for (_dy, _dx), _weight in NEIGHBOURS:
    _KERNEL[1 + _dy, 1 + _dx] = _weight
#: half-bandwidths are rounded up to a multiple of this, so that a batch needs only a few banded solves
_BAND_STEP = 8
#: most entries of one banded system (1 MiB of float64): larger bands fall out of the CPU caches
_BAND_ENTRIES = 1 << 17
#: the neighbours that come before a pixel in row-major order (the lower triangle of the system)
_BACKWARD = tuple(((dy, dx), weight) for (dy, dx), weight in NEIGHBOURS if dy < 0 or (dy == 0 and dx < 0))


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, *, noise_std: float = 0.01,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill the ``removed`` pixels (H, W) of ``image`` (C, H, W) by the neighbour-average system, plus noise.

    Every removed pixel equals the weighted mean of its neighbours (weights :data:`NEIGHBOURS`, normalised to
    sum 1 over those inside the image): ``x_p = sum_q w_pq x_q / sum_q w_pq``; the known pixels enter the
    right-hand side, and the linear system over the removed pixels is solved exactly (all channels at once,
    see :func:`noisy_linear_impute_batch`). Gaussian noise of std ``noise_std`` is then added to the imputed
    pixels. Rong, Leemann, Borisov, Kasneci & Kasneci (2022), "A Consistent and Efficient Evaluation Strategy
    for Attribution Methods", ICML, sec. 4.2.

    Example::

        filled = noisy_linear_impute(img, mask, noise_std=0.0)
    """
    return noisy_linear_impute_batch(np.asarray(image)[None], np.asarray(removed)[None], noise_std=noise_std,
                                     rngs=[rng or np.random.default_rng(0)])[0]


def noisy_linear_impute_batch(images: np.ndarray, removed: np.ndarray, *, noise_std: float = 0.01,
                              rngs: Sequence[np.random.Generator | None] | None = None) -> np.ndarray:
    """:func:`noisy_linear_impute` of many images (B, C, H, W), each with its own mask (B, H, W), batched.

    Multiplying the equation of removed pixel p by ``t_p = sum_{q inside} w_pq`` gives the symmetric system
    ``t_p x_p - sum_{q removed} w_pq x_q = sum_{q kept} w_pq x_q``. Its matrix is diagonally dominant, strictly
    in every row next to a kept pixel, and every connected set of removed pixels has such a row unless the
    whole image is removed: it is symmetric positive definite. With the removed pixels numbered in row-major
    order, two coupled unknowns are at most ``W + 1`` apart, so the system of an image is banded. Images with
    the same half-bandwidth (rounded up to a multiple of 8) are stacked into block-diagonal banded systems of
    about 1 MiB, each solved by one banded Cholesky factorisation (``scipy.linalg.solveh_banded``, cost about
    n_removed x bandwidth^2) instead of one sparse LU per image; the right-hand sides are 3x3 correlations of
    the kept pixels, everything else is vectorised over the batch with shifted slices. Noise: image b gets
    ``rngs[b].normal(0, noise_std, (n_removed_b, C))`` added (pixels in row-major order), as one call of
    :func:`noisy_linear_impute` per image would (``rngs=None``: ``default_rng(0)`` per image).
    """
    out = np.array(images, dtype=np.float64)  # a copy: (B, C, H, W)
    mask = np.asarray(removed, dtype=bool)
    b, c, h, w = out.shape
    counts = mask.reshape(b, -1).sum(axis=1)
    if (counts == h * w).any():
        raise ValidationError("road: cannot impute an image whose pixels are all removed (fractions must be < 1)")
    # position of each removed pixel among its image's removed pixels (row-major); half-bandwidth per image
    position = np.cumsum(mask.reshape(b, -1), axis=1).reshape(b, h, w) - 1
    bandwidth = np.zeros(b, dtype=np.int64)
    for (dy, dx), _ in _BACKWARD:
        p, q = _shifted(dy, dx, h, w)
        both = mask[(slice(None), *p)] & mask[(slice(None), *q)]
        gap = np.where(both, position[(slice(None), *p)] - position[(slice(None), *q)], 0)
        bandwidth = np.maximum(bandwidth, gap.reshape(b, -1).max(axis=1, initial=0))
    pixels_last = out.transpose(0, 2, 3, 1)  # a view: (B, H, W, C)
    # right-hand sides sum_{q kept} w_pq x_q of every pixel, and the diagonal t_p, as 3x3 correlations
    right = ndimage.correlate(np.where(mask[:, None], 0.0, out), _KERNEL[None, None], mode="constant")
    right = right.transpose(0, 2, 3, 1)
    diagonal = ndimage.correlate(np.ones((h, w)), _KERNEL, mode="constant")
    bandwidth = -(-bandwidth // _BAND_STEP) * _BAND_STEP  # a few groups: each solve has a fixed overhead
    for width in np.unique(bandwidth[counts > 0]):
        same = np.flatnonzero((bandwidth == width) & (counts > 0))
        # split so that each banded matrix stays cache-sized (a 1 MiB band solves ~3x faster per row than 10 MiB)
        part = np.cumsum(counts[same]) * (int(width) + 1) // _BAND_ENTRIES
        for key in np.unique(part):
            group = same[part == key]
            solution = _solve_group(right[group], diagonal, mask[group], int(width))
            pixels_last[group] = _filled(pixels_last[group], mask[group], solution)
    if noise_std > 0:  # image by image from its own generator; the mask orders pixels image after image
        generators = [(rngs[index] if rngs is not None else None) or np.random.default_rng(0) for index in range(b)]
        pixels_last[mask] += np.concatenate([generators[index].normal(0.0, noise_std, (int(counts[index]), c))
                                             for index in range(b)])
    return out


@functools.lru_cache(maxsize=256)
def _shifted(dy: int, dx: int, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``(p, q)`` of an (H, W) grid such that ``q`` is the neighbour ``(dy, dx)`` of ``p``, both inside."""
    p = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    q = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
    return p, q


def _filled(pixels_last: np.ndarray, mask: np.ndarray, solution: np.ndarray) -> np.ndarray:
    pixels_last = pixels_last.copy()
    pixels_last[mask] = solution
    return pixels_last


def _solve_group(right: np.ndarray, diagonal: np.ndarray, mask: np.ndarray, bandwidth: int) -> np.ndarray:
    """Values (n_removed, C) of the removed pixels (``mask``: (G, H, W)), in row-major order image after image,
    from one banded solve of half-bandwidth ``bandwidth``; ``right``: (G, H, W, C) weighted sums of the kept
    neighbours, ``diagonal``: (H, W) total neighbour weight."""
    g, h, w = mask.shape
    index = np.cumsum(mask.reshape(-1)).reshape(g, h, w) - 1  # position in the stacked system
    banded = np.zeros((bandwidth + 1, index[-1, -1, -1] + 1))
    banded[0] = np.broadcast_to(diagonal, mask.shape)[mask]
    for (dy, dx), weight in _BACKWARD:
        p, q = _shifted(dy, dx, h, w)
        both = mask[(slice(None), *p)] & mask[(slice(None), *q)]
        rows, cols = index[(slice(None), *p)][both], index[(slice(None), *q)][both]
        banded[rows - cols, cols] = -weight
    try:
        return scipy.linalg.solveh_banded(banded, right[mask], lower=True, check_finite=False)
    except np.linalg.LinAlgError as error:  # pragma: no cover - positive definite by construction
        raise ValidationError(f"road: the imputation system is singular ({error})") from error


def conditional_mean_impute(x: np.ndarray, removed: np.ndarray, mean: np.ndarray, covariance: np.ndarray, *,
                            noise_std: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tabular ROAD imputation: removed features set to their conditional mean given the kept ones.

    Under a Gaussian fitted on background data (``mean``, ``covariance``):
    ``x_R = mu_R + S_RK S_KK^-1 (x_K - mu_K)``, the linear regression of the removed on the kept features;
    plus Gaussian noise of std ``noise_std`` times each feature's background std.
    """
    out = x.astype(np.float64, copy=True)
    r = np.flatnonzero(removed)
    k = np.flatnonzero(~removed)
    if r.size == 0:
        return out
    if k.size:
        coefficients = np.linalg.solve(covariance[np.ix_(k, k)], covariance[np.ix_(k, r)])
        out[r] = mean[r] + (x[k] - mean[k]) @ coefficients
    else:
        out[r] = mean[r]
    if noise_std > 0:
        out[r] += (rng or np.random.default_rng(0)).normal(0.0, noise_std, r.size) * np.sqrt(np.diag(covariance)[r])
    return out


def road(model: Any, inputs: Any, attributions: Any, *, order: str = "morf", target: Any = None,
         fractions: tuple[float, ...] = ROAD_FRACTIONS, noise_std: float = 0.01, background: Any = None,
         score: str = "logit", seed: int | None = None, batch_size: int | None = None,
         progress: bool | None = None, forward_kwargs: Any = None) -> MetricResult:
    """ROAD curve: the target score after removing a fraction of the features and imputing them without
    leaking the mask; value = mean of the curve over ``fractions``.

    ``order="morf"``: the most relevant fraction removed first (lower is better); ``"lerf"``: the least
    relevant (higher is better). Images (N, C, H, W): pixels ranked by their channel-summed attribution and
    filled by :func:`noisy_linear_impute`. Tabular (N, d): features filled by
    :func:`conditional_mean_impute` from a Gaussian fitted on ``background`` (n_background, d) (a lumos
    variant, not in the paper). Rong et al. (2022), "A Consistent and Efficient Evaluation Strategy for
    Attribution Methods", ICML (they report accuracy over a test set; here the per-sample target score, whose
    mean over samples is that curve for ``score="probability"``). Imputations run on the CPU, one banded
    solve for all images of a model call (:func:`noisy_linear_impute_batch`), the model calls in
    memory-budgeted batches. Quantus 0.6's ``ROAD`` reports the accuracy (argmax == label) per percentage
    over the batch, removes ``int(p H W)`` pixels (here ``round``), and ranks the C*H*W attribution elements
    while imputing H*W pixels, which fails on colour images; its imputation equals this one (to 1e-14).

    Example::

        road(model, images, e, order="morf", seed=0).curves
    """
    owner = f"road[{order}]" if order in ("morf", "lerf") else "road"
    check_choice(order, ("morf", "lerf"), name="order", owner="road")
    noise_std = check_positive(noise_std, name="noise_std", owner=owner, allow_zero=True)
    bins = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if bins.size == 0 or not np.isfinite(bins).all() or (bins < 0).any() or (bins >= 1).any():
        raise ValidationError(f"{owner}: fractions must be numbers in [0, 1), got {fractions!r}")
    base_seed = 0 if seed is None else seed
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=owner, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs) as scorer:
        shape = scorer.shape
        if scorer.n_inputs > 1:
            raise ValidationError(f"{owner}: ROAD imputes one image or one row of features per sample; it supports "
                                  f"single-input models, got {scorer.n_inputs} inputs")
        if len(shape) not in (1, 3):
            raise ValidationError(f"{owner}: ROAD supports images (N, C, H, W) and tabular (N, d) inputs, got "
                                  f"{tuple(scorer.x.shape)}")
        groups, n_features = features(shape, owner=owner)
        rank = ranks(pool(flat_attributions(attributions, scorer), groups, n_features),
                     descending=order == "morf").numpy()
        counts = np.round(bins * n_features).astype(np.int64)
        x_cpu = scorer.flat.detach().to("cpu", torch.float64).numpy()
        stats = _background_stats(background, shape, owner) if len(shape) == 1 else None
        m = len(counts)

        def make(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            samples, steps = i.cpu().numpy(), k.cpu().numpy()
            removed = rank[samples] < counts[steps][:, None]
            rows = (samples * m + steps).tolist()
            rngs = [numpy_generator(derive_seed(base_seed, row)) if noise_std > 0 else None for row in rows]
            if stats is None:  # every image of the chunk in one banded solve
                filled = noisy_linear_impute_batch(x_cpu[samples].reshape(len(samples), *shape),
                                                   removed.reshape(len(samples), *shape[1:]), noise_std=noise_std,
                                                   rngs=rngs if noise_std > 0 else None).reshape(len(samples), -1)
            else:
                filled = np.stack([conditional_mean_impute(x_cpu[s], r, *stats, noise_std=noise_std, rng=g)
                                   for s, r, g in zip(samples, removed, rngs, strict=True)])
            return torch.from_numpy(filled).to(scorer.device, scorer.x.dtype)

        curves = scorer.rows(m, make, desc=owner)
        n_evaluations = scorer.engine.n_evaluations
    return MetricResult(f"road_{order}", curves.mean(axis=1), order == "lerf", curves, bins,
                        {"order": order, "fractions": [float(b) for b in bins], "noise_std": noise_std,
                         "score": score, "seed": seed}, n_evaluations)


def _background_stats(background: Any, shape: tuple[int, ...], owner: str) -> tuple[np.ndarray, np.ndarray]:
    if background is None:
        raise ValidationError(f"{owner}: tabular ROAD needs background= data (n_background, {shape[0]}) to fit the "
                              f"conditional-mean imputation")
    data = as_tensor(np.asarray(background) if isinstance(background, list) else background, name="background",
                     owner=owner, device=None, float_dtype=torch.float64).to(torch.float64).numpy()
    if data.ndim != 2 or data.shape[1] != shape[0] or data.shape[0] < 2:
        raise ValidationError(f"{owner}: background must have shape (n_background >= 2, {shape[0]}), got "
                              f"{describe_value(background)}")
    mean = data.mean(axis=0)
    covariance = np.cov(data, rowvar=False).reshape(shape[0], shape[0])
    covariance = covariance + 1e-6 * (np.trace(covariance) / shape[0] + 1e-12) * np.eye(shape[0])
    return mean, covariance
