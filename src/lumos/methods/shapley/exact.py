"""Exact Shapley values by enumerating every coalition (Shapley 1953)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ...core.registry import register
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import ShapleyExplainer
from .coalitions import all_coalitions, shapley_weights

#: largest number of players ExactSHAP enumerates (2**20 coalitions per sample and background row)
MAX_PLAYERS = 20


@register
class ExactSHAP(ShapleyExplainer):
    """Exact Shapley values: ``v(S)`` for all ``2**d`` coalitions, then the Shapley formula.

    ``phi_i = sum_{S subset of N without i} |S|! (d - |S| - 1)! / d! * (v(S + i) - v(S))`` with
    ``v(S) = E_b f(x_S, b_notS)`` over the background rows (interventional) or ``f(x_S, baseline_notS)``.
    All coalitions of all samples are evaluated in batched model calls; the sum is vectorised over
    coalitions. Efficiency, symmetry, dummy and additivity hold up to floating point. Refuses more than
    ``MAX_PLAYERS`` = 20 players (features or feature groups): use ``kernel_shap`` or
    ``permutation_shap``, or group features with ``feature_groups=``.

    Shapley (1953), "A value for n-person games"; Lundberg & Lee (2017), NeurIPS (SHAP values).

    Example::

        ExactSHAP(model).explain(x, target=1, baseline=x_train[:50])
    """

    name: ClassVar[str] = "exact_shap"
    reference: ClassVar[str] = "Shapley 1953; Lundberg & Lee 2017, arXiv:1705.07874"

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        d = setup.masker.n_players
        if d > MAX_PLAYERS:
            raise ValidationError(
                f"{self._owner()}: exact Shapley values need 2**d coalitions; d = {d} players is above the limit "
                f"of {MAX_PLAYERS}. Use kernel_shap or permutation_shap, or group features with feature_groups="
            )
        masks = all_coalitions(d)[:-1]  # the full coalition is f(x) itself
        values = setup.masker.values(masks, desc="exact shap")
        values = torch.cat([values, setup.scores64[:, None].to(values.device)], 1)
        phi = shapley_from_values(values, d)
        return self._result(setup, phi, values[:, 0].clone(),
                            {"n_coalitions": 2**d})


def shapley_from_values(values: torch.Tensor, d: int) -> torch.Tensor:
    """Shapley values from ``v`` of every coalition, ``values`` (n, 2**d) indexed by the coalition's bits.

    ``phi_i = sum_{S without i} w(|S|) (v(S + i) - v(S))``: per player one gather of the ``2**(d-1)``
    differences and one dot product with the weights (differences first, for accuracy).
    """
    codes = np.arange(2**d, dtype=np.int64)
    sizes = np.array([bin(c).count("1") for c in range(2**d)]) if d <= 12 else _popcount(codes)
    weights = torch.as_tensor(shapley_weights(d) if d > 0 else np.zeros(0), dtype=values.dtype,
                              device=values.device)
    phi = torch.empty(values.shape[0], d, dtype=values.dtype, device=values.device)
    for i in range(d):
        bit = 1 << i
        without = codes[(codes & bit) == 0]
        lo = torch.as_tensor(without, device=values.device)
        diff = values.index_select(1, lo | bit) - values.index_select(1, lo)
        phi[:, i] = diff @ weights[torch.as_tensor(sizes[without], device=values.device)]
    return phi


def _popcount(codes: np.ndarray) -> np.ndarray:
    counts = np.zeros_like(codes)
    work = codes.copy()
    while work.any():
        counts += work & 1
        work >>= 1
    return counts
