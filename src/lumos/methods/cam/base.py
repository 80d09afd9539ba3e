"""The CAM family base: :class:`CAMExplainer`.

Every class activation map is ``M = sum_k w_k A_k`` (or an elementwise variant) over the K channels ``A_k`` of
one layer's output, followed by a ReLU, upsampling to the input and broadcasting over the input's channels.
The base finds the layer, brings its output into the (N, K, *spatial) layout (token layers of vision
transformers reshaped to their patch grid), runs the passes and finishes the map; a variant overrides one
narrow hook: how the channel weights are computed (``_channel_weights``), or how the map is combined.

Output convention: ``attributions`` has the input's shape, e.g. (N, 3, 224, 224): the map ``M`` (N, 1, h, w)
upsampled bilinearly to (H, W) (linearly for 1-d signals (N, C, L)) and repeated over the C input channels,
so every lumos metric and plot reads it like any other attribution; ``explanation.layer`` is ``None``.
With ``upsample=False`` the attributions are the raw map at the layer's resolution, shape (N, 1, h, w)
(or (N, 1, l)), and ``explanation.layer`` names the layer. ``extras["layer"]`` always names the layer used,
``extras["channel_weights"]`` holds the (N, K) weights where the method defines them, and
``extras["n_evaluations"]`` the number of rows the model was run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...core.gradients import GradientEngine
from ...core.hooks import HookSet
from ...errors import ValidationError
from ..base import Attribution, ExplainContext, Explainer
from .layers import Layout, Reshape, apply_layout, find_spatial_layer, make_layout


@dataclass
class LayerChoice:
    """The layer a CAM uses: its dotted name and module (the layout is fixed from its first output)."""

    name: str
    module: nn.Module


@dataclass
class CamResult:
    """What a variant computes: the map at the layer's resolution (N, 1, *spatial), before the ReLU."""

    cam: torch.Tensor
    scores: torch.Tensor
    target: Any
    n_evaluations: int
    weights: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class GradientPass:
    """One forward+backward: the layer's activations and the target score's gradients as (N, K, *s) maps."""

    activations: torch.Tensor
    grads: torch.Tensor
    scores: torch.Tensor
    engine: GradientEngine


