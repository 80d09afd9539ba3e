"""Agreement between two explanations of the same predictions (Krishna et al. 2022), per sample.

Krishna, Han, Gu, Pombra, Jabbari, Wu & Lakkaraju (2022), "The Disagreement Problem in Explainable Machine
Learning: A Practitioner's Perspective", arXiv:2202.01602. Features are ranked by attribution magnitude
(ties broken by feature position); ``T_k(A)`` is the set of A's k top-ranked features and ``A^(i)`` its i-th
ranked feature. Every value lies in [0, 1] except :func:`rank_correlation` ([-1, 1]); higher = more agreement.

- feature agreement ``|T_k(A) & T_k(B)| / k``;
- rank agreement ``#{i <= k : A^(i) = B^(i)} / k``;
- sign agreement ``#{f in T_k(A) & T_k(B) : sign A_f = sign B_f} / k``;
- signed rank agreement ``#{i <= k : A^(i) = B^(i) and the signs agree} / k``;
- rank correlation: Spearman's rho between the magnitude rankings over a feature set F (default all);
- pairwise rank agreement: share of feature pairs of F whose relative order (by magnitude) agrees.

:func:`agreement_matrix` compares several explanations pairwise with any of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ValidationError
from ..explanation import Explanation
from .arrays import per_sample


def _pair(a: Any, b: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    left = per_sample(a, owner=owner, name="the first attributions")
    right = per_sample(b, owner=owner, name="the second attributions")
    if left.shape != right.shape:
        raise ValidationError(f"{owner}: the two attributions must describe the same samples and features, got "
                              f"{left.shape} and {right.shape} (samples, features)")
    return left, right


def _k(k: int, d: int, owner: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
        raise ValidationError(f"{owner}: k must be an int in [1, {d}] (the number of features), got {k!r}")
    return int(k)


def _ranking(values: np.ndarray) -> np.ndarray:
    """Feature indices by decreasing magnitude, per row (stable: ties by position)."""
    return np.argsort(-np.abs(values), axis=1, kind="stable")


def _top_sets(values: np.ndarray, k: int) -> np.ndarray:
    """Boolean (n, d): membership in the top-k by magnitude."""
    member = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(member, _ranking(values)[:, :k], True, axis=1)
    return member


def feature_agreement(a: Any, b: Any, *, k: int) -> np.ndarray:
    """``|T_k(A) & T_k(B)| / k`` per sample (Krishna et al. 2022)."""
    left, right = _pair(a, b, "feature_agreement")
    k = _k(k, left.shape[1], "feature_agreement")
    return (_top_sets(left, k) & _top_sets(right, k)).sum(axis=1) / k


def rank_agreement(a: Any, b: Any, *, k: int) -> np.ndarray:
    """``#{i <= k : A^(i) = B^(i)} / k`` per sample: same feature at the same rank (Krishna et al. 2022)."""
    left, right = _pair(a, b, "rank_agreement")
    k = _k(k, left.shape[1], "rank_agreement")
    return (_ranking(left)[:, :k] == _ranking(right)[:, :k]).sum(axis=1) / k


def sign_agreement(a: Any, b: Any, *, k: int) -> np.ndarray:
    """``#{f in T_k(A) & T_k(B) : sign A_f = sign B_f} / k`` per sample (Krishna et al. 2022)."""
    left, right = _pair(a, b, "sign_agreement")
    k = _k(k, left.shape[1], "sign_agreement")
    both = _top_sets(left, k) & _top_sets(right, k)
    return (both & (np.sign(left) == np.sign(right))).sum(axis=1) / k


def signed_rank_agreement(a: Any, b: Any, *, k: int) -> np.ndarray:
    """``#{i <= k : A^(i) = B^(i), same sign} / k`` per sample (Krishna et al. 2022)."""
    left, right = _pair(a, b, "signed_rank_agreement")
    k = _k(k, left.shape[1], "signed_rank_agreement")
    top_left, top_right = _ranking(left)[:, :k], _ranking(right)[:, :k]
    same_feature = top_left == top_right
    same_sign = np.sign(np.take_along_axis(left, top_left, axis=1)) == np.sign(
        np.take_along_axis(right, top_left, axis=1))
    return (same_feature & same_sign).sum(axis=1) / k


