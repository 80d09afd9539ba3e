"""Attention rollout (Abnar & Zuidema 2020) and its gradient-weighted, class-specific form (Chefer et al. 2021)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ...core.registry import register
from ...errors import ValidationError
from .base import AttentionExplainer, HeadReduction, check_head_reduction, reduce_heads
from .capture import AttentionMap


def _check_start_layer(value: Any, *, owner: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValidationError(f"{owner}: start_layer must be an int >= 0 (a layer index), got {value!r}")


def _layers(maps: list[AttentionMap], start_layer: int, *, owner: str) -> list[AttentionMap]:
    if start_layer >= len(maps):
        raise ValidationError(
            f"{owner}: start_layer={start_layer} is out of range: the model has {len(maps)} attention layer(s)"
        )
    for m in maps[start_layer:]:
        shape = tuple(m.probabilities.shape)
        if shape[2] != shape[3] or shape[2:] != tuple(maps[-1].probabilities.shape[2:]):
            raise ValidationError(
                f"{owner}: rollout needs self-attention over one token sequence: every map must be (batch, heads, "
                f"T, T) with the same T; layer {m.name!r} has {shape}. Use attention_layers= to choose the "
                f"self-attention layers"
            )
    return maps[start_layer:]


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)


def discard_lowest(attention: torch.Tensor, ratio: float, real: torch.Tensor) -> torch.Tensor:
    """Zero the ``floor(ratio * n)`` lowest of the ``n`` entries between real tokens of each (q, k) matrix."""
    if ratio <= 0:
        return attention
    pairs = (real[:, :, None] & real[:, None, :]).flatten(1)
    n_discard = torch.floor(pairs.sum(1).to(torch.float64) * ratio).to(torch.long)
    flat = attention.flatten(1).masked_fill(~pairs, float("inf"))
    order = flat.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                             .expand_as(order).contiguous())
    discard = ranks < n_discard[:, None]
    return attention.flatten(1).masked_fill(discard, 0.0).reshape(attention.shape)


@register
class AttentionRollout(AttentionExplainer):
    """Attention rollout: attention propagated through the layers, residual connections included (class-agnostic).

    Per layer ``l`` the heads are combined (``head_reduction``, the paper: mean) and the residual connection is
    modelled by ``A_hat_l = 0.5 A_l + 0.5 I`` with rows renormalised to sum to one; the flow from the tokens to
    the last layer is ``R = A_hat_L ... A_hat_{s+1} A_hat_s`` (``s = start_layer``), and the attribution is the
    row of the query: ``R[q, :]``. It does not depend on the target.

    ``discard_ratio`` (not in the paper; the heuristic of popular ViT implementations, e.g. J. Gildenblat's
    vit-explain): before adding the identity, the lowest ``discard_ratio`` fraction of each sample's
    head-combined attention entries (between non-padding tokens) is set to zero, which sharpens the maps of
    models whose attention is spread thinly.

    Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers", ACL.

    Args:
        head_reduction: ``"mean"`` (default, the paper), ``"max"``, ``"min"`` or a head index.
        discard_ratio: fraction in [0, 1) of the lowest attention entries zeroed per layer (default 0).
        start_layer: first layer (in call order) of the rollout (default 0: all layers).
        attention_layers, query: see :class:`~lumos.methods.attention.base.AttentionExplainer`.

    Example::

        AttentionRollout(vit).explain(images)            # row of the [CLS] token, over [CLS] + patches
    """

    name: ClassVar[str] = "attention_rollout"
    reference: ClassVar[str] = "Abnar & Zuidema 2020, arXiv:2005.00928"

    def __init__(self, model: Any, *, head_reduction: HeadReduction = "mean", discard_ratio: float = 0.0,
                 start_layer: int = 0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = self._owner()
        self.head_reduction = check_head_reduction(head_reduction, owner=owner)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) \
                or not 0.0 <= float(discard_ratio) < 1.0:
            raise ValidationError(f"{owner}: discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
        self.discard_ratio = float(discard_ratio)
        self.start_layer = _check_start_layer(start_layer, owner=owner)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "head_reduction": self.head_reduction, "discard_ratio": self.discard_ratio,
                "start_layer": self.start_layer}

    def _token_matrix(self, maps: list[AttentionMap], grads: list[torch.Tensor] | None,
                      real: torch.Tensor) -> torch.Tensor:
        owner = self._owner()
        layers = _layers(maps, self.start_layer, owner=owner)
        first = layers[0].probabilities
        dtype = _compute_dtype(first)
        n_tokens = int(first.shape[-1])
        identity = torch.eye(n_tokens, dtype=dtype, device=first.device)
        rollout = identity.expand(first.shape[0], n_tokens, n_tokens)
        for m in layers:
            attention = reduce_heads(m.probabilities.detach().to(dtype), self.head_reduction, owner=owner,
                                     name=m.name)
            attention = discard_lowest(attention, self.discard_ratio, real)
            mixed = 0.5 * attention + 0.5 * identity
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = torch.bmm(mixed, rollout)
        return rollout


@register
class GradientWeightedRollout(AttentionExplainer):
    """Gradient-weighted attention rollout: attention weighted by its gradient, rolled out (class-specific).

    Per layer ``l`` (from ``start_layer``), with ``A_l`` the (heads, T, T) attention probabilities and
    ``dy_t/dA_l`` the gradient of the target score:

        ``Abar_l = mean_h ( (dy_t / dA_l) * A_l )^+``   (elementwise product, negative values clipped to 0)
        ``R <- R + Abar_l R``, starting from ``R = I``  (the identity: each token starts with itself)

    The attribution is the query's row ``R[q, :]`` (its own entry includes the identity's 1). Unlike the raw
    weights and the rollout it explains a class: the gradients make it target-specific.

    Chefer, Gur & Wolf (2021), "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV.

    Args:
        start_layer: first layer (in call order) of the rollout (default 0).
        subtract_identity: read ``R - I``, the relevance gained through attention only (default ``False``, the
            paper's ``R``). The identity adds ``1 / n`` to each of the ``n`` non-padding tokens with ``query="mean"``
            and ``1`` to the query token itself, which can hide the class-specific part in a plot.
        attention_layers, query: see :class:`~lumos.methods.attention.base.AttentionExplainer`.

    Example::

        GradientWeightedRollout(model, query="mean").explain(ids, target=1,
                                                             forward_kwargs={"attention_mask": mask})
    """

    name: ClassVar[str] = "attention_grad_rollout"
    requires_gradients: ClassVar[bool] = True
    #: gradients of the target score with respect to the attention maps, not the inputs
    gradients_at_inputs: ClassVar[bool] = False
    class_specific: ClassVar[bool] = True
    reference: ClassVar[str] = "Chefer, Gur & Wolf 2021, arXiv:2103.15679"

    def __init__(self, model: Any, *, start_layer: int = 0, subtract_identity: bool = False, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.start_layer = _check_start_layer(start_layer, owner=self._owner())
        if not isinstance(subtract_identity, bool):
            raise ValidationError(f"{self._owner()}: subtract_identity must be True or False, got {subtract_identity!r}")
        self.subtract_identity = subtract_identity

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "start_layer": self.start_layer, "subtract_identity": self.subtract_identity}

    def _token_matrix(self, maps: list[AttentionMap], grads: list[torch.Tensor] | None,
                      real: torch.Tensor) -> torch.Tensor:
        layers = _layers(maps, self.start_layer, owner=self._owner())
        layer_grads = (grads or [])[self.start_layer:]
        first = layers[0].probabilities
        dtype = _compute_dtype(first)
        n_tokens = int(first.shape[-1])
        relevance = torch.eye(n_tokens, dtype=dtype, device=first.device).expand(first.shape[0], n_tokens, n_tokens)
        for m, grad in zip(layers, layer_grads, strict=True):
            weighted = (grad.to(dtype) * m.probabilities.detach().to(dtype)).clamp_min(0).mean(1)
            relevance = relevance + torch.bmm(weighted, relevance)
        if self.subtract_identity:
            relevance = relevance - torch.eye(n_tokens, dtype=dtype, device=first.device)
        return relevance
