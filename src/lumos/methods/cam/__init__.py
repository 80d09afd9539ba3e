"""The class-activation-map family: CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, ScoreCAM,
AblationCAM, EigenCAM and guided Grad-CAM. Every variant is a small override of
:class:`~lumos.methods.cam.base.CAMExplainer` (the channel weights, or how the map is combined)."""

from .base import CAMExplainer
from .eigen_cam import EigenCAM
from .gradient_cams import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .guided_grad_cam import GuidedGradCAM
from .linear_head_cam import CAM
from .perturbation_cams import AblationCAM, ScoreCAM

__all__ = [
    "CAM",
    "AblationCAM",
    "CAMExplainer",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
]
