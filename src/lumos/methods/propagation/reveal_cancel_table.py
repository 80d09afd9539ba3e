"""RevealCancel's operation table: how each torch function maps the (Δ+, Δ-) streams (see :mod:`.reveal_cancel`).

:data:`RC_HANDLERS` maps a torch function to ``handler(mode, func, args, kwargs)``, built from the Rescale
table (:mod:`.deeplift_table`): elementwise nonlinearities get the RevealCancel multipliers, weighted layers
the paper's linear rule, scalings and sums their sign-aware stream maps, and max pooling, products and
normalisers their Rescale-family rule on the total difference, re-split by sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .deeplift_table import _OUT_OF_PLACE_PRODUCT, HANDLERS, LINEAR, _bind, elementwise_spec
from .rescale import _carries_grad
from .reveal_cancel_streams import (
    RevealCancelMultipliers,
    _detached,
    _signed_scale,
    _substitute,
    _tensors,
    _tracked,
    resplit,
)

if TYPE_CHECKING:
    from .reveal_cancel import RevealCancelRules


_IN_PLACE_DUNDERS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__setitem__"})
#: structural operations that never add a constant: their streams are the operation applied to each stream
_HOMOGENEOUS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute", "transpose", "swapaxes",
    "swapdims", "t", "contiguous", "clone", "squeeze", "unsqueeze", "expand", "expand_as", "broadcast_to",
    "repeat", "repeat_interleave", "tile", "narrow", "select", "index_select", "gather", "take_along_dim", "split",
    "split_with_sizes", "chunk", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit", "flip", "fliplr",
    "flipud", "roll", "rot90", "movedim", "moveaxis", "diagonal", "diag", "diag_embed", "tril", "triu", "trace",
    "sum", "mean", "cumsum", "__getitem__", "ravel", "atleast_1d", "atleast_2d", "atleast_3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "fold", "unfold", "identity", "cat", "concat", "concatenate", "stack", "hstack",
    "vstack", "dstack", "to", "float", "double", "half", "bfloat16", "type", "type_as", "cpu", "cuda",
    "__get__", "positive", "__pos__",
})
_PASS_THROUGH = frozenset({"detach", "detach_", "requires_grad_", "retain_grad"})


def _is_in_place(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return name in _IN_PLACE_DUNDERS or (name.endswith("_") and not name.startswith("__"))


def _generic(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A structural linear operation: applied to each stream, minus its value at zero streams if it adds
    constants (padding values, filled positions, ...)."""
    name = getattr(func, "__name__", "")
    tracked = [t for t in _tensors(args, kwargs) if t.requires_grad]
    if not tracked or name in _PASS_THROUGH:
        return func(*args, **kwargs)
    in_place = _is_in_place(func)
    target = args[0] if in_place else None
    d_args, d_kwargs = _substitute(args, kwargs, _detached)
    if in_place:
        func(target.detach(), *d_args[1:], **d_kwargs)
        value = None
    else:
        value = func(*d_args, **d_kwargs)
    if not isinstance(value, (torch.Tensor, list, tuple)) and not in_place:
        return value
    constants = name not in _HOMOGENEOUS or any(
        not t.requires_grad and t.is_floating_point() for t in _tensors(args, kwargs))
    parts = []
    for pick in (0, 1, None):
        def swap(t: torch.Tensor, pick: int | None = pick) -> torch.Tensor:
            if not t.requires_grad:
                return t
            if pick is None:
                return torch.zeros_like(t)
            return mode.streams(t)[pick]
        if pick is None and not constants:
            break
        s_args, s_kwargs = _substitute(args, kwargs, swap)
        if in_place:
            own = mode._zero_streams(target)
            own = own[pick] if pick is not None else torch.zeros_like(target)
            with torch.enable_grad():
                func(own, *s_args[1:], **s_kwargs)
            parts.append(own)
        else:
            with torch.enable_grad():
                parts.append(func(*s_args, **s_kwargs))
    if constants:
        offset = parts[2]
        parts = [_zip(lambda a, b: a - b.detach(), parts[0], offset), _zip(lambda a, b: a - b.detach(), parts[1],
                                                                            offset)]
    if in_place:
        out = mode.rebase(target, parts[0], parts[1])
        return None if name == "__setitem__" else out
    return _zip3(mode, value, parts[0], parts[1])


