"""Shapley-value methods for any model: exact enumeration, KernelSHAP regression and permutation sampling."""

from .exact import ExactSHAP
from .kernel import KernelSHAP
from .permutation import PermutationSHAP

__all__ = ["ExactSHAP", "KernelSHAP", "PermutationSHAP"]
