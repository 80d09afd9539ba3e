"""Targets: which scalar per sample an explanation explains.

``target`` may be

- ``None``: the predicted class (argmax of the output), or the output itself for a model with one output;
- an int: that class for every sample; a sequence/array/tensor of ints: one class per sample;
- a callable ``output -> (batch,)`` score, applied row-wise to the model's output;
- one of the named helpers below: :class:`Class`, :class:`Output`, :class:`Region`, :class:`Neuron`.

Every target turns a model output (and, for :class:`Neuron`, captured layer outputs) into one score per
row; ``sample_index`` maps each evaluated row to the sample it belongs to (methods evaluate many rows per
sample: integration steps, noisy copies, masked inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import TargetError, describe_value


class Target:
    """Base class of targets. Subclasses implement :meth:`score`."""

    #: layers (modules or dotted names) whose outputs the target needs captured
    layers: tuple[Any, ...] = ()
    #: resolution depends on each row's own output only (chunks can be resolved one by one)
    per_row: bool = False

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Target:
        """Fix what depends on the clean inputs' output (e.g. the predicted class) and validate ranges.

        ``output`` is the model's output for the first rows of the samples (all of them, or a first
        chunk); ``n_samples`` is the number of samples (default: rows of ``output``).
        """
        return self

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        """One score per row of ``output``."""
        raise NotImplementedError

    def indices(self) -> np.ndarray | None:
        """The class/output index per sample, where the target has one."""
        return None

    def describe(self) -> str:
        return type(self).__name__


def _scalar_per_row(output: torch.Tensor) -> bool:
    return output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)


def _as_index_tensor(index: Any, *, owner: str, name: str = "target") -> torch.Tensor:
    if isinstance(index, (bool, np.bool_)):
        raise TargetError(f"{owner}: {name} must be an int or one int per sample, got {index!r}")
    if isinstance(index, (int, np.integer)):
        return torch.tensor([int(index)], dtype=torch.long)
    if isinstance(index, torch.Tensor):
        tensor = index.detach().cpu()
    elif isinstance(index, (np.ndarray, Sequence)) and not isinstance(index, str):
        try:
            tensor = torch.as_tensor(np.asarray(index))
        except (TypeError, ValueError) as exc:
            raise TargetError(f"{owner}: {name} must be ints, got {describe_value(index)}") from exc
    else:
        raise TargetError(
            f"{owner}: {name} must be None, an int, one int per sample, a callable output -> (batch,) score, or "
            f"a lumos.targets helper (Class, Output, Region, Neuron), got {describe_value(index)}"
        )
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool or tensor.is_complex():
        if tensor.is_floating_point() and bool((tensor == tensor.round()).all()):
            tensor = tensor.long()
        else:
            raise TargetError(f"{owner}: {name} must hold integers, got {describe_value(index)}")
    if tensor.ndim != 1:
        tensor = tensor.reshape(-1) if tensor.numel() == 1 else tensor
    if tensor.ndim != 1:
        raise TargetError(f"{owner}: {name} must be an int or a 1-d sequence of ints, got shape {tuple(tensor.shape)}")
    return tensor.long()


def _shared_index(index: torch.Tensor) -> int | None:
    """The one value of a CPU index tensor when all its entries are equal, else ``None``."""
    if index.numel() == 0:
        return None
    first = int(index[0])
    return first if bool((index == first).all()) else None


class Class(Target):
    """The score of class ``index`` (an int, or one int per sample) in a (batch, classes) output."""

    kind = "class"

    def __init__(self, index: Any) -> None:
        self.index = _as_index_tensor(index, owner=type(self).__name__, name="index")
        self._device_index: torch.Tensor | None = None
        #: the index shared by every sample (``None`` when they differ), read once here for describe()
        self._shared = _shared_index(self.index)

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Class:
        n = output.shape[0] if n_samples is None else n_samples
        if self.index.numel() not in (1, n):
            raise TargetError(
                f"{owner}: target must be one int or one int per sample ({n}), got {self.index.numel()} values"
            )
        if output.ndim > 2:
            raise TargetError(
                f"{owner}: the model output has shape {tuple(output.shape)}, not (batch, classes); "
                f"use lumos.targets.Region(class_index, mask) for dense outputs or a callable target"
            )
        n_outputs = 1 if output.ndim == 1 else output.shape[1]
        low, high = int(self.index.min()), int(self.index.max())
        if low < 0 or high >= n_outputs:
            bad = low if low < 0 else high
            raise TargetError(
                f"{owner}: target {bad} is out of range for a model with {n_outputs} output(s) "
                f"(valid: 0..{n_outputs - 1})"
            )
        if self.index.numel() == 1 and n > 1:
            resolved = type(self).__new__(type(self))
            resolved.index = self.index.expand(n).clone()
            resolved._device_index = None
            resolved._shared = self._shared
            return resolved
        return self

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        if output.ndim == 1:
            return output
        index = self.index
        if index.device != output.device:
            if self._device_index is None or self._device_index.device != output.device:
                self._device_index = index.to(output.device)
            index = self._device_index
        if index.numel() == 1:
            return output[:, int(self.index[0])]
        rows = index.index_select(0, sample_index.to(output.device))
        return output.gather(1, rows[:, None]).squeeze(1)

    def indices(self) -> np.ndarray:
        return self.index.numpy().copy()

    def describe(self) -> str:
        return f"{self.kind} per sample" if self._shared is None else f"{self.kind} {self._shared}"


class Output(Class):
    """Output ``index`` of a multi-output regressor (same arithmetic as :class:`Class`)."""

    kind = "output"


class PredictedClass(Class):
    """The predicted class of each sample, fixed by :meth:`Predicted.resolve` (described as such)."""

    def describe(self) -> str:
        return "predicted class"


class Predicted(Target):
    """The predicted class (argmax) of each sample; the output itself for a one-output model.

    Resolving fixes the argmax as a :class:`PredictedClass`.
    """

    per_row = True

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Target:
        if _scalar_per_row(output):
            return Class(0).resolve(output, owner=owner)
        if output.ndim != 2:
            raise TargetError(
                f"{owner}: the model output has shape {tuple(output.shape)}, with no obvious score per sample; "
                f"pass target=lumos.targets.Region(class_index, mask) for a segmentation output, "
                f"lumos.targets.Output(i) for a multi-output regressor, or a callable output -> (batch,) score"
            )
        return PredictedClass(output.detach().argmax(dim=1).cpu()).resolve(output, owner=owner)

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        if _scalar_per_row(output):
            return output.reshape(output.shape[0])
        return output.gather(1, output.detach().argmax(dim=1, keepdim=True)).squeeze(1)

    def describe(self) -> str:
        return "predicted class"


class Region(Target):
    """Segmentation: the score of ``class_index`` summed over ``mask`` in a (batch, classes, *spatial) output.

    ``mask`` has the spatial shape, or (batch, *spatial) for one mask per sample; it may be boolean or
    weights.
    """

    def __init__(self, class_index: int, mask: Any) -> None:
        self.class_index = int(class_index)
        self.mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).detach()

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Region:
        if output.ndim < 3:
            raise TargetError(
                f"{owner}: Region needs a dense output (batch, classes, *spatial), got shape {tuple(output.shape)}"
            )
        if not 0 <= self.class_index < output.shape[1]:
            raise TargetError(
                f"{owner}: Region class_index {self.class_index} is out of range (valid: 0..{output.shape[1] - 1})"
            )
        spatial = tuple(output.shape[2:])
        shape = tuple(self.mask.shape)
        n = output.shape[0] if n_samples is None else n_samples
        if shape != spatial and shape != (n, *spatial):
            raise TargetError(f"{owner}: Region mask must have shape {spatial} or {(n, *spatial)}, got {shape}")
        return self

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        mask = self.mask.to(device=output.device, dtype=output.dtype)
        if mask.ndim == output.ndim - 1:
            mask = mask.index_select(0, sample_index.to(output.device))
        return (output[:, self.class_index] * mask).flatten(1).sum(1)

    def indices(self) -> np.ndarray:
        return np.array([self.class_index])

    def describe(self) -> str:
        return f"class {self.class_index} over a region"


class Neuron(Target):
    """A unit or channel of an inner layer: ``layer``'s output at ``index``.

    An int ``index`` selects a channel (dimension 1) and sums over the remaining dimensions; a tuple indexes
    every non-batch dimension (one unit).
    """

    def __init__(self, layer: nn.Module | str, index: int | tuple[int, ...]) -> None:
        self.layer = layer
        self.layers = (layer,)
        self.index = index

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        activation = captured[self.layer]
        self._check(activation)
        if isinstance(self.index, tuple):
            return activation[(slice(None), *self.index)]
        channel = activation[:, self.index]
        return channel.reshape(channel.shape[0], -1).sum(1)

    def _check(self, activation: Any) -> None:
        """Raise a TargetError unless ``index`` addresses a channel or unit of ``activation``."""
        name = self.layer if isinstance(self.layer, str) else type(self.layer).__name__
        if not isinstance(activation, torch.Tensor) or activation.ndim < 2:
            raise TargetError(
                f"Neuron: layer {name!r} must return a (batch, ...) tensor, got {describe_value(activation)}"
            )
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        sizes = tuple(activation.shape[1:])
        in_range = all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < size
                       for i, size in zip(index, sizes, strict=False))
        if not in_range or (isinstance(self.index, tuple) and len(index) != len(sizes)):
            raise TargetError(
                f"Neuron: index {self.index!r} is out of range for layer {name!r}, whose output has shape "
                f"(batch, {', '.join(map(str, sizes))}); give a channel 0..{sizes[0] - 1} or a tuple of "
                f"{len(sizes)} unit indices"
            )

    def describe(self) -> str:
        name = self.layer if isinstance(self.layer, str) else type(self.layer).__name__
        return f"neuron {self.index} of {name}"


class ScoreFunction(Target):
    """A user callable ``output -> (batch,)`` score; it must act row by row."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        value = self.fn(output)
        if not isinstance(value, torch.Tensor) or value.shape != (output.shape[0],):
            raise TargetError(
                f"target callable must return a tensor of shape ({output.shape[0]},) (one score per row), "
                f"got {describe_value(value)}"
            )
        return value

    def describe(self) -> str:
        return getattr(self.fn, "__name__", "callable")


