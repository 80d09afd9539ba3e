"""GradientSHAP / expected gradients: integrated gradients in expectation over a background set."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...core.gradients import has_per_sample_kwargs
from ...core.registry import register
from ...core.seeding import torch_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext, Explainer
from .baselines import prepare_background


@register
class GradientSHAP(Explainer):
    """Expected gradients: gradients at random points between background samples and the (noisy) input.

    ``phi_i(x) = E_{x' ~ D, a ~ U(0,1), e ~ N(0, s^2)} [ (x~_i - x'_i) dF_c(x' + a (x~ - x'))/dx_i ]``,
    ``x~ = x + e``. In expectation ``sum_i phi_i(x) = F_c(x) - E_{x'~D} F_c(x')`` (SHAP values of the
    linearised model); ``extras`` has ``base_value`` (= E F_c(x')), ``convergence_delta`` and the standard
    error of each attribution over the ``n_samples`` draws.

    Lundberg & Lee (2017), "A Unified Approach to Interpreting Model Predictions", NeurIPS; Erion et al.
    (2021), "Improving performance of deep learning models with axiomatic attribution priors and expected
    gradients", Nature Machine Intelligence.

    Args:
        n_samples: random (background, alpha, noise) draws per sample.
        noise_std: standard deviation of the Gaussian noise added to the input (0 = none; must be 0 with
            layer=).

    Example::

        GradientSHAP(model, n_samples=50, seed=0).explain(x, target=y, baseline=x_train[:100])
    """

    name: ClassVar[str] = "gradient_shap"
    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    needs_baseline: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Lundberg & Lee 2017, arXiv:1705.07874; Erion et al. 2021, arXiv:1906.10670"

    def __init__(self, model: Any, *, n_samples: int = 50, noise_std: float = 0.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValidationError(f"GradientSHAP: n_samples must be an int >= 1, got {n_samples!r}")
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not noise_std >= 0:
            raise ValidationError(f"GradientSHAP: noise_std must be a number >= 0, got {noise_std!r}")
        if noise_std > 0 and self.layer is not None:
            raise ValidationError("GradientSHAP: noise_std > 0 is not defined with layer=; use noise_std=0")
        self.n_samples = int(n_samples)
        self.noise_std = float(noise_std)

    def get_params(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "noise_std": self.noise_std}

    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        engine = self._engine(context)
        background = prepare_background(context.baseline, batch, owner=owner)
        n, m, n_bg = batch.n, self.n_samples, int(background[0].shape[0])
        device = batch.tensors[0].device
        scores = engine.resolve_target()

        # background rows: shared by all samples, or one copy per sample when extra forward arguments
        # differ per sample (e.g. attention masks)
        paired = has_per_sample_kwargs(context.forward_kwargs, n)
        if paired:
            bg_rows = tuple(b.repeat(n, *([1] * (b.ndim - 1))) for b in background)
            bg_sample = torch.arange(n, device=device).repeat_interleave(n_bg)
        else:
            bg_rows = background
            bg_sample = torch.zeros(n_bg, dtype=torch.long, device=device)
        base_values = self._base_values(engine, bg_rows, bg_sample, n, n_bg, paired)

        # endpoints in attribution space: the inputs, or the layer's output (whose dtype the path takes
        # even when the inputs are token ids)
        if engine.layer is None:
            starts, ends = bg_rows, batch.tensors
        else:
            starts = (engine.layer_values(bg_rows, bg_sample),)
            ends = (engine.layer_values(batch.tensors),)

        generator = torch_generator(context.seed)
        choice = torch.randint(n_bg, (n * m,), generator=generator).to(device)
        alphas = torch.rand(n * m, generator=generator, dtype=ends[0].dtype).to(device)
        sample_index = torch.arange(n, device=device).repeat_interleave(m)
        start_index = sample_index * n_bg + choice if paired else choice
        noise = None
        if self.noise_std > 0:  # (input space only: rejected with layer= in __init__)
            noise = [torch.randn((n * m, *x.shape[1:]), generator=generator, dtype=x.dtype).to(device)
                     for x in batch.tensors]

        # per sample: the sum of the draws (for the attribution) and their running mean and sum of squared
        # deviations (for the standard error), merged chunk by chunk with the update of Chan, Golub & LeVeque
        # (1979): E[v^2] - E[v]^2 would cancel catastrophically when the draws barely vary
        sums = [torch.zeros_like(e) for e in ends]
        means = [torch.zeros_like(e) for e in ends]
        deviations = [torch.zeros_like(e) for e in ends]
        counts = torch.zeros(n, dtype=ends[0].dtype, device=device)

        def shaped(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return v.reshape(-1, *([1] * (like.ndim - 1)))

        def endpoints(rows: slice) -> list[tuple[torch.Tensor, torch.Tensor]]:
            pairs = []
            for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
                a = start.index_select(0, start_index[rows])
                b = end.index_select(0, sample_index[rows])
                if noise is not None:
                    b = b + self.noise_std * noise[i][rows]
                pairs.append((a, b))
            return pairs

        current: dict[str, Any] = {}  # the chunk's endpoints, built once for make_points and consume

        def make_points(rows: slice) -> tuple[torch.Tensor, ...]:
            alpha = alphas[rows]
            current["rows"], current["pairs"] = rows, endpoints(rows)
            return tuple(torch.lerp(a, b, shaped(alpha, a)) for a, b in current["pairs"])

        def consume(rows: slice, grads: tuple[torch.Tensor, ...], points: tuple[torch.Tensor, ...]) -> None:
            index = sample_index[rows]
            lo, hi = int(index[0]), int(index[-1]) + 1  # rows are sorted by sample
            local = index - lo
            seen = counts[lo:hi]
            new = torch.zeros(hi - lo, dtype=counts.dtype, device=device).index_add_(
                0, local, torch.ones_like(local, dtype=counts.dtype))
            both = seen + new
            pairs = current["pairs"] if current.get("rows") == rows else endpoints(rows)
            for i, (grad, (a, b)) in enumerate(zip(grads, pairs, strict=True)):
                value = grad * (b - a)
                sums[i].index_add_(0, index, value)
                chunk_mean = torch.zeros_like(means[i][lo:hi]).index_add_(0, local, value)
                chunk_mean /= shaped(new.clamp_min(1), value)
                spread = value - chunk_mean.index_select(0, local)
                chunk_m2 = torch.zeros_like(chunk_mean).index_add_(0, local, spread * spread)
                delta = chunk_mean - means[i][lo:hi]
                means[i][lo:hi] += delta * shaped(new / both, value)
                deviations[i][lo:hi] += chunk_m2 + delta * delta * shaped(seen * new / both, value)
            counts[lo:hi] = both

        engine.along(n * m, sample_index, make_points, consume, desc="gradient shap")

        attributions = tuple(t / m for t in sums)
        errors = tuple((d / (m * max(m - 1, 1))).sqrt() for d in deviations)  # sqrt(unbiased variance / m)
        total_attr = sum(a.reshape(n, -1).sum(1) for a in attributions)
        extras: dict[str, Any] = {
            "base_value": base_values,
            "convergence_delta": total_attr - (scores - base_values),
            "standard_error": errors[0] if len(errors) == 1 else torch.cat([e.reshape(n, -1) for e in errors], 1),
            "n_evaluations": engine.n_evaluations,
        }
        return Attribution(attributions, scores, extras, engine.target)

    @staticmethod
    def _base_values(engine: Any, bg_rows: tuple[torch.Tensor, ...], bg_sample: torch.Tensor,
                     n: int, n_bg: int, paired: bool) -> torch.Tensor:
        """``E_{x' ~ D} F_c(x')`` per sample, each with its own target."""
        if paired:
            _, bg_scores = engine.evaluate(bg_rows, bg_sample, desc="background")
            return bg_scores.reshape(n, n_bg).mean(1)
        return engine.score_matrix(bg_rows, n).mean(1)

