"""DeepSHAP (Lundberg & Lee 2017): DeepLIFT averaged over a background set."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...core.model import parameters_requiring_grad
from ...core.registry import register
from ...core.seeding import torch_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext, Explainer
from ..gradient.baselines import prepare_background
from .deeplift import check_rule, check_tolerance, make_rules, summation_check


@register
class DeepSHAP(Explainer):
    """DeepSHAP: DeepLIFT (Rescale rule) with each background sample as the baseline, averaged.

    ``phi_i(x) = (1/K) sum_k DeepLIFT_i(x; b_k)``, so that ``sum_i phi_i(x) = f_c(x) - E_b f_c(b)``
    (``extras["base_value"]`` is ``E_b f_c(b)``, per sample). On a linear model this is the exact
    interventional Shapley value ``w_i (x_i - E b_i)``. Every (sample, background row) pair goes through the
    batched DeepLIFT passes (no Python loop over pairs); see :class:`~lumos.methods.propagation.deeplift.DeepLIFT`
    for the rules, the operations supported and the summation check.

    Lundberg & Lee (2017), "A Unified Approach to Interpreting Model Predictions", NeurIPS; Shrikumar et al.
    (2017), "Learning Important Features Through Propagating Activation Differences", ICML.

    Args:
        n_samples: ``None`` (default) uses every background row; an int draws that many rows per sample, with
            replacement, from the method's own generator (``seed``).
        rule: DeepLIFT's rule, ``"rescale"`` (default) or ``"reveal_cancel"``.
        tolerance: relative summation residual above which a warning is issued (default 1e-3).

    ``explain(x, target, baseline=background)``: the background data set, (n_background, *shape) per input
    (a tuple for a multi-input model). The method is stochastic (``seed``) only when ``n_samples`` is given.

    Example::

        DeepSHAP(model).explain(x, target=y, baseline=x_train[:100]).extras["base_value"]
    """

    name: ClassVar[str] = "deep_shap"
    family: ClassVar[str] = "propagation"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    needs_baseline: ClassVar[bool] = True
    reference: ClassVar[str] = "Lundberg & Lee 2017, arXiv:1705.07874; Shrikumar et al. 2017, arXiv:1704.02685"

    def __init__(self, model: Any, *, n_samples: int | None = None, rule: str = "rescale", tolerance: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = type(self).__name__
        self.rule = check_rule(rule, owner)
        if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                      or n_samples < 1):
            raise ValidationError(f"{owner}: n_samples must be None (every background row) or an int >= 1, "
                                  f"got {n_samples!r}")
        self.n_samples = None if n_samples is None else int(n_samples)
        self.tolerance = check_tolerance(tolerance, owner)
        self.stochastic = self.n_samples is not None  # type: ignore[misc] - random only when drawing rows

    def get_params(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "rule": self.rule, "tolerance": self.tolerance}

    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        background = prepare_background(context.baseline, batch, owner=owner)
        n, n_bg = batch.n, int(background[0].shape[0])
        device = batch.tensors[0].device
        if self.n_samples is None:
            k = n_bg
            choice = torch.arange(n_bg, device=device).repeat(n)
        else:
            k = self.n_samples
            choice = torch.randint(n_bg, (n * k,), generator=torch_generator(context.seed)).to(device)
        sample_index = torch.arange(n, device=device).repeat_interleave(k)  # pair p: sample p // k
        engine = self._engine(context)
        rules = make_rules(self.rule, owner, context.adapter.module)
        sums: list[torch.Tensor] = []
        reference_sum: list[torch.Tensor] = []

        def make_pairs(rows: slice) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
            samples, picked = sample_index[rows], choice[rows]
            return (tuple(t.index_select(0, samples) for t in batch.tensors),
                    tuple(b.index_select(0, picked) for b in background))

        def consume(rows: slice, chunk: Any) -> None:
            samples = sample_index[rows]
            if not sums:
                sums.extend(torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=device) for v in chunk.values)
                reference_sum.append(torch.zeros(n, dtype=chunk.scores.dtype, device=device))
            for total, value, ref, grad in zip(sums, chunk.values, chunk.reference_values, chunk.gradients,
                                               strict=True):
                total.index_add_(0, samples, (value - ref) * grad)
            reference_sum[0].index_add_(0, samples, chunk.reference_scores)

        with parameters_requiring_grad(context.adapter.module, False):
            scores = engine.resolve_target()
            engine.paired(n * k, sample_index, make_pairs, consume, baseline_pass=rules.baseline_pass,
                          input_pass=rules.input_pass, desc="deep shap")
        attributions = tuple(t / k for t in sums)
        base_value = reference_sum[0] / k
        extras = summation_check(attributions, scores, base_value, self.tolerance, owner)
        extras.update({"base_value": base_value, "n_evaluations": engine.n_evaluations})
        return Attribution(attributions, scores, extras, engine.target)
