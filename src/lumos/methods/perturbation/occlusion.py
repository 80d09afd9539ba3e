"""Occlusion (Zeiler & Fergus 2014): slide a window over the input and record the drop of the score."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import torch

from ...core.registry import register
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import PerturbationExplainer

Spec = int | tuple[int, ...] | None


@register
class Occlusion(PerturbationExplainer):
    """Occlusion: replace a sliding window by the baseline and spread the score drop over the window.

    For each window position ``p``: ``delta_p = f(x) - v(x with window p replaced)``; each element gets the
    average of ``delta_p`` over the windows that cover it. The replacement is the baseline (``baseline=``: a
    number, one row, or a background set whose rows are averaged; default 0). Windows start every
    ``strides`` elements along each dimension, and the last window of a dimension is moved to end at its
    edge, so every element is covered. Works for inputs of any shape: tabular ``(N, d)``, sequences, images
    ``(N, C, H, W)`` (window ``(C, h, w)``); several inputs are occluded one window at a time each. All
    windows of all samples go through batched model calls.

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", ECCV.

    Args:
        window: window shape per sample dimension (a tuple), or an int used along every dimension and clipped
            to the dimension's size (``window=8`` on ``(3, 32, 32)`` images is ``(3, 8, 8)``). A tuple of
            such specs gives one per input of a multi-input model.
        strides: step between windows, same forms; ``None`` = the window (non-overlapping windows).

    Example::

        Occlusion(model, window=(3, 8, 8), strides=4).explain(images, target=labels, baseline=0.0)
    """

    name: ClassVar[str] = "occlusion"
    reference: ClassVar[str] = "Zeiler & Fergus 2014, arXiv:1311.2901"
    data_arguments: ClassVar[tuple[str, ...]] = ("background_weights",)

    def __init__(self, model: Any, *, window: Any = 1, strides: Any = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        for name, value in (("window", window), ("strides", strides)):
            if not _valid_spec(value, allow_none=name == "strides"):
                raise ValidationError(
                    f"Occlusion: {name} must be an int >= 1, a tuple of ints >= 1 (one per sample dimension) or "
                    f"a tuple of those (one per input){', or None' if name == 'strides' else ''}, got {value!r}"
                )
        self.window = window
        self.strides = strides

    def get_params(self) -> dict[str, Any]:
        return {"window": self.window, "strides": self.strides}

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        masker = setup.masker
        occluded = self._windows(masker.shapes, masker.offsets)  # (P, n_elements) bool
        values = masker.values(~occluded, elements=True, desc="occlusion")
        drops = setup.scores64[:, None].to(values.device) - values  # (n, P)
        total = torch.zeros(drops.shape[0], masker.n_elements, dtype=torch.float64, device=values.device)
        covered = occluded.sum(0).to(torch.float64)
        for start in range(0, occluded.shape[0], 256):  # bounded memory for big images
            block = occluded[start:start + 256].to(torch.float64)
            total += drops[:, start:start + 256] @ block
        per_element = total / covered.clamp_min(1)
        parts = []
        for i, (x, shape) in enumerate(zip(context.batch.tensors, masker.shapes, strict=True)):
            part = per_element[:, masker.offsets[i]:masker.offsets[i + 1]].reshape(-1, *shape)
            parts.append(part.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float64))
        extras = {"n_evaluations": setup.engine.n_evaluations, "n_windows": int(occluded.shape[0]),
                  "estimand": masker.reference.estimand}
        return Attribution(tuple(parts), setup.scores, extras, setup.engine.target)

    def _windows(self, shapes: list[tuple[int, ...]], offsets: list[int]) -> torch.Tensor:
        """Every window position of every input as a boolean row over all flattened elements."""
        rows = []
        for i, shape in enumerate(shapes):
            window = _resolve(self.window, shape, i, len(shapes), "window")
            strides = window if self.strides is None else _resolve(self.strides, shape, i, len(shapes), "strides")
            starts = []
            for size, w, s in zip(shape, window, strides, strict=True):
                positions = list(range(0, size - w + 1, s))
                if positions[-1] != size - w:
                    positions.append(size - w)
                starts.append(positions)
            grids = [np.arange(size) for size in shape]
            for corner in itertools.product(*starts):
                inside = np.ones((), dtype=bool)
                for grid, c, w in zip(grids, corner, window, strict=True):
                    inside = np.logical_and.outer(inside, (grid >= c) & (grid < c + w))
                row = np.zeros(offsets[-1], dtype=bool)
                row[offsets[i]:offsets[i + 1]] = inside.reshape(-1)
                rows.append(row)
        return torch.as_tensor(np.stack(rows))


def _valid_spec(value: Any, *, allow_none: bool) -> bool:
    if value is None:
        return allow_none
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return value >= 1
    if isinstance(value, tuple) and value:
        return all(_valid_spec(v, allow_none=False) for v in value)
    return False


def _resolve(spec: Any, shape: tuple[int, ...], index: int, n_inputs: int, name: str) -> tuple[int, ...]:
    """The spec for input ``index``: per-dimension ints, clipped to the input's sizes."""
    if isinstance(spec, tuple) and n_inputs > 1 and len(spec) == n_inputs and not all(isinstance(s, int)
                                                                                     for s in spec):
        spec = spec[index]
    if isinstance(spec, (int, np.integer)):
        return tuple(min(int(spec), size) for size in shape)
    if not isinstance(spec, tuple) or len(spec) != len(shape) or not all(isinstance(s, (int, np.integer)) for s in spec):
        raise ValidationError(
            f"Occlusion: {name} {spec!r} does not fit input {index} of sample shape {shape}: give an int or a tuple "
            f"of {len(shape)} ints"
        )
    if any(s > size for s, size in zip(spec, shape, strict=True)) and name == "window":
        raise ValidationError(f"Occlusion: window {spec!r} is larger than the sample shape {shape}")
    return tuple(int(s) for s in spec)
