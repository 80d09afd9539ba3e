"""Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map."""

from __future__ import annotations

from typing import Any, ClassVar

from ...core.backward_rules import GUIDED_RELU
from ...core.registry import register
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .gradient_cams import GradCAM


@register
class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: the guided-backpropagation gradient at the input, times the Grad-CAM map.

    ``R(x) = GB(x) * up(ReLU(sum_k w_k A_k))`` with ``w_k = mean_ij dS/dA_kij`` (Grad-CAM) and ``GB`` the
    gradient with every ReLU passing back ``max(g, 0) * 1[x > 0]`` (the same rule as ``guided_backprop``);
    ``up`` is bilinear upsampling to the input. The result has the input's shape and is not broadcast:
    each input channel keeps its own guided gradient. Two forward+backward passes (the Grad-CAM one stops
    at the layer). ``relu=False`` keeps the signed Grad-CAM map; ``upsample`` must stay ``True``.

    Selvaraju et al. (2017), "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV; guided backpropagation: Springenberg et al. (2015).

    Example::

        GuidedGradCAM(model).explain(images, target=labels)
    """

    name: ClassVar[str] = "guided_grad_cam"
    reference: ClassVar[str] = "Selvaraju et al. 2017, arXiv:1610.02391"

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not self.upsample:
            raise ValidationError("GuidedGradCAM: upsample must be True (the map multiplies the input gradient)")

    def _attribute(self, context: ExplainContext) -> Attribution:
        if not context.batch.is_floating:
            raise ValidationError(
                f"GuidedGradCAM: guided backpropagation needs floating-point inputs, got {context.batch.describe()}"
            )
        cam = super()._attribute(context)
        guided = self._engine_for(context, None, backward_rules=GUIDED_RELU)
        guided.target = cam.target  # the same (resolved) target as the Grad-CAM pass
        _, (grads,), _ = guided.at_inputs(desc="guided backprop")
        (cam_map,) = cam.attributions
        extras = {**cam.extras, "n_evaluations": cam.extras["n_evaluations"] + guided.n_evaluations}
        return Attribution((grads * cam_map[:, :1],), cam.scores, extras, cam.target, input_space=True,
                           layer_name=cam.layer_name)