def _zip(fn: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return fn(a, b)
    return type(a)(fn(x, y) if isinstance(x, torch.Tensor) else x for x, y in zip(a, b, strict=True))


def _zip3(mode: RevealCancelRules, value: Any, p: Any, n: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return mode.finish(value, p, n) if value.is_floating_point() else value
    return type(value)(mode.finish(v, a, b) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                       for v, a, b in zip(value, p, n, strict=True))


def _coefficients(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, float]] | None:
    """(operand, coefficient) of an addition / subtraction / negation, or None for another function."""
    name = getattr(func, "__name__", "")
    alpha = kwargs.get("alpha", 1)
    if name in ("neg", "neg_", "negative", "__neg__"):
        return [(args[0], -1.0)]
    if len(args) < 2:
        return None
    a, b = args[0], args[1]
    if name in ("add", "add_", "__add__", "__iadd__", "__radd__"):
        return [(a, 1.0), (b, alpha)]
    if name in ("sub", "sub_", "subtract", "__sub__", "__isub__"):
        return [(a, 1.0), (b, -alpha)]
    if name == "rsub":
        return [(a, -alpha), (b, 1.0)]
    if name == "__rsub__":
        return [(a, -1.0), (b, 1.0)]
    return None


def _affine_sum(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    terms = _coefficients(func, args, kwargs)
    if terms is None or not any(_tracked(t) for t, _ in terms) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for _, c in terms):
        return _generic(mode, func, args, kwargs)
    in_place = _is_in_place(func)
    d_args, d_kwargs = _substitute(args, kwargs, _detached)
    value = func(*d_args, **d_kwargs)  # (in place: writes into the target's storage)
    p = n = None
    for operand, c in terms:
        if not _tracked(operand):
            continue
        tp, tn = mode.streams(operand)
        tp, tn = (tp, tn) if c >= 0 else (tn, tp)
        if c != 1:
            tp, tn = tp * c, tn * c
        p, n = (tp, tn) if p is None else (p + tp, n + tn)
    if in_place:
        target = args[0]
        shape = target.shape
        return mode.rebase(target, p.expand(shape).clone(), n.expand(shape).clone())
    return mode.finish(value, p, n)


def _dense(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """linear / conv / conv_transpose: the paper's linear rule on the sign-split total input difference."""
    x = args[0] if args else kwargs.get("input")
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if not any(_tracked(t) for t in (x, weight, bias)):
        return func(*args, **kwargs)
    if _tracked(weight) or _tracked(bias) or not _tracked(x):
        raise mode.unsupported(func, "an input-dependent weight or bias under rule='reveal_cancel'")
    value = func(x.detach(), *args[1:], **kwargs)
    rest = args[3:]
    kw = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    pos, neg = resplit(sum(mode.streams(x)))
    w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)

    def call(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return func(a, w, None, *rest, **kw)

    return mode.finish(value, call(pos, w_pos) + call(neg, w_neg), call(pos, w_neg) + call(neg, w_pos))


def _batch_norm(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else kwargs.get("input")
    if not _tracked(x):
        return func(*args, **kwargs)
    HANDLERS[func](mode, func, args, kwargs)  # raises for batch statistics (training)
    functional = getattr(func, "__module__", "") == "torch.nn.functional"
    names = (("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
             if functional else
             ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps"))
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    weight, var, eps = bound.get("weight"), bound.get("running_var"), bound.get("eps", 1e-5)
    if _tracked(weight) or var is None:
        raise mode.unsupported(func, "batch normalisation without running statistics or with an input-dependent "
                                     "weight")
    d_args, d_kwargs = _substitute(args, kwargs, _detached)
    value = func(*d_args, **d_kwargs)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    scale = scale.reshape(1, -1, *([1] * (x.ndim - 2))) if x.ndim > 1 else scale
    p, n = mode.streams(x)
    return mode.finish(value, *_signed_scale(p, n, scale, torch.mul))


def _product(in_place: bool, mode: RevealCancelRules, func: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
    """``a * b``, ``a @ b``: a constant factor scales (elementwise) or weighs (contractions) the streams; two
    input-dependent factors keep the bilinear rule on the total difference."""
    if len(args) != 2 or kwargs:
        return _generic(mode, func, args, kwargs) if func in LINEAR else HANDLERS[func](mode, func, args, kwargs)
    a, b = args
    if _tracked(a) and _tracked(b):
        out = _total_rule(mode, func, args, kwargs)
        if not in_place:
            return out
        with torch.no_grad():
            a.detach().copy_(out.detach())
        return mode.rebase(a, *mode.streams(out))
    if not (_tracked(a) or _tracked(b)):
        return func(*args, **kwargs)
    fn = _OUT_OF_PLACE_PRODUCT.get(func, func)
    value = fn(_detached(a), _detached(b))
    tracked_first = _tracked(a)
    x, c = (a, b) if tracked_first else (b, a)
    if getattr(func, "__name__", "") in _ELEMENTWISE_PRODUCTS or not isinstance(c, torch.Tensor) or c.ndim == 0:
        p, n = _signed_scale(*mode.streams(x), c, torch.mul)
    else:
        pos, neg = resplit(sum(mode.streams(x)))
        c_pos, c_neg = c.clamp(min=0), c.clamp(max=0)

        def call(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return fn(s, w) if tracked_first else fn(w, s)

        p, n = call(pos, c_pos) + call(neg, c_neg), call(pos, c_neg) + call(neg, c_pos)
    if in_place:
        with torch.no_grad():
            a.detach().copy_(value)
        return mode.rebase(a, p, n)
    return mode.finish(value, p, n)


_ELEMENTWISE_PRODUCTS = frozenset({"mul", "multiply", "__mul__", "__rmul__", "__imul__", "mul_"})


def _einsum(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    dependent = [i for i, t in enumerate(operands) if _tracked(t)]
    if not dependent:
        return func(*args, **kwargs)
    if len(dependent) > 1:
        return _total_rule(mode, func, args, kwargs)
    i = dependent[0]
    pos, neg = resplit(sum(mode.streams(operands[i])))

    def call(s: torch.Tensor, sign: int) -> torch.Tensor:
        ops = [s if j == i else (t.clamp(min=0) if sign > 0 else t.clamp(max=0)) for j, t in enumerate(operands)]
        return torch.einsum(equation, *ops)

    value = torch.einsum(equation, *[_detached(t) for t in operands])
    return mode.finish(value, call(pos, 1) + call(neg, -1), call(pos, -1) + call(neg, 1))


def _divide(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    other = args[1] if len(args) > 1 else kwargs.get("other")
    if _tracked(other):
        raise mode.unsupported(func, "a division by an input-dependent tensor")
    if not _tracked(x) or kwargs.get("rounding_mode") is not None:
        return func(*args, **kwargs)
    d_args, d_kwargs = _substitute(args, kwargs, _detached)
    in_place = _is_in_place(func)
    value = func(*d_args, **d_kwargs)
    p, n = _signed_scale(*mode.streams(x), other, torch.div)
    return mode.rebase(x, p, n) if in_place else mode.finish(value, p, n)


def _dropout(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    HANDLERS[func](mode, func, args, kwargs)  # raises in training mode; otherwise the identity
    return _generic(mode, func, args, kwargs)


def _elementwise(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    z = args[0]
    if not _tracked(z):
        return func(*args, **kwargs)
    spec = elementwise_spec(func, args, kwargs)
    in_place, rest, kw = spec.split(args, kwargs)
    fn = _bind(spec.fn, rest, kw)
    (z_ref,) = mode.replay(z, func)
    p, n = mode.streams(z)
    value = fn(z.detach())
    dy_p, dy_n = RevealCancelMultipliers.apply(p, n, z.detach(), z_ref, value, fn, spec.derivative)
    if in_place:
        with torch.no_grad():
            z.detach().copy_(value)
        return mode.rebase(z, dy_p, dy_n)
    return mode.finish(value, dy_p, dy_n)


def _total_rule(mode: RevealCancelRules, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A Rescale-family rule (max pooling, product, softmax, normaliser) on ``Δ+ + Δ-``; its output difference
    re-split by sign."""
    handler = HANDLERS[func]

    def total(t: torch.Tensor) -> torch.Tensor:
        if not t.requires_grad:
            return t
        s = sum(mode.streams(t))
        return t.detach() + (s - s.detach())

    t_args, t_kwargs = _substitute(args, kwargs, total)
    before = mode.cursor
    out = handler(mode, func, t_args, t_kwargs)
    if mode.cursor == before:  # the handler let it through (nothing input-dependent in its rule's sense)
        if _carries_grad(out):
            raise mode.unsupported(func)
        return out
    reference = mode.reference_output

    def split(y: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
        if not y.is_floating_point():
            return y
        return mode.finish(y.detach(), *resplit(y - y_ref))

    if isinstance(out, torch.Tensor):
        return split(out, reference)
    return type(out)(split(y, r) for y, r in zip(out, reference, strict=True))


def _build() -> dict[Any, Callable[..., Any]]:
    from functools import partial

    from . import deeplift_table as rescale

    table: dict[Any, Callable[..., Any]] = {}
    for func, handler in HANDLERS.items():
        inner = getattr(handler, "func", handler)
        if func in rescale.ELEMENTWISE:
            table[func] = _elementwise
        elif inner in (rescale._max_pool, rescale._path):
            table[func] = _total_rule
        elif inner is rescale._product:
            table[func] = partial(_product, handler.args[0])
        elif inner is rescale._einsum:
            table[func] = _einsum
        elif inner is rescale._divide:
            table[func] = _divide
        elif inner is rescale._batch_norm:
            table[func] = _batch_norm
        elif inner is rescale._dropout:
            table[func] = _dropout
        else:  # reverse division (raises for an input-dependent denominator), attention (decomposed)
            table[func] = handler
    for func in LINEAR:
        name = getattr(func, "__name__", "")
        if name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                    "conv_transpose3d"):
            table[func] = _dense
        elif name in ("add", "add_", "__add__", "__iadd__", "__radd__", "sub", "sub_", "subtract", "__sub__",
                      "__isub__", "rsub", "__rsub__", "neg", "neg_", "negative", "__neg__"):
            table[func] = _affine_sum
    return table


RC_HANDLERS = _build()

