"""Gradient-weighted class activation maps: Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM and LayerCAM.

Each needs one batched forward+backward: the layer's activations ``A`` (N, K, *s) and the gradients
``G = dS/dA`` of each sample's target score ``S`` (:meth:`GradientEngine.at_inputs` with the layer; the
backward pass stops at the layer). A variant is one override of the channel weights (or of the combination).
Shapes, options and the output convention: :class:`~lumos.methods.cam.base.CAMExplainer`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.registry import register
from ..base import ExplainContext
from .base import CAMExplainer, CamResult, LayerChoice, weighted_sum


def _spatial(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, tensor.ndim))


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, and 0 where the denominator is 0."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)),
                       torch.zeros_like(numerator))


class GradientCAMExplainer(CAMExplainer):
    """A CAM from the layer's activations and gradients: ``M = sum_k w_k(A, G) A_k``.

    Subclasses override :meth:`_channel_weights` (or :meth:`_combine` for elementwise variants).
    """

    def _compute(self, context: ExplainContext, layer: LayerChoice) -> CamResult:
        grads = self._gradients(context, layer)
        cam, weights = self._combine(grads.activations, grads.grads)
        return CamResult(cam, grads.scores, grads.engine.target, grads.engine.n_evaluations, weights)

    def _combine(self, activations: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The map (N, 1, *s) and the channel weights (N, K) (``None`` where the method has none)."""
        weights = self._channel_weights(activations, grads)
        return weighted_sum(weights, activations), weights

    def _channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register
class GradCAM(GradientCAMExplainer):
    """Grad-CAM: channels weighted by their spatially averaged gradient.

    ``w_k = mean_ij dS/dA_kij``, ``M = ReLU(sum_k w_k A_k)``.

    Selvaraju et al. (2017), "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV.

    Example::

        GradCAM(model).explain(images, target=labels)            # layer found automatically
        GradCAM(model, layer="layer4").explain(images, target=3)
    """

    name: ClassVar[str] = "grad_cam"
    reference: ClassVar[str] = "Selvaraju et al. 2017, arXiv:1610.02391"

    def _channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=_spatial(grads))


@register
class GradCAMPlusPlus(GradientCAMExplainer):
    """Grad-CAM++: positive gradients weighted per position by the closed-form ``alpha``.

    With the exponential score ``Y = exp(S)`` and ``S`` piecewise linear in ``A`` (ReLU networks: higher
    derivatives of S vanish), ``d^n Y / dA^n = exp(S) G^n`` and
    ``alpha_kij = G_kij^2 / (2 G_kij^2 + sum_ab A_kab G_kij^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha_kij ReLU(G_kij)``, ``M = ReLU(sum_k w_k A_k)``. The common positive factor
    ``exp(S)`` of the paper's weights is dropped (it scales a sample's map only, and overflows for large
    logits).

    Chattopadhay et al. (2018), "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
    Convolutional Networks", WACV.

    Example::

        GradCAMPlusPlus(model).explain(images, target=labels)
    """

    name: ClassVar[str] = "grad_cam_plus_plus"
    reference: ClassVar[str] = "Chattopadhay et al. 2018, arXiv:1710.11063"

    def _channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        dims = _spatial(grads)
        grads2 = grads * grads
        total = activations.sum(dim=dims, keepdim=True)
        alpha = _safe_divide(grads2, 2 * grads2 + total * grads2 * grads)
        return (alpha * grads.clamp(min=0)).sum(dim=dims)


@register
class XGradCAM(GradientCAMExplainer):
    """XGrad-CAM: gradients averaged with the channel's normalised activations as weights.

    ``w_k = sum_ij (A_kij / sum_ab A_kab) dS/dA_kij`` (0 for a channel whose activations sum to 0),
    ``M = ReLU(sum_k w_k A_k)``.

    Fu et al. (2020), "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs", BMVC.

    Example::

        XGradCAM(model).explain(images, target=labels)
    """

    name: ClassVar[str] = "xgrad_cam"
    reference: ClassVar[str] = "Fu et al. 2020, arXiv:2008.02312"

    def _channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        dims = _spatial(grads)
        return _safe_divide((activations * grads).sum(dim=dims), activations.sum(dim=dims))


@register
class HiResCAM(GradientCAMExplainer):
    """HiResCAM: the gradient times the activation, elementwise, summed over channels (no averaging).

    ``M = ReLU(sum_k G_k * A_k)``. Equals Grad-CAM when the gradient is constant over each channel's
    positions (a global-average-pool + linear head: ``G_kij = w_k``); with other heads (e.g. flatten +
    linear) it follows the model's actual use of each position, where Grad-CAM averages it away.
    No channel weights.

    Draelos & Carin (2020), "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
    neural networks", arXiv:2011.08891.

    Example::

        HiResCAM(model).explain(images, target=labels)
    """

    name: ClassVar[str] = "hires_cam"
    reference: ClassVar[str] = "Draelos & Carin 2020, arXiv:2011.08891"

    def _combine(self, activations: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (grads * activations).sum(dim=1, keepdim=True), None


@register
class LayerCAM(GradientCAMExplainer):
    """LayerCAM: activations weighted elementwise by their positive gradients.

    ``M = ReLU(sum_k ReLU(G_k) * A_k)``. No channel weights.

    Jiang et al. (2021), "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE Transactions on Image Processing 30.

    Example::

        LayerCAM(model, layer="layer3").explain(images, target=labels)
    """

    name: ClassVar[str] = "layer_cam"
    reference: ClassVar[str] = "Jiang et al. 2021, doi:10.1109/TIP.2021.3089943"

    def _combine(self, activations: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (grads.clamp(min=0) * activations).sum(dim=1, keepdim=True), None
