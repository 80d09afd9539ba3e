"""LRP rules: how one linear layer redistributes the relevance of its outputs onto its inputs.

Every rule here is one small class with one method, :meth:`Rule.relevance`. For a layer ``z = W a + b``
(a linear layer, an N-d convolution, or a per-channel affine map such as an unmerged batch norm), a rule
chooses a modified weight ``rho(W)`` (and input, bias) and redistributes the incoming relevance ``R_out``
proportionally to the modified contributions:

    R_in = a * rho(W)^T (R_out / (rho(W) a + rho(b) + stabiliser))

(Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
Propagation", PLoS ONE; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview", in
Explainable AI, LNCS 11700). Every rule is linear in ``R_out``. The transposed product ``rho(W)^T s`` is
one direct transposed operation (``s @ W`` for a linear layer, the input-gradient convolution for a
convolution), never a loop over samples.

Rules: :class:`Epsilon`, :class:`Gamma`, :class:`AlphaBeta` (and :class:`ZPlus` = alpha1-beta0),
:class:`ZBox` (z^B, box-bounded input layer), :class:`Flat`, :class:`WSquare`; :class:`Pass` is the rule of
elementwise activations (relevance passes through unchanged).

Example::

    from lumos.methods.propagation.lrp import LRP, Gamma, Epsilon
    LRP(model, composite={nn.Conv2d: Gamma(0.25), "classifier.3": Epsilon(1e-6)}).explain(x, target=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ....errors import ValidationError

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def stabilise(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = 1``: the denominator never crosses or touches zero."""
    return z.abs().add_(epsilon).copysign_(z)


def ratio(r: torch.Tensor, z: torch.Tensor, epsilon: float, *, owned: bool = False, positive: bool = False
          ) -> torch.Tensor:
    """``r / stabilise(z)``. ``owned``: ``z`` is a fresh tensor that may be overwritten; ``positive``: z >= 0."""
    if positive and owned and z.shape == r.shape:
        return torch.div(r, z.add_(epsilon), out=z)
    den = z + epsilon if positive else stabilise(z, epsilon)
    return torch.div(r, den, out=den) if den.shape == r.shape else r / den


#: autograd nodes whose output is >= 0, and nodes that keep their (single) input's sign
_NONNEGATIVE_NODES = frozenset({"ReluBackward0", "ReluPassBackward", "SigmoidBackward0", "SoftplusBackward0", "HardsigmoidBackward0"})
_SIGN_KEEPING_NODES = frozenset({
    "MaxPool1DWithIndicesBackward0", "MaxPool2DWithIndicesBackward0", "MaxPool3DWithIndicesBackward0",
    "AdaptiveMaxPool2DBackward0", "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "CloneBackward0",
    "PermuteBackward0", "TransposeBackward0", "SliceBackward0", "SelectBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "UnsqueezeBackward0", "ExpandBackward0", "UpsampleNearest2DBackward0",
})


def nonnegative(a: torch.Tensor) -> bool:
    """Whether ``a >= 0``: read off the graph where a ReLU (through pooling / reshapes) produced it, else checked."""
    node = getattr(a, "grad_fn", None)
    while node is not None:
        name = type(node).__name__
        if name in _NONNEGATIVE_NODES:
            return True
        if name not in _SIGN_KEEPING_NODES:
            break
        node = node.next_functions[0][0]
    return bool(a.min() >= 0)


def _one(a: torch.Tensor) -> torch.Tensor:
    """A batch of one sample of ones shaped like ``a``'s samples (for input-independent rules)."""
    return torch.ones((1, *a.shape[1:]), dtype=a.dtype, device=a.device)


