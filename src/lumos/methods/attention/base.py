"""Family base of the attention methods: capture the maps chunk by chunk, build a (queries, keys) relevance
matrix per sample, read the row(s) of the query.

A method overrides :meth:`AttentionExplainer._token_matrix` only. The row read is the query position
``query`` (default 0: the first token, ``[CLS]`` in BERT/ViT) or, with ``query="mean"``, the mean of the rows
of every non-padding query (suits mean-pooled models). One number per key token comes back:

- with the shape of the inputs when the keys are the input's features (token ids ``(batch, seq)``, or one
  token per feature: the keys number ``prod(inputs.shape[1:])``);
- for images ``(batch, C, H, W)`` of a vision transformer (keys = class/register tokens + an h x w patch
  grid, split as for CAMs: :func:`~lumos.methods.cam.layers.token_grid`): the patches' values upsampled
  bilinearly to the image, repeated over the channels (``upsample=False``: the raw row, see below);
- otherwise ``(batch, keys)`` in token space (e.g. embedded inputs ``(batch, seq, dim)``), with
  ``Explanation.layer`` naming the first attention layer.

Padding: an ``attention_mask`` (1 = token, 0 = padding, Hugging Face) or ``src_key_padding_mask`` /
``key_padding_mask`` (``True`` = padding, PyTorch) in ``forward_kwargs`` marks padding keys, whose
attribution is set to zero, and padding queries, left out of ``query="mean"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.batching import iter_chunks
from ...core.hooks import HookSet
from ...core.inputs import select_rows
from ...core.model import parameters_requiring_grad
from ...core.targets import Class, Target
from ...errors import ValidationError
from ..base import Attribution, ExplainContext, Explainer
from ..cam.layers import token_grid
from .capture import AttentionCapture, AttentionLayers, AttentionMap, attention_gradients

HeadReduction = str | int

#: forward keyword arguments read as padding masks: name -> whether a true/non-zero value marks a real token
PADDING_ARGUMENTS = {"attention_mask": True, "src_key_padding_mask": False, "key_padding_mask": False}


def check_head_reduction(value: Any, *, owner: str) -> HeadReduction:
    if isinstance(value, str) and value in ("mean", "max", "min"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValidationError(f"{owner}: head_reduction must be 'mean', 'max', 'min' or a head index >= 0, got {value!r}")


def reduce_heads(attention: torch.Tensor, reduction: HeadReduction, *, owner: str, name: str) -> torch.Tensor:
    """(batch, heads, q, k) -> (batch, q, k): the mean, max or min over heads, or one head."""
    if reduction == "mean":
        return attention.mean(1)
    if reduction == "max":
        return attention.amax(1)
    if reduction == "min":
        return attention.amin(1)
    if reduction >= attention.shape[1]:
        raise ValidationError(
            f"{owner}: head_reduction={reduction} is out of range; layer {name!r} has {attention.shape[1]} heads"
        )
    return attention[:, reduction]


def padding_mask(forward_kwargs: Mapping[str, Any], n_rows: int, n_keys: int) -> torch.Tensor | None:
    """(rows, keys) bool, ``True`` for real tokens, from a 2-D padding argument of ``forward_kwargs``."""
    for key, true_is_token in PADDING_ARGUMENTS.items():
        value = forward_kwargs.get(key)
        if isinstance(value, torch.Tensor) and value.ndim == 2 and tuple(value.shape) == (n_rows, n_keys):
            marked = value if value.dtype == torch.bool else value != 0  # (a float mask: -inf = padding)
            return marked if true_is_token else ~marked
    return None


class AttentionExplainer(Explainer):
    """Base of the attention family (see the module doc).

    Args:
        attention_layers: the modules (or dotted names) whose output is, or holds as its first 4-D tensor, the
            (batch, heads, queries, keys) attention probabilities; ``None`` finds ``nn.MultiheadAttention`` and
            Hugging Face-style attention modules (see :mod:`lumos.methods.attention.capture`).
        query: the query position whose row is read (default 0, the first token / ``[CLS]``; negative counts
            from the end: ``-1`` for the last token of a causal, decoder-only model), or ``"mean"``: the mean
            row over the non-padding queries.
        upsample: for image inputs (N, C, H, W) of a vision transformer, drop the leading class/register tokens,
            put the patches on their grid and upsample it to the image (default ``True``); ``False`` returns the
            raw row over all tokens, (N, keys).
    """

    family: ClassVar[str] = "attention"
    models: ClassVar[str] = "attention"
    #: whether the attribution depends on the target (only the gradient-weighted rollout, whose gradients are
    #: taken at the attention maps, so integer token ids are fine)
    class_specific: ClassVar[bool] = False

    def __init__(self, model: Any, *, attention_layers: AttentionLayers = None, query: int | str = 0,
                 upsample: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = self._owner()
        if not isinstance(upsample, bool):
            raise ValidationError(f"{owner}: upsample must be True or False, got {upsample!r}")
        self.upsample = upsample
        if not (query == "mean" if isinstance(query, str) else isinstance(query, int) and not isinstance(query, bool)):
            raise ValidationError(f"{owner}: query must be a token position (int) or 'mean', got {query!r}")
        if attention_layers is not None and not isinstance(attention_layers, (nn.Module, str, list, tuple)):
            raise ValidationError(
                f"{owner}: attention_layers must be None, a module, a dotted module name or a list of them, got "
                f"{attention_layers!r}"
            )
        self.attention_layers = attention_layers
        self.query = query

    def get_params(self) -> dict[str, Any]:
        layers = self.attention_layers
        if layers is not None:
            specs = [layers] if isinstance(layers, (nn.Module, str)) else list(layers)
            layers = [s if isinstance(s, str) else type(s).__name__ for s in specs]
        return {"attention_layers": layers, "query": self.query, "upsample": self.upsample}

    # ------------------------------------------------------------------ the family hook
    def _token_matrix(self, maps: list[AttentionMap], grads: list[torch.Tensor] | None,
                      real: torch.Tensor) -> torch.Tensor:
        """The (batch, queries, keys) relevance matrix of a chunk; ``real`` is (batch, keys), True = token."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the loop
    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        adapter, batch = context.adapter, context.batch
        n = batch.n
        capture = AttentionCapture(adapter, self.attention_layers, owner=owner)
        target_modules = {spec: adapter.find_layer(spec)[1] for spec in context.target.layers}
        target: Target = context.target
        relevance, scores, row_indices = [], [], []
        names: list[str] = []
        n_evaluations = 0
        grad_context = (lambda: parameters_requiring_grad(adapter.module, True)) if self.class_specific else None
        with capture:  # (also around the memory probe: no fast path there either)
            rows_per_call = self._engine(context).rows_per_call(n, backward=self.class_specific)
            for rows in iter_chunks(n, rows_per_call, desc="attention", progress=self.progress):
                index = torch.arange(rows.start, rows.stop, device=batch.tensors[0].device)
                tensors = tuple(t[rows] for t in batch.tensors)
                kwargs = select_rows(context.forward_kwargs, index, n)
                grad_mode = torch.enable_grad() if grad_context else torch.no_grad()
                with grad_mode, (grad_context() if grad_context else contextlib.nullcontext()):
                    capture.clear()
                    output, captured = _forward(adapter, tensors, kwargs, target_modules)
                    n_evaluations += int(tensors[0].shape[0])
                    if rows.start == 0 and not capture.found and capture.request_output_attentions():
                        capture.clear()  # an older transformers: ask its models to return the maps, once
                        output, captured = _forward(adapter, tensors, kwargs, target_modules)
                        n_evaluations += int(tensors[0].shape[0])
                    if target.per_row:
                        chunk_target = target.resolve(output.detach(), owner=owner)
                        score = chunk_target.score(output, index - rows.start, captured)
                        row_indices.append(chunk_target.indices())
                        row_type = type(chunk_target) if isinstance(chunk_target, Class) else Class
                    else:
                        if rows.start == 0:
                            target = target.resolve(output.detach(), owner=owner, n_samples=n)
                        score = target.score(output, index, captured)
                    maps = capture.take(n_rows=int(tensors[0].shape[0]))  # (after the target's own checks)
                    grads = attention_gradients(score, maps, owner=owner) if self.class_specific else None
                names = [m.name for m in maps]
                relevance.append(self._read_rows(maps, grads, kwargs))
                scores.append(score.detach().to(torch.promote_types(score.dtype, torch.float32)))  # like the maps
                del maps, grads, output, captured
        if row_indices and all(ix is not None for ix in row_indices):
            target = row_type(np.concatenate(row_indices))
        attribution = torch.cat(relevance)
        extras = {"n_evaluations": n_evaluations, "attention_layers": ", ".join(names), "n_layers": len(names),
                  "class_specific": self.class_specific}
        first = batch.tensors[0]
        if len(batch.tensors) == 1 and attribution.shape[1] == int(np.prod(first.shape[1:])):
            return Attribution((attribution.reshape(first.shape),), torch.cat(scores), extras, target,
                               input_space=True)
        if len(batch.tensors) == 1 and first.ndim == 4 and self.upsample:
            extra, h, w = token_grid(int(attribution.shape[1]), tuple(first.shape[2:]))
            if h * w > 1:
                extras["n_extra_tokens"] = extra
                return Attribution((patches_to_image(attribution, extra, h, w, first),), torch.cat(scores), extras,
                                   target, input_space=True)
        return Attribution((attribution,), torch.cat(scores), extras, target, input_space=False,
                           layer_name=names[0])

    def _read_rows(self, maps: list[AttentionMap], grads: list[torch.Tensor] | None,
                   kwargs: Mapping[str, Any]) -> torch.Tensor:
        """(rows, keys): the query row(s) of the method's relevance matrix, padding keys zeroed."""
        owner = self._owner()
        last = maps[-1].probabilities
        n_rows, n_queries, n_keys = int(last.shape[0]), int(last.shape[2]), int(last.shape[3])
        real = padding_mask(kwargs, n_rows, n_keys)
        real_keys = torch.ones(n_rows, n_keys, dtype=torch.bool, device=last.device) if real is None else \
            real.to(last.device)
        with torch.no_grad():
            matrix = self._token_matrix(maps, grads, real_keys).detach()
            if self.query == "mean":
                weights = (real_keys if n_queries == n_keys else
                           torch.ones(n_rows, n_queries, dtype=torch.bool, device=last.device)).to(matrix.dtype)
                weights = weights / weights.sum(1, keepdim=True).clamp_min(1)
                row = torch.einsum("bq,bqk->bk", weights, matrix)
            else:
                if not -n_queries <= self.query < n_queries:
                    raise ValidationError(
                        f"{owner}: query={self.query} is out of range for {n_queries} query positions"
                    )
                row = matrix[:, self.query]
            return row * real_keys.to(row.dtype)


def patches_to_image(attribution: torch.Tensor, extra: int, h: int, w: int, image: torch.Tensor) -> torch.Tensor:
    """(N, keys) -> (N, C, H, W): leading class/register tokens dropped, the patches' values on their h x w
    grid upsampled bilinearly to the image and repeated over its channels (as CAMs of vision transformers)."""
    grid = attribution[:, extra:].reshape(attribution.shape[0], 1, h, w)
    size = tuple(image.shape[2:])
    if (h, w) != size:
        grid = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    return grid.expand(-1, image.shape[1], *size).contiguous()


def _forward(adapter: Any, tensors: tuple[torch.Tensor, ...], kwargs: Mapping[str, Any],
             target_modules: Mapping[Any, nn.Module]) -> tuple[torch.Tensor, dict[Any, Any]]:
    captured: dict[Any, Any] = {}
    with HookSet() as hooks:
        for spec, module in target_modules.items():
            hooks.forward(module, _store(captured, spec))
        output = adapter(tensors, kwargs)
    return output, captured


def _store(captured: dict[Any, Any], key: Any) -> Any:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        captured[key] = output

    return hook
