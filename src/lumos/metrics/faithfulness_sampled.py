"""Faithfulness by random perturbation and by completeness: faithfulness correlation (Bhatt et al. 2020),
infidelity (Yeh et al. 2019) and the completeness residual.

Arguments common to every metric are those of :mod:`lumos.metrics.faithfulness`. Random draws come from a
generator seeded by ``seed`` (``None``: 0, so results are reproducible by default) and never depend on
``batch_size``: random subsets are drawn up front, Gaussian perturbations per row from per-row seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.seeding import derive_seed, torch_generator
from ..errors import ValidationError
from .perturb import (
    MetricResult,
    check_choice,
    check_int,
    check_positive,
    flat_attributions,
    masked,
    pool,
    reference,
    scoring,
    unpack,
)

#: most random numbers drawn at once when choosing subsets (bounds the temporary memory)
_DRAW_BLOCK = 1 << 22


def faithfulness_correlation(model: Any, inputs: Any, attributions: Any, *, target: Any = None,
                             baseline: Any = 0.0, subset_size: int | None = None, n_runs: int = 100,
                             score: str = "logit", feature_groups: Any = None, patch_size: int | None = None,
                             seed: int | None = None, batch_size: int | None = None, progress: bool | None = None,
                             forward_kwargs: Any = None) -> MetricResult:
    """Faithfulness correlation: Pearson correlation, over random feature subsets S of fixed size, between
    the attribution of S and the score drop when S is replaced by the baseline; higher is better.

    ``mu_F = corr_{S in (d choose |S|)} ( sum_{i in S} a_i , f(x) - f(x_{S <- baseline}) )`` over ``n_runs``
    subsets per sample (uniform without replacement). ``subset_size=None``: 10% of the features (at least 1).
    A constant attribution sum or drop over the runs makes the correlation undefined: NaN.
    Bhatt, Weller & Moura (2020), "Evaluating and Aggregating Feature-based Model Explanations", IJCAI, eq. 2.

    Example::

        faithfulness_correlation(model, x, e, subset_size=32, n_runs=50, seed=0).values
    """
    owner = "faithfulness_correlation"
    n_runs = check_int(n_runs, name="n_runs", owner=owner, minimum=2)
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=owner, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs, token_ids=True) as scorer:
        groups, n_features = scorer.feature_map(feature_groups=feature_groups, patch_size=patch_size,
                                      owner=owner)
        size = max(1, round(0.1 * n_features)) if subset_size is None else check_int(
            subset_size, name="subset_size", owner=owner)
        if size > n_features:
            raise ValidationError(f"{owner}: subset_size must be at most the number of features ({n_features}), "
                                  f"got {size}")
        pooled = pool(flat_attributions(attributions, scorer), groups, n_features)
        subsets = _random_subsets(scorer.n, n_runs, n_features, size, seed=0 if seed is None else seed)
        attribution_sums = pooled.gather(1, subsets.reshape(scorer.n, -1)).reshape(scorer.n, n_runs, size).sum(-1)
        ref = reference(baseline, scorer, seed=seed)
        subsets_dev = subsets.to(scorer.device)
        groups = groups.to(scorer.device)

        def make(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            removed = torch.zeros(len(i), n_features, dtype=torch.bool, device=scorer.device)
            removed.scatter_(1, subsets_dev[i, k], True)
            return masked(scorer.flat, ref, i, removed, groups)

        drops = scorer.fx[:, None] - scorer.rows(n_runs, make, desc=owner)
        n_evaluations = scorer.engine.n_evaluations
    values = pearson_rows(attribution_sums.numpy(), drops)
    return MetricResult(owner, values, True, None, None,
                        {"subset_size": size, "n_runs": n_runs, "score": score, "seed": seed,
                         "baseline": baseline if isinstance(baseline, (int, float, str)) else "array"},
                        n_evaluations)


def _random_subsets(n: int, n_runs: int, n_features: int, size: int, *, seed: int) -> torch.Tensor:
    """(n, n_runs, size) long: feature indices of uniformly random subsets, drawn in fixed blocks."""
    generator = torch_generator(seed)
    rows = n * n_runs
    block = max(1, _DRAW_BLOCK // n_features)
    parts = []
    for start in range(0, rows, block):
        keys = torch.rand(min(block, rows - start), n_features, generator=generator)
        parts.append(torch.topk(keys, size, dim=1).indices)
    return torch.cat(parts).reshape(n, n_runs, size)


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (NaN where one is constant)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    scale = np.maximum(np.abs(a).max(axis=1), 1e-300) * np.maximum(np.abs(b).max(axis=1), 1e-300)
    degenerate = denominator <= 1e-12 * scale * a.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / denominator
    return np.where(degenerate, np.nan, np.clip(r, -1.0, 1.0))


def infidelity(model: Any, inputs: Any, attributions: Any, *, target: Any = None, perturbation: str = "gaussian",
               sigma: float = 0.1, square_size: int | None = None, baseline: Any = 0.0,
               n_perturbations: int = 50, normalize: bool = True, score: str = "logit", seed: int | None = None,
               batch_size: int | None = None, progress: bool | None = None,
               forward_kwargs: Any = None) -> MetricResult:
    """Infidelity: expected squared error between ``I . a`` and the score drop ``f(x) - f(x - I)``; lower is
    better.

    ``INFD = E_I[(beta I . a - (f(x) - f(x - I)))^2]``, estimated from ``n_perturbations`` draws per sample.
    ``perturbation="gaussian"``: ``I ~ N(0, sigma^2)`` per element; ``"square"`` (images): ``I = (x - b) * M``
    for a random ``square_size`` square M (default a quarter of the side), i.e. the square is replaced by the
    baseline b. ``normalize=True`` applies the paper's optimal scaling ``beta = E[(I.a) df] / E[(I.a)^2]``
    (Yeh et al. report infidelity of the scaled explanation); ``False``: ``beta = 1``. The attributions are
    used as given (``I . a``): exact for gradient-type attributions of a linear model.
    Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), "On the (In)fidelity and Sensitivity of Explanations",
    NeurIPS, def. 2.1. Quantus 0.6's ``Infidelity`` is a different, deterministic quantity: it replaces
    the non-overlapping patches cumulatively (each evaluation removes one more patch), takes the mean squared
    error between ``f(x) - f(x~)`` and ``sum a (x - x~)`` over those steps, without ``beta``, and repeats the
    identical computation ``n_perturb_samples`` times.

    Example::

        infidelity(model, x, saliency_explanation, sigma=0.05, seed=0).values
    """
    owner = "infidelity"
    check_choice(perturbation, ("gaussian", "square"), name="perturbation", owner=owner)
    n_perturbations = check_int(n_perturbations, name="n_perturbations", owner=owner)
    sigma = check_positive(sigma, name="sigma", owner=owner)
    base_seed = 0 if seed is None else seed
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=owner, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs) as scorer:
        shape, n, m = scorer.shape, scorer.n, n_perturbations
        if perturbation == "square" and len(shape) != 3:
            raise ValidationError(f"{owner}: perturbation='square' needs image inputs (N, C, H, W), got one sample "
                                  f"of shape {shape}")
        side = None
        if perturbation == "square":
            side = max(1, min(shape[1], shape[2]) // 4) if square_size is None else check_int(
                square_size, name="square_size", owner=owner)
            if side > min(shape[1], shape[2]):
                raise ValidationError(f"{owner}: square_size must fit the image ({shape[1]}x{shape[2]}), got {side}")
        a = flat_attributions(attributions, scorer).to(scorer.device)
        ref = reference(baseline, scorer, seed=seed) if perturbation == "square" else None
        corners = square_corners(base_seed, n * m, shape, side) if side is not None else None
        dots = torch.empty(n * m, dtype=torch.float64)

        def make(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            r = (i * m + k).cpu()
            if corners is not None:  # every row's square at once, from the corners drawn up front
                noise = square_masks(corners[r], shape, side).to(scorer.device, scorer.x.dtype)
            else:
                noise = torch.stack([_perturbation(int(row), base_seed, shape, sigma)
                                     for row in r.tolist()]).to(scorer.device, scorer.x.dtype)
            if ref is not None:  # square removal: I = (x - b) * M
                difference = scorer.flat[i] - (ref[i] if ref.shape[0] > 1 else ref)
                noise = difference * noise
            dots[int(i[0] * m + k[0]): int(i[-1] * m + k[-1]) + 1] = (noise.to(torch.float64) * a[i]).sum(1).cpu()
            return scorer.flat[i] - noise

        drops = scorer.fx[:, None] - scorer.rows(m, make, desc=owner)
        n_evaluations = scorer.engine.n_evaluations
    dot = dots.numpy().reshape(n, m)
    beta = np.ones(n)
    if normalize:
        power = (dot * dot).mean(axis=1)
        beta = np.divide((dot * drops).mean(axis=1), power, out=np.ones(n), where=power > 0)
    values = ((beta[:, None] * dot - drops) ** 2).mean(axis=1)
    return MetricResult(owner, values, False, None, None,
                        {"perturbation": perturbation, "sigma": sigma, "square_size": side,
                         "n_perturbations": m, "normalize": normalize, "score": score, "seed": seed},
                        n_evaluations)


def _perturbation(row: int, seed: int, shape: tuple[int, ...], sigma: float) -> torch.Tensor:
    """The flat Gaussian perturbation of one row, seeded per row (the rows never exist all at once)."""
    generator = torch_generator(derive_seed(seed, row))
    return torch.randn(int(np.prod(shape)), generator=generator, dtype=torch.float64) * sigma


def square_corners(seed: int, n_rows: int, shape: tuple[int, ...], side: int) -> torch.Tensor:
    """The top-left corner (row, column) of every row's square, (n_rows, 2) long, drawn up front from ``seed``
    (all tops, then all lefts): chunking cannot change them."""
    _, h, w = shape
    generator = torch_generator(seed)
    tops = torch.randint(0, h - side + 1, (n_rows,), generator=generator)
    lefts = torch.randint(0, w - side + 1, (n_rows,), generator=generator)
    return torch.stack([tops, lefts], 1)


def square_masks(corners: torch.Tensor, shape: tuple[int, ...], side: int) -> torch.Tensor:
    """Flat 0/1 masks (rows, C*H*W) float64: 1 on the ``side`` x ``side`` square at each corner, all channels."""
    c, h, w = shape
    ys, xs = torch.arange(h), torch.arange(w)
    top, left = corners[:, :1], corners[:, 1:]
    in_rows = (ys >= top) & (ys < top + side)  # (rows, H)
    in_cols = (xs >= left) & (xs < left + side)  # (rows, W)
    square = (in_rows[:, :, None] & in_cols[:, None, :]).to(torch.float64)
    return square[:, None].expand(-1, c, h, w).reshape(corners.shape[0], -1)


def completeness_residual(model: Any, inputs: Any, attributions: Any, *, target: Any = None,
                          baseline: Any = 0.0, relative: bool = False, score: str = "logit",
                          batch_size: int | None = None, progress: bool | None = None,
                          forward_kwargs: Any = None) -> MetricResult:
    """Completeness residual: how far the attributions are from summing to the score difference; lower is
    better.

    ``|sum_i a_i - (f(x) - f(baseline))|``, or with ``relative=True`` divided by ``|f(x) - f(baseline)|``
    (NaN where that is 0). Zero for methods with the completeness (efficiency) axiom at that baseline:
    Integrated Gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks", ICML, prop.
    1), DeepLIFT, exact Shapley values. One model row per sample.

    Example::

        completeness_residual(model, x, ig_explanation, baseline=0.0).values
    """
    owner = "completeness_residual"
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=owner, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs, token_ids=True) as scorer:
        total = flat_attributions(attributions, scorer).sum(1).numpy()
        ref = reference(baseline, scorer)
        difference = scorer.fx - scorer.score_inputs(ref, desc=owner)
        n_evaluations = scorer.engine.n_evaluations
    residual = np.abs(total - difference)
    if relative:
        with np.errstate(invalid="ignore", divide="ignore"):
            residual = np.where(np.abs(difference) > 0, residual / np.abs(difference), np.nan)
    return MetricResult("completeness_residual_relative" if relative else owner, residual, False, None, None,
                        {"relative": relative, "score": score,
                         "baseline": baseline if isinstance(baseline, (int, float, str)) else "array"},
                        n_evaluations)