def _features(features: Sequence[int] | None, d: int, owner: str) -> np.ndarray:
    if features is None:
        return np.arange(d)
    index = np.asarray(features)
    if index.ndim != 1 or len(index) < 2 or not np.issubdtype(index.dtype, np.integer) or index.min() < 0 \
            or index.max() >= d or len(np.unique(index)) != len(index):
        raise ValidationError(f"{owner}: features must be >= 2 distinct feature indices in [0, {d}), got {features!r}")
    return index


def rank_correlation(a: Any, b: Any, *, features: Sequence[int] | None = None) -> np.ndarray:
    """Spearman's rho between the magnitude rankings of the features in ``features`` (default all), per sample.

    Ties get average ranks. A sample where either ranking is constant (e.g. all-zero attributions) gives NaN.
    """
    left, right = _pair(a, b, "rank_correlation")
    index = _features(features, left.shape[1], "rank_correlation")
    rank_left = stats.rankdata(np.abs(left[:, index]), axis=1)
    rank_right = stats.rankdata(np.abs(right[:, index]), axis=1)
    centred_left = rank_left - rank_left.mean(axis=1, keepdims=True)
    centred_right = rank_right - rank_right.mean(axis=1, keepdims=True)
    norm = np.sqrt((centred_left**2).sum(axis=1) * (centred_right**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (centred_left * centred_right).sum(axis=1) / norm, np.nan)


def pairwise_rank_agreement(a: Any, b: Any, *, features: Sequence[int] | None = None) -> np.ndarray:
    """Share of feature pairs (i < j) of ``features`` ordered the same way by |A| and |B|, per sample.

    A pair agrees when ``sign(|A_i| - |A_j|) = sign(|B_i| - |B_j|)`` (a tie agrees only with a tie).
    """
    left, right = _pair(a, b, "pairwise_rank_agreement")
    index = _features(features, left.shape[1], "pairwise_rank_agreement")
    i, j = np.triu_indices(len(index), k=1)
    mag_left, mag_right = np.abs(left[:, index]), np.abs(right[:, index])
    order_left = np.sign(mag_left[:, i] - mag_left[:, j])
    order_right = np.sign(mag_right[:, i] - mag_right[:, j])
    return (order_left == order_right).mean(axis=1)


AGREEMENT_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "feature_agreement": feature_agreement,
    "rank_agreement": rank_agreement,
    "sign_agreement": sign_agreement,
    "signed_rank_agreement": signed_rank_agreement,
    "rank_correlation": rank_correlation,
    "pairwise_rank_agreement": pairwise_rank_agreement,
}


def agreement_matrix(explanations: Mapping[str, Any] | Sequence[Explanation], *,
                     metric: str = "feature_agreement", **params: Any) -> tuple[list[str], np.ndarray]:
    """Pairwise agreement of several explanations of the same samples, averaged over samples.

    Args:
        explanations: ``{name: explanation or array}``, or a list of Explanations (named by their method).
        metric: one of :data:`AGREEMENT_METRICS`.
        **params: the metric's parameters (``k=`` for the top-k metrics, ``features=`` for the others).

    Returns:
        ``(names, matrix)`` with ``matrix[i, j]`` the mean over samples of ``metric(e_i, e_j)`` (NaN samples
        ignored); symmetric, with 1 on the diagonal.
    """
    if metric not in AGREEMENT_METRICS:
        raise ValidationError(f"agreement_matrix: metric must be one of {sorted(AGREEMENT_METRICS)}, got {metric!r}")
    if isinstance(explanations, Mapping):
        names, items = list(explanations), list(explanations.values())
    else:
        items = list(explanations)
        if not all(isinstance(e, Explanation) for e in items):
            raise ValidationError("agreement_matrix: give a {name: explanation} dict, or a list of Explanations")
        names = [e.method for e in items]
        if len(set(names)) != len(names):
            raise ValidationError(f"agreement_matrix: the methods {names} repeat; pass a {{name: explanation}} dict")
    if len(items) < 2:
        raise ValidationError(f"agreement_matrix: needs at least two explanations, got {len(items)}")
    fn = AGREEMENT_METRICS[metric]
    matrix = np.eye(len(items))
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            values = fn(items[i], items[j], **params)
            matrix[i, j] = matrix[j, i] = np.nanmean(values) if np.isfinite(values).any() else np.nan
    return names, matrix
