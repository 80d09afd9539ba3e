"""Perturbation methods for any model: occlusion and feature ablation (and the shared masking machinery)."""

from .ablation import FeatureAblation
from .occlusion import Occlusion

__all__ = ["FeatureAblation", "Occlusion"]