@dataclass
class LayerOp:
    """One executed linear operation ``z = W a + b``: its kind, weight, bias and (for convolutions) geometry.

    ``kind`` is ``"linear"`` (``F.linear``: features on the last axis), ``"conv"`` (N-d convolution,
    ``n_dims`` spatial axes) or ``"affine"`` (per-channel scale and shift on axis 1, e.g. batch norm).
    """

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    n_dims: int = 0

    def forward(self, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``weight a + bias`` with this operation's geometry."""
        if self.kind == "linear":
            return F.linear(a, weight, bias)
        if self.kind == "conv":
            return _CONV[self.n_dims](a, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        shape = (1, -1) + (1,) * (a.ndim - 2)
        z = a * weight.reshape(shape)
        return z if bias is None else z + bias.reshape(shape)

    def add_bias(self, z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``z + bias`` with the bias on this operation's feature axis (last for linear, 1 otherwise)."""
        if self.kind == "linear":
            return z + bias
        return z + bias.reshape((1, -1) + (1,) * (z.ndim - 2))

    def transpose(self, s: torch.Tensor, weight: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``weight^T s``: the input-space image of ``s`` (an output-shaped tensor); ``a`` gives the input shape."""
        if self.kind == "linear":
            return torch.matmul(s, weight)
        if self.kind == "affine":
            return s * weight.reshape((1, -1) + (1,) * (s.ndim - 2))
        if isinstance(self.padding, str):  # "same"/"valid": let autograd find the implicit padding
            with torch.enable_grad():
                leaf = torch.zeros_like(a).requires_grad_(True)
                (out,) = torch.autograd.grad(self.forward(leaf, weight), leaf, s)
            return out
        d = self.n_dims
        return torch.ops.aten.convolution_backward(
            s, a, weight, None, _tuple(self.stride, d), _tuple(self.padding, d), _tuple(self.dilation, d),
            False, [0] * d, self.groups, [True, False, False],
        )[0]


def _tuple(value: Any, n: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    values = list(value)
    return values * n if len(values) == 1 else values


def _check_number(owner: str, name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValidationError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


class Rule:
    """Base class of LRP rules for linear layers (see the module docstring for the general formula).

    ``uses_output``: whether :meth:`relevance` reads the layer's actual output ``z`` (its values, not only
    its shape); when the model changed that output in place (``relu_``), it is recomputed only for such rules.
    A rule with ``uses_output = False`` receives a shape-only ``z`` (a tensor on the ``meta`` device): the
    layer's output is not kept alive for it.
    """

    uses_output: bool = True

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Input relevance of ``op`` for input ``a``, actual output ``z`` and output relevance ``r``."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()


class Epsilon(Rule):
    """LRP-epsilon: ``R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) R_k`` with ``z_k = sum_j a_j w_jk + b_k``.

    ``epsilon -> 0`` is LRP-0 (gradient x input on a linear model); a larger epsilon absorbs weak or
    contradictory relevance. Bach et al. 2015; Montavon et al. 2019, section 10.2.2.

    Example: ``Epsilon(1e-6)``.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _check_number("Epsilon", "epsilon", epsilon)

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return op.transpose(ratio(r, z, self.epsilon), op.weight, a).mul_(a)

    def describe(self) -> str:
        return f"Epsilon({self.epsilon:g})"


class Gamma(Rule):
    """LRP-gamma: favour positive contributions, ``rho(w) = w + gamma w^+`` (bias likewise).

    ``R_j = sum_k a_j rho(w_jk) / (sum_j a_j rho(w_jk) + rho(b_k)) R_k``. Montavon et al. 2019, section 10.2.3.

    Example: ``Gamma(0.25)``.
    """

    uses_output = False

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6) -> None:
        self.gamma = _check_number("Gamma", "gamma", gamma)
        self.epsilon = _check_number("Gamma", "epsilon", epsilon)

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        weight = op.weight + self.gamma * op.weight.clamp(min=0)
        bias = None if op.bias is None else op.bias + self.gamma * op.bias.clamp(min=0)
        z_rho = op.forward(a, weight, bias)
        return op.transpose(ratio(r, z_rho, self.epsilon, owned=True), weight, a).mul_(a)

    def describe(self) -> str:
        return f"Gamma({self.gamma:g})"


class AlphaBeta(Rule):
    """LRP-alpha-beta: positive and negative contributions ``(a_j w_jk)^+-`` redistributed separately.

    ``R_j = sum_k (alpha (a_j w_jk)^+ / sum_j (a_j w_jk)^+ - beta (a_j w_jk)^- / sum_j (a_j w_jk)^-) R_k``,
    with ``alpha - beta = 1``; the sums over ``j`` include the bias's positive (negative) part, which absorbs
    relevance (bias-free layers conserve it). Bach et al. 2015; Montavon et al. 2019.
    Inputs of either sign are handled: ``(a w)^+ = a^+ w^+ + a^- w^-``.

    Example: ``AlphaBeta(2, 1)``.
    """

    uses_output = False

    def __init__(self, alpha: float = 1.0, beta: float = 0.0) -> None:
        owner = type(self).__name__
        self.alpha = _check_number(owner, "alpha", alpha, minimum=1.0)
        self.beta = _check_number(owner, "beta", beta)
        if abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValidationError(f"{owner}: alpha - beta must be 1 (conservation), got alpha={alpha!r}, beta={beta!r}")
        self.epsilon = 1e-12

    def _share(self, op: LayerOp, parts: list[tuple[torch.Tensor, torch.Tensor]], bias: torch.Tensor | None,
               r: torch.Tensor, like: torch.Tensor, positive: bool) -> torch.Tensor:
        """``sum_p a_p * W_p^T (r / (sum_p W_p a_p + bias))`` for pairs (a_p, W_p) of inputs and weights."""
        z = op.forward(parts[0][0], parts[0][1], bias)
        for a, w in parts[1:]:
            z = z + op.forward(a, w)
        s = ratio(r, z, self.epsilon, owned=True, positive=positive)
        out = op.transpose(s, parts[0][1], like).mul_(parts[0][0])
        for a, w in parts[1:]:
            out = out.addcmul_(a, op.transpose(s, w, like))
        return out

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        w_pos = op.weight.clamp(min=0)
        w_neg = op.weight.clamp(max=0) if self.beta or not nonnegative(a) else None
        if w_neg is None or nonnegative(a):  # after a ReLU: no a^- terms
            positive, negative = [(a, w_pos)], [(a, w_neg)]
        else:
            a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)
            positive, negative = [(a_pos, w_pos), (a_neg, w_neg)], [(a_pos, w_neg), (a_neg, w_pos)]
        b = op.bias
        out = self._share(op, positive, None if b is None else b.clamp(min=0), r, a, True)
        if self.alpha != 1.0:
            out = out.mul_(self.alpha)
        if self.beta:
            negative_part = self._share(op, negative, None if b is None else b.clamp(max=0), r, a, False)
            out = out.sub_(negative_part, alpha=self.beta)
        return out

    def describe(self) -> str:
        return f"AlphaBeta({self.alpha:g}, {self.beta:g})"


