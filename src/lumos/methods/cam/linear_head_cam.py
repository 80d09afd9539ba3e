"""CAM: the original class activation map of networks ending in global average pooling + one linear layer."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ...core.registry import register
from ...errors import UnsupportedModelError, ValidationError
from ..base import ExplainContext
from .base import CAMExplainer, CamResult, LayerChoice, weighted_sum


@register
class CAM(CAMExplainer):
    """CAM: the linear head's weights for the class, applied to the channels of the last spatial layer.

    For ``S_c = sum_k W_ck mean_ij A_kij + b_c`` (global average pooling, then a linear head):
    ``M_c = sum_k W_ck A_k`` and ``S_c = mean_ij M_c(i, j) + b_c``. Since dS_c/dA_kij = W_ck / (h w), CAM is
    Grad-CAM times ``h * w`` (the number of positions of the layer's map) for such models.

    The head is the ``nn.Linear`` given as ``head=`` or found automatically: a linear layer whose input is
    the global average of the layer's output and whose output is the model's output (both checked
    numerically on the explained batch). Models with anything else between the map and the scores (several
    linear layers, a normalisation, a softmax) are refused with an :class:`UnsupportedModelError`: use
    ``grad_cam``. The target must be a class (an int, one per sample, or ``None`` for the predicted class).
    Needs no gradients: one forward pass.

    Zhou et al. (2016), "Learning Deep Features for Discriminative Localization", CVPR.

    Args:
        head: the linear head (module or dotted name); ``None`` finds it.

    Example::

        CAM(resnet).explain(images, target=labels)       # layer4 + fc found automatically
    """

    name: ClassVar[str] = "cam"
    requires_gradients: ClassVar[bool] = False
    reference: ClassVar[str] = "Zhou et al. 2016, arXiv:1512.04150"

    def __init__(self, model: Any, *, head: nn.Module | str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if head is not None and not isinstance(head, (nn.Module, str)):
            raise ValidationError(f"CAM: head must be None, an nn.Linear or its dotted name, got {head!r}")
        self.head = head

    def get_params(self) -> dict[str, Any]:
        head = self.head if isinstance(self.head, str) or self.head is None else type(self.head).__name__
        return {**super().get_params(), "head": head}

    def _compute(self, context: ExplainContext, layer: LayerChoice) -> CamResult:
        adapter = context.adapter
        if self.head is not None:
            head_name, head = adapter.find_layer(self.head)
            if not isinstance(head, nn.Linear):
                raise UnsupportedModelError(f"CAM: head {head_name!r} must be an nn.Linear, got {type(head).__name__}")
            heads = {head_name: head}
        else:
            heads = {name: m for name, m in adapter.module.named_modules() if isinstance(m, nn.Linear)}
        engine = self._engine_for(context, None)
        clean = self._clean_pass(context, engine, layer, extra=heads)
        activations = clean.activations
        pooled = activations.mean(dim=tuple(range(2, activations.ndim)))
        head_name, weight = self._matching_head(heads, clean.captured, pooled, clean.output, layer.name)
        indices = engine.target.indices()
        if indices is None:
            raise ValidationError(
                f"CAM: the target must be a class (an int, one int per sample, or None for the predicted class), "
                f"got {engine.target.describe()}; use grad_cam for other targets"
            )
        index = torch.as_tensor(indices, device=weight.device).long().expand(context.batch.n)
        weights = weight.detach()[index].to(activations.dtype)
        cam = weighted_sum(weights, activations)
        return CamResult(cam, clean.scores, engine.target, engine.n_evaluations, weights, {"head": head_name})

    @staticmethod
    def _matching_head(heads: dict[str, nn.Module], captured: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       pooled: torch.Tensor, output: torch.Tensor, layer_name: str) -> tuple[str, torch.Tensor]:
        tolerance = 1e-4 * max(1.0, float(pooled.abs().max())) if pooled.numel() else 1e-4
        out_tolerance = 1e-4 * max(1.0, float(output.abs().max())) if output.numel() else 1e-4
        for name in reversed(list(heads)):
            if name not in captured:
                continue
            head_in, head_out = captured[name]
            if head_in.shape != pooled.shape or head_out.shape != output.shape:
                continue
            if bool(torch.allclose(head_in, pooled, rtol=1e-4, atol=tolerance)) and \
                    bool(torch.allclose(head_out, output.to(head_out.dtype), rtol=1e-4, atol=out_tolerance)):
                return name, heads[name].weight
        searched = ", ".join(heads) or "no nn.Linear module"
        raise UnsupportedModelError(
            f"CAM: needs a global-average-pool + linear head: an nn.Linear whose input is the spatial mean of "
            f"layer {layer_name!r} ({tuple(pooled.shape)}) and whose output is the model's output "
            f"({tuple(output.shape)}); none matched (searched: {searched}). Pass head= (and layer=) if the "
            f"model has one, or use grad_cam, which equals CAM / (h*w) for such heads and works for any head."
        )
