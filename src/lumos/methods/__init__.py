"""lumos methods: every class is an :class:`Explainer` registered under a snake_case name."""

from ..core.registry import get_method, method_info, method_names
from .attention import AttentionRollout, AttentionWeights, GradientWeightedRollout
from .base import Explainer
from .cam import (
    CAM,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from .gradient import (
    Deconvolution,
    GradientSHAP,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
    SmoothGrad,
    VarGrad,
)
from .perturbation import LIME, RISE, FeatureAblation, Occlusion, explain_text
from .propagation import LRP, DeepLIFT, DeepSHAP
from .shapley import ExactSHAP, KernelSHAP, PermutationSHAP, ShapleyInteractions, TreeSHAP

__all__ = [
    "AblationCAM",
    "AttentionRollout",
    "AttentionWeights",
    "CAM",
    "Deconvolution",
    "DeepLIFT",
    "DeepSHAP",
    "EigenCAM",
    "ExactSHAP",
    "Explainer",
    "FeatureAblation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientSHAP",
    "GradientWeightedRollout",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputXGradient",
    "IntegratedGradients",
    "KernelSHAP",
    "LIME",
    "LRP",
    "LayerCAM",
    "NoiseTunnel",
    "Occlusion",
    "PermutationSHAP",
    "RISE",
    "Saliency",
    "ScoreCAM",
    "ShapleyInteractions",
    "SmoothGrad",
    "TreeSHAP",
    "VarGrad",
    "XGradCAM",
    "explain_text",
    "get_method",
    "method_info",
    "method_names",
]
