"""LRP bound to the operations executed in the forward pass.

Two mechanisms, both independent of module instances (reused modules, functional calls, tensor methods and
in-place spellings are all covered):

1. :class:`RelevanceMode`, a ``TorchFunctionMode`` active during the forward pass, routes the operations
   whose relevance rule needs forward values to autograd functions with the LRP backward:

   - linear layers and convolutions (``F.linear``, ``F.conv1d/2d/3d``, ``x @ W`` with a constant ``W``):
     the composite's rule (:class:`~.functions.LayerRule`);
   - batch norm (eval): merged into the producing layer (:class:`~.canonizers.MergeBatchNorm`) or an
     elementwise affine layer with its own rule;
   - sums of two input-dependent tensors (``a + b``, ``torch.add``, ``a += b``, subtraction): split in
     proportion to the terms, ``R_a = a / (a + b) R`` (epsilon-stabilised) instead of the gradient's
     duplication (:class:`~.functions.ShareSum`);
   - average pooling, adaptive average pooling, ``mean``/``sum`` over axes and non-nearest interpolation
     (bilinear, ...): linear maps explained with the epsilon rule, ``R_in = a * M^T (R / (M a))``
     (:class:`~.functions.ShareLinear`): relevance proportional to the inputs, conserved;
   - ReLU (``F.relu``, ``torch.relu``, ``x.relu()`` and their in-place forms): the pass-through rule as its
     own backward (:class:`~.functions.ReluPass`), so no ReLU gradient is computed only to be discarded (an in-place
     ReLU on a view is left to autograd and the graph walk below).

2. After the forward pass, :func:`attach_graph_rules` walks the autograd graph from the explained outputs:
   elementwise activations (``ReluBackward0``, ``GeluBackward0``, ``TanhBackward0``, ...) get the
   pass-through rule (``R_in = R_out``) as a node hook; multiplication or division by a constant passes
   relevance through unchanged; operations whose gradient already conserves relevance (reshapes, views,
   slicing, concatenation, max pooling = winner takes all, nearest upsampling = sum of the copies, padding)
   keep it. Any other node raises :class:`~lumos.errors.UnsupportedModelError` naming the operation: no
   unchecked answer.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ....errors import UnsupportedModelError
from .functions import LayerRule as _LayerRule
from .functions import ReluPass as _ReluPass
from .functions import ShareLinear as _ShareLinear
from .functions import ShareSum as _ShareSum
from .rules import LayerOp, Rule

Resolver = Callable[[torch.Tensor, str, int, torch.Tensor], Rule]

OUR_NODES = (_LayerRule._backward_cls, _ShareSum._backward_cls, _ShareLinear._backward_cls,  # type: ignore[attr-defined]
             _ReluPass._backward_cls)  # type: ignore[attr-defined]

#: elementwise activations: relevance passes through unchanged
PASS_NODES = frozenset({
    "ReluBackward0", "GeluBackward0", "TanhBackward0", "SigmoidBackward0", "SiluBackward0", "EluBackward0",
    "CeluBackward0", "LeakyReluBackward0", "HardtanhBackward0", "SoftplusBackward0", "HardswishBackward0",
    "HardsigmoidBackward0", "MishBackward0", "ThresholdBackward0", "ClampBackward1", "ClampMinBackward0",
    "ClampMaxBackward0", "LogSigmoidBackward0", "PreluKernelBackward0", "RreluWithNoiseBackward0",
    "SoftshrinkBackward0", "HardshrinkBackward0",
})

#: scaling by a constant (or a sign flip): relevance passes through unchanged (summed over broadcast axes)
SCALE_NODES = frozenset({"MulBackward0", "MulBackward1", "DivBackward0", "DivBackward1", "NegBackward0",
                         "SubBackward0", "SubBackward1", "RsubBackward0", "RsubBackward1"})

#: operations whose gradient already conserves relevance (reshape, select, copy, winner-takes-all, ...)
CONSERVING_NODES = frozenset({
    "AccumulateGrad", "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "AliasBackward0",
    "PermuteBackward0", "TransposeBackward0", "TransposeBackward1", "TBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "SqueezeBackward2", "SqueezeBackward3", "UnsqueezeBackward0", "ExpandBackward0",
    "CloneBackward0", "CopyBackwards", "CopySlices", "ToCopyBackward0", "CatBackward0", "StackBackward0",
    "SplitBackward0", "SplitWithSizesBackward0", "UnbindBackward0", "SelectBackward0", "SliceBackward0",
    "IndexBackward0", "IndexSelectBackward0", "GatherBackward0", "RepeatBackward0", "FlipBackward0",
    "RollBackward0", "PixelShuffleBackward0", "PixelUnshuffleBackward0", "ConstantPadNdBackward0",
    "ReflectionPad1DBackward0", "ReflectionPad2DBackward0", "ReflectionPad3DBackward0",
    "ReplicationPad1DBackward0", "ReplicationPad2DBackward0", "ReplicationPad3DBackward0",
    "MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0", "AdaptiveMaxPool1DBackward0",
    "AdaptiveMaxPool2DBackward0", "AdaptiveMaxPool3DBackward0", "MaxBackward0", "MaxBackward1",
    "AmaxBackward0", "MaximumBackward0", "UpsampleNearest1DBackward0", "UpsampleNearest2DBackward0",
    "UpsampleNearest3DBackward0", "UpsampleNearestExact1DBackward0", "UpsampleNearestExact2DBackward0",
    "UpsampleNearestExact3DBackward0", "AddBackward0", "AddBackward1",
})

ALTERNATIVES = "integrated_gradients, gradient_shap, deeplift or occlusion"


def _pass(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    r = grad_outputs[0]
    return tuple(None if g is None else (r if i == 0 else torch.zeros_like(g)) for i, g in enumerate(grad_inputs))


def _scale_pass(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    r = grad_outputs[0]
    return tuple(None if g is None else (r if r.shape == g.shape else r.sum_to_size(g.shape)) for g in grad_inputs)


def _unsupported(node: Any, detail: str, owner: str) -> UnsupportedModelError:
    name = type(node).__name__
    op = name.split("Backward")[0].lower() or name
    return UnsupportedModelError(
        f"{owner}: the model uses {detail or op} (autograd node {name}), which has no LRP rule and does not "
        f"conserve relevance, so LRP cannot explain it. LRP supports linear layers, convolutions, batch norm, "
        f"elementwise activations, pooling, upsampling, reshaping, concatenation and sums of activations. "
        f"Use a method without propagation rules instead: {ALTERNATIVES}."
    )


def attach_graph_rules(roots: Sequence[torch.Tensor], owner: str) -> list[Any]:
    """Hook every node reachable from ``roots``; raise on nodes without a rule. Returns the hook handles."""
    handles: list[Any] = []
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen = set(stack)
    try:
        while stack:
            node = stack.pop()
            children = [c for c, _ in node.next_functions]
            if not isinstance(node, OUR_NODES):
                name = type(node).__name__
                if name in PASS_NODES:
                    handles.append(node.register_hook(_pass))
                elif name in SCALE_NODES:
                    live = sum(c is not None for c in children)
                    if name.startswith("Mul") and live > 1:
                        raise _unsupported(node, "a multiplication of two input-dependent tensors", owner)
                    if name == "DivBackward0" and len(children) > 1 and children[1] is not None:
                        raise _unsupported(node, "a division by an input-dependent tensor", owner)
                    if name == "SubBackward0" and live > 1:
                        raise _unsupported(node, "a subtraction outside the forward pass", owner)
                    handles.append(node.register_hook(_scale_pass))
                elif name not in CONSERVING_NODES:
                    raise _unsupported(node, "", owner)
                elif name == "AddBackward0" and sum(c is not None for c in children) > 1:
                    raise _unsupported(node, "a sum of two input-dependent tensors outside the forward pass", owner)
            for child in children:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append(child)
    except BaseException:
        for handle in handles:
            handle.remove()
        raise
    return handles


def is_first_layer(a: torch.Tensor) -> bool:
    """Whether no LRP layer lies between the inputs and ``a`` (``a`` feeds a first layer)."""
    node = a.grad_fn
    if node is None:
        return True
    stack, seen = [node], {node}
    layer_node = _LayerRule._backward_cls  # type: ignore[attr-defined]
    while stack:
        node = stack.pop()
        if isinstance(node, layer_node):
            return False
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return True


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...], defaults: tuple[Any, ...]
          ) -> list[Any]:
    return list(args) + [kwargs.get(n, d) for n, d in zip(names[len(args):], defaults[len(args):], strict=True)]


def _live(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


@dataclasses.dataclass
class _Produced:
    out: torch.Tensor
    a: torch.Tensor
    op: LayerOp
    rule: Rule
    version: int


class RelevanceMode(TorchFunctionMode):
    """Forward-pass routing of LRP operations (see the module docstring).

    Args:
        resolve: ``resolve(weight, kind, n_dims, a) -> Rule`` picks the rule of a linear operation.
        epsilon: stabiliser of sums, pooling and interpolation.
        merge_batch_norm: fuse eval batch norms into the layer that produced their input.
    """

    def __init__(self, resolve: Resolver, *, epsilon: float, merge_batch_norm: bool) -> None:
        super().__init__()
        self.resolve = resolve
        self.epsilon = epsilon
        self.merge = merge_batch_norm
        self.produced: dict[int, _Produced] = {}
        self.routes = _routes()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch protocol
        kwargs = kwargs or {}
        route = self.routes.get(func)
        if route is not None and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            handler, options = route
            return handler(self, func, args, kwargs, *options)
        return func(*args, **kwargs)

    # ------------------------------------------------------------------ linear layers
    def _layer(self, a: torch.Tensor, op: LayerOp, key: torch.Tensor, compute: Callable[..., torch.Tensor]
               ) -> torch.Tensor:
        rule = self.resolve(key, op.kind, op.n_dims, a)
        out = _LayerRule.apply(a, op, rule, compute)
        self.produced[id(out)] = _Produced(out, a, op, rule, out._version)
        return out

    def _linear(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        a, weight, bias = _bind(args, kwargs, ("input", "weight", "bias"), (None, None, None))
        if not _live(a) or _live(weight) or _live(bias):
            return func(*args, **kwargs)
        return self._layer(a, LayerOp("linear", weight, bias), weight, lambda t: func(t, weight, bias))

    def _matmul(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        a, w = _bind(args, kwargs, ("input", "other"), (None, None))
        if not _live(a) or not isinstance(w, torch.Tensor) or w.requires_grad or w.ndim != 2:
            return func(*args, **kwargs)
        return self._layer(a, LayerOp("linear", w.t()), w, lambda t: func(t, w))

    def _conv(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], n_dims: int) -> Any:
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        a, weight, bias, stride, padding, dilation, groups = _bind(args, kwargs, names, (None, None, None, 1, 0, 1, 1))
        if not _live(a) or _live(weight) or _live(bias):
            return func(*args, **kwargs)
        op = LayerOp("conv", weight, bias, stride, padding, dilation, groups, n_dims)
        return self._layer(a, op, weight, lambda t: func(t, weight, bias, stride, padding, dilation, groups))

    def _batch_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
        x, mean, var, weight, bias, training, momentum, eps = _bind(
            args, kwargs, names, (None, None, None, None, None, False, 0.1, 1e-5))
        if not _live(x) or training or mean is None or var is None or _live(weight) or _live(bias):
            return func(*args, **kwargs)
        scale = torch.rsqrt(var + eps)
        if weight is not None:
            scale = scale * weight
        shift = -mean * scale if bias is None else bias - mean * scale

        def compute(t: torch.Tensor) -> torch.Tensor:
            return func(t, mean, var, weight, bias, False, momentum, eps)

        producer = self.produced.get(id(x)) if self.merge else None
        if (producer is not None and producer.out is x and x._version == producer.version
                and (producer.op.kind == "conv" or (producer.op.kind == "linear" and x.ndim == 2))):
            op = producer.op
            w = op.weight * scale.reshape((-1,) + (1,) * (op.weight.ndim - 1))
            b = shift if op.bias is None else op.bias * scale + shift
            merged = dataclasses.replace(op, weight=w, bias=b)
            z = x.detach()
            out = _LayerRule.apply(producer.a, merged, producer.rule, lambda _t: compute(z))
            self.produced[id(out)] = _Produced(out, producer.a, merged, producer.rule, out._version)
            return out
        key = weight if weight is not None else mean
        return self._layer(x, LayerOp("affine", scale, shift), key, compute)

    # ------------------------------------------------------------------ activations
    def _relu(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], inplace: bool) -> Any:
        a = args[0] if args else kwargs.get("input")
        in_place = inplace or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        # in place on a leaf or a view: left to autograd's ReluBackward0 (pass-through by the graph walk)
        if not _live(a) or (in_place and (a.is_leaf or a._base is not None)):
            return func(*args, **kwargs)
        return _ReluPass.apply(a, in_place)

    # ------------------------------------------------------------------ sums and linear maps
    def _sum(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], sign: float, swap: bool,
             inplace: bool) -> Any:
        a, b = _bind(args, kwargs, ("input", "other"), (None, None))[:2]
        if not (_live(a) and _live(b)):
            return func(*args, **kwargs)
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        first, second = (b, a) if swap else (a, b)
        factor = sign * alpha
        term = second if factor == 1 else second * factor
        out = _ShareSum.apply(first, term, self.epsilon)
        if inplace:
            a.copy_(out)
            return a
        return out

    def _share_linear(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        a = args[0] if args else kwargs.get("input")
        if not _live(a):
            return func(*args, **kwargs)
        if func is F.interpolate:
            mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
            if mode in ("nearest", "nearest-exact"):  # copies: the gradient sums them, which conserves
                return func(*args, **kwargs)
        rest = args[1:]
        extra = {k: v for k, v in kwargs.items() if k != "input"}
        return _ShareLinear.apply(a, lambda t: func(t, *rest, **extra), self.epsilon)


@functools.lru_cache(maxsize=1)
def _routes() -> dict[Any, tuple[Callable[..., Any], tuple[Any, ...]]]:
    """torch function -> (RelevanceMode handler, its extra arguments); built once."""
    mode = RelevanceMode
    table: dict[Any, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        F.linear: (mode._linear, ()), F.batch_norm: (mode._batch_norm, ()),
        torch.matmul: (mode._matmul, ()), torch.Tensor.__matmul__: (mode._matmul, ()),
    }
    for n, fn in ((1, torch.conv1d), (2, torch.conv2d), (3, torch.conv3d)):
        table[fn] = (mode._conv, (n,))
    sums = (((torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__), (1.0, False, False)),
            ((torch.Tensor.__iadd__, torch.Tensor.add_), (1.0, False, True)),
            ((torch.sub, torch.subtract, torch.Tensor.sub, torch.Tensor.__sub__), (-1.0, False, False)),
            ((torch.Tensor.__isub__, torch.Tensor.sub_), (-1.0, False, True)),
            ((torch.Tensor.__rsub__,), (-1.0, True, False)))
    for fns, options in sums:
        for fn in fns:
            table[fn] = (mode._sum, options)
    for fn in (F.relu, torch.relu, torch.Tensor.relu):
        table[fn] = (mode._relu, (False,))
    for fn in (F.relu_, torch.relu_, torch.Tensor.relu_):
        table[fn] = (mode._relu, (True,))
    for fn in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
               F.adaptive_avg_pool3d, torch.mean, torch.Tensor.mean, torch.sum, torch.Tensor.sum, F.interpolate):
        table[fn] = (mode._share_linear, ())
    return table
