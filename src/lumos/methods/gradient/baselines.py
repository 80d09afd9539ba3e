"""Baselines (reference inputs) of path methods, normalised to one (K, batch, *shape) tensor per input.

Accepted forms, for inputs of shape (batch, *shape):

- ``None`` or a number: a constant baseline (``None`` = 0);
- a tensor/array of shape ``shape`` (one baseline for every sample) or (batch, *shape) (one per sample);
- a tuple of the above, one per input of a multi-input model;
- a **list** of the above: several baselines, whose attributions are averaged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...core.inputs import InputBatch, as_tensor, check_finite
from ...errors import ValidationError, describe_value


def _one(value: Any, x: torch.Tensor, *, name: str, owner: str) -> torch.Tensor:
    if value is None:
        value = 0
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        tensor = torch.full((), float(value) if x.is_floating_point() else int(value), dtype=x.dtype,
                            device=x.device)
        return tensor.expand_as(x)
    tensor = as_tensor(value, name=name, owner=owner, device=x.device, float_dtype=x.dtype).to(x.dtype)
    check_finite(tensor, name=name, owner=owner)
    if tuple(tensor.shape) == tuple(x.shape):
        return tensor
    if tuple(tensor.shape) == tuple(x.shape[1:]):
        return tensor.unsqueeze(0).expand_as(x)
    if tensor.ndim == x.ndim and tensor.shape[0] == 1 and tuple(tensor.shape[1:]) == tuple(x.shape[1:]):
        return tensor.expand_as(x)
    raise ValidationError(
        f"{owner}: {name} must be a number or have shape {tuple(x.shape[1:])} (one for all samples) or "
        f"{tuple(x.shape)} (one per sample), got {describe_value(value)}"
    )


def prepare_baselines(baseline: Any, batch: InputBatch, *, owner: str) -> tuple[torch.Tensor, ...]:
    """One tensor of shape (K, batch, *shape) per input; K baselines are averaged over."""
    several = isinstance(baseline, list)
    items = baseline if several else [baseline]
    if several and not items:
        raise ValidationError(f"{owner}: baseline is an empty list; give at least one baseline")
    per_input: list[list[torch.Tensor]] = [[] for _ in batch.tensors]
    for k, item in enumerate(items):
        label = f"baseline[{k}]" if several else "baseline"
        if isinstance(item, tuple):
            if len(item) != len(batch.tensors):
                raise ValidationError(
                    f"{owner}: {label} is a tuple of {len(item)} baselines for {len(batch.tensors)} inputs"
                )
            parts = item
        else:
            if len(batch.tensors) > 1 and item is not None and not isinstance(item, (int, float)):
                raise ValidationError(
                    f"{owner}: the model has {len(batch.tensors)} inputs; give {label} as a number or a tuple "
                    f"with one baseline per input, got {describe_value(item)}"
                )
            parts = (item,) * len(batch.tensors)
        for i, (part, x) in enumerate(zip(parts, batch.tensors, strict=True)):
            name = f"{label}[{i}]" if len(batch.tensors) > 1 else label
            per_input[i].append(_one(part, x, name=name, owner=owner))
    return tuple(torch.stack(parts) for parts in per_input)


def prepare_background(background: Any, batch: InputBatch, *, owner: str) -> tuple[torch.Tensor, ...]:
    """A background data set: one tensor (n_background, *shape) per input."""
    if background is None:
        raise ValidationError(
            f"{owner}: baseline must be a background data set (a tensor of reference samples, e.g. a few "
            f"training inputs), got None"
        )
    items = background if isinstance(background, tuple) else (background,)
    if len(items) != len(batch.tensors):
        raise ValidationError(
            f"{owner}: baseline has {len(items)} background tensor(s) for {len(batch.tensors)} inputs"
        )
    out = []
    sizes = set()
    for i, (item, x) in enumerate(zip(items, batch.tensors, strict=True)):
        name = "baseline" if len(items) == 1 else f"baseline[{i}]"
        tensor = as_tensor(item, name=name, owner=owner, device=x.device, float_dtype=x.dtype).to(x.dtype)
        check_finite(tensor, name=name, owner=owner)
        if tensor.ndim == x.ndim - 1 and tuple(tensor.shape) == tuple(x.shape[1:]):
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != x.ndim or tuple(tensor.shape[1:]) != tuple(x.shape[1:]) or tensor.shape[0] == 0:
            raise ValidationError(
                f"{owner}: {name} must have shape (n_background, {', '.join(map(str, x.shape[1:]))}), "
                f"got {describe_value(item)}"
            )
        sizes.add(int(tensor.shape[0]))
        out.append(tensor)
    if len(sizes) > 1:
        raise ValidationError(f"{owner}: background tensors have different numbers of rows: {sorted(sizes)}")
    return tuple(out)
