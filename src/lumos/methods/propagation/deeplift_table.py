"""DeepLIFT's operation table: which rule every torch function gets (Rescale family).

:data:`HANDLERS` maps a torch function (``F.relu``, ``torch.Tensor.relu_``, ``F.max_pool2d``, ``torch.matmul``,
``F.softmax``, ...) to a handler ``handler(mode, func, args, kwargs)`` that, in the baseline pass, records
the operation's input-dependent operands and, in the input pass, applies the operation's rule (the autograd
Functions of :mod:`.multipliers`) with the recorded operands as reference values. :data:`LINEAR` is the
allow-list of operations whose ordinary gradient is exact (:func:`lumos.core.op_override.linear_ops`). The
mode that dispatches through the table is :class:`~.rescale.DeepLiftRules`; :mod:`.reveal_cancel` builds its
own table from this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...core.op_override import linear_ops
from .multipliers import (
    BaselineOp,
    Bilinear,
    MaxPoolRoute,
    PathJacobian,
    Rescale,
    gelu_derivative,
    relu_derivative,
    sigmoid_derivative,
    silu_derivative,
    tanh_derivative,
)

if TYPE_CHECKING:
    from .rescale import DeepLiftRules

ALTERNATIVES = "integrated_gradients or gradient_shap (any differentiable model), or occlusion / kernel_shap"

Handler = Callable[["DeepLiftRules", Any, tuple[Any, ...], dict[str, Any]], Any]


def _grad_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


class _Elementwise:
    """An elementwise nonlinearity spelled by ``func``: its out-of-place form and where ``inplace`` sits."""

    __slots__ = ("derivative", "fn", "inplace_pos", "always_inplace")

    def __init__(self, fn: Callable[..., torch.Tensor], inplace_pos: int | None = None, *,
                 always_inplace: bool = False,
                 derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.fn = fn
        self.inplace_pos = inplace_pos
        self.always_inplace = always_inplace
        self.derivative = derivative

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bool, tuple[Any, ...], dict[str, Any]]:
        """(in place?, the other positional arguments, keyword arguments) without the ``inplace`` flag."""
        if self.always_inplace:
            return True, args[1:], kwargs
        if "inplace" in kwargs:
            rest = {k: v for k, v in kwargs.items() if k != "inplace"}
            return bool(kwargs["inplace"]), args[1:], rest
        pos = self.inplace_pos
        if pos is not None and len(args) > pos:
            return bool(args[pos]), args[1:pos] + args[pos + 1:], kwargs
        return False, args[1:], kwargs


def _elementwise(spec: _Elementwise, mode: DeepLiftRules, func: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
    z = args[0]
    if not _grad_tensor(z):
        return func(*args, **kwargs)
    inplace, rest, kw = spec.split(args, kwargs)
    fn = _bind(spec.fn, rest, kw)
    if mode.replaying:
        (z_ref,) = mode.replay(z, func)
        y = Rescale.apply(z, z_ref, fn, spec.derivative)
    else:
        mode.record(z.clone() if inplace else z)
        y = BaselineOp.apply(fn, z)
    if inplace:
        z.copy_(y)
        return z
    return y


def _bind(fn: Callable[..., Any], rest: tuple[Any, ...], kw: dict[str, Any]) -> Callable[[torch.Tensor], Any]:
    if not rest and not kw:
        return fn
    return lambda t: fn(t, *rest, **kw)


class _MaxPool:
    """Max pooling spelled by ``func``: ``with_indices(z, *args)`` returns (values, indices)."""

    __slots__ = ("n_spatial", "return_pos", "returns_indices", "with_indices")

    def __init__(self, with_indices: Callable[..., Any], n_spatial: int, return_pos: int | None,
                 returns_indices: bool = False) -> None:
        self.with_indices = with_indices
        self.n_spatial = n_spatial
        self.return_pos = return_pos
        self.returns_indices = returns_indices


def _max_pool(spec: _MaxPool, mode: DeepLiftRules, func: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    z = args[0]
    if not _grad_tensor(z):
        return func(*args, **kwargs)
    wants_indices = spec.returns_indices
    kw = dict(kwargs)
    if "return_indices" in kw:
        wants_indices = wants_indices or bool(kw.pop("return_indices"))
    rest = args[1:]
    if spec.return_pos is not None and len(args) > spec.return_pos:
        wants_indices = wants_indices or bool(args[spec.return_pos])
        rest = args[1:spec.return_pos]
    pool = _bind(spec.with_indices, rest, kw)
    if mode.replaying:
        z_ref, y_ref, idx_ref = mode.replay(z, func)
        y, idx = MaxPoolRoute.apply(z, z_ref, y_ref, idx_ref, pool, spec.n_spatial)
    else:
        y, idx = BaselineOp.apply(pool, z)
        mode.record(z, y.detach(), idx)
    return (y, idx) if wants_indices else y


def _bilinear_call(mode: DeepLiftRules, func: Any, fn: Callable[[torch.Tensor, torch.Tensor], Any],
                   a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if mode.replaying:
        a_ref, b_ref = mode.replay(a, func, b)
        return Bilinear.apply(fn, a, b, a_ref, b_ref)
    mode.record(a, b)
    return BaselineOp.apply(fn, a, b)


def _product(inplace: bool, mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``a * b`` / ``a @ b``: linear unless both operands depend on the input (then :class:`Bilinear`)."""
    if len(args) < 2 or not (_grad_tensor(args[0]) and _grad_tensor(args[1])) or len(args) > 2 or kwargs:
        return func(*args, **kwargs)
    a, b = args
    fn = _OUT_OF_PLACE_PRODUCT.get(func, func)
    y = _bilinear_call(mode, func, fn, a, b)
    if inplace:
        a.copy_(y)
        return a
    return y


