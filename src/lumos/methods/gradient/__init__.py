"""The gradient family: saliency, input x gradient, integrated gradients, noise tunnel (SmoothGrad,
VarGrad), guided backprop, deconvolution and GradientSHAP."""

from .gradient_shap import GradientSHAP
from .guided import Deconvolution, GuidedBackprop
from .integrated_gradients import IntegratedGradients
from .noise_tunnel import NoiseTunnel, SmoothGrad, VarGrad
from .saliency import InputXGradient, Saliency

__all__ = [
    "Deconvolution",
    "GradientSHAP",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "Saliency",
    "SmoothGrad",
    "VarGrad",
]
