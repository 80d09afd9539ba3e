"""EigenCAM: the first principal component of a layer's activations (class-independent)."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.registry import register
from ..base import ExplainContext
from .base import CAMExplainer, CamResult, LayerChoice


def principal_projection(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: project the centred activations on their first principal component.

    ``X`` (positions P x channels K) holds one sample's activations, ``X_c = X - mean over positions``;
    ``X_c = U S V^T`` (SVD), ``v = V[:, 0]``, ``map = X_c v`` (P). The sign of ``v`` is fixed so that the map
    correlates positively with the activation sum over channels (SVD leaves it arbitrary); a zero covariance
    keeps the SVD's sign. Returns the maps (N, 1, *s) and the components ``v`` (N, K).
    """
    n, k = activations.shape[:2]
    x = activations.reshape(n, k, -1).transpose(1, 2)
    centred = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    component = vh[:, 0, :]
    projection = torch.bmm(centred, component.unsqueeze(2)).squeeze(2)
    total = x.sum(dim=2)
    covariance = ((projection - projection.mean(1, keepdim=True)) * (total - total.mean(1, keepdim=True))).sum(1)
    sign = torch.where(covariance < 0, -1.0, 1.0).to(projection.dtype)[:, None]
    return (projection * sign).reshape(n, 1, *activations.shape[2:]), component * sign


@register
class EigenCAM(CAMExplainer):
    """EigenCAM: the projection of the layer's activations on their first principal component.

    Per sample, ``M = X_c v_1`` with ``X_c`` the activations (positions x channels) centred over positions and
    ``v_1`` the first right singular vector of ``X_c``; the sign is fixed so that ``M`` correlates positively
    with the activation sum ``sum_k A_k`` (documented convention; the SVD's sign is arbitrary). ``M`` is
    class-independent: the target only sets the reported scores. ``extras["channel_weights"]`` holds ``v_1``
    (N, K). One forward pass, no gradients.

    Muhammad & Yeasin (2020), "Eigen-CAM: Class Activation Map using Principal Components", IJCNN.

    Example::

        EigenCAM(model).explain(images)
    """

    name: ClassVar[str] = "eigen_cam"
    requires_gradients: ClassVar[bool] = False
    reference: ClassVar[str] = "Muhammad & Yeasin 2020, arXiv:2008.00299"

    def _compute(self, context: ExplainContext, layer: LayerChoice) -> CamResult:
        engine = self._engine_for(context, None)
        clean = self._clean_pass(context, engine, layer)
        cam, component = principal_projection(clean.activations)
        return CamResult(cam, clean.scores, engine.target, engine.n_evaluations, component)
