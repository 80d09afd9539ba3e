"""Layer-wise relevance propagation (LRP) as a modified gradient, bound to the operations executed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ....core.gradients import GradientEngine, Points
from ....core.model import parameters_requiring_grad
from ....core.registry import register
from ....errors import UnsupportedModelError, ValidationError
from ...base import Attribution, ExplainContext, Explainer
from .canonizers import Canonizer, MergeBatchNorm
from .composites import Composite, as_composite
from .graph import RelevanceMode, attach_graph_rules, is_first_layer
from .rules import Rule, _check_number


class _RelevanceEngine(GradientEngine):
    """The gradient engine with LRP's forward routing and a relevance-seeded, rule-rewritten backward pass.

    The relevance entering the network is ``R_out = y * d score / d y`` at every explained output ``y`` (the
    model's output, and captured layers for ``Neuron`` targets): the score itself for a class, the class
    score of every pixel for a region.
    """

    def __init__(self, *args: Any, mode_factory: Callable[[], RelevanceMode], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mode_factory = mode_factory
        self._outputs: tuple[torch.Tensor, ...] = ()

    def _forward(self, tensors: Points, sample_index: torch.Tensor, **kwargs: Any) -> Any:
        with self._mode_factory():
            output, captured, leaf = super()._forward(tensors, sample_index, **kwargs)
        self._outputs = tuple(t for t in (output, *captured.values()) if isinstance(t, torch.Tensor))
        return output, captured, leaf

    def _grad(self, score: torch.Tensor, leaves: Points) -> Points:
        if torch.is_inference_mode_enabled() or not score.requires_grad:
            return super()._grad(score, leaves)  # raises the engine's own clear error
        outputs = [t for t in self._outputs if t.requires_grad]
        self._outputs = ()
        seeds = torch.autograd.grad(score.sum(), outputs, allow_unused=True, retain_graph=True)
        roots = [t for t, g in zip(outputs, seeds, strict=True) if g is not None]
        relevance = [t.detach() * g for t, g in zip(outputs, seeds, strict=True) if g is not None]
        handles = attach_graph_rules(roots, self.owner)
        try:
            grads = torch.autograd.grad(roots, leaves, relevance, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        if all(g is None for g in grads):
            raise UnsupportedModelError(f"{self.owner}: the model's output does not depend on the inputs being attributed")
        return tuple(torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads, strict=True))


@register
class LRP(Explainer):
    """Layer-wise relevance propagation: the output score redistributed layer by layer onto the inputs.

    Each linear layer / convolution redistributes the relevance of its outputs with its composite's rule,
    ``R_in = a * rho(W)^T (R_out / (rho(W) a + rho(b) + stabiliser))`` (see
    :mod:`~lumos.methods.propagation.lrp.rules`); elementwise activations pass relevance through; max
    pooling gives it to the winner; average pooling, means and bilinear interpolation share it in proportion
    to their inputs (epsilon rule); a sum ``a + b`` of two activations (residual blocks) shares it as
    ``R_a = a / (a + b) R``; reshapes, concatenation, nearest upsampling, Identity, Flatten and Dropout (eval)
    conserve it. An operation with no rule (multiplying two activations, softmax, LayerNorm, exp, ...)
    raises :class:`~lumos.errors.UnsupportedModelError` naming it. Rules bind to the operations executed
    (``nn.ReLU`` reused, ``F.relu``, ``x.relu_()``, ``F.conv2d``: all covered), not to module instances.
    Relevance entering the network is the target score (``y * d score / d y`` at the output); with
    ``epsilon -> 0`` and no biases, the input relevance sums to it (``extras["conservation_residual"]``).

    Bach et al. (2015), "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
    Relevance Propagation", PLoS ONE 10(7); Montavon et al. (2019), "Layer-Wise Relevance Propagation: An
    Overview", Explainable AI, LNCS 11700.

    Args:
        composite: which rule goes where: ``"epsilon"``, ``"epsilon_plus"`` (default), ``"epsilon_plus_flat"``,
            ``"epsilon_gamma_box"`` (needs ``low``/``high``), ``"epsilon_alpha2_beta1"``, a
            :class:`Composite`, a mapping ``{nn.Conv2d: Gamma(0.25), "classifier.3": Epsilon(1e-6)}`` (by layer
            type or name; unmatched layers get Epsilon(epsilon)), or ``None`` (epsilon everywhere).
        epsilon: stabiliser of the epsilon rule of named composites, sums and pooling.
        low, high: input domain bounds for the z^B rule of ``epsilon_gamma_box``.
        canonizers: model rewrites applied during the call; default ``[MergeBatchNorm()]``; ``[]`` explains
            each batch norm as its own affine layer.

    Extras: ``relevance_sum`` and ``score`` per sample, ``conservation_residual`` ((sum of relevance -
    score) / |score|), ``n_evaluations``, ``composite`` (a description of the rules).

    Example::

        LRP(model, composite="epsilon_plus_flat").explain(images, target=labels)
    """

    name: ClassVar[str] = "lrp"
    family: ClassVar[str] = "propagation"
    requires_gradients: ClassVar[bool] = True
    supports_layer: ClassVar[bool] = True
    reference: ClassVar[str] = "Bach et al. 2015, doi:10.1371/journal.pone.0130140; Montavon et al. 2019"

    def __init__(self, model: Any, *, composite: Composite | str | dict[Any, Rule] | None = "epsilon_plus",
                 epsilon: float = 1e-6, low: Any = None, high: Any = None,
                 canonizers: Sequence[Canonizer] | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.epsilon = _check_number("LRP", "epsilon", epsilon)
        self.composite = as_composite(composite, epsilon=self.epsilon, low=low, high=high)
        self.composite.check_names(self.adapter.module)
        canonizers = [MergeBatchNorm()] if canonizers is None else list(canonizers)
        for c in canonizers:
            if not isinstance(c, Canonizer):
                raise ValidationError(f"LRP: canonizers must be Canonizer objects (MergeBatchNorm()), got {c!r}")
        self.canonizers = canonizers

    def get_params(self) -> dict[str, Any]:
        return {"composite": self.composite.describe(), "epsilon": self.epsilon,
                "canonizers": [c.describe() for c in self.canonizers]}

    def _resolver(self, module: nn.Module | None) -> Callable[[torch.Tensor, str, int, torch.Tensor], Rule]:
        owners: dict[int, tuple[str, nn.Module]] = {}
        if module is not None:
            for name, sub in module.named_modules():
                for tensor in (*sub._parameters.values(), *sub._buffers.values()):
                    if tensor is not None:
                        owners.setdefault(id(tensor), (name, sub))
        composite = self.composite
        needs_first = composite.first is not None

        def resolve(key: torch.Tensor, kind: str, n_dims: int, a: torch.Tensor) -> Rule:
            name, sub = owners.get(id(key), (None, None))
            first = needs_first and is_first_layer(a)
            return composite.rule_for(name, sub, kind, n_dims, first)

        return resolve

    def _attribute(self, context: ExplainContext) -> Attribution:
        module = context.adapter.module
        merge = any(c.merges_batch_norm for c in self.canonizers)
        with contextlib.ExitStack() as stack:
            for canonizer in self.canonizers:
                stack.enter_context(canonizer.applied(module))
            stack.enter_context(parameters_requiring_grad(module, False))  # no weight-gradient graph
            resolve = self._resolver(module)
            engine = _RelevanceEngine(
                context.adapter, context.batch, context.forward_kwargs, context.target, layer=self.layer,
                batch_size=self.batch_size, progress=self.progress, owner=self._owner(),
                mode_factory=lambda: RelevanceMode(resolve, epsilon=self.epsilon, merge_batch_norm=merge),
            )
            _, relevance, scores = engine.at_inputs(desc="lrp")
        totals = sum(r.reshape(r.shape[0], -1).sum(1) for r in relevance)
        residual = (totals - scores) / scores.abs().clamp_min(torch.finfo(scores.dtype).tiny)
        extras = {"relevance_sum": totals, "score": scores, "conservation_residual": residual,
                  "n_evaluations": engine.n_evaluations, "composite": self.composite.describe()}
        return Attribution(relevance, scores, extras, engine.target)
