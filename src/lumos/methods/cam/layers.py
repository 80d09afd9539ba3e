"""Layers for class activation maps: finding the last spatial layer, and bringing a layer's output into the
``(batch, channels, *spatial)`` layout every CAM works in (token layers of vision transformers reshaped to
their patch grid).

Finding the layer (``layer=None``): one probe forward of the first sample runs with a forward hook on every
submodule (in a :class:`~lumos.core.hooks.HookSet`, removed after). A module is a candidate when it runs
exactly once, returns one floating tensor that is not the model's output, and that tensor is a spatial map:
``(1, C, h, w)`` with ``h * w > 1`` (``(1, C, l)`` with ``l > 1`` for 1-D inputs ``(N, C, L)``), or, with
``tokens=True``, a token layer ``(1, T, C)`` with ``T >= 4``. The last candidate to finish is chosen; when
several modules return that very tensor (a block, its parent ``Sequential`` and the block's last module
modified in place), the innermost one that finished first is named - for a ResNet that is the last residual
block (``layer4.1``), for a plain ``Sequential`` CNN the last spatial module. Identity is judged on the tensor
object *and* its in-place version counter, so a batch-norm output later modified in place by ``+=`` and an
in-place ReLU is not mistaken for the block's output. The choice is cached per model (held weakly) and
input shape.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...core.hooks import HookSet
from ...core.inputs import InputBatch, select_rows
from ...core.model import ModelAdapter
from ...errors import UnsupportedModelError, ValidationError

Reshape = Callable[[torch.Tensor], torch.Tensor]

_found_layers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------------------- layouts
def token_grid(n_tokens: int, image_size: tuple[int, ...] | None = None) -> tuple[int, int, int]:
    """``(n_extra, h, w)``: how ``n_tokens`` tokens split into leading class/register tokens and an h x w grid.

    Square images (or unknown size): ``g * g`` is the largest square <= ``n_tokens`` and the first
    ``n_tokens - g * g`` tokens are dropped. Non-square images ``(H, W)``: the fewest leading tokens whose
    removal leaves a grid with ``h / w == H / W``; the square rule when there is none.
    """
    if image_size is not None and len(image_size) == 2 and image_size[0] != image_size[1]:
        height, width = image_size
        for extra in range(n_tokens):
            patches = n_tokens - extra
            for h in range(1, patches + 1):
                if patches % h == 0 and h * width == (patches // h) * height:
                    return extra, h, patches // h
    g = math.isqrt(n_tokens)
    return n_tokens - g * g, g, g


@dataclass(frozen=True)
class Layout:
    """How a layer's native output becomes a ``(batch, channels, *spatial)`` map.

    ``kind`` is ``"spatial"`` (already channels-first), ``"tokens"`` ((N, T, C) -> drop leading tokens ->
    (N, C, h, w)) or ``"custom"`` (the user's ``reshape=``). Every layout must be a pure rearrangement of
    values (selection, permutation, reshape): it is applied to activations and to gradients alike.
    """

    kind: str
    transform: Reshape | None = None

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.transform is None else self.transform(tensor)

    def positions(self, native_shape: tuple[int, ...]) -> torch.Tensor:
        """Flat positions in one sample's native output of every map value: (channels, spatial positions).

        Found by applying the layout to a tensor of indices, so it works for a custom rearrangement too.
        """
        size = math.prod(native_shape[1:])
        index = torch.arange(size, dtype=torch.float64).reshape(1, *native_shape[1:])
        mapped = self(index)
        if mapped.ndim < 3 or mapped.shape[0] != 1:
            raise UnsupportedModelError(f"the layer layout maps a (1, ...) output to shape {tuple(mapped.shape)}")
        flat = mapped.reshape(mapped.shape[1], -1)
        as_long = flat.round().long()
        if not bool((flat == as_long).all()) or int(as_long.min()) < 0 or int(as_long.max()) >= size:
            raise UnsupportedModelError(
                "reshape= must only rearrange the layer's values (select, permute, reshape) to ablate channels"
            )
        return as_long


def make_layout(native_shape: tuple[int, ...], input_shape: tuple[int, ...], reshape: Reshape | None, *,
                owner: str, layer_name: str) -> Layout:
    """The layout of a layer whose output has ``native_shape`` for inputs of ``input_shape``.

    4-d outputs are (N, C, h, w) maps; 3-d outputs are (N, C, l) maps for 1-d inputs (N, C, L) and token
    layers (N, T, C) for image inputs (reshaped to the patch grid, see :func:`token_grid`); ``reshape``
    overrides this.
    """
    if reshape is not None:
        layout = Layout("custom", reshape)
    elif len(native_shape) == 4 or (len(native_shape) == 3 and len(input_shape) == 3):
        layout = Layout("spatial")
    elif len(native_shape) == 3:
        image = tuple(input_shape[2:]) if len(input_shape) == 4 else None
        extra, h, w = token_grid(int(native_shape[1]), image)

        def to_grid(tokens: torch.Tensor) -> torch.Tensor:
            return tokens[:, extra:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

        layout = Layout("tokens", to_grid)
    else:
        raise ValidationError(
            f"{owner}: layer {layer_name!r} returns shape {tuple(native_shape)}; a CAM needs a map "
            f"(batch, channels, h, w), (batch, channels, length) for 1-d inputs, or tokens (batch, tokens, "
            f"channels) of a vision transformer; pass reshape=callable mapping the output to (batch, channels, h, w)"
        )
    return layout


def apply_layout(layout: Layout, tensor: torch.Tensor, *, owner: str, layer_name: str) -> torch.Tensor:
    """``layout(tensor)``, checked to be a (batch, channels, *spatial) map of the same batch."""
    mapped = layout(tensor)
    if not isinstance(mapped, torch.Tensor) or mapped.ndim not in (3, 4) or mapped.shape[0] != tensor.shape[0]:
        got = tuple(mapped.shape) if isinstance(mapped, torch.Tensor) else type(mapped).__name__
        raise ValidationError(
            f"{owner}: reshape= must map layer {layer_name!r}'s output {tuple(tensor.shape)} to (batch, channels, "
            f"h, w) or (batch, channels, length), got {got}"
        )
    return mapped


# ---------------------------------------------------------------------------------------------- finding
@dataclass
class _Call:
    name: str
    output: torch.Tensor | None
    version: int


def _is_candidate(shape: tuple[int, ...], input_ndim: int, tokens: bool) -> bool:
    if tokens:
        return len(shape) == 3 and shape[1] >= 4
    if input_ndim == 3:
        return len(shape) == 3 and shape[2] > 1
    return len(shape) == 4 and shape[2] * shape[3] > 1


def find_spatial_layer(adapter: ModelAdapter, batch: InputBatch, forward_kwargs: Mapping[str, Any], *,
                       tokens: bool, owner: str) -> tuple[str, nn.Module]:
    """The last spatial (or, with ``tokens``, token) layer of the model, as ``(dotted name, module)``.

    See the module docstring for the rule. Raises :class:`UnsupportedModelError` naming what was searched
    when no module qualifies (e.g. an MLP).
    """
    model = adapter.module
    if model is None:
        raise UnsupportedModelError(
            f"{owner}: CAM methods need a torch.nn.Module with a spatial layer, got a {type(adapter.model).__name__}"
        )
    input_ndim = batch.tensors[0].ndim
    key = (tuple((tuple(t.shape[1:]), t.dtype) for t in batch.tensors), tokens)
    cached = _found_layers.get(model, {}).get(key)
    if cached is not None:
        name, module_ref = cached
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if module is not None and module is module_ref():
            return name, module

    calls: list[_Call] = []
    counts: dict[str, int] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            counts[name] = counts.get(name, 0) + 1
            tensor = output if isinstance(output, torch.Tensor) and output.is_floating_point() else None
            calls.append(_Call(name, tensor, tensor._version if tensor is not None else -1))

        return hook

    index = torch.zeros(1, dtype=torch.long, device=batch.tensors[0].device)
    kwargs = select_rows(forward_kwargs, index, batch.n)
    try:
        with HookSet() as hooks, torch.no_grad():
            for name, module in model.named_modules():
                if name:
                    hooks.forward(module, recorder(name))
            output = adapter(tuple(t[:1] for t in batch.tensors), kwargs)
        candidates = [
            c for c in calls
            if c.output is not None and counts[c.name] == 1 and _is_candidate(tuple(c.output.shape), input_ndim, tokens)
            and not (c.output is output and c.version == output._version)
        ]
        if not candidates:
            seen = ", ".join(f"{c.name} {tuple(c.output.shape) if c.output is not None else '(not a tensor)'}"
                             for c in calls[:12]) + (" ..." if len(calls) > 12 else "")
            wanted = ("a token layer (batch, tokens, channels) with >= 4 tokens" if tokens else
                      "a map (batch, channels, length) with length > 1" if input_ndim == 3 else
                      "a map (batch, channels, h, w) with h * w > 1")
            raise UnsupportedModelError(
                f"{owner}: found no layer returning {wanted}, run once per forward pass, among the "
                f"{len(counts)} submodules the model ran ({seen or 'none'}). CAM methods need a convolutional or "
                f"vision-transformer layer: pass layer=... (and reshape= for an unusual layout), or use a gradient "
                f"method such as integrated_gradients or saliency for this model."
            )
        last = candidates[-1]
        chosen = next(c for c in candidates if c.output is last.output and c.version == last.version)
        module = model.get_submodule(chosen.name)
    finally:
        calls.clear()
    try:
        _found_layers.setdefault(model, {})[key] = (chosen.name, weakref.ref(module))
    except TypeError:  # pragma: no cover - a model that cannot be weakly referenced: no cache
        pass
    return chosen.name, module
