"""Attention methods: raw attention weights, attention rollout, gradient-weighted rollout."""

from .rollout import AttentionRollout, GradientWeightedRollout
from .weights import AttentionWeights

__all__ = ["AttentionRollout", "AttentionWeights", "GradientWeightedRollout"]
