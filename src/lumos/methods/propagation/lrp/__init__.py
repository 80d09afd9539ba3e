"""Layer-wise relevance propagation: rules, composites, canonizers and the :class:`LRP` explainer."""

from .canonizers import Canonizer, MergeBatchNorm
from .composites import COMPOSITE_NAMES, Composite, named_composite
from .lrp import LRP
from .rules import AlphaBeta, Epsilon, Flat, Gamma, LayerOp, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "COMPOSITE_NAMES",
    "LRP",
    "AlphaBeta",
    "Canonizer",
    "Composite",
    "Epsilon",
    "Flat",
    "Gamma",
    "LayerOp",
    "MergeBatchNorm",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "named_composite",
]
