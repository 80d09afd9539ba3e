"""Metrics of explanation quality (issue 5): complexity, localisation and agreement so far.

Every metric takes Explanations (or attribution arrays/tensors, batch first) and returns one value per
sample as a numpy array; :data:`METRIC_INFO` says for each whether higher is better and where it comes from.
Metrics that need the model (faithfulness, robustness, randomisation) come with ``lumos.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .agreement import (
    AGREEMENT_METRICS,
    agreement_matrix,
    feature_agreement,
    pairwise_rank_agreement,
    rank_agreement,
    rank_correlation,
    sign_agreement,
    signed_rank_agreement,
)
from .complexity import complexity, effective_complexity, sparseness
from .localisation import pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, top_k_intersection


@dataclass(frozen=True)
class MetricInfo:
    """What a metric measures and how to read it."""

    name: str
    property: str
    higher_is_better: bool
    reference: str


METRIC_INFO: dict[str, MetricInfo] = {info.name: info for info in (
    MetricInfo("sparseness", "complexity", True, "Chalasani et al. 2020, ICML"),
    MetricInfo("complexity", "complexity", False, "Bhatt et al. 2020, IJCAI"),
    MetricInfo("effective_complexity", "complexity", False, "Nguyen & Martinez 2020, arXiv:2007.07584"),
    MetricInfo("pointing_game", "localisation", True, "Zhang et al. 2018, IJCV"),
    MetricInfo("relevance_mass_accuracy", "localisation", True, "Arras et al. 2022, Information Fusion"),
    MetricInfo("relevance_rank_accuracy", "localisation", True, "Arras et al. 2022, Information Fusion"),
    MetricInfo("top_k_intersection", "localisation", True, "Theiner et al. 2022, WACV"),
    *(MetricInfo(name, "agreement", True, "Krishna et al. 2022, arXiv:2202.01602") for name in AGREEMENT_METRICS),
)}

__all__ = [
    "AGREEMENT_METRICS",
    "METRIC_INFO",
    "MetricInfo",
    "agreement_matrix",
    "complexity",
    "effective_complexity",
    "feature_agreement",
    "pairwise_rank_agreement",
    "pointing_game",
    "rank_agreement",
    "rank_correlation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "sign_agreement",
    "signed_rank_agreement",
    "sparseness",
    "top_k_intersection",
]