class ZPlus(AlphaBeta):
    """LRP-z+: only positive contributions, ``R_j = sum_k (a_j w_jk)^+ / sum_j (a_j w_jk)^+ R_k``.

    The same as ``AlphaBeta(1, 0)`` (the denominator includes ``b^+``); for non-negative inputs (after a ReLU)
    ``(a w)^+ = a w^+``.
    Montavon et al. 2019, section 10.2.4.
    """

    def __init__(self) -> None:
        super().__init__(1.0, 0.0)

    def describe(self) -> str:
        return "ZPlus()"


class ZBox(Rule):
    """LRP-z^B for an input layer whose inputs lie in a box ``low <= x <= high``.

    ``R_j = sum_k (x_j w_jk - l_j w_jk^+ - h_j w_jk^-) / sum_j (x_j w_jk - l_j w_jk^+ - h_j w_jk^-) R_k``
    (biases left out). Montavon et al. 2017, "Explaining NonLinear Classification Decisions with Deep Taylor
    Decomposition", Pattern Recognition 65; Montavon et al. 2019, section 10.3.

    Args:
        low, high: bounds of the input domain: numbers, or tensors broadcastable to one sample's shape
            (e.g. per-channel bounds of shape (C, 1, 1) for normalised images).

    Example: ``ZBox(low=0.0, high=1.0)``.
    """

    uses_output = False

    def __init__(self, low: Any, high: Any, epsilon: float = 1e-6) -> None:
        self.low, self.high = _as_bound("low", low), _as_bound("high", high)
        self.epsilon = _check_number("ZBox", "epsilon", epsilon)
        if self.low.shape == self.high.shape and bool((self.low > self.high).any()):
            raise ValidationError(f"ZBox: low must be <= high everywhere, got low={low!r}, high={high!r}")

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        one = _one(a)
        low, high = self.low.to(a.device, a.dtype) * one, self.high.to(a.device, a.dtype) * one
        w_pos, w_neg = op.weight.clamp(min=0), op.weight.clamp(max=0)
        z_box = op.forward(a, op.weight).sub_(op.forward(low, w_pos)).sub_(op.forward(high, w_neg))
        s = ratio(r, z_box, self.epsilon, owned=True)
        out = op.transpose(s, op.weight, a).mul_(a)
        out = out.sub_(op.transpose(s, w_pos, a).mul_(low))
        return out.sub_(op.transpose(s, w_neg, a).mul_(high))

    def describe(self) -> str:
        return "ZBox(low, high)"


