"""Propagation methods: DeepLIFT / DeepSHAP and layer-wise relevance propagation (LRP)."""

from .deep_shap import DeepSHAP
from .deeplift import DeepLIFT
from .lrp import LRP

__all__ = ["LRP", "DeepLIFT", "DeepSHAP"]
