"""lumos: open the black box of deep learning models.

The public API::

    import lumos
    e = lumos.explain(model, x, method="integrated_gradients", target=3)
    e = lumos.methods.IntegratedGradients(model, n_steps=50).explain(x, target=3, baseline=0.0)
    e.save("ig.npz"); lumos.load("ig.npz")
"""

from . import config, methods, metrics, plots, targets
from ._version import __version__
from .api import explain
from .core.model import NumpyModel
from .core.registry import method_info, method_names
from .errors import (
    LumosError,
    LumosWarning,
    ModelCallError,
    TargetError,
    UnknownParameterError,
    UnsupportedModelError,
    ValidationError,
)
from .explanation import Explanation, load
from .methods import (
    CAM,
    LIME,
    LRP,
    RISE,
    AblationCAM,
    Deconvolution,
    DeepLIFT,
    DeepSHAP,
    EigenCAM,
    ExactSHAP,
    Explainer,
    FeatureAblation,
    GradCAM,
    GradCAMPlusPlus,
    GradientSHAP,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    InputXGradient,
    IntegratedGradients,
    KernelSHAP,
    LayerCAM,
    NoiseTunnel,
    Occlusion,
    PermutationSHAP,
    Saliency,
    ScoreCAM,
    ShapleyInteractions,
    SmoothGrad,
    TreeSHAP,
    VarGrad,
    XGradCAM,
    explain_text,
)
from .metrics import Evaluation, SanityReport, evaluate, load_evaluation, load_sanity_report, sanity_check

__all__ = [
    "AblationCAM",
    "CAM",
    "Deconvolution",
    "DeepLIFT",
    "DeepSHAP",
    "EigenCAM",
    "Evaluation",
    "ExactSHAP",
    "Explainer",
    "Explanation",
    "FeatureAblation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientSHAP",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputXGradient",
    "IntegratedGradients",
    "KernelSHAP",
    "LIME",
    "LRP",
    "LayerCAM",
    "LumosError",
    "LumosWarning",
    "ModelCallError",
    "NoiseTunnel",
    "NumpyModel",
    "Occlusion",
    "PermutationSHAP",
    "RISE",
    "Saliency",
    "SanityReport",
    "ScoreCAM",
    "ShapleyInteractions",
    "SmoothGrad",
    "TargetError",
    "TreeSHAP",
    "UnknownParameterError",
    "UnsupportedModelError",
    "ValidationError",
    "VarGrad",
    "XGradCAM",
    "config",
    "evaluate",
    "explain",
    "explain_text",
    "load",
    "load_evaluation",
    "load_sanity_report",
    "method_info",
    "method_names",
    "methods",
    "metrics",
    "plots",
    "sanity_check",
    "targets",
    "__version__",
]
