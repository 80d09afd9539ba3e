"""lumos: open the black box of deep learning models.

The public API::

    import lumos
    e = lumos.explain(model, x, method="integrated_gradients", target=3)
    e = lumos.methods.IntegratedGradients(model, n_steps=50).explain(x, target=3, baseline=0.0)
    e.save("ig.npz"); lumos.load("ig.npz")
"""

__version__ = "0.1.0"

from . import config, methods, targets  # noqa: E402
from .api import explain  # noqa: E402
from .core.registry import method_info, method_names  # noqa: E402
from .errors import (  # noqa: E402
    LumosError,
    LumosWarning,
    ModelCallError,
    TargetError,
    UnsupportedModelError,
    ValidationError,
)
from .explanation import Explanation, load  # noqa: E402
from .methods import (  # noqa: E402
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
