"""Guided backpropagation and deconvolution: gradients with a modified backward pass through ReLUs.

The modified ReLU is bound to the operations recorded in the autograd graph (``nn.ReLU`` modules, reused
or not, ``F.relu``, ``torch.relu`` and ``x.relu()``, in place or not, all record a ``ReluBackward0``
node), never to module instances; see :mod:`lumos.core.backward_rules`.
"""

from __future__ import annotations

from typing import ClassVar

from ...core.backward_rules import DECONV_RELU, GUIDED_RELU, BackwardRules
from ...core.registry import register
from ..base import Attribution, ExplainContext, Explainer


class _ModifiedReLUGradient(Explainer):
    """Gradient at the input with every ReLU's backward pass rewritten by ``_rules``."""

    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    _rules: ClassVar[BackwardRules]

    def _attribute(self, context: ExplainContext) -> Attribution:
        engine = self._engine(context, backward_rules=self._rules)
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
    _rules = GUIDED_RELU


@register
class Deconvolution(_ModifiedReLUGradient):
    """Deconvolution: at each ReLU, pass back the positive part of the gradient regardless of the input.

    ``R_l = max(R_{l+1}, 0)`` through every ReLU; other operations use their gradient (the transposed
    convolution of the DeconvNet).

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", ECCV.
    """

    name: ClassVar[str] = "deconvolution"
    reference: ClassVar[str] = "Zeiler & Fergus 2014, arXiv:1311.2901"
    _rules = DECONV_RELU
