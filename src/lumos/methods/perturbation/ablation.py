"""Feature ablation: the drop of the target score when one feature (or group) is replaced."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...core.registry import register
from ..base import Attribution, ExplainContext
from .base import PerturbationExplainer


@register
class FeatureAblation(PerturbationExplainer):
    """Feature ablation: ``a_i = f(x) - v(N without i)``, one feature or feature group replaced at a time.

    ``v(N without i)`` is ``f`` at ``x`` with feature ``i`` taken from the baseline row, or its average over
    the background rows (``baseline=`` a background set: the marginal "leave-one-out" value). With
    ``feature_groups=`` the players are the groups and every element of a group gets the group's value
    (``extras["group_values"]`` holds one value per group). All ``d`` ablated copies of all samples go
    through batched model calls (``d`` model rows per sample and background row).

    Zeiler & Fergus (2014) (occlusion of single units); a standard leave-one-out baseline in the
    attribution literature, e.g. Ancona et al. (2018), "Towards better understanding of gradient-based
    attribution methods for deep neural networks", ICLR.

    Example::

        FeatureAblation(clf.predict_proba).explain(x, target=1, baseline=x_train.mean(0))
    """

    name: ClassVar[str] = "feature_ablation"
    reference: ClassVar[str] = "Zeiler & Fergus 2014, arXiv:1311.2901; Ancona et al. 2018, arXiv:1711.06104"

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        masker = setup.masker
        d = masker.n_players
        values = masker.values(~np.eye(d, dtype=bool), desc="feature ablation")
        drops = setup.scores64[:, None].to(values.device) - values
        extras: dict[str, Any] = {"n_evaluations": setup.engine.n_evaluations,
                                  "estimand": masker.reference.estimand}
        extras.update(self._group_extras(setup, drops))
        return Attribution(masker.spread(drops), setup.scores, extras, setup.engine.target)
