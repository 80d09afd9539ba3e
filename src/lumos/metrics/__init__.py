"""Metrics of explanation quality (issue 5): faithfulness, robustness, complexity, localisation, agreement.

Model-free metrics take Explanations (or attribution arrays/tensors, batch first) and return one value per
sample as a numpy array. Model-based metrics (faithfulness, robustness) take ``(model, inputs, attributions
or explainer, *, target=..., ...)`` and return a :class:`MetricResult` (``values`` per sample, ``curves``
where the metric has one). :data:`METRIC_INFO` says for each metric which property it measures, whether
higher is better and where it comes from; :func:`evaluate` runs several methods and metrics in one call.
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
from .evaluate import DEFAULT_METRICS, METRICS, evaluate
from .evaluation_result import Evaluation, load_evaluation
from .faithfulness import comprehensiveness, deletion, insertion, region_perturbation, sufficiency
from .faithfulness_sampled import completeness_residual, faithfulness_correlation, infidelity
from .localisation import pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, top_k_intersection
from .perturb import MetricResult
from .randomisation import (
    RandomisationResult,
    data_randomisation,
    model_parameter_randomisation,
    random_logit,
)
from .road import noisy_linear_impute, road
from .robustness import avg_sensitivity, local_lipschitz_estimate, max_sensitivity
from .sanity import SanityReport, SanityRule, load_sanity_report, sanity_check
from .similarity import hog_similarity, spearman_similarity, ssim_similarity


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
    MetricInfo("deletion", "faithfulness", False, "Petsiuk et al. 2018, BMVC (RISE), arXiv:1806.07421"),
    MetricInfo("insertion", "faithfulness", True, "Petsiuk et al. 2018, BMVC (RISE), arXiv:1806.07421"),
    MetricInfo("region_perturbation_morf", "faithfulness", True,
               "Bach et al. 2015, PLoS ONE; Samek et al. 2017, IEEE TNNLS"),
    MetricInfo("region_perturbation_lerf", "faithfulness", False,
               "Bach et al. 2015, PLoS ONE; Samek et al. 2017, IEEE TNNLS"),
    MetricInfo("faithfulness_correlation", "faithfulness", True, "Bhatt et al. 2020, IJCAI"),
    MetricInfo("infidelity", "faithfulness", False, "Yeh et al. 2019, NeurIPS"),
    MetricInfo("sufficiency", "faithfulness", False, "DeYoung et al. 2020, ACL (ERASER)"),
    MetricInfo("comprehensiveness", "faithfulness", True, "DeYoung et al. 2020, ACL (ERASER)"),
    MetricInfo("completeness_residual", "faithfulness", False, "Sundararajan et al. 2017, ICML (completeness)"),
    MetricInfo("road_morf", "faithfulness", False, "Rong et al. 2022, ICML (ROAD)"),
    MetricInfo("road_lerf", "faithfulness", True, "Rong et al. 2022, ICML (ROAD)"),
    MetricInfo("max_sensitivity", "robustness", False, "Yeh et al. 2019, NeurIPS"),
    MetricInfo("avg_sensitivity", "robustness", False, "Yeh et al. 2019, NeurIPS"),
    MetricInfo("local_lipschitz_estimate", "robustness", False, "Alvarez-Melis & Jaakkola 2018, arXiv:1806.08049"),
    MetricInfo("model_parameter_randomisation", "randomisation", False, "Adebayo et al. 2018, NeurIPS"),
    MetricInfo("data_randomisation", "randomisation", False, "Adebayo et al. 2018, NeurIPS"),
    MetricInfo("random_logit", "randomisation", False, "Sixt et al. 2020, ICML"),
)}

__all__ = [
    "AGREEMENT_METRICS",
    "DEFAULT_METRICS",
    "Evaluation",
    "METRICS",
    "METRIC_INFO",
    "MetricInfo",
    "MetricResult",
    "RandomisationResult",
    "SanityReport",
    "SanityRule",
    "agreement_matrix",
    "avg_sensitivity",
    "completeness_residual",
    "complexity",
    "comprehensiveness",
    "data_randomisation",
    "deletion",
    "effective_complexity",
    "evaluate",
    "faithfulness_correlation",
    "feature_agreement",
    "hog_similarity",
    "infidelity",
    "insertion",
    "load_evaluation",
    "load_sanity_report",
    "local_lipschitz_estimate",
    "max_sensitivity",
    "model_parameter_randomisation",
    "noisy_linear_impute",
    "pairwise_rank_agreement",
    "pointing_game",
    "random_logit",
    "rank_agreement",
    "rank_correlation",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sanity_check",
    "sign_agreement",
    "signed_rank_agreement",
    "sparseness",
    "spearman_similarity",
    "ssim_similarity",
    "sufficiency",
    "top_k_intersection",
]
