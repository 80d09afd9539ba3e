"""Shapley interaction values of any model by exact enumeration of coalitions (small numbers of players)."""

from __future__ import annotations

from math import comb
from typing import ClassVar

import numpy as np
import torch

from ...core.registry import register
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import ShapleyExplainer
from .coalitions import all_coalitions
from .exact import shapley_from_values

#: most players (features or feature groups) ShapleyInteractions enumerates (2**12 coalitions)
MAX_PLAYERS = 12


@register
class ShapleyInteractions(ShapleyExplainer):
    """Pairwise Shapley interaction values of any model, exact, from ``v(S)`` of all ``2**d`` coalitions.

    Shapley interaction index (Grabisch & Roubens 1999):
    ``I_ij = sum_{S subset of N without i, j} |S|! (d - |S| - 2)! / (d - 1)! * (v(S+ij) - v(S+i) - v(S+j) + v(S))``.
    ``extras["interactions"]`` is the ``(n, d, d)`` matrix of Lundberg et al. (2020) (as
    ``shap.TreeExplainer.shap_interaction_values``): ``Phi_ij = I_ij / 2`` off the diagonal (the interaction
    split equally between ``i`` and ``j``, symmetric) and ``Phi_ii = phi_i - sum_{j != i} Phi_ij`` (the main
    effect), so every row sums to the Shapley value ``phi_i`` and the whole matrix to ``f(x) - base_value``.
    The attributions are the Shapley values ``phi`` (as ``exact_shap``). ``v(S)`` goes through the same
    masker as ``exact_shap``: ``baseline=`` a background set (interventional, ``v(S) = E_b f(x_S, b_notS)``),
    one row or a number; players are features or ``feature_groups=``. Refuses more than ``MAX_PLAYERS`` = 12
    players (group features to go below).

    Example (``f = x0 x1 + x2`` with baseline 0: ``Phi_01 = Phi_10 = x0 x1 / 2``, ``Phi_00 = Phi_11 = 0``,
    ``Phi_22 = x2``)::

        e = ShapleyInteractions(model).explain(x, baseline=0.0)
        e.extras["interactions"]  # (n, 3, 3)
    """

    name: ClassVar[str] = "shapley_interactions"
    reference: ClassVar[str] = "Grabisch & Roubens 1999; Lundberg et al. 2020, Nature Machine Intelligence"

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        d = setup.masker.n_players
        if d > MAX_PLAYERS:
            raise ValidationError(
                f"{self._owner()}: exact interaction values need 2**d coalitions; d = {d} players is above the "
                f"limit of {MAX_PLAYERS}. Group features with feature_groups= (at most {MAX_PLAYERS} groups)"
            )
        masks = all_coalitions(d)[:-1]
        values = setup.masker.values(masks, desc="shapley interactions")
        values = torch.cat([values, setup.scores64[:, None].to(values.device)], 1)
        phi = shapley_from_values(values, d)
        matrix = interaction_matrix(values, phi, d)
        return self._result(setup, phi, values[:, 0].clone(), {"interactions": matrix, "n_coalitions": 2**d})


def interaction_matrix(values: torch.Tensor, phi: torch.Tensor, d: int) -> torch.Tensor:
    """``(n, d, d)`` interaction values from ``v`` of every coalition (``values`` (n, 2**d), bit-indexed).

    All pairs at once: for each pair ``(i, j)`` the ``2**(d-2)`` coalitions without both are gathered with
    their ``+i``, ``+j``, ``+ij`` partners; the second differences are weighted by
    ``w(s) = s! (d - s - 2)! / (d - 1)!`` and summed.
    """
    n = values.shape[0]
    out = torch.zeros(n, d, d, dtype=values.dtype, device=values.device)
    if d >= 2:
        pi, pj = np.triu_indices(d, 1)
        codes = np.arange(2**d, dtype=np.int64)
        pair_bits = (1 << pi) | (1 << pj)
        base = np.stack([codes[(codes & b) == 0] for b in pair_bits])  # (pairs, 2**(d-2))
        sizes = ((base[..., None] >> np.arange(d)) & 1).sum(-1)
        weights = _pair_weights(d)[sizes]
        bi, bj = (1 << pi)[:, None], (1 << pj)[:, None]
        idx = lambda a: torch.as_tensor(a.reshape(-1), device=values.device)  # noqa: E731
        second = (values[:, idx(base | bi | bj)] - values[:, idx(base | bi)] - values[:, idx(base | bj)]
                  + values[:, idx(base)]).reshape(n, len(pi), -1)
        index = (second * torch.as_tensor(weights, dtype=values.dtype, device=values.device)).sum(2) / 2
        out[:, pi, pj] = index
        out[:, pj, pi] = index
    diag = torch.arange(d, device=values.device)
    out[:, diag, diag] = phi - out.sum(2)
    return out


def _pair_weights(d: int) -> np.ndarray:
    """``w(s) = s! (d - s - 2)! / (d - 1)! = 1 / ((d - 1) C(d - 2, s))`` for ``s = 0 .. d - 2``."""
    return np.array([1.0 / ((d - 1) * comb(d - 2, s)) for s in range(d - 1)], dtype=np.float64)
