"""ROAD: RemOve And Debias (Rong et al. 2022), with noisy linear imputation for images and a conditional-mean
imputation for tabular data.

Removing features by a constant leaks which features were removed (the mask shape itself carries class
information); ROAD fills removed pixels from their neighbours instead, so the model cannot read the mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

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


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, *, noise_std: float = 0.01,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill the ``removed`` pixels (H, W) of ``image`` (C, H, W) by the neighbour-average system, plus noise.

    Every removed pixel equals the weighted mean of its neighbours (weights :data:`NEIGHBOURS`, normalised to
    sum 1 over those inside the image): ``x_p = sum_q w_pq x_q``; the known pixels enter the right-hand side,
    and the sparse system over the removed pixels is solved exactly (``scipy.sparse.linalg.spsolve``, all
    channels at once). Gaussian noise of std ``noise_std`` is then added to the imputed pixels.
    Rong, Leemann, Borisov, Kasneci & Kasneci (2022), "A Consistent and Efficient Evaluation Strategy for
    Attribution Methods", ICML, sec. 4.2.

    Example::

        filled = noisy_linear_impute(img, mask, noise_std=0.0)
    """
    c, h, w = image.shape
    unknown = np.flatnonzero(removed.reshape(-1))
    out = image.astype(np.float64, copy=True).reshape(c, -1)
    if unknown.size == 0:
        return out.reshape(c, h, w)
    if unknown.size == h * w:
        raise ValidationError("road: cannot impute an image whose pixels are all removed (fractions must be < 1)")
    position = np.full(h * w, -1, dtype=np.int64)
    position[unknown] = np.arange(unknown.size)
    py, px = np.divmod(unknown, w)
    rows, cols, values = [np.arange(unknown.size)], [np.arange(unknown.size)], [np.ones(unknown.size)]
    total = np.zeros(unknown.size)
    entries = []
    for (dy, dx), weight in NEIGHBOURS:
        qy, qx = py + dy, px + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        total += weight * inside
        entries.append((inside, (qy * w + qx), weight))
    rhs = np.zeros((unknown.size, c))
    for inside, neighbour, weight in entries:
        p = np.flatnonzero(inside)
        q = neighbour[inside]
        coefficient = weight / total[p]
        is_unknown = position[q] >= 0
        rows.append(p[is_unknown])
        cols.append(position[q[is_unknown]])
        values.append(-coefficient[is_unknown])
        np.add.at(rhs, p[~is_unknown], coefficient[~is_unknown, None] * out[:, q[~is_unknown]].T)
    matrix = scipy.sparse.csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                     shape=(unknown.size, unknown.size))
    solution = scipy.sparse.linalg.spsolve(matrix, rhs).reshape(unknown.size, c)
    if noise_std > 0:
        solution = solution + (rng or np.random.default_rng(0)).normal(0.0, noise_std, solution.shape)
    out[:, unknown] = solution.T
    return out.reshape(c, h, w)


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
    mean over samples is that curve for ``score="probability"``). Imputations run on the CPU (one sparse solve
    per sample and fraction), the model calls in memory-budgeted batches.

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
            rows = []
            for sample, step in zip(i.tolist(), k.tolist(), strict=True):
                removed = rank[sample] < counts[step]
                rng = numpy_generator(derive_seed(base_seed, sample * m + step))
                if stats is None:
                    rows.append(noisy_linear_impute(x_cpu[sample].reshape(shape), removed.reshape(shape[1:]),
                                                    noise_std=noise_std, rng=rng).reshape(-1))
                else:
                    rows.append(conditional_mean_impute(x_cpu[sample], removed, *stats, noise_std=noise_std, rng=rng))
            return torch.from_numpy(np.stack(rows)).to(scorer.device, scorer.x.dtype)

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
