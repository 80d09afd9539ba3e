"""Modified backward passes bound to the operations recorded in the autograd graph.

After a forward pass, the autograd graph holds one node per operation that was actually executed, whatever
spelling produced it: every ReLU (an ``nn.ReLU`` module reused three times, ``F.relu``, ``torch.relu``,
``x.relu()``, in place or not) is a ``ReluBackward0`` node. :class:`BackwardRules` walks that graph from the
score and attaches a hook to each node whose type has a rule; the hook replaces the gradient the node passes
to its inputs. Nothing is registered on the model: the hooks live on the graph, which is freed with the
pass, and they are removed explicitly after it anyway.

Compared with intercepting every torch function in the forward pass (``core.op_override``), this costs
nothing per operation in the forward pass and one Python call per rewritten node in the backward pass.

A rule is ``rule(grad_inputs, grad_outputs) -> grad_inputs`` (tuples, as for
``torch.autograd.graph.Node.register_hook``); ``grad_inputs`` are the gradients the node computed natively.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..errors import LumosWarning

NodeRule = Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]


class BackwardRules:
    """Rewrite the backward pass of graph nodes by node type name (e.g. ``"ReluBackward0"``).

    Use as ``with rules.attached(score): torch.autograd.grad(score, leaves)``.
    """

    def __init__(self, rules: Mapping[str, NodeRule], *, when_none_match: str | None = None) -> None:
        self.rules = dict(rules)
        #: warning issued when a backward pass holds no node with a rule (the result is the plain gradient)
        self.when_none_match = when_none_match

    def attach(self, output: torch.Tensor) -> list[Any]:
        """Hook every node reachable from ``output.grad_fn`` that has a rule; return the hook handles."""
        handles: list[Any] = []
        root = output.grad_fn
        if root is None:
            return handles
        seen = {root}
        stack = [root]
        rules = self.rules
        while stack:
            node = stack.pop()
            rule = rules.get(type(node).__name__)
            if rule is not None:
                handles.append(node.register_hook(rule))
            for child, _ in node.next_functions:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append(child)
        return handles

    def grad(self, output: torch.Tensor, leaves: tuple[torch.Tensor, ...], **kwargs: Any
             ) -> tuple[torch.Tensor | None, ...]:
        """``torch.autograd.grad(output, leaves)`` with the rules applied; hooks removed afterwards."""
        handles = self.attach(output)
        if not handles and self.when_none_match is not None:
            warnings.warn(self.when_none_match, LumosWarning, stacklevel=2)
        try:
            return torch.autograd.grad(output, leaves, **kwargs)
        finally:
            for handle in handles:
                handle.remove()


def _guided_relu(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    # native ReLU backward gave g * 1[x > 0] in a fresh tensor owned by this node: clamping it in place
    # (no new allocation) keeps g+ * 1[x > 0]
    (grad,) = grad_inputs
    return (None if grad is None else grad.clamp_(min=0),)


def _deconv_relu(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    # the positive part of the incoming gradient, whatever the input was. The incoming gradient may be
    # shared with other branches (never modify it); the node's own fresh result is reused as the buffer.
    (incoming,) = grad_outputs
    (own,) = grad_inputs
    if incoming is None:
        return (None,)
    if own is None or own.shape != incoming.shape or own.dtype != incoming.dtype:
        return (incoming.clamp(min=0),)
    return (torch.clamp(incoming, min=0, out=own),)


#: the graph nodes of rectifiers: ReLU (every spelling), ReLU6 / hardtanh, threshold, clamp
RECTIFIER_NODES = ("ReluBackward0", "HardtanhBackward0", "ThresholdBackward0", "ClampBackward1",
                   "ClampMinBackward0")
_NO_RECTIFIER = ("{method}: the model executed no rectifier (ReLU, ReLU6 / hardtanh, threshold or clamp), so the "
                 "result is the plain gradient (saliency); {method} is defined for rectifier networks")

GUIDED_RELU = BackwardRules({name: _guided_relu for name in RECTIFIER_NODES},
                            when_none_match=_NO_RECTIFIER.format(method="guided backprop"))
"""Guided backpropagation: every rectifier passes back ``max(g, 0)`` where its input was in its linear range
(``1[x > 0]`` for a ReLU, ``1[0 < x < 6]`` for ReLU6): the native gradient, clamped at 0."""

DECONV_RELU = BackwardRules({name: _deconv_relu for name in RECTIFIER_NODES},
                            when_none_match=_NO_RECTIFIER.format(method="deconvolution"))
"""Deconvolution: every rectifier passes back ``max(g, 0)``, whatever its input."""
