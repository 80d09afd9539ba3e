"""Raw attention weights of one layer, read from the row of a query token."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ...core.registry import register
from ...errors import ValidationError
from .base import AttentionExplainer, HeadReduction, check_head_reduction, reduce_heads
from .capture import AttentionMap


@register
class AttentionWeights(AttentionExplainer):
    """Attention weights: how much the query token attends to each token in one layer (class-agnostic).

    ``a_k = reduce_h A^(l)_{h, q, k}``: the attention probabilities of layer ``l`` (default: the last), heads
    combined by ``head_reduction`` (mean, max, min, or one head), read at query ``q`` (default the first token,
    ``[CLS]``; ``query="mean"`` averages the rows of the non-padding queries). The same for every target: it
    describes where the model looks, not what raises a class score (Jain & Wallace 2019 and Wiegreffe & Pinter
    2019 discuss how far attention explains).

    Vaswani et al. (2017), "Attention Is All You Need", NeurIPS (the attention probabilities).

    Args:
        layer_index: which attention layer, in call order (negative counts from the last; default -1).
        head_reduction: ``"mean"`` (default), ``"max"``, ``"min"`` or a head index.
        attention_layers, query: see :class:`~lumos.methods.attention.base.AttentionExplainer`.

    Example::

        AttentionWeights(model, query="mean").explain(ids, forward_kwargs={"attention_mask": mask})
    """

    name: ClassVar[str] = "attention"
    reference: ClassVar[str] = "Vaswani et al. 2017, arXiv:1706.03762"

    def __init__(self, model: Any, *, layer_index: int = -1, head_reduction: HeadReduction = "mean",
                 **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not isinstance(layer_index, int) or isinstance(layer_index, bool):
            raise ValidationError(f"{self._owner()}: layer_index must be an int, got {layer_index!r}")
        self.layer_index = layer_index
        self.head_reduction = check_head_reduction(head_reduction, owner=self._owner())

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "layer_index": self.layer_index, "head_reduction": self.head_reduction}

    def _token_matrix(self, maps: list[AttentionMap], grads: list[torch.Tensor] | None,
                      real: torch.Tensor) -> torch.Tensor:
        if not -len(maps) <= self.layer_index < len(maps):
            raise ValidationError(
                f"{self._owner()}: layer_index={self.layer_index} is out of range: the model has {len(maps)} "
                f"attention layer(s)"
            )
        chosen = maps[self.layer_index]
        attention = chosen.probabilities.to(torch.promote_types(chosen.probabilities.dtype, torch.float32))
        return reduce_heads(attention, self.head_reduction, owner=self._owner(), name=chosen.name)
