"""Gradient-free CAMs weighting each channel by the model's response to a perturbation: ScoreCAM (the input
masked by the channel) and AblationCAM (the channel zeroed).

Both run one clean forward (target, scores, activations), then ``N * K`` perturbed rows - row ``r`` is sample
``r // K`` perturbed by channel ``r % K`` - built chunk by chunk and evaluated through the batching engine at
``batch_size`` rows per model call (or as many as the memory budget allows), with a progress bar. No Python
loop of single forward passes; results do not depend on ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...core.batching import iter_chunks
from ...core.gradients import GradientEngine
from ...core.hooks import HookSet
from ...core.registry import register
from ...errors import ValidationError
from ..base import ExplainContext
from .base import CAMExplainer, CamResult, CleanPass, LayerChoice, rows_per_call, weighted_sum

#: builds the perturbed rows of one chunk: (sample index, channel index) of each row -> model inputs
PointBuilder = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]


class PerturbationCAMExplainer(CAMExplainer):
    """A CAM whose channel weights come from the target score of ``N * K`` perturbed forward passes."""

    requires_gradients: ClassVar[bool] = False

    def _compute(self, context: ExplainContext, layer: LayerChoice) -> CamResult:
        engine = self._engine_for(context, None)
        clean = self._clean_pass(context, engine, layer)
        perturbed = self._perturbed_scores(context, engine, layer, clean)
        weights = self._weights_from(clean.scores, perturbed)
        cam = weighted_sum(weights, clean.activations)
        return CamResult(cam, clean.scores, engine.target, engine.n_evaluations, weights,
                         {"channel_scores": perturbed})

    def _perturbed_scores(self, context: ExplainContext, engine: GradientEngine, layer: LayerChoice,
                          clean: CleanPass) -> torch.Tensor:
        raise NotImplementedError

    def _weights_from(self, scores: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _run_rows(self, engine: GradientEngine, n: int, k: int, build: PointBuilder,
                  on_chunk: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """Target scores of the ``n * k`` rows (row r: sample r // k, channel r % k), shape (n, k)."""
        device = engine.batch.tensors[0].device
        n_rows = n * k
        rows_all = torch.arange(n_rows, device=device)
        sample_index = torch.div(rows_all, k, rounding_mode="floor")
        channel_index = rows_all - sample_index * k
        size = rows_per_call(engine, n_rows, backward=False)
        engine.progress = False  # one bar, over our chunks
        scores = []
        for rows in iter_chunks(n_rows, size, desc=self._owner(), progress=self.progress):
            samples, channels = sample_index[rows], channel_index[rows]
            if on_chunk is not None:
                on_chunk(channels)
            scores.append(engine.evaluate(build(samples, channels), samples, desc=self._owner())[1])
        return torch.cat(scores).reshape(n, k)


@register
class ScoreCAM(PerturbationCAMExplainer):
    """Score-CAM: channels weighted by how much the input, masked by each channel, raises the target score.

    Each channel ``A_k`` is upsampled to the input (bilinear, or linear for signals) and min-max normalised
    to a mask ``H_k`` in [0, 1] (a constant channel gives the zero mask). ``C_k = S(x * H_k) - S(x_b)`` is
    the increase of the target score over a baseline input ``x_b``; ``w = softmax_k(C_k)``,
    ``M = ReLU(sum_k w_k A_k)``. Baseline: the all-zero input (the input masked out entirely). The softmax
    is invariant to subtracting the same ``S(x_b)`` from every channel, so the baseline does not change the
    weights and is not evaluated: ``w = softmax_k(S(x * H_k))``; ``extras["channel_scores"]`` holds
    ``S(x * H_k)`` (N, K). The score is the target's score (the logit for a class target). Needs
    floating-point inputs; ``N * K`` masked forward passes (no gradients).

    Wang et al. (2020), "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    CVPR workshops.

    Example::

        ScoreCAM(model, batch_size=64).explain(images, target=labels)
    """

    name: ClassVar[str] = "score_cam"
    reference: ClassVar[str] = "Wang et al. 2020, arXiv:1910.01279"

    def _perturbed_scores(self, context: ExplainContext, engine: GradientEngine, layer: LayerChoice,
                          clean: CleanPass) -> torch.Tensor:
        x = context.batch.tensors[0]
        if not x.is_floating_point():
            raise ValidationError(
                f"ScoreCAM: masks multiply the inputs, which must be floating-point, got {context.batch.describe()}"
            )
        activations = clean.activations
        if activations.ndim != x.ndim:
            raise ValidationError(
                f"ScoreCAM: the map of layer {layer.name!r} {tuple(activations.shape)} cannot mask inputs of shape "
                f"{tuple(x.shape)}: inputs must be images (N, C, H, W) (or signals (N, C, L) with a (N, K, l) layer)"
            )
        spatial = tuple(x.shape[2:])
        mode = "bilinear" if x.ndim == 4 else "linear"

        def build(samples: torch.Tensor, channels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            maps = activations[samples, channels].unsqueeze(1)
            if tuple(maps.shape[2:]) != spatial:
                maps = F.interpolate(maps, size=spatial, mode=mode, align_corners=False)
            flat = maps.reshape(maps.shape[0], -1)
            low = flat.min(1, keepdim=True).values
            span = flat.max(1, keepdim=True).values - low
            masks = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)),
                                torch.zeros_like(flat))
            return (x.index_select(0, samples) * masks.reshape(maps.shape).to(x.dtype),)

        return self._run_rows(engine, context.batch.n, int(activations.shape[1]), build)

    def _weights_from(self, scores: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
        return torch.softmax(perturbed, dim=1)


@register
class AblationCAM(PerturbationCAMExplainer):
    """Ablation-CAM: channels weighted by the relative drop of the target score when the channel is zeroed.

    ``w_k = (S - S_k) / S``, where ``S`` is the target score and ``S_k`` the score with channel ``k`` of the
    layer's output set to zero (a forward hook replaces the layer's output; each row of a batch ablates a
    different channel of the same sample); ``M = ReLU(sum_k w_k A_k)``. ``S = 0`` leaves ``S - S_k``
    undivided; a negative ``S`` flips the map's sign, as the formula says. For token layers only the patch
    tokens of the channel are zeroed (the class/register tokens are kept). ``extras["channel_scores"]``
    holds ``S_k`` (N, K). ``N * K`` forward passes (no gradients).

    Desai & Ramaswamy (2020), "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV.

    Example::

        AblationCAM(model, batch_size=64).explain(images, target=labels)
    """

    name: ClassVar[str] = "ablation_cam"
    reference: ClassVar[str] = "Desai & Ramaswamy 2020, doi:10.1109/WACV45572.2020.9093360"

    def _perturbed_scores(self, context: ExplainContext, engine: GradientEngine, layer: LayerChoice,
                          clean: CleanPass) -> torch.Tensor:
        native_shape = tuple(clean.native.shape)
        positions = clean.layout.positions(native_shape).to(clean.native.device)
        state: dict[str, Any] = {"channels": None, "cursor": 0}

        def ablate(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            channels = state["channels"]
            start, count = state["cursor"], int(output.shape[0])
            if start + count > channels.shape[0] or tuple(output.shape[1:]) != native_shape[1:]:
                raise ValidationError(
                    f"AblationCAM: layer {layer.name!r} runs more than once in one forward pass (or changed shape); "
                    f"attribute to a layer that is called once"
                )
            state["cursor"] = start + count
            flat = output.reshape(count, -1).clone()
            flat.scatter_(1, positions.index_select(0, channels[start:start + count]), 0)
            return flat.reshape(output.shape)

        def on_chunk(channels: torch.Tensor) -> None:
            state["channels"], state["cursor"] = channels, 0

        def build(samples: torch.Tensor, channels: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(t.index_select(0, samples) for t in context.batch.tensors)

        n, k = context.batch.n, int(clean.activations.shape[1])
        rows_per_call(engine, n * k)  # any memory probe runs before the ablation hook is in place
        with HookSet() as hooks:
            hooks.forward(layer.module, ablate)
            return self._run_rows(engine, n, k, build, on_chunk)

    def _weights_from(self, scores: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
        base = scores[:, None].to(perturbed.dtype)
        return (base - perturbed) / torch.where(base != 0, base, torch.ones_like(base))
