"""Family base of the model-agnostic methods: they see the model only through its predictions.

:class:`PerturbationExplainer` adds to :class:`~lumos.methods.base.Explainer` what every perturbation or
Shapley method needs: the data arguments ``feature_groups=`` and ``background_weights=`` of ``explain``, an
:class:`~lumos.core.evaluation.EvaluationEngine` (no gradients, memory-budgeted chunks), the target resolved
on the clean inputs, and a :class:`~lumos.methods.perturbation.masking.Masker` over the reference
(``baseline=``). Models may be ``nn.Module`` s, functions on tensors, or numpy models (scikit-learn & co.).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ...core.evaluation import EvaluationEngine
from ..base import ExplainContext, Explainer
from .masking import Masker, prepare_groups, prepare_reference


@dataclass
class Setup:
    """What a model-agnostic method starts from: the engine, the masker, and the target scores ``f(x)``.

    ``f(x)`` is evaluated together with the first chunk of the first ``masker.values`` call (one model call
    fewer, :meth:`EvaluationEngine.defer`); read ``scores`` after that call.
    """

    engine: EvaluationEngine
    masker: Masker

    @property
    def scores(self) -> torch.Tensor:
        """``f(x)``: the target score of each explained sample, (n,) in the model's output dtype."""
        return self.engine.clean_scores()

    @property
    def scores64(self) -> torch.Tensor:
        return self.scores.to(torch.float64)


class PerturbationExplainer(Explainer):
    """Base of methods that explain a model through its outputs on perturbed inputs."""

    family: ClassVar[str] = "perturbation"
    requires_gradients: ClassVar[bool] = False
    needs_baseline: ClassVar[bool] = True
    #: data arguments accepted by ``explain`` besides ``baseline``
    data_arguments: ClassVar[tuple[str, ...]] = ("feature_groups", "background_weights")

    def _setup(self, context: ExplainContext) -> Setup:
        owner = self._owner()
        batch = context.batch
        reference = prepare_reference(context.baseline, batch, owner=owner,
                                      weights=context.data_args.get("background_weights"))
        groups = prepare_groups(context.data_args.get("feature_groups"), batch, owner=owner)
        engine = EvaluationEngine(context.adapter, context.forward_kwargs, context.target, n_samples=batch.n,
                                  batch_size=self.batch_size, progress=self.progress, owner=owner)
        engine.defer(batch.tensors)
        return Setup(engine, Masker(batch, reference, groups, engine))

    @staticmethod
    def _group_extras(setup: Setup, player_values: torch.Tensor) -> dict[str, Any]:
        """``group_values`` (n, d) and ``groups`` (the group labels) when feature groups were given."""
        groups = setup.masker.groups
        if groups.identity:
            return {}
        return {"group_values": player_values, "groups": groups.labels}