def as_target(target: Any, *, owner: str) -> Target:
    """Normalise the user's ``target`` argument into a :class:`Target`."""
    if target is None:
        return Predicted()
    if isinstance(target, Target):
        return target
    if callable(target) and not isinstance(target, (torch.Tensor, np.ndarray)):
        return ScoreFunction(target)
    index = _as_index_tensor(target, owner=owner)
    return Class(index)


class Expanded(Target):
    """``inner`` target for inputs repeated ``factor`` times per sample (row ``r`` is sample ``r // factor``)."""

    def __init__(self, inner: Target, factor: int) -> None:
        self.inner = inner
        self.factor = int(factor)
        self.layers = inner.layers
        self.per_row = inner.per_row

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Target:
        if self.per_row:
            return self.inner.resolve(output, owner=owner, n_samples=n_samples)
        n = output.shape[0] if n_samples is None else n_samples
        return Expanded(self.inner.resolve(output[:: self.factor], owner=owner, n_samples=n // self.factor),
                        self.factor)

    def score(self, output: torch.Tensor, sample_index: torch.Tensor,
              captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        return self.inner.score(output, torch.div(sample_index, self.factor, rounding_mode="floor"), captured)

    def indices(self) -> np.ndarray | None:
        return self.inner.indices()

    def describe(self) -> str:
        return self.inner.describe()
