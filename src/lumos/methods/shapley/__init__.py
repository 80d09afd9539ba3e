"""Shapley-value methods: exact enumeration, KernelSHAP regression, permutation sampling, pairwise interactions
for any model, and TreeSHAP for tree ensembles."""

from .exact import ExactSHAP
from .interactions import ShapleyInteractions
from .kernel import KernelSHAP
from .permutation import PermutationSHAP
from .tree import TreeSHAP

__all__ = ["ExactSHAP", "KernelSHAP", "PermutationSHAP", "ShapleyInteractions", "TreeSHAP"]
