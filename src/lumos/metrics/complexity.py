"""Complexity of an explanation: how few features it needs (model-free metrics, one value per sample).

- :func:`sparseness`: Gini index of the attribution magnitudes (Chalasani et al. 2020), higher = sparser;
- :func:`complexity`: entropy of the fractional contributions (Bhatt et al. 2020), lower = simpler;
- :func:`effective_complexity`: number of features above a threshold (Nguyen & Martinez 2020), lower =
  simpler.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError
from .arrays import per_sample


def sparseness(attributions: Any) -> np.ndarray:
    """Gini index of |a| per sample, in [0, 1 - 1/d]; higher means the attribution is concentrated.

    ``G = sum_i (2 i - d - 1) |a|_(i) / (d sum_i |a|_(i))`` with ``|a|_(1) <= ... <= |a|_(d)`` sorted
    ascending (Hurley & Rickard 2009's Gini index, used as sparseness by Chalasani et al. 2020, "Concise
    Explanations of Neural Networks using Adversarial Training", ICML). An all-zero attribution scores 0.

    Example::

        sparseness(np.array([[0, 0, 0, 1.0]]))   # -> [0.75]
    """
    a = np.sort(np.abs(per_sample(attributions, owner="sparseness")), axis=1)
    d = a.shape[1]
    weights = 2.0 * np.arange(1, d + 1) - d - 1
    total = a.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gini = (a @ weights) / (d * total)
    return np.where(total > 0, gini, 0.0)


def complexity(attributions: Any) -> np.ndarray:
    """Entropy of the fractional contributions ``P_i = |a_i| / sum_j |a_j|``, per sample (natural log).

    ``H = -sum_i P_i ln P_i`` (0 ln 0 = 0), in [0, ln d]; lower means fewer features carry the attribution.
    Bhatt, Weller & Moura (2020), "Evaluating and Aggregating Feature-based Model Explanations", IJCAI.
    An all-zero attribution scores 0.
    """
    a = np.abs(per_sample(attributions, owner="complexity"))
    total = a.sum(axis=1, keepdims=True)
    p = np.divide(a, total, out=np.zeros_like(a), where=total > 0)
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1) + 0.0  # (+ 0.0: no negative zero)


def effective_complexity(attributions: Any, *, threshold: float = 0.01) -> np.ndarray:
    """Number of features whose magnitude exceeds ``threshold`` times the sample's largest magnitude.

    ``EC = #{i : |a_i| > threshold * max_j |a_j|}``; lower means a simpler explanation.
    Nguyen & Martinez (2020), "On Quantitative Aspects of Model Interpretability", arXiv:2007.07584 (they
    threshold normalised attributions; the threshold here is relative to each sample's maximum). Quantus 0.6's
    ``EffectiveComplexity`` normalises by the largest magnitude of the whole batch instead, so its count for a
    sample depends on the other samples (equal to this one when every sample has the same maximum).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValidationError(f"effective_complexity: threshold must be in [0, 1), got {threshold!r}")
    a = np.abs(per_sample(attributions, owner="effective_complexity"))
    peak = a.max(axis=1, keepdims=True)
    return ((a > threshold * peak) & (a > 0)).sum(axis=1).astype(np.float64)
