"""lumos: open the black box of deep learning models.

The public API::

    import lumos
    e = lumos.explain(model, x, method="integrated_gradients", target=3)
    e = lumos.methods.IntegratedGradients(model, n_steps=50).explain(x, target=3, baseline=0.0)
    e.save("ig.npz"); lumos.load("ig.npz")
"""

from . import config, methods, targets
from ._version import __version__
from .api import explain
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
    Deconvolution,
    Explainer,
    GradientSHAP,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
    SmoothGrad,
    VarGrad,
)

__all__ = [
    "Deconvolution",
    "Explainer",
    "Explanation",
    "GradientSHAP",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "LumosError",
    "LumosWarning",
    "ModelCallError",
    "NoiseTunnel",
    "Saliency",
    "SmoothGrad",
    "TargetError",
    "UnknownParameterError",
    "UnsupportedModelError",
    "ValidationError",
    "VarGrad",
    "__version__",
    "config",
    "explain",
    "load",
    "method_info",
    "method_names",
    "methods",
    "targets",
]
