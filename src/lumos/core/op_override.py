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


# ---------------------------------------------------------------------------------------------- linear ops

#: names of torch functions / tensor methods that are linear (or affine with constant terms) in each tensor
#: argument that depends on the input, and that never mix the rows of a batch; reshapes, indexing, sums,
#: concatenation, linear layers, convolutions, average pooling, padding and interpolation
_LINEAR_NAMES = (
    "add", "add_", "sub", "sub_", "subtract", "rsub", "neg", "neg_", "negative", "positive", "sum", "mean",
    "cumsum", "flatten", "unflatten", "view", "view_as", "reshape", "reshape_as", "permute", "transpose",
    "transpose_", "swapaxes", "swapdims", "t", "t_", "contiguous", "clone", "detach", "detach_", "squeeze",
    "squeeze_", "unsqueeze", "unsqueeze_", "expand", "expand_as", "broadcast_to", "repeat", "repeat_interleave",
    "tile", "narrow", "select", "index_select", "gather", "take_along_dim", "split", "split_with_sizes", "chunk",
    "unbind", "tensor_split", "hsplit", "vsplit", "dsplit", "cat", "concat", "concatenate", "stack", "hstack",
    "vstack", "dstack", "flip", "fliplr", "flipud", "roll", "rot90", "movedim", "moveaxis", "diagonal", "diag",
    "diag_embed", "tril", "triu", "trace", "masked_fill", "masked_fill_", "where", "index_add", "index_add_",
    "index_copy", "index_copy_", "scatter", "scatter_", "scatter_add", "scatter_add_", "index_put", "index_put_",
    "copy_", "zero_", "fill_", "type_as", "to", "float", "double", "half", "bfloat16", "type", "cpu", "cuda",
    "unfold", "ravel", "atleast_1d", "atleast_2d", "atleast_3d", "requires_grad_", "retain_grad", "real",
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__neg__", "__pos__", "__getitem__",
    "__setitem__", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "avg_pool1d", "adaptive_avg_pool1d",
)
_FUNCTIONAL_LINEAR_NAMES = (
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "pad", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "fold", "unfold", "embedding", "identity",
)


def linear_ops() -> frozenset[Any]:
    """The torch functions and tensor methods that are linear in their input-dependent tensor arguments.

    Used by propagation methods (DeepLIFT) as an explicit allow-list: their ordinary gradient is exact for a
    difference-from-reference decomposition. Multiplication, division and matrix products are not in it (they
    are linear only when one operand is constant, which the methods check per call).
    """
    found: set[Any] = set()
    for name in _LINEAR_NAMES:
        for owner in (torch, torch.Tensor):
            func = getattr(owner, name, None)
            if func is not None and not isinstance(func, type):
                found.add(func)
    for name in _FUNCTIONAL_LINEAR_NAMES:
        for owner in (F, torch._C._nn):
            func = getattr(owner, name, None)
            if func is not None:
                found.add(func)
    return frozenset(found)
