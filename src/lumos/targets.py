"""Named targets: ``lumos.targets.Class``, ``Output``, ``Region``, ``Neuron`` (see :mod:`lumos.core.targets`)."""

from .core.targets import Class, Neuron, Output, Region, Target

__all__ = ["Class", "Neuron", "Output", "Region", "Target"]
