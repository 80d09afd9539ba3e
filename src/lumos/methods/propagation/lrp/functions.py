"""LRP's autograd Functions: the forward operation unchanged, the backward pass a relevance rule.

:class:`LayerRule` (linear layers, convolutions, batch norm: the composite's rule), :class:`ShareSum`
(``a + b`` split in proportion to the terms), :class:`ShareLinear` (pooling, means, interpolation: the
epsilon rule of a linear map) and :class:`ReluPass` (ReLU: relevance passes unchanged). The
:class:`~.graph.RelevanceMode` routes the model's operations to them during the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .rules import LayerOp, Rule, stabilise


class LayerRule(torch.autograd.Function):
    """Output ``compute(a)``; backward: the layer rule's input relevance."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, op: LayerOp, rule: Rule, compute: Callable[..., torch.Tensor]
                ) -> torch.Tensor:
        z = compute(a)
        ctx.save_for_backward(a)
        if rule.uses_output:
            ctx.z = z.detach()  # shares the version counter: an in-place change of the output is detected
            ctx.version = ctx.z._version
        else:  # the rule reads only the output's shape: the output itself is not kept alive
            ctx.z = torch.empty(z.shape, dtype=z.dtype, device="meta")
            ctx.version = None
        ctx.op, ctx.rule = op, rule
        return z

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        (a,) = ctx.saved_tensors
        op = ctx.op
        z = ctx.z  # changed in place since (relu_)? recomputed for the rules that read it
        if ctx.version is not None and z._version != ctx.version:
            z = op.forward(a, op.weight, op.bias)
        return ctx.rule.relevance(op, a, z, r), None, None, None


class ShareSum(torch.autograd.Function):
    """``a + b``; backward: ``R_a = a / (a + b) R``, ``R_b = b / (a + b) R`` (epsilon-stabilised)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, epsilon: float) -> torch.Tensor:
        z = a + b
        denominator = stabilise(z, epsilon)
        # fresh tensors (later in-place ops on a, b or z cannot touch them); b's share reuses the buffer
        ctx.fractions = (a / denominator, torch.div(b, denominator, out=denominator))
        ctx.shapes = (a.shape, b.shape)
        return z

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        if ctx.fractions is None:
            raise RuntimeError("lumos LRP: a relevance pass runs once through the graph")
        (fa, fb), (sa, sb) = ctx.fractions, ctx.shapes
        ctx.fractions = None  # the shares become the relevances, in place (LRP's backward runs once)
        ra = fa.mul_(r) if fa.shape == r.shape else fa * r
        rb = fb.mul_(r) if fb.shape == r.shape else fb * r
        return ra.sum_to_size(sa), rb.sum_to_size(sb), None


class ShareLinear(torch.autograd.Function):
    """A linear map ``z = M a`` (pooling, mean, interpolation); backward: ``R_in = a * M^T (R / z)``."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], epsilon: float
                ) -> torch.Tensor:
        z = fn(a)
        ctx.save_for_backward(a)
        ctx.z = z.detach()
        ctx.version = ctx.z._version
        ctx.fn, ctx.epsilon = fn, epsilon
        return z

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        (a,) = ctx.saved_tensors
        z = ctx.z if ctx.z._version == ctx.version else ctx.fn(a)
        s = r / stabilise(z, ctx.epsilon)
        with torch.enable_grad():
            leaf = a.detach().requires_grad_(True)
            (image,) = torch.autograd.grad(ctx.fn(leaf), leaf, s)
        return a * image, None, None


class ReluPass(torch.autograd.Function):
    """``relu(a)`` (in place when asked); backward: the pass-through rule, ``R_in = R_out``.

    The same rule the graph walk gives a ``ReluBackward0`` node, without first computing the gradient it
    would then discard. Named so that :func:`~.rules.nonnegative` reads its output as ``>= 0``.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(a)
            return torch.relu_(a)
        return torch.relu(a)

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        return r, None