@dataclass
class CleanPass:
    """One forward of the inputs: resolved target, target scores, the layer's output (native and as a map),
    and the inputs/outputs of extra captured modules."""

    scores: torch.Tensor
    output: torch.Tensor
    native: torch.Tensor
    activations: torch.Tensor
    layout: Layout
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]]


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``sum_k w_nk A_nk`` as one batched matrix product: (N, K) x (N, K, *s) -> (N, 1, *s)."""
    n, k = activations.shape[:2]
    flat = torch.bmm(weights.to(activations.dtype).reshape(n, 1, k), activations.reshape(n, k, -1))
    return flat.reshape(n, 1, *activations.shape[2:])


class CAMExplainer(Explainer):
    """Base of the class-activation-map family (see the module docstring for the output convention).

    Args:
        layer: the layer (module or dotted name); ``None`` finds the last spatial layer (see
            :mod:`lumos.methods.cam.layers`) and names it in ``extras["layer"]``.
        relu: apply a ReLU to the map at the layer's resolution (default ``True``: the positive evidence for
            the target, as in the papers); ``False`` keeps the signed map.
        upsample: ``True`` (default) returns the map upsampled to the input and repeated over its channels;
            ``False`` the raw (N, 1, h, w) map at the layer's resolution.
        normalize: rescale each sample's final map to [0, 1] (min-max). Off by default: raw values, so metrics
            can compare maps across samples and methods.
        tokens: with ``layer=None``, look for the last token layer (batch, tokens, channels) instead of a
            spatial map (vision transformers; name the layer when the last token layer does not reach the
            output through its patch tokens, e.g. ``layer="blocks.11.norm1"`` for a class-token ViT).
        reshape: callable mapping the layer's output to (batch, channels, h, w); it must only rearrange values
            (it is applied to activations and gradients alike). Default: 4-d outputs as they are; 3-d token
            outputs (N, T, C) of image models with the first ``T - g*g`` tokens (class/register tokens) dropped
            and the rest laid out as a g x g grid (``g*g`` the largest square <= T; non-square images use
            their aspect ratio).
    """

    family: ClassVar[str] = "cam"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    needs_spatial_layer: ClassVar[bool] = True

    def __init__(self, model: Any, *, relu: bool = True, upsample: bool = True, normalize: bool = False,
                 tokens: bool = False, reshape: Reshape | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = self._owner()
        for name, value in (("relu", relu), ("upsample", upsample), ("normalize", normalize), ("tokens", tokens)):
            if not isinstance(value, bool):
                raise ValidationError(f"{owner}: {name} must be True or False, got {value!r}")
        if reshape is not None and not callable(reshape):
            raise ValidationError(
                f"{owner}: reshape must be None or a callable mapping the layer's output to (batch, channels, h, "
                f"w), got {reshape!r}"
            )
        self.relu = relu
        self.upsample = upsample
        self.normalize = normalize
        self.tokens = tokens
        self.reshape = reshape

    def get_params(self) -> dict[str, Any]:
        reshape = None if self.reshape is None else getattr(self.reshape, "__name__", type(self.reshape).__name__)
        return {"relu": self.relu, "upsample": self.upsample, "normalize": self.normalize, "tokens": self.tokens,
                "reshape": reshape}

    # ------------------------------------------------------------------ the one entry point
    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        if batch.is_tuple and len(batch.tensors) > 1:
            raise ValidationError(
                f"{owner}: CAM methods explain one input tensor (images (N, C, H, W) or signals (N, C, L)), got "
                f"{len(batch.tensors)} inputs {batch.describe()}; for a multi-input model use a gradient method "
                f"such as integrated_gradients"
            )
        layer = self._choose_layer(context)
        result = self._compute(context, layer)
        attributions, input_space = self._finish(context, layer, result.cam)
        extras = {"layer": layer.name, **result.extras, "n_evaluations": int(result.n_evaluations)}
        if result.weights is not None:
            extras["channel_weights"] = result.weights
        return Attribution((attributions,), result.scores, extras, result.target, input_space=input_space,
                           layer_name=layer.name)

    def _compute(self, context: ExplainContext, layer: LayerChoice) -> CamResult:
        """The variant's map (N, 1, *spatial) at the layer's resolution, before the ReLU."""
        raise NotImplementedError

    # ------------------------------------------------------------------ layer
    def _choose_layer(self, context: ExplainContext) -> LayerChoice:
        if self.layer is not None:
            return LayerChoice(*context.adapter.find_layer(self.layer))
        name, module = find_spatial_layer(context.adapter, context.batch, context.forward_kwargs,
                                          tokens=self.tokens, owner=self._owner())
        return LayerChoice(name, module)

    def _layout(self, context: ExplainContext, layer: LayerChoice, native: torch.Tensor) -> Layout:
        return make_layout(tuple(native.shape), tuple(context.batch.tensors[0].shape), self.reshape,
                           owner=self._owner(), layer_name=layer.name)

    def _as_map(self, layout: Layout, layer: LayerChoice, native: torch.Tensor) -> torch.Tensor:
        return apply_layout(layout, native, owner=self._owner(), layer_name=layer.name)

    # ------------------------------------------------------------------ passes
    def _engine_for(self, context: ExplainContext, layer: nn.Module | None, **kwargs: Any) -> GradientEngine:
        return GradientEngine(
            context.adapter, context.batch, context.forward_kwargs, context.target, layer=layer,
            batch_size=self.batch_size, progress=kwargs.pop("progress", self.progress), owner=self._owner(),
            **kwargs,
        )

    def _gradients(self, context: ExplainContext, layer: LayerChoice, **kwargs: Any) -> GradientPass:
        """Activations and gradients of the target score at the layer, as (N, K, *s) maps: one forward+backward
        (the backward pass stops at the layer)."""
        engine = self._engine_for(context, layer.module, **kwargs)
        (values,), (grads,), scores = engine.at_inputs(desc=self._owner())
        layout = self._layout(context, layer, values)
        return GradientPass(self._as_map(layout, layer, values), self._as_map(layout, layer, grads), scores,
                            engine)

    def _clean_pass(self, context: ExplainContext, engine: GradientEngine, layer: LayerChoice,
                    extra: Mapping[str, nn.Module] | None = None) -> CleanPass:
        """One batched forward of the inputs without gradients: resolve the target, score it, and capture the
        layer's output (and the 2-d input and the output of ``extra`` modules, e.g. a linear head on pooled
        features) with hooks removed after."""
        owner = self._owner()
        n = context.batch.n
        rows_per_call(engine, n)  # measure the chunk size before our hooks are in place
        store: dict[str, list[tuple[torch.Tensor | None, torch.Tensor]]] = {"": []}
        modules = {"": layer.module, **(extra or {})}

        def capture(key: str) -> Any:
            store.setdefault(key, [])

            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if not isinstance(output, torch.Tensor):
                    raise ValidationError(
                        f"{owner}: layer {layer.name if key == '' else key!r} returns {type(output).__name__}, "
                        f"not a tensor; choose a layer whose output is one tensor"
                    )
                if not key:
                    store[key].append((None, output.detach()))
                elif args and isinstance(args[0], torch.Tensor) and args[0].ndim == 2:  # pooled features only
                    store[key].append((args[0].detach(), output.detach()))

            return hook

        with HookSet() as hooks:
            for key, module in modules.items():
                hooks.forward(module, capture(key))
            output, scores = engine.evaluate(context.batch.tensors, resolve=True, desc="forward")
        if sum(int(out.shape[0]) for _, out in store[""]) != n:
            raise ValidationError(
                f"{owner}: layer {layer.name!r} runs more than once in one forward pass (or not at all); "
                f"attribute to a layer that is called once"
            )
        native = torch.cat([out for _, out in store[""]])
        layout = self._layout(context, layer, native)
        captured = {}
        for key, parts in store.items():
            if key and parts and sum(int(o.shape[0]) for _, o in parts) == n:
                captured[key] = (torch.cat([i for i, _ in parts]), torch.cat([o for _, o in parts]))
        return CleanPass(scores, output, native, self._as_map(layout, layer, native), layout, captured)

    # ------------------------------------------------------------------ finishing
    def _finish(self, context: ExplainContext, layer: LayerChoice, cam: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """ReLU at the layer's resolution, then upsampling and channel broadcast (or the raw map), then the
        optional min-max normalisation. Returns the attributions and whether they are in input space."""
        if self.relu:
            cam = cam.clamp(min=0)
        x = context.batch.tensors[0]
        if not self.upsample:
            return _normalized(cam) if self.normalize else cam, False
        spatial = tuple(x.shape[2:])
        if x.ndim not in (3, 4) or cam.ndim != x.ndim:
            raise ValidationError(
                f"{self._owner()}: cannot upsample the map {tuple(cam.shape[2:])} of layer {layer.name!r} to inputs of "
                f"shape {tuple(x.shape)}: maps are upsampled onto images (N, C, H, W) or signals (N, C, L); pass "
                f"upsample=False for the map at the layer's resolution"
            )
        if tuple(cam.shape[2:]) != spatial:
            mode = "bilinear" if cam.ndim == 4 else "linear"
            cam = F.interpolate(cam, size=spatial, mode=mode, align_corners=False)
        if self.normalize:
            cam = _normalized(cam)
        return cam.expand(-1, x.shape[1], *spatial).contiguous(), True


def _normalized(cam: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max rescaling to [0, 1] (a constant map becomes zeros)."""
    flat = cam.reshape(cam.shape[0], -1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)),
                         torch.zeros_like(flat))
    return scaled.reshape(cam.shape)


def rows_per_call(engine: GradientEngine, n_rows: int, *, backward: bool = True) -> int:
    """Rows per model call of ``engine`` (``batch_size``, or from the memory budget with a cached one-row probe).

    Uses the engine's own chunking, so results and memory behave as in every other lumos method.
    """
    return engine.rows_per_call(n_rows, backward=backward)
