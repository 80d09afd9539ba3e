"""Attention capture: the (batch, heads, queries, keys) attention probabilities of every attention layer.

Where the maps come from:

- ``torch.nn.MultiheadAttention`` (also inside ``nn.TransformerEncoderLayer``): a forward pre-hook sets
  ``need_weights=True, average_attn_weights=False`` for the call (``TransformerEncoderLayer`` asks for
  ``need_weights=False``) and a forward hook reads ``output[1]``. PyTorch's inference "fast path"
  (``torch._transformer_encoder_layer_fwd``, nested tensors) bypasses the attention module altogether, so it is
  switched off with ``torch.backends.mha.set_fastpath_enabled(False)`` during the call and restored after.
- Hugging Face-style attention modules (``BertSelfAttention``, ``ViTSelfAttention``, ...) return
  ``(context, attention_probs)``; modules whose class name contains ``Attention`` are hooked and the first
  4-D tensor of their output that holds probabilities (non-negative, rows summing to one) is taken. When one
  tensor is returned by nested modules (``BertAttention`` passes on ``BertSelfAttention``'s), the innermost
  module is kept. When a call finds no maps, ``config.output_attentions`` of Hugging Face sub-models is set
  for the rest of the call (older ``transformers`` return the probabilities only then) and restored after. Models loaded with a fused kernel
  (``attn_implementation="sdpa"``/``"flash"``) compute no probabilities: load them with ``"eager"``.
- ``attention_layers=``: the modules (or dotted names) whose output is, or holds as its first 4-D tensor, the
  probability tensor (e.g. the attention dropout of a timm ViT block, ``"blocks.0.attn.attn_drop"``).

Maps are recorded in call order (layer order for an encoder) and keep their autograd graph, so gradients of
the model's output with respect to them can be taken (:func:`attention_gradients`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...core.model import ModelAdapter
from ...errors import UnsupportedModelError, ValidationError, describe_value

AttentionLayers = nn.Module | str | Sequence[nn.Module | str] | None

#: what to use when a model has no attention to read (quoted in errors)
ALTERNATIVES = ("gradient methods at the embedding layer (saliency, integrated_gradients with layer='<embeddings "
                "module>'), occlusion, or LIME on text (lumos.explain_text)")


@dataclass
class AttentionMap:
    """One captured attention map: the module's name and its (batch, heads, queries, keys) probabilities."""

    name: str
    probabilities: torch.Tensor

    @property
    def graph_tensor(self) -> torch.Tensor:
        """The tensor to differentiate with respect to: the map itself or, when it is a reshaped view returned
        after its use (``nn.MultiheadAttention`` returns ``weights.view(batch, heads, q, k)`` of the tensor the
        values were multiplied with), the tensor it views."""
        base = self.probabilities._base
        if base is not None and base.numel() == self.probabilities.numel() and base.is_contiguous():
            return base
        return self.probabilities


def find_attention_modules(adapter: ModelAdapter, attention_layers: AttentionLayers, *,
                           owner: str) -> tuple[list[tuple[str, nn.Module]], bool]:
    """The modules to hook and whether they were named by the user (``attention_layers=``)."""
    module = adapter.module
    if module is None:
        raise UnsupportedModelError(
            f"{owner}: attention methods need a torch.nn.Module whose attention layers can be hooked, got "
            f"{describe_value(adapter.model)}; use {ALTERNATIVES}"
        )
    if attention_layers is not None:
        specs = [attention_layers] if isinstance(attention_layers, (nn.Module, str)) else list(attention_layers)
        if not specs or not all(isinstance(s, (nn.Module, str)) for s in specs):
            raise ValidationError(
                f"{owner}: attention_layers must be a module, a dotted module name or a non-empty list of them, "
                f"got {attention_layers!r}"
            )
        return [adapter.find_layer(spec) for spec in specs], True
    found = [(name or "<model>", m) for name, m in module.named_modules()
             if isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()]
    return found, False


def _first_4d_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output if output.ndim == 4 else None
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.ndim == 4:
                return item
    return None


def _is_probability(tensor: torch.Tensor) -> bool:
    """Non-negative with rows summing to one (rows that are NaN, e.g. fully masked, are ignored)."""
    with torch.no_grad():
        values = tensor.detach()
        finite_rows = torch.isfinite(values).all(-1)
        if not bool(finite_rows.any()):
            return False
        rows = values[finite_rows].float()
        tolerance = 1e-3 if values.dtype in (torch.float32, torch.float64) else 3e-2  # half types: ~3 digits
        return bool((rows >= 0).all()) and bool(((rows.sum(-1) - 1).abs() <= tolerance).all())


@contextlib.contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        yield
        return
    previous = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(previous)


@contextlib.contextmanager
def _hf_output_attentions(model: nn.Module) -> Iterator[None]:
    """Set ``config.output_attentions = True`` on the Hugging Face (sub-)models for the block, restore after."""
    changed = []
    seen: set[int] = set()
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is None or id(config) in seen or getattr(config, "output_attentions", True) is not False:
            continue
        seen.add(id(config))
        try:
            config.output_attentions = True
        except Exception:  # noqa: BLE001 - a read-only config: leave it
            continue
        changed.append(config)
    try:
        yield
    finally:
        for config in changed:
            config.output_attentions = False