def _einsum(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    dependent = [i for i, t in enumerate(operands) if _grad_tensor(t)]
    if len(dependent) <= 1:
        return func(*args, **kwargs)
    if len(operands) != 2:
        raise mode.unsupported(func, "an einsum of more than two input-dependent tensors")
    return _bilinear_call(mode, func, lambda a, b: torch.einsum(equation, a, b), operands[0], operands[1])


def _divide(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``a / b``: linear in ``a`` for a constant ``b``; no rule for an input-dependent denominator."""
    denominator = args[1] if len(args) > 1 else kwargs.get("other")
    if _grad_tensor(denominator):
        raise mode.unsupported(func, "a division by an input-dependent tensor")
    return func(*args, **kwargs)


def _reverse_divide(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _grad_tensor(args[0]):
        raise mode.unsupported(func, "a division by an input-dependent tensor")
    return func(*args, **kwargs)


def _path(dims_of: Callable[[torch.Tensor, tuple[Any, ...], dict[str, Any]], tuple[int, ...]],
          mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    z = args[0]
    if not _grad_tensor(z):
        return func(*args, **kwargs)
    rest = args[1:]
    fn = lambda t: func(t, *rest, **kwargs)  # noqa: E731
    if mode.replaying:
        (z_ref,) = mode.replay(z, func)
        return PathJacobian.apply(z, z_ref, fn, dims_of(z, args, kwargs))
    mode.record(z)
    return BaselineOp.apply(fn, z)


def _dim_of(name: str, default: int | None) -> Callable[[torch.Tensor, tuple[Any, ...], dict[str, Any]], tuple[int, ...]]:
    """Slices of softmax / normalize: the one dimension ``dim`` (second positional argument)."""

    def dims(z: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
        dim = kwargs.get(name, args[1] if len(args) > 1 and isinstance(args[1], int) else default)
        if dim is None:  # softmax's legacy implicit dimension: normalise over the whole row
            return tuple(range(1, z.ndim)) or (0,)
        return (dim % z.ndim,)

    return dims


def _trailing(z: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
    """Slices of layer_norm / rms_norm: the trailing ``normalized_shape`` dimensions."""
    shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else (z.shape[-1],))
    count = 1 if isinstance(shape, int) else len(shape)
    return tuple(range(z.ndim - count, z.ndim))


def _per_sample(z: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
    """Slices of group / instance / local response norm: everything but the batch dimension."""
    return tuple(range(1, z.ndim)) or (0,)


def _batch_norm(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    if training and _grad_tensor(args[0]):
        raise mode.unsupported(func, "batch normalisation with batch statistics (mixes the samples)")
    return func(*args, **kwargs)


def _dropout(position: int, mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    training = kwargs.get("training", kwargs.get("train", args[position] if len(args) > position else True))
    p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
    if training and p > 0 and _grad_tensor(args[0]):
        raise mode.unsupported(func, "dropout in training mode (random)")
    return func(*args, **kwargs)


def _attention(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``scaled_dot_product_attention`` decomposed into matmul -> softmax -> matmul under the rules."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    q, k, v = bound["query"], bound["key"], bound["value"]
    if not any(_grad_tensor(t) for t in (q, k, v)):
        return func(*args, **kwargs)
    if bound.get("dropout_p", 0.0) or bound.get("enable_gqa", False):
        raise mode.unsupported(func, "attention with dropout_p > 0 or enable_gqa")
    scale = bound.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = bound.get("attn_mask")
    with mode:
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale
        length, source = scores.shape[-2], scores.shape[-1]
        if bound.get("is_causal", False):
            causal = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        return torch.matmul(torch.softmax(scores, dim=-1), v)


# the table, built once: torch function -> handler(mode, func, args, kwargs)
_OUT_OF_PLACE_PRODUCT: dict[Any, Any] = {}
HANDLERS: dict[Any, Handler] = {}
#: elementwise nonlinearities: torch function -> its spec (read by the RevealCancel mode)
ELEMENTWISE: dict[Any, _Elementwise] = {}
_GELU_APPROXIMATE: list[_Elementwise] = []


def _add(funcs: Any, handler: Handler) -> None:
    for func in funcs if isinstance(funcs, (list, tuple)) else (funcs,):
        if func is not None:
            HANDLERS[func] = handler


def _elementwise_entries() -> None:
    T, nnf = torch.Tensor, torch._C._nn
    d_relu, d_sig, d_tanh = relu_derivative, sigmoid_derivative, tanh_derivative
    entries: list[tuple[Any, _Elementwise]] = [
        (F.relu, _Elementwise(torch.relu, 1, derivative=d_relu)),
        (torch.relu, _Elementwise(torch.relu, derivative=d_relu)),
        (T.relu, _Elementwise(torch.relu, derivative=d_relu)),
        (torch.relu_, _Elementwise(torch.relu, always_inplace=True, derivative=d_relu)),
        (T.relu_, _Elementwise(torch.relu, always_inplace=True, derivative=d_relu)),
        (F.leaky_relu, _Elementwise(F.leaky_relu, 2)),
        (nnf.leaky_relu_, _Elementwise(F.leaky_relu, always_inplace=True)),
        (F.elu, _Elementwise(F.elu, 2)),
        (nnf.elu_, _Elementwise(F.elu, always_inplace=True)),
        (F.selu, _Elementwise(F.selu, 1)),
        (getattr(torch, "selu_", None), _Elementwise(F.selu, always_inplace=True)),
        (F.celu, _Elementwise(F.celu, 2)),
        (F.softplus, _Elementwise(F.softplus)),
        (F.gelu, _Elementwise(F.gelu)),
        (F.silu, _Elementwise(F.silu, 1, derivative=silu_derivative)),
        (F.mish, _Elementwise(F.mish, 1)),
        (F.hardtanh, _Elementwise(F.hardtanh, 3)),
        (nnf.hardtanh_, _Elementwise(F.hardtanh, always_inplace=True)),
        (F.relu6, _Elementwise(F.relu6, 1)),
        (F.hardswish, _Elementwise(F.hardswish, 1)),
        (F.hardsigmoid, _Elementwise(F.hardsigmoid, 1)),
        (F.softsign, _Elementwise(F.softsign)),
        (F.logsigmoid, _Elementwise(F.logsigmoid)),
        (F.threshold, _Elementwise(F.threshold, 3)),
        (torch.threshold_, _Elementwise(F.threshold, always_inplace=True)),
        (F.sigmoid, _Elementwise(torch.sigmoid, derivative=d_sig)),
        (torch.sigmoid, _Elementwise(torch.sigmoid, derivative=d_sig)),
        (T.sigmoid, _Elementwise(torch.sigmoid, derivative=d_sig)),
        (torch.sigmoid_, _Elementwise(torch.sigmoid, always_inplace=True, derivative=d_sig)),
        (T.sigmoid_, _Elementwise(torch.sigmoid, always_inplace=True, derivative=d_sig)),
        (F.tanh, _Elementwise(torch.tanh, derivative=d_tanh)),
        (torch.tanh, _Elementwise(torch.tanh, derivative=d_tanh)),
        (T.tanh, _Elementwise(torch.tanh, derivative=d_tanh)),
        (torch.tanh_, _Elementwise(torch.tanh, always_inplace=True, derivative=d_tanh)),
        (T.tanh_, _Elementwise(torch.tanh, always_inplace=True, derivative=d_tanh)),
        (torch.clamp, _Elementwise(torch.clamp)), (T.clamp, _Elementwise(torch.clamp)),
        (torch.clip, _Elementwise(torch.clamp)), (T.clip, _Elementwise(torch.clamp)),
        (T.clamp_, _Elementwise(torch.clamp, always_inplace=True)),
        (torch.clamp_min, _Elementwise(torch.clamp_min)), (T.clamp_min, _Elementwise(torch.clamp_min)),
        (torch.clamp_max, _Elementwise(torch.clamp_max)), (T.clamp_max, _Elementwise(torch.clamp_max)),
    ]
    for func, spec in entries:
        if func is not None:
            ELEMENTWISE[func] = spec
        _add(func, partial(_elementwise, spec))
    # gelu through torch._C._nn (F.gelu is that builtin): exact-erf derivative only for approximate="none"
    gelu = _Elementwise(F.gelu)
    gelu_exact = _Elementwise(F.gelu, derivative=gelu_derivative)

    def gelu_handler(mode: DeepLiftRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        exact = kwargs.get("approximate", args[1] if len(args) > 1 else "none") == "none"
        return _elementwise(gelu_exact if exact else gelu, mode, func, args, kwargs)

    _add(F.gelu, gelu_handler)
    ELEMENTWISE[F.gelu] = gelu_exact
    _GELU_APPROXIMATE.append(gelu)


def elementwise_spec(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Elementwise | None:
    """The elementwise nonlinearity ``func`` spells, for this call (``None`` when ``func`` is not one)."""
    spec = ELEMENTWISE.get(func)
    if spec is not None and func is F.gelu and kwargs.get("approximate", args[1] if len(args) > 1 else "none") \
            != "none":
        return _GELU_APPROXIMATE[0]
    return spec


def _other_entries() -> None:
    T = torch.Tensor
    for k in (1, 2, 3):
        with_indices = getattr(F, f"max_pool{k}d_with_indices")
        _add(getattr(F, f"max_pool{k}d"), partial(_max_pool, _MaxPool(with_indices, k, 6)))
        _add(with_indices, partial(_max_pool, _MaxPool(with_indices, k, None, returns_indices=True)))
        _add(getattr(torch, f"max_pool{k}d", None), partial(_max_pool, _MaxPool(with_indices, k, None)))
        adaptive = getattr(F, f"adaptive_max_pool{k}d_with_indices")
        _add(getattr(F, f"adaptive_max_pool{k}d"), partial(_max_pool, _MaxPool(adaptive, k, 2)))
        _add(adaptive, partial(_max_pool, _MaxPool(adaptive, k, None, returns_indices=True)))
    for func in (torch.mul, T.mul, torch.multiply, T.multiply, T.__mul__, T.__rmul__, torch.matmul, T.matmul,
                 T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm, torch.mv, T.mv, torch.outer, T.outer, torch.inner,
                 T.inner, torch.dot, T.dot):
        _add(func, partial(_product, False))
    for func in (T.mul_, T.__imul__):
        _add(func, partial(_product, True))
        _OUT_OF_PLACE_PRODUCT[func] = torch.mul
    _OUT_OF_PLACE_PRODUCT[T.__rmul__] = lambda a, b: torch.mul(b, a)
    _OUT_OF_PLACE_PRODUCT[getattr(T, "__rmatmul__", None)] = lambda a, b: torch.matmul(b, a)
    _add(getattr(T, "__rmatmul__", None), partial(_product, False))
    _add(torch.einsum, _einsum)
    for func in (torch.div, T.div, torch.divide, T.divide, torch.true_divide, T.true_divide, T.__truediv__,
                 T.div_, T.__itruediv__, getattr(T, "__div__", None), getattr(T, "__idiv__", None)):
        _add(func, _divide)
    _add([T.__rtruediv__, getattr(T, "__rdiv__", None)], _reverse_divide)
    softmax_dims = _dim_of("dim", None)
    for func, dims in ((F.softmax, softmax_dims), (torch.softmax, softmax_dims), (T.softmax, softmax_dims),
                       (F.log_softmax, softmax_dims), (torch.log_softmax, softmax_dims),
                       (T.log_softmax, softmax_dims), (F.softmin, softmax_dims), (F.normalize, _dim_of("dim", 1)),
                       (F.layer_norm, _trailing), (torch.layer_norm, _trailing), (getattr(F, "rms_norm", None), _trailing),
                       (getattr(torch, "rms_norm", None), _trailing), (F.group_norm, _per_sample),
                       (torch.group_norm, _per_sample), (F.instance_norm, _per_sample),
                       (F.local_response_norm, _per_sample)):
        if func is not None:
            _add(func, partial(_path, dims))
    _add([F.batch_norm, torch.batch_norm], _batch_norm)
    for func in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout):
        _add(func, partial(_dropout, 2))
    _add([torch.dropout, torch.feature_dropout, torch.alpha_dropout], partial(_dropout, 2))
    _add(F.scaled_dot_product_attention, _attention)


_elementwise_entries()
_other_entries()
LINEAR = linear_ops()
