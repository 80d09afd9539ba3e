"""PermutationSHAP: Shapley values as average marginal contributions along random feature orderings."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...core.registry import register
from ...core.seeding import numpy_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import ShapleyExplainer
from .coalitions import antithetic_permutations


@register
class PermutationSHAP(ShapleyExplainer):
    """Permutation sampling of Shapley values, with antithetic (forward and reversed) orderings.

    ``phi_i = E_pi [v(Pre_i(pi) + i) - v(Pre_i(pi))]``, the average over random orderings ``pi`` of the
    players of feature ``i``'s marginal contribution when it joins the features before it. Every ordering's
    contributions telescope to ``v(N) - v(0) = f(x) - base_value``, so efficiency holds exactly for any
    number of orderings. Each ordering is paired with its reverse (antithetic sampling: Mitchell et al.
    2022), which cancels the odd part of the sampling error. The ``d - 1`` inner prefixes of every ordering
    are built as one vectorised mask, duplicates across orderings are evaluated once, and all of them go
    through batched model calls. Cost: at most ``n_permutations * (d - 1)`` coalitions, each one model row
    per background row.

    ``extras["standard_error"]``: the standard error of the mean over the antithetic pairs (each pair's
    average is one independent draw).

    Castro, Gomez & Tejada (2009), "Polynomial calculation of the Shapley value based on sampling";
    Mitchell, Cooper, Frank & Holmes (2022), "Sampling Permutations for Shapley Value Estimation", JMLR.

    Args:
        n_permutations: orderings per sample (even when ``antithetic``; each pair is an ordering and its
            reverse).
        antithetic: pair each ordering with its reverse.

    Example::

        PermutationSHAP(model, n_permutations=20, seed=0).explain(x, target=0, baseline=background)
    """

    name: ClassVar[str] = "permutation_shap"
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Castro et al. 2009; Mitchell et al. 2022, arXiv:2104.12199"

    def __init__(self, model: Any, *, n_permutations: int = 16, antithetic: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not isinstance(antithetic, bool):
            raise ValidationError(f"PermutationSHAP: antithetic must be True or False, got {antithetic!r}")
        minimum = 2 if antithetic else 1
        if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
                or n_permutations < minimum or (antithetic and n_permutations % 2):
            raise ValidationError(
                f"PermutationSHAP: n_permutations must be an {'even ' if antithetic else ''}int >= {minimum}"
                f"{' (antithetic=True pairs each ordering with its reverse)' if antithetic else ''}, "
                f"got {n_permutations!r}"
            )
        self.n_permutations = int(n_permutations)
        self.antithetic = antithetic

    def get_params(self) -> dict[str, Any]:
        return {"n_permutations": self.n_permutations, "antithetic": self.antithetic}

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        masker = setup.masker
        d, p = masker.n_players, self.n_permutations
        orders = antithetic_permutations(numpy_generator(context.seed), p, d, antithetic=self.antithetic)
        rank = np.argsort(orders, axis=1)  # rank[q, j]: position of player j in ordering q
        prefixes = rank[:, None, :] <= np.arange(d - 1)[None, :, None]  # (p, d-1, d): the first t+1 players
        flat = prefixes.reshape(-1, d)
        unique, inverse = np.unique(np.packbits(flat, axis=1), axis=0, return_inverse=True)
        coalitions = np.unpackbits(unique, axis=1, count=d).astype(bool)
        # the empty coalition (base value) and f(x) ride along with the model calls of the prefixes
        both = masker.values(np.concatenate([np.zeros((1, d), dtype=bool), coalitions]), desc="permutation shap")
        base, values = both[:, 0], both[:, 1:]
        fx = setup.scores64.to(base.device)
        n = fx.shape[0]
        index = torch.as_tensor(inverse.reshape(-1), device=values.device)
        chain = torch.cat([base[:, None, None].expand(n, p, 1),
                           values.index_select(1, index).reshape(n, p, d - 1),
                           fx[:, None, None].expand(n, p, 1)], 2)  # v along each ordering
        steps = chain.diff(dim=2)  # (n, p, d): contribution of the player at each position
        contributions = torch.empty_like(steps).scatter_(
            2, torch.as_tensor(orders, device=steps.device)[None].expand(n, p, d), steps)
        phi = contributions.mean(1)
        draws = contributions.reshape(n, p // 2, 2, d).mean(2) if self.antithetic else contributions
        k = draws.shape[1]
        se = draws.std(1, unbiased=True) / k**0.5 if k > 1 else torch.zeros_like(phi)
        return self._result(setup, phi, base, {"standard_error": se, "n_coalitions": int(len(coalitions))})