def _as_bound(name: str, value: Any) -> torch.Tensor:
    try:
        bound = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValidationError(f"ZBox: {name} must be a number or a tensor, got {value!r}") from exc
    if not bool(torch.isfinite(bound).all()):
        raise ValidationError(f"ZBox: {name} must be finite, got {value!r}")
    return bound


class Flat(Rule):
    """LRP-flat: every input in an output's receptive field gets an equal share, ``w = 1, a = 1``.

    ``R_j = sum_k 1 / (sum_j' 1) R_k`` (the sum over the inputs connected to ``k``). Lapuschkin et al. 2019,
    "Unmasking Clever Hans Predictors", Nature Communications.
    """

    uses_output = False

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        if op.kind == "linear":  # every input feeds every output: R_j = sum_k R_k / n_in
            return (r.sum(-1, keepdim=True) / a.shape[-1]).expand(a.shape).contiguous()
        if op.kind == "affine":  # one input per output
            return r.clone()
        if isinstance(op.padding, str):
            ones_w = torch.ones_like(op.weight)
            count = op.forward(_one(a), ones_w).clamp_min_(1e-12)  # inputs connected to each output (> 0)
            return op.transpose(r / count, ones_w, a)
        return _flat_conv(op, a, r)


def _flat_conv(op: LayerOp, a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The flat rule of a convolution at the cost of a one-channel convolution per (sample, group).

    With all weights 1, ``count`` (inputs connected to an output) and ``W^T s`` do not depend on the output
    channel nor on the input channel within a group: sum ``R / count`` over each group's output channels,
    spread it with a kernel of ones (one depthwise channel per sample and group: far cheaper than a
    one-channel batch), and copy it to the group's input channels.
    """
    groups, d, n = op.groups, op.n_dims, a.shape[0]
    out_channels, in_per_group = op.weight.shape[:2]
    kernel = op.weight.shape[2:]
    geometry = (_tuple(op.stride, d), _tuple(op.padding, d), _tuple(op.dilation, d))
    probe = torch.ones((1, groups, *a.shape[2:]), dtype=r.dtype, device=r.device)
    ones_w = torch.ones((groups, 1, *kernel), dtype=r.dtype, device=r.device)
    count = _CONV[d](probe, ones_w, None, *geometry, groups).mul_(in_per_group).clamp_min_(1e-12)  # > 0
    per_group = r.reshape(n, groups, out_channels // groups, *r.shape[2:]).sum(2).div_(count)
    channels = n * groups  # every (sample, group) its own depthwise channel
    image = torch.ops.aten.convolution_backward(
        per_group.reshape(1, channels, *r.shape[2:]), per_group.new_empty(1).expand(1, channels, *a.shape[2:]),
        torch.ones((channels, 1, *kernel), dtype=r.dtype, device=r.device), None, *geometry, False, [0] * d,
        channels, [True, False, False],
    )[0].reshape(n, groups, *a.shape[2:])
    if groups == 1:
        return image.expand(a.shape).contiguous()
    return image.repeat_interleave(in_per_group, dim=1)


class WSquare(Rule):
    """LRP-w^2: ``R_j = sum_k w_jk^2 / sum_j' w_j'k^2 R_k`` (independent of the input).

    Montavon et al. 2017, "Explaining NonLinear Classification Decisions with Deep Taylor Decomposition".
    """

    uses_output = False

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        w2 = op.weight * op.weight
        z_w = op.forward(_one(a), w2)
        return op.transpose(ratio(r, z_w, 1e-12, positive=True), w2, a)


class Pass(Rule):
    """Pass-through: relevance goes through unchanged, ``R_in = R_out``.

    The rule of every elementwise activation (ReLU, GELU, tanh, sigmoid, SiLU, ...), whatever its spelling;
    LRP applies it automatically, it is never needed in a composite. Montavon et al. 2019, section 10.1.
    """

    uses_output = False

    def relevance(self, op: LayerOp, a: torch.Tensor, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        if z.shape != a.shape:
            raise ValidationError("Pass: only for shape-preserving operations (elementwise activations)")
        return r
