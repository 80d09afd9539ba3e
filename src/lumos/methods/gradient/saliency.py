"""Saliency and input x gradient: the gradient of the target score at the input."""

from __future__ import annotations

from typing import Any, ClassVar

from ...core.registry import register
from ..base import Attribution, ExplainContext, Explainer


@register
class Saliency(Explainer):
    """Saliency map: the gradient of the target score with respect to the input.

    ``A(x) = dF_c(x) / dx`` (``|dF_c/dx|`` with ``absolute=True``).

    Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop.

    Args:
        absolute: return the magnitude of the gradient (the paper's map) instead of the signed gradient.

    Example::

        Saliency(model).explain(x, target=3).attributions   # same shape as x
    """

    name: ClassVar[str] = "saliency"
    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    reference: ClassVar[str] = "Simonyan et al. 2014, arXiv:1312.6034"

    def __init__(self, model: Any, *, absolute: bool = False, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.absolute = bool(absolute)

    def get_params(self) -> dict[str, Any]:
        return {"absolute": self.absolute}

    def _attribute(self, context: ExplainContext) -> Attribution:
        engine = self._engine(context)
        _, grads, scores = engine.at_inputs()
        if self.absolute:
            grads = tuple(g.abs() for g in grads)
        return Attribution(grads, scores, {"n_evaluations": engine.n_evaluations}, engine.target)


@register
class InputXGradient(Explainer):
    """Input x gradient: the gradient scaled elementwise by the input.

    ``A(x) = x * dF_c(x) / dx``; for a model that is linear in x (and piecewise-linear nets with zero
    bias) it sums to the output.

    Shrikumar et al. (2016), "Not Just a Black Box: Learning Important Features Through Propagating
    Activation Differences", arXiv:1605.01713.

    Example::

        InputXGradient(model).explain(x, target=3)
    """

    name: ClassVar[str] = "input_x_gradient"
    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    reference: ClassVar[str] = "Shrikumar et al. 2016, arXiv:1605.01713"

    def _attribute(self, context: ExplainContext) -> Attribution:
        engine = self._engine(context)
        values, grads, scores = engine.at_inputs()
        attributions = tuple(v * g for v, g in zip(values, grads, strict=True))
        return Attribution(attributions, scores, {"n_evaluations": engine.n_evaluations}, engine.target)
