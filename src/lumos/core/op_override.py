"""Replace operations by the function executed, not by module instance.

A :class:`OperationOverride` is a ``TorchFunctionMode``: inside its block every call of a listed torch
function is routed to a replacement, whether it comes from an ``nn.ReLU`` module (reused or not), from
``F.relu``, ``torch.relu`` or the tensor method ``x.relu()``, in place or not. Propagation methods (guided
backprop, deconvolution, later DeepLIFT and LRP) bind their rules this way, so reuse and functional calls
cannot escape them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class OperationOverride(TorchFunctionMode):
    """Route the torch functions in ``table`` to replacements ``fn(*args, **kwargs)``."""

    def __init__(self, table: dict[Any, Callable[..., Any]]) -> None:
        super().__init__()
        self.table = table

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch protocol
        kwargs = kwargs or {}
        replacement = self.table.get(func)
        if replacement is not None:
            return replacement(*args, **kwargs)
        return func(*args, **kwargs)


def relu_table(apply: Callable[[torch.Tensor], torch.Tensor]) -> dict[Any, Callable[..., Any]]:
    """Override table sending every ReLU spelling to ``apply(x)`` (an out-of-place function).

    In-place spellings (``relu_``, ``F.relu(x, inplace=True)``, ``nn.ReLU(inplace=True)``) write the result
    back into ``x`` so code that ignores the return value still sees it.
    """

    def out_of_place(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        inplace = kwargs.pop("inplace", args[0] if args else False)
        y = apply(x)
        if inplace:
            x.copy_(y)
            return x
        return y

    def in_place(x: torch.Tensor) -> torch.Tensor:
        return out_of_place(x, inplace=True)

    return {
        F.relu: out_of_place,
        torch.relu: out_of_place,
        torch.Tensor.relu: out_of_place,
        torch.relu_: in_place,
        torch.Tensor.relu_: in_place,
    }