def _force_weights(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Pre-hook of ``nn.MultiheadAttention``: return per-head weights (``forward(q, k, v, key_padding_mask,
    need_weights, attn_mask, average_attn_weights, is_causal)``)."""
    args = list(args)
    if len(args) > 4:
        args[4] = True
    else:
        kwargs["need_weights"] = True
    if len(args) > 6:
        args[6] = False
    else:
        kwargs["average_attn_weights"] = False
    return tuple(args), kwargs


class AttentionCapture:
    """Hooks recording the attention maps of one model call (see the module doc).

    Example::

        with AttentionCapture(adapter, None, owner="AttentionRollout") as capture:
            adapter((ids,), {"attention_mask": mask})
            maps = capture.take(n_rows=ids.shape[0])
    """

    def __init__(self, adapter: ModelAdapter, attention_layers: AttentionLayers, *, owner: str) -> None:
        self.owner = owner
        self.adapter = adapter
        self.modules, self.explicit = find_attention_modules(adapter, attention_layers, owner=owner)
        self._records: list[AttentionMap] = []
        self._without_weights: list[str] = []
        self._verified: set[str] = set()
        self._requested = False
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> AttentionCapture:
        try:
            self._stack.enter_context(_mha_fastpath_disabled())
            for name, module in self.modules:
                if isinstance(module, nn.MultiheadAttention):
                    handle = module.register_forward_pre_hook(_force_weights, with_kwargs=True)
                    self._stack.callback(handle.remove)
                self._stack.callback(module.register_forward_hook(self._recorder(name)).remove)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _recorder(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_4d_tensor(output)
            if tensor is None:
                self._without_weights.append(name)
                return
            if any(tensor is r.probabilities for r in self._records):
                return  # passed on by an enclosing module: the inner one is already recorded
            if not self.explicit and name not in self._verified:
                if not _is_probability(tensor):
                    self._without_weights.append(name)
                    return
                self._verified.add(name)  # checked once per explain call
            self._records.append(AttentionMap(name, tensor))

        return hook

    def request_output_attentions(self) -> bool:
        """Set ``config.output_attentions`` on the Hugging Face sub-models until the block ends (for versions of
        ``transformers`` whose attention modules return the probabilities only then); ``False`` when there is
        none to set or it is set already. Only used when a call found no maps: recent versions return them
        anyway, and asking for them makes ``transformers`` install output-recording hooks of its own."""
        if self._requested or not self.modules or not any(getattr(getattr(m, "config", None), "output_attentions", None) is False
                                      for m in self.adapter.module.modules()):
            return False
        self._requested = True
        self._stack.enter_context(_hf_output_attentions(self.adapter.module))
        return True

    def clear(self) -> None:
        self._records = []
        self._without_weights = []

    @property
    def found(self) -> bool:
        """Whether maps were recorded since the last :meth:`clear`."""
        return bool(self._records)

    def take(self, n_rows: int) -> list[AttentionMap]:
        """The maps recorded since the last call (checked: 4-D, one row per sample), then cleared."""
        records, silent = self._records, self._without_weights
        self.clear()
        if not records:
            raise UnsupportedModelError(self._nothing_found(silent))
        for record in records:
            shape = tuple(record.probabilities.shape)
            if shape[0] != n_rows:
                raise ValidationError(
                    f"{self.owner}: the attention map of {record.name!r} has shape {shape}; expected "
                    f"(batch={n_rows}, heads, queries, keys)"
                )
        return records

    def _nothing_found(self, silent: list[str]) -> str:
        if self.explicit:
            names = ", ".join(repr(n) for n, _ in self.modules)
            return (f"{self.owner}: attention_layers {names} returned no 4-D (batch, heads, queries, keys) tensor; "
                    f"name modules whose output is (or holds) the attention probabilities")
        searched = ("torch.nn.MultiheadAttention modules and modules whose class name contains 'Attention'")
        if not self.modules:
            where = f"the model ({type(self.adapter.module).__name__}) has none"
        else:
            shown = ", ".join(sorted({n for n in silent} or {n for n, _ in self.modules})[:8])
            where = (f"found {len(self.modules)} such module(s) ({shown}) but none returned attention "
                     f"probabilities; a Hugging Face model loaded with a fused kernel (sdpa/flash) computes none: "
                     f"load it with attn_implementation='eager', or name the modules with attention_layers=")
        return (f"{self.owner}: no attention maps found: searched {searched}; {where}. Without attention maps use "
                f"{ALTERNATIVES}")


def attention_gradients(score: torch.Tensor, maps: Sequence[AttentionMap], *, owner: str) -> list[torch.Tensor]:
    """Gradient of ``score.sum()`` with respect to each map (zeros where a map does not reach the score)."""
    if torch.is_inference_mode_enabled():
        raise UnsupportedModelError(
            f"{owner}: gradients cannot be computed inside torch.inference_mode(); call explain() outside it"
        )
    tensors = [m.graph_tensor for m in maps]
    if not score.requires_grad or not any(t.requires_grad for t in tensors):
        raise UnsupportedModelError(
            f"{owner}: the model's output does not depend differentiably on its attention maps (no gradient "
            f"flows); use attention_rollout or attention, which need no gradients"
        )
    wanted = [i for i, t in enumerate(tensors) if t.requires_grad]
    grads = torch.autograd.grad(score.sum(), [tensors[i] for i in wanted], allow_unused=True)
    out = [torch.zeros_like(m.probabilities) for m in maps]
    for i, g in zip(wanted, grads, strict=True):
        if g is not None:
            out[i] = g.reshape(maps[i].probabilities.shape)
    return out
