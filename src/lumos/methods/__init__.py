"""lumos methods: every class is an :class:`Explainer` registered under a snake_case name."""

from ..core.registry import get_method, method_info, method_names
from .base import Explainer
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

__all__ = [
    "Deconvolution",
    "Explainer",
    "GradientSHAP",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "Saliency",
    "SmoothGrad",
    "VarGrad",
    "get_method",
    "method_info",
    "method_names",
]
