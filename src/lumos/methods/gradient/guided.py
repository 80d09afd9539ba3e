"""Guided backpropagation and deconvolution: gradients with a modified backward pass through ReLUs.

The modified ReLU is bound to the operation executed in the forward pass (``nn.ReLU`` modules, reused
or not, ``F.relu``, ``torch.relu`` and ``x.relu()``, in place or not), never to module instances.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch

from ...core.op_override import OperationOverride, relu_table
from ...core.registry import register
from ..base import Attribution, ExplainContext, Explainer


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients at positive inputs: ``g+ * 1[x > 0]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        # ReLU's own backward (one fused kernel: g * 1[y > 0]) applied to the positive part of g
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), y, 0)


class _DeconvReLU(torch.autograd.Function):
    """ReLU whose backward applies ReLU to the incoming gradient, ignoring the input: ``g+``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


class _ModifiedReLUGradient(Explainer):
    """Gradient at the input with every ReLU's backward replaced by ``_relu.apply``'s."""

    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    _relu: ClassVar[type[torch.autograd.Function]]

    def _attribute(self, context: ExplainContext) -> Attribution:
        override = functools.partial(OperationOverride, relu_table(self._relu.apply))
        engine = self._engine(context, override=override)
        _, grads, scores = engine.at_inputs()
        return Attribution(grads, scores, {"n_evaluations": engine.n_evaluations}, engine.target)


@register
class GuidedBackprop(_ModifiedReLUGradient):
    """Guided backpropagation: at each ReLU, pass back only positive gradients where the input was positive.

    ``R_l = 1[x_l > 0] * max(R_{l+1}, 0)`` through every ReLU; other operations use their gradient.

    Springenberg et al. (2015), "Striving for Simplicity: The All Convolutional Net", ICLR workshop.
    Note: Adebayo et al. (2018) show guided backprop is largely insensitive to the model's weights; check it
    with lumos' sanity checks before trusting it.
    """

    name: ClassVar[str] = "guided_backprop"
    reference: ClassVar[str] = "Springenberg et al. 2015, arXiv:1412.6806"
    _relu = _GuidedReLU


@register
class Deconvolution(_ModifiedReLUGradient):
    """Deconvolution: at each ReLU, pass back the positive part of the gradient regardless of the input.

    ``R_l = max(R_{l+1}, 0)`` through every ReLU; other operations use their gradient (the transposed
    convolution of the DeconvNet).

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", ECCV.
    """

    name: ClassVar[str] = "deconvolution"
    reference: ClassVar[str] = "Zeiler & Fergus 2014, arXiv:1311.2901"
    _relu = _DeconvReLU
