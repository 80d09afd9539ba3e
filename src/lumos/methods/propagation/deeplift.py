"""DeepLIFT (Shrikumar, Greenside & Kundaje 2017) with the Rescale rule, bound to the executed operations."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from ...core.gradients import GradientEngine, PairedChunk, Points, has_per_sample_kwargs
from ...core.model import parameters_requiring_grad
from ...core.registry import register
from ...errors import LumosWarning, ValidationError
from ..base import Attribution, ExplainContext, Explainer
from ..gradient.baselines import prepare_baselines
from .rescale import DeepLiftRules, SharedBaselineMismatch
from .reveal_cancel import RevealCancelRules

RULES = ("rescale", "reveal_cancel")


class OneBaseline(tuple):
    """A chunk's baselines when every row's baseline is the same: one row per input, run once."""


class SharedBaselineEngine(GradientEngine):
    """The gradient engine, running a shared baseline (:class:`OneBaseline`) as ONE row, once per call.

    Every sample has the same baseline (a number, or one tensor for all samples: the usual case), so the
    baseline pass, whose rows would all be equal, runs on one row, for the first chunk only: later chunks
    reuse its output and ``rules``' records. The output and values are broadcast over each chunk (views, no
    copies) and the rules broadcast the recorded operands (see :meth:`DeepLiftRules.replay`). A model that
    does not treat that row like a batch row (an output without the batch dimension first) raises
    :class:`SharedBaselineMismatch`, and DeepLIFT runs the baseline for every row instead.
    """

    def __init__(self, *args: Any, rules: DeepLiftRules, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules = rules
        self._shared: tuple[torch.Tensor, dict[Any, torch.Tensor], Points, list[Any]] | None = None

    def _leaf_forward(self, tensors: Points, index: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[Any, torch.Tensor], Points]:
        if not isinstance(tensors, OneBaseline):
            return super()._leaf_forward(tensors, index)
        n = int(index.shape[0])
        if self._shared is None:
            output, captured, leaves = super()._leaf_forward(tuple(tensors), index[:1])
            for t in (output, *captured.values(), *leaves):
                if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != 1:
                    raise SharedBaselineMismatch(f"{self.owner}: a one-row baseline gave a result without one row")
            self._shared = (output, captured, leaves, list(self.rules.records))
        else:
            output, captured, leaves, records = self._shared
            self.rules.records = list(records)  # the baseline pass of this chunk: the first chunk's records
        return (output.expand(n, *output.shape[1:]), {k: v.expand(n, *v.shape[1:]) for k, v in captured.items()},
                tuple(v.expand(n, *v.shape[1:]) for v in leaves))


def shared_baseline(baselines: tuple[torch.Tensor, ...]) -> bool:
    """Whether every row of every baseline equals its first row (then the baseline pass needs one row)."""
    return all(b.shape[0] <= 1 or bool((b == b[:1]).all()) for b in baselines)


def check_rule(rule: Any, owner: str) -> str:
    if not isinstance(rule, str) or rule not in RULES:
        raise ValidationError(f"{owner}: rule must be one of {list(RULES)}, got {rule!r}")
    return rule


def make_rules(rule: str, owner: str, root: nn.Module | None) -> DeepLiftRules:
    """The TorchFunctionMode binding ``rule``'s operation table (Rescale, or RevealCancel's two streams)."""
    if rule == "reveal_cancel":
        return RevealCancelRules(owner, root)
    return DeepLiftRules(owner, root)


def check_tolerance(tolerance: Any, owner: str) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0 \
            or not math.isfinite(tolerance):
        raise ValidationError(f"{owner}: tolerance must be a finite number > 0, got {tolerance!r}")
    return float(tolerance)


def summation_check(attributions: tuple[torch.Tensor, ...], scores: torch.Tensor, reference: torch.Tensor,
                    tolerance: float, owner: str) -> dict[str, Any]:
    """Summation-to-delta diagnostics; warns when ``|delta| > tolerance |f(x) - f(x')|`` beyond rounding."""
    n = scores.shape[0]
    total = sum(a.reshape(n, -1).sum(1) for a in attributions)
    gap = scores - reference
    delta = total - gap
    magnitude = sum(a.reshape(n, -1).abs().sum(1) for a in attributions) + scores.abs() + reference.abs()
    rounding = 64 * torch.finfo(delta.dtype).eps * magnitude
    relative = delta.abs() / gap.abs().clamp_min(torch.finfo(gap.dtype).tiny)
    bad = delta.abs() > tolerance * gap.abs() + rounding
    if bool(bad.any()):
        worst = int(torch.argmax(torch.where(bad, delta.abs(), torch.zeros_like(delta))))
        warnings.warn(
            f"{owner}: attributions do not sum to f(x) - f(baseline) for {int(bad.sum())} of {n} sample(s): "
            f"the largest residual is {float(delta[worst]):.3g} for a difference of {float(gap[worst]):.3g} "
            f"(relative {float(relative[worst]):.3g} > tolerance {tolerance:g}). The model uses operations "
            f"whose rule is approximate (softmax, normalisation) or a target that is not linear in the output; "
            f"see extras['convergence_delta']",
            LumosWarning, stacklevel=4,
        )
    return {"convergence_delta": delta, "relative_convergence_delta": relative}


@register
class DeepLIFT(Explainer):
    """DeepLIFT: contributions of ``x - x'`` to ``f(x) - f(x')`` by multipliers propagated backwards.

    ``phi_i = (x_i - x'_i) * m_i``, where ``m`` is the chain rule with every nonlinearity's derivative
    replaced by a difference quotient, so that ``sum_i phi_i = f_c(x) - f_c(x')`` (summation-to-delta):

    - Rescale rule for elementwise nonlinearities (ReLU, LeakyReLU, ELU, SELU, CELU, sigmoid, tanh, softplus,
      GELU, SiLU, Mish, hardtanh, ReLU6, clamp, ...): ``m = (f(z) - f(z')) / (z - z')``, ``f'(z)`` where
      ``z - z'`` is at rounding level;
    - max pooling: each window's ``y - y'`` goes to the input's or the baseline's winner (whichever moved
      more) divided by ``z - z'`` there: exact, multipliers in [-1, 1];
    - linear layers, convolutions, batch norm in eval, average pooling, additions, concatenation, reshapes,
      indexing: the ordinary gradient (exact for linear maps);
    - a product of two input-dependent tensors (gates, attention scores): ``ab - a'b' = ā Δb + Δa b̄`` with
      midpoints ``ā = (a + a')/2`` (exact);
    - softmax, log-softmax, LayerNorm, GroupNorm, RMSNorm, ``F.normalize`` and the softmax inside
      ``scaled_dot_product_attention`` (decomposed into matmul -> softmax -> matmul): the Jacobian averaged
      along the segment from ``z'`` to ``z`` (16 Gauss-Legendre nodes), plus a rank-one correction along
      ``z - z'`` within each normalised slice that absorbs the quadrature error, so the difference is
      conserved exactly (see :class:`~lumos.methods.propagation.rescale.PathJacobian`).

    The rules are bound to the operations executed (a ``TorchFunctionMode``), not to module instances: a
    reused ``nn.ReLU``, ``F.relu``, ``x.relu()`` and in-place ReLUs all get them. Any other operation on an
    input-dependent tensor (``torch.exp``, ``abs``, ``max`` over features, sorting, division by an
    activation, ...) raises :class:`~lumos.errors.UnsupportedModelError` naming it.

    Each chunk of samples runs twice through the model: the baselines first (recording every rule
    operation's input ``z'``, without a graph), then the inputs with the rules, and one backward pass over
    the inputs. When every sample has the same baseline (a number, or one tensor for all samples), the
    baseline pass runs once per call on ONE row, broadcast over the batch (``extras["n_evaluations"]`` is
    then ``n + 1``); a model that does not batch along dimension 0 falls back to a baseline row per sample. Summation is checked on every call: ``extras["convergence_delta"]`` per sample (and relative
    to ``|f(x) - f(x')|``), with a :class:`~lumos.errors.LumosWarning` when it exceeds ``tolerance``. The
    target score is differentiated plainly (exact for class scores, regions and other linear targets).

    Shrikumar, Greenside & Kundaje (2017), "Learning Important Features Through Propagating Activation
    Differences", ICML.

    Args:
        rule: ``"rescale"`` (default) or ``"reveal_cancel"`` (sec. 3.5.3: positive and negative differences
            propagated separately, nonlinearities split ``Δy`` by averaging the two orders in which ``Δx+`` and
            ``Δx-`` can be added; see :mod:`~lumos.methods.propagation.reveal_cancel`). Same operations supported.
        tolerance: relative summation residual above which a warning is issued (default 1e-3).

    ``explain(..., baseline=)``: a number (default 0), a tensor of one sample's shape or of the batch's shape,
    or a tuple of these for a multi-input model. With ``layer=``, attributions are for that layer's output
    (``(h - h') * m``).

    Example::

        DeepLIFT(model).explain(x, target=y, baseline=0.0).extras["convergence_delta"]
    """

    name: ClassVar[str] = "deeplift"
    family: ClassVar[str] = "propagation"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    needs_baseline: ClassVar[bool] = True
    reference: ClassVar[str] = "Shrikumar et al. 2017, arXiv:1704.02685"

    def __init__(self, model: Any, *, rule: str = "rescale", tolerance: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = type(self).__name__
        self.rule = check_rule(rule, owner)
        self.tolerance = check_tolerance(tolerance, owner)

    def get_params(self) -> dict[str, Any]:
        return {"rule": self.rule, "tolerance": self.tolerance}

    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        baselines = prepare_baselines(context.baseline, batch, owner=owner)
        if baselines[0].shape[0] != 1:
            raise ValidationError(
                f"{owner}: baseline must be one baseline (a number, a tensor or a tuple), not a list; "
                f"for several references use DeepSHAP (deep_shap)"
            )
        baselines = tuple(b[0] for b in baselines)
        n = batch.n
        share = (self.rule == "rescale" and not has_per_sample_kwargs(context.forward_kwargs, n)
                 and shared_baseline(baselines))
        chunks: list[PairedChunk] = []
        with parameters_requiring_grad(context.adapter.module, False):
            try:
                engine = self._run(context, baselines, chunks, share)
            except SharedBaselineMismatch:
                if not share:
                    raise
                chunks.clear()
                engine = self._run(context, baselines, chunks, False)
        cat = (lambda parts: parts[0]) if len(chunks) == 1 else torch.cat  # noqa: E731
        attributions = tuple(
            cat([(c.values[i] - c.reference_values[i]).mul_(c.gradients[i]) for c in chunks])
            for i in range(len(chunks[0].values))
        )
        scores = cat([c.scores for c in chunks])
        reference = cat([c.reference_scores for c in chunks])
        extras = summation_check(attributions, scores, reference, self.tolerance, owner)
        extras.update({"baseline_scores": reference, "n_evaluations": engine.n_evaluations})
        return Attribution(attributions, scores, extras, engine.target)

    def _run(self, context: ExplainContext, baselines: tuple[torch.Tensor, ...], chunks: list[PairedChunk],
             share: bool) -> GradientEngine:
        """The paired passes over every sample (the baseline pass on one row when ``share``); fills ``chunks``."""
        batch = context.batch
        rules = make_rules(self.rule, self._owner(), context.adapter.module)
        rules.shared = share
        engine = SharedBaselineEngine(
            context.adapter, context.batch, context.forward_kwargs, context.target, layer=self.layer,
            batch_size=self.batch_size, progress=self.progress, owner=self._owner(), rules=rules,
        )

        def make_pairs(rows: slice) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
            inputs = tuple(t[rows] for t in batch.tensors)
            if share:
                return inputs, OneBaseline(b[:1] for b in baselines)
            return inputs, tuple(b[rows] for b in baselines)

        engine.paired(batch.n, torch.arange(batch.n, device=batch.tensors[0].device), make_pairs,
                      lambda rows, chunk: chunks.append(chunk), baseline_pass=rules.baseline_pass,
                      input_pass=rules.input_pass, desc="deeplift")
        return engine
