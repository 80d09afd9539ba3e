"""Input handling: one tensor or a tuple of tensors (multi-input models), torch or numpy.

Inputs are checked (same batch size, finite values) and moved to the model's device; results are returned
in the caller's form: torch in, torch out on the same device; numpy in, numpy out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ValidationError, describe_value

ArrayLike = Any  # torch.Tensor | np.ndarray


@dataclass
class InputBatch:
    """Inputs normalised for computation.

    Attributes:
        tensors: the inputs as tensors on the compute device, one per model argument.
        is_tuple: the caller passed a tuple (results come back as a tuple).
        is_numpy: the caller passed numpy arrays (results come back as numpy arrays).
        devices: the caller's device of each input.
        dtypes: the caller's dtype of each input (floating inputs compute in the model's dtype and come
            back in their own).
    """

    tensors: tuple[torch.Tensor, ...]
    is_tuple: bool
    is_numpy: bool
    devices: tuple[torch.device, ...]
    dtypes: tuple[torch.dtype, ...] | None = None

    @property
    def n(self) -> int:
        """Number of samples (the shared first dimension)."""
        return int(self.tensors[0].shape[0])

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(t.shape) for t in self.tensors)

    @property
    def is_floating(self) -> bool:
        return all(t.is_floating_point() for t in self.tensors)

    def describe(self) -> str:
        parts = [f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in self.tensors]
        return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"

    def to_user(self, tensors: Sequence[torch.Tensor]) -> Any:
        """Return ``tensors`` (one per input) in the caller's form: type, device, tuple or single."""
        out = []
        dtypes = self.dtypes or (None,) * len(self.devices)
        for tensor, device, dtype in zip(tensors, self.devices, dtypes, strict=False):
            tensor = tensor.detach()
            if (dtype is not None and dtype != tensor.dtype and dtype.is_floating_point
                    and tensor.is_floating_point()):
                tensor = tensor.to(dtype)
            if self.is_numpy:
                out.append(tensor.cpu().numpy())
            else:
                out.append(tensor if tensor.device == device else tensor.to(device))
        return tuple(out) if self.is_tuple else out[0]


def as_tensor(value: Any, *, name: str, owner: str, device: torch.device | None,
              float_dtype: torch.dtype | None) -> torch.Tensor:
    """Convert one array to a tensor on ``device``; floating values take the model's float dtype."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.is_floating_point() and float_dtype is not None and tensor.dtype != float_dtype:
            tensor = tensor.to(float_dtype)
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValidationError(f"{owner}: {name} must be a numeric array, got an array of dtype object")
        # (np.ascontiguousarray turns a 0-d array into shape (1,): keep the caller's shape)
        tensor = torch.from_numpy(np.ascontiguousarray(value).reshape(value.shape))
        if tensor.is_floating_point() and float_dtype is not None:
            tensor = tensor.to(float_dtype)
    else:
        raise ValidationError(
            f"{owner}: {name} must be a torch.Tensor or a numpy array (or a tuple of them for a multi-input "
            f"model), got {describe_value(value)}"
        )
    if device is not None and tensor.device != device:
        tensor = tensor.to(device)
    return tensor


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` holds no NaN or infinity.

    Fast path: a finite sum proves every value finite (NaN and inf propagate into the sum); only a
    non-finite sum (a bad value, or an overflow of large finite values) pays for the elementwise check.
    The sum is read back as a Python number: a 0-d ``torch.isfinite`` costs more than the sum itself.
    """
    if tensor.is_complex():
        return bool(torch.isfinite(tensor).all())
    if not tensor.is_floating_point():
        return True
    return math.isfinite(float(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_finite(tensor: torch.Tensor, *, name: str, owner: str) -> None:
    """Raise a ValidationError naming ``name`` when ``tensor`` holds NaN or infinity."""
    if not all_finite(tensor):
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            n_bad = int((~finite).sum())
            first = tuple(int(i) for i in (~finite).nonzero()[0])
            raise ValidationError(
                f"{owner}: {name} must be finite, got {n_bad} NaN/inf value(s) (first at index {first})"
            )


def prepare_inputs(inputs: Any, *, owner: str, device: torch.device | None,
                   float_dtype: torch.dtype | None) -> InputBatch:
    """Validate ``inputs`` (a tensor, an array, or a tuple of them) and move them to ``device``."""
    is_tuple = isinstance(inputs, (tuple, list))
    items = tuple(inputs) if is_tuple else (inputs,)
    if not items:
        raise ValidationError(f"{owner}: inputs must hold at least one tensor, got an empty {type(inputs).__name__}")
    is_numpy = all(isinstance(item, np.ndarray) for item in items)
    tensors = []
    devices = []
    dtypes = []
    for i, item in enumerate(items):
        name = f"inputs[{i}]" if is_tuple else "inputs"
        devices.append(item.device if isinstance(item, torch.Tensor) else torch.device("cpu"))
        if isinstance(item, torch.Tensor):
            dtypes.append(item.dtype)
        elif isinstance(item, np.ndarray) and item.dtype != object:
            dtypes.append(torch.from_numpy(np.zeros(0, dtype=item.dtype)).dtype)
        tensor = as_tensor(item, name=name, owner=owner, device=device, float_dtype=float_dtype)
        if tensor.ndim == 0:
            raise ValidationError(
                f"{owner}: {name} must have a batch dimension first, got a 0-d value; use x[None] for one sample"
            )
        if tensor.shape[0] == 0:
            raise ValidationError(f"{owner}: {name} is empty (batch size 0)")
        check_finite(tensor, name=name, owner=owner)
        tensors.append(tensor)
    sizes = {int(t.shape[0]) for t in tensors}
    if len(sizes) > 1:
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise ValidationError(f"{owner}: all inputs must share the batch size (first dimension), got shapes {shapes}")
    return InputBatch(tuple(tensors), is_tuple, is_numpy, tuple(devices), tuple(dtypes))


def prepare_forward_kwargs(forward_kwargs: Mapping[str, Any] | None, *, n: int, owner: str,
                           device: torch.device | None, float_dtype: torch.dtype | None) -> dict[str, Any]:
    """Move tensor-valued extra forward arguments (e.g. an attention mask) to ``device``."""
    if forward_kwargs is None:
        return {}
    if not isinstance(forward_kwargs, Mapping):
        raise ValidationError(
            f"{owner}: forward_kwargs must be a dict of extra model arguments, got {describe_value(forward_kwargs)}"
        )
    out: dict[str, Any] = {}
    for key, value in forward_kwargs.items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value = as_tensor(value, name=f"forward_kwargs[{key!r}]", owner=owner, device=device,
                              float_dtype=float_dtype)
        out[key] = value
    return out


def select_rows(forward_kwargs: Mapping[str, Any], sample_index: torch.Tensor | None, n: int) -> dict[str, Any]:
    """Index every per-sample tensor argument (first dimension ``n``) by ``sample_index``."""
    if sample_index is None:
        return dict(forward_kwargs)
    out = {}
    for key, value in forward_kwargs.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
            value = value.index_select(0, sample_index.to(value.device))
        out[key] = value
    return out
