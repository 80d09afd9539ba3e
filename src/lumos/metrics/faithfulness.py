"""Faithfulness by ordered removal: deletion / insertion, region perturbation (MoRF / LeRF), and the
sufficiency / comprehensiveness of ERASER.

Every metric ranks each sample's features by their attribution (summed over a feature's elements, see
:func:`lumos.metrics.perturb.features`), perturbs them in that order, and scores all perturbed copies of
all samples through batched, memory-budgeted model calls. Common arguments:

- ``model``: an ``nn.Module``, a function on tensors or a numpy model; ``inputs``: one tensor/array, batch
  first (``None``: the Explanation's inputs); ``attributions``: an Explanation or an array of the inputs'
  shape;
- ``target``: as in ``explain`` (``None``: the Explanation's targets, else the predicted class);
- ``baseline``: the replacement (a number, ``"mean"``, ``"blur"``, ``"uniform"``, one sample, or one per
  sample; see :func:`lumos.metrics.perturb.reference`);
- ``score``: ``"logit"`` (the target as the model returns it, the default: also right for regressors and
  ``predict_proba`` models) or ``"probability"`` (softmax first, as in Petsiuk et al. and DeYoung et al.);
- ``feature_groups`` / ``patch_size``: what one feature is; ``batch_size``, ``progress``, ``seed``.

Each returns a :class:`~lumos.metrics.perturb.MetricResult` (values per sample, and the curves).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ValidationError
from .perturb import (
    MetricResult,
    Scorer,
    check_choice,
    check_int,
    flat_attributions,
    masked,
    pool,
    ranks,
    reference,
    scoring,
    step_counts,
    unpack,
)

#: ERASER's bins of top features (DeYoung et al. 2020, sec. 4)
ERASER_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


def _ranked_scores(scorer: Scorer, attributions: Any, counts: np.ndarray, *, keep_top: bool, descending: bool,
                   baseline: Any, feature_groups: Any, patch_size: int | None, seed: int | None,
                   desc: str) -> tuple[np.ndarray, int]:
    """Scores (n, len(counts)): at step k the first ``counts[k]`` features in each sample's order are removed
    (``keep_top=False``) or are the only ones kept (``keep_top=True``); returns them and the feature count."""
    groups, n_features = scorer.feature_map(feature_groups=feature_groups, patch_size=patch_size,
                                  owner=scorer.owner)
    pooled = pool(flat_attributions(attributions, scorer), groups, n_features)
    rank = ranks(pooled, descending=descending).to(scorer.device)
    ref = reference(baseline, scorer, seed=seed)
    counts_t = torch.as_tensor(counts, device=scorer.device)
    groups = groups.to(scorer.device)

    def make(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        count = counts_t[k][:, None]
        removed = rank[i] >= count if keep_top else rank[i] < count
        return masked(scorer.flat, ref, i, removed, groups)

    return scorer.rows(len(counts), make, desc=desc), n_features


def _params(**params: Any) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else repr(v)) for k, v in params.items()}


def deletion(model: Any, inputs: Any, attributions: Any, *, target: Any = None, baseline: Any = 0.0,
             n_steps: int = 20, score: str = "logit", feature_groups: Any = None, patch_size: int | None = None,
             seed: int | None = None, batch_size: int | None = None, progress: bool | None = None,
             forward_kwargs: Any = None) -> MetricResult:
    """Deletion curve and its AUC: features removed most-relevant first; lower is better.

    ``curve_k = f(x with its top c_k features replaced by the baseline)``, ``c_k = floor(k d / n_steps)``,
    k = 0..n_steps (``curve_0 = f(x)``); ``AUC = trapezoid(curve, c / d)`` on [0, 1]. A faithful ranking
    makes the score drop fast. Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC (they remove pixels to zero and read probabilities; use
    ``score="probability"``). Features are ranked by signed attribution (most positive first).

    Example::

        r = deletion(model, x, explanation, n_steps=16); r.values, r.curves
    """
    return _deletion_insertion("deletion", model, inputs, attributions, target=target, baseline=baseline,
                               n_steps=n_steps, score=score, feature_groups=feature_groups, patch_size=patch_size,
                               seed=seed, batch_size=batch_size, progress=progress, forward_kwargs=forward_kwargs)


def insertion(model: Any, inputs: Any, attributions: Any, *, target: Any = None, baseline: Any = 0.0,
              n_steps: int = 20, score: str = "logit", feature_groups: Any = None, patch_size: int | None = None,
              seed: int | None = None, batch_size: int | None = None, progress: bool | None = None,
              forward_kwargs: Any = None) -> MetricResult:
    """Insertion curve and its AUC: features inserted into the baseline most-relevant first; higher is better.

    ``curve_k = f(baseline with the top c_k features of x)``, ``c_k = floor(k d / n_steps)``, k = 0..n_steps
    (``curve_{n_steps} = f(x)``); ``AUC = trapezoid(curve, c / d)``. Petsiuk, Das & Saenko (2018), RISE,
    BMVC: insertion starts from a blurred image (``baseline="blur"``); the default here is 0.

    Example::

        insertion(model, x, explanation, baseline="blur").values
    """
    return _deletion_insertion("insertion", model, inputs, attributions, target=target, baseline=baseline,
                               n_steps=n_steps, score=score, feature_groups=feature_groups, patch_size=patch_size,
                               seed=seed, batch_size=batch_size, progress=progress, forward_kwargs=forward_kwargs)


def _deletion_insertion(name: str, model: Any, inputs: Any, attributions: Any, *, target: Any, baseline: Any,
                        n_steps: int, score: str, feature_groups: Any, patch_size: int | None, seed: int | None,
                        batch_size: int | None, progress: bool | None, forward_kwargs: Any) -> MetricResult:
    n_steps = check_int(n_steps, name="n_steps", owner=name)
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=name, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs, token_ids=True) as scorer:
        groups, n_features = scorer.feature_map(feature_groups=feature_groups, patch_size=patch_size,
                                      owner=name)
        counts = step_counts(n_features, n_steps)
        insert = name == "insertion"
        evaluated = counts[:-1] if insert else counts[1:]
        scores, _ = _ranked_scores(scorer, attributions, evaluated, keep_top=insert, descending=True,
                                   baseline=baseline, feature_groups=feature_groups, patch_size=patch_size,
                                   seed=seed, desc=name)
        fx = scorer.fx[:, None]
        curves = np.concatenate([scores, fx] if insert else [fx, scores], axis=1)
        n_evaluations = scorer.engine.n_evaluations
    fractions = counts / n_features
    return MetricResult(name, np.trapezoid(curves, fractions, axis=1), insert, curves, fractions,
                        _params(baseline=baseline, n_steps=n_steps, score=score, patch_size=patch_size),
                        n_evaluations)


def region_perturbation(model: Any, inputs: Any, attributions: Any, *, order: str = "morf", target: Any = None,
                        baseline: Any = 0.0, n_steps: int | None = None, patch_size: int | None = None,
                        feature_groups: Any = None, score: str = "logit", seed: int | None = None,
                        batch_size: int | None = None, progress: bool | None = None,
                        forward_kwargs: Any = None) -> MetricResult:
    """Pixel flipping / region perturbation: AOPC of the perturbation curve in MoRF or LeRF order.

    Regions (``patch_size`` patches of images, features otherwise) are replaced by the baseline one step at a
    time, most relevant first (``order="morf"``) or least relevant first (``"lerf"``), regions ordered by
    their summed attribution. ``AOPC = 1/(L+1) sum_{k=0}^{L} (f(x) - f(x^(k)))`` with ``x^(0) = x``
    (Samek et al. 2017, eq. 12); MoRF: higher is better; LeRF: lower is better. ``n_steps=None`` removes one
    region per step (the paper); fewer steps remove ``floor(k R / n_steps)`` regions after step k.
    Bach et al. (2015), "On pixel-wise explanations ... by layer-wise relevance propagation", PLoS ONE
    (pixel flipping); Samek et al. (2017), "Evaluating the visualization of what a deep neural network has
    learned", IEEE TNNLS (region perturbation). Departures: regions are non-overlapping patches (the paper
    takes overlapping 9x9 windows around pixels); the paper replaces regions by uniform noise:
    ``baseline="uniform"``.

    Example::

        region_perturbation(model, x, e, order="morf", patch_size=4).values
    """
    owner = f"region_perturbation[{order}]" if order in ("morf", "lerf") else "region_perturbation"
    check_choice(order, ("morf", "lerf"), name="order", owner="region_perturbation")
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=owner, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs, token_ids=True) as scorer:
        _, n_regions = scorer.feature_map(feature_groups=feature_groups, patch_size=patch_size, owner=owner)
        steps = n_regions if n_steps is None else check_int(n_steps, name="n_steps", owner=owner)
        counts = step_counts(n_regions, steps)
        scores, _ = _ranked_scores(scorer, attributions, counts[1:], keep_top=False, descending=order == "morf",
                                   baseline=baseline, feature_groups=feature_groups, patch_size=patch_size,
                                   seed=seed, desc=owner)
        curves = np.concatenate([scorer.fx[:, None], scores], axis=1)
        n_evaluations = scorer.engine.n_evaluations
    aopc = (curves[:, :1] - curves).mean(axis=1)
    return MetricResult(f"region_perturbation_{order}", aopc, order == "morf", curves, counts / n_regions,
                        _params(order=order, baseline=baseline, n_steps=steps, patch_size=patch_size, score=score),
                        n_evaluations)


def comprehensiveness(model: Any, inputs: Any, attributions: Any, *, target: Any = None, baseline: Any = 0.0,
                      fractions: tuple[float, ...] = ERASER_FRACTIONS, score: str = "logit",
                      feature_groups: Any = None, seed: int | None = None, batch_size: int | None = None,
                      progress: bool | None = None, forward_kwargs: Any = None) -> MetricResult:
    """Comprehensiveness (ERASER): the score drop when the top features are removed; higher is better.

    ``comp = 1/|B| sum_{k in B} (f(x) - f(x without its top-k% features))``, ``B = {1, 5, 10, 20, 50}%``
    (the AOPC form); the top ``ceil(k d)`` features by attribution are replaced by the baseline (for text: a
    pad/mask embedding). DeYoung et al. (2020), "ERASER: A Benchmark to Evaluate Rationalized NLP Models",
    ACL (they delete tokens and read probabilities: ``score="probability"``).

    Example::

        comprehensiveness(model, embeddings, e, baseline=pad_embedding).values
    """
    return _eraser("comprehensiveness", model, inputs, attributions, target=target, baseline=baseline,
                   fractions=fractions, score=score, feature_groups=feature_groups, seed=seed,
                   batch_size=batch_size, progress=progress, forward_kwargs=forward_kwargs)


def sufficiency(model: Any, inputs: Any, attributions: Any, *, target: Any = None, baseline: Any = 0.0,
                fractions: tuple[float, ...] = ERASER_FRACTIONS, score: str = "logit", feature_groups: Any = None,
                seed: int | None = None, batch_size: int | None = None, progress: bool | None = None,
                forward_kwargs: Any = None) -> MetricResult:
    """Sufficiency (ERASER): the score drop when only the top features are kept; lower is better.

    ``suff = 1/|B| sum_{k in B} (f(x) - f(only the top-k% features of x, the rest baseline))``,
    ``B = {1, 5, 10, 20, 50}%``. DeYoung et al. (2020), "ERASER", ACL.

    Example::

        sufficiency(model, x, e).values
    """
    return _eraser("sufficiency", model, inputs, attributions, target=target, baseline=baseline,
                   fractions=fractions, score=score, feature_groups=feature_groups, seed=seed,
                   batch_size=batch_size, progress=progress, forward_kwargs=forward_kwargs)


def _eraser(name: str, model: Any, inputs: Any, attributions: Any, *, target: Any, baseline: Any,
            fractions: tuple[float, ...], score: str, feature_groups: Any, seed: int | None,
            batch_size: int | None, progress: bool | None, forward_kwargs: Any) -> MetricResult:
    bins = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if bins.size == 0 or not np.isfinite(bins).all() or (bins <= 0).any() or (bins > 1).any():
        raise ValidationError(f"{name}: fractions must be numbers in (0, 1], got {fractions!r}")
    inputs, attributions, target = unpack(inputs, attributions, target)
    with scoring(model, inputs, target, owner=name, score=score, batch_size=batch_size, progress=progress,
                 forward_kwargs=forward_kwargs, token_ids=True) as scorer:
        _, n_features = scorer.feature_map(feature_groups=feature_groups, owner=name)
        counts = np.array([min(n_features, math.ceil(p * n_features - 1e-9)) for p in bins])
        scores, _ = _ranked_scores(scorer, attributions, counts, keep_top=name == "sufficiency", descending=True,
                                   baseline=baseline, feature_groups=feature_groups, patch_size=None, seed=seed,
                                   desc=name)
        fx = scorer.fx
        n_evaluations = scorer.engine.n_evaluations
    values = (fx[:, None] - scores).mean(axis=1)
    return MetricResult(name, values, name == "comprehensiveness", scores, bins,
                        _params(baseline=baseline, fractions=[float(b) for b in bins], score=score), n_evaluations)

