"""Family base of the Shapley estimators: one result layout for exact, kernel and permutation SHAP.

Every Shapley explanation carries ``extras["base_value"]`` (``v(empty set)``: ``E_b f(b)`` over the
background, or ``f(baseline)``), ``extras["estimand"]`` (interventional over a background, or baseline),
``extras["convergence_delta"]`` (``sum_i phi_i - (f(x) - base_value)``: zero up to rounding for every
estimator here, which all satisfy efficiency by construction) and ``n_evaluations`` (model rows).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..base import Attribution
from ..perturbation.base import PerturbationExplainer, Setup


class ShapleyExplainer(PerturbationExplainer):
    """Base of Shapley-value methods (players: features or feature groups, see ``feature_groups=``)."""

    family: ClassVar[str] = "shapley"

    def _result(self, setup: Setup, phi: torch.Tensor, base_value: torch.Tensor,
                extras: dict[str, Any] | None = None) -> Attribution:
        """Wrap per-player Shapley values ``phi`` (n, d) float64 and the base value (n,) into an Attribution."""
        masker = setup.masker
        attributions = masker.spread(phi)
        out: dict[str, Any] = {
            "base_value": base_value,
            "estimand": masker.reference.estimand,
            "convergence_delta": phi.sum(1) - (setup.scores64 - base_value),
            "n_evaluations": setup.engine.n_evaluations,
            "n_players": masker.n_players,
        }
        out.update(extras or {})
        if "standard_error" in out and isinstance(out["standard_error"], torch.Tensor):
            out["standard_error"] = masker.flat_elements(out["standard_error"])
        out.update(self._group_extras(setup, phi))
        return Attribution(attributions, setup.scores, out, setup.engine.target)
