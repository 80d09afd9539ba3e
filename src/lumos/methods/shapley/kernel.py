"""KernelSHAP (Lundberg & Lee 2017): Shapley values as a weighted least-squares fit over coalitions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...core.registry import register
from ...core.seeding import numpy_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import ShapleyExplainer
from .coalitions import PairedStratifiedSampler, kernel_weight


@register
class KernelSHAP(ShapleyExplainer):
    """KernelSHAP: the Shapley kernel regression, solved with the efficiency constraint exactly.

    ``phi = argmin sum_S k(|S|) (v(S) - v(0) - sum_{i in S} phi_i)^2`` subject to
    ``sum_i phi_i = f(x) - v(0)``, with the Shapley kernel ``k(s) = (d-1) / (C(d,s) s (d-s))``; its solution
    over all coalitions is the vector of Shapley values. ``v(S) = E_b f(x_S, b_notS)`` over the background
    (interventional SHAP), or ``f(x_S, baseline_notS)`` for one baseline row (baseline Shapley); the estimand
    is named in ``extras["estimand"]``.

    Coalitions (:class:`~.coalitions.PairedStratifiedSampler`): complementary pairs ``(S, N \\ S)``
    (paired / antithetic sampling), stratified by size; the budget goes to the size strata in proportion to
    their kernel mass, so the smallest and largest sizes are enumerated completely first, and the sampled
    coalitions of a stratum are weighted by kernel weight / inclusion probability. With
    ``n_samples >= 2**d - 2`` every coalition is used and the result is exact (equal to ExactSHAP). The
    constrained least squares is solved through its KKT system (no feature is singled out). The same
    coalitions serve every sample; all model evaluations go through batched calls.

    Standard errors (``extras["standard_error"]``, same layout as GradientSHAP's): the sandwich
    (linearisation) estimate of the solution's sampling variance, from the within-stratum variance of the
    paired units' residual terms ``z_S r_S + z_notS r_notS`` with the finite-population correction (zero for
    enumerated strata; zero everywhere in the exact regime). With ``tol=`` sampling continues in rounds
    (the budget doubles each round, only new coalitions are evaluated) until the largest standard error is
    below ``tol`` or ``max_samples`` coalitions are used; ``extras`` records ``converged`` and ``n_rounds``.

    Lundberg & Lee (2017), "A Unified Approach to Interpreting Model Predictions", NeurIPS; Covert & Lee
    (2021), "Improving KernelSHAP: Practical Shapley Value Estimation via Linear Regression", AISTATS.

    Args:
        n_samples: coalitions evaluated (each costs one model row per background row); ``"auto"`` =
            ``2 d + 2048`` (the same budget as shap's "auto"), capped at ``2**d - 2`` (exact).
        tol: keep sampling until every standard error is below ``tol`` (output units); ``None``: one round.
        max_samples: the most coalitions ``tol`` may use (default ``16 * n_samples``).

    Example::

        KernelSHAP(clf.predict_proba, seed=0).explain(x_test[:5], target=1, baseline=x_train[:50])
    """

    name: ClassVar[str] = "kernel_shap"
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Lundberg & Lee 2017, arXiv:1705.07874; Covert & Lee 2021, arXiv:2012.01536"

    def __init__(self, model: Any, *, n_samples: int | str = "auto", tol: float | None = None,
                 max_samples: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if n_samples != "auto" and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                    or n_samples < 2):
            raise ValidationError(f"KernelSHAP: n_samples must be 'auto' or an int >= 2, got {n_samples!r}")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0):
            raise ValidationError(f"KernelSHAP: tol must be None or a number > 0, got {tol!r}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer))
                                        or max_samples < 2):
            raise ValidationError(f"KernelSHAP: max_samples must be None or an int >= 2, got {max_samples!r}")
        self.n_samples = n_samples if n_samples == "auto" else int(n_samples)
        self.tol = None if tol is None else float(tol)
        self.max_samples = None if max_samples is None else int(max_samples)

    def get_params(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "tol": self.tol, "max_samples": self.max_samples}

    def _attribute(self, context: ExplainContext) -> Attribution:
        setup = self._setup(context)
        masker = setup.masker
        d = masker.n_players
        empty = np.zeros((1, d), dtype=bool)
        if d == 1:
            base = masker.values(empty, desc="base value")[:, 0]
            delta = setup.scores64.to(base.device) - base
            return self._result(setup, delta[:, None], base, {"standard_error": torch.zeros_like(delta)[:, None],
                                                              "n_coalitions": 0, "converged": True, "n_rounds": 1})
        budget = 2 * d + 2048 if self.n_samples == "auto" else self.n_samples
        limit = 2**d - 2 if d < 62 else None
        budget = budget if limit is None else min(budget, limit)
        max_budget = self.max_samples or 16 * budget
        max_budget = max_budget if limit is None else min(max_budget, limit)

        sampler = PairedStratifiedSampler(d, numpy_generator(context.seed))
        masks, labels, values = [], [], []
        rounds = 0
        base = delta = None
        while True:
            new_masks, new_labels = sampler.extend(budget)
            rounds += 1
            if base is None:  # the empty coalition (base value) and f(x) ride along with the first round
                both = masker.values(np.concatenate([empty, new_masks]), desc="kernel shap round 1")
                base, new_values = both[:, 0], both[:, 1:]
                delta = setup.scores64.to(base.device) - base
            else:
                new_values = masker.values(new_masks, desc=f"kernel shap round {rounds}")
            if len(new_masks):
                masks.append(new_masks)
                labels.append(new_labels)
                values.append(new_values - base[:, None])
            z = torch.as_tensor(np.concatenate(masks), dtype=torch.float64)
            unit_strata = np.concatenate(labels)
            y = torch.cat(values, 1).cpu()
            phi, projector = solve_constrained(z, torch.as_tensor(sampler.weights(unit_strata)), y, delta.cpu())
            se = standard_errors(z, y, phi, projector, unit_strata, sampler)
            converged = self.tol is None or sampler.exact or float(se.max()) <= self.tol
            if converged or sampler.n_coalitions >= max_budget:
                break
            budget = min(2 * sampler.n_coalitions, max_budget)
        device = base.device
        return self._result(setup, phi.to(device), base, {
            "standard_error": se.to(device),
            "n_coalitions": sampler.n_coalitions,
            "exact": sampler.exact,
            "converged": bool(converged),
            "n_rounds": rounds,
        })


def solve_constrained(z: torch.Tensor, weights: torch.Tensor, y: torch.Tensor,
                      delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least squares ``min sum_j w_j (y_j - z_j . phi)^2`` s.t. ``sum(phi) = delta``, per sample.

    Solved through the KKT system ``[[A, 1], [1^T, 0]] [phi; lambda] = [b; delta]`` with ``A = Z^T W Z``,
    ``b = Z^T W y`` (one factorisation for all samples; the pseudo-inverse when too few coalitions make it
    singular). Returns ``phi`` (n, d) and the top-left block ``P`` of the KKT inverse (the constrained
    solution's sensitivity to ``b``, used for the standard errors).
    """
    d = z.shape[1]
    # products in torch (the thread pool the model ran on), the tiny (d+1)-square inverse in numpy: torch's
    # linalg.inv costs ~1 ms for it, and numpy's threaded BLAS products contend with torch's idle threads
    a = (z.T @ (weights[:, None] * z)).numpy()
    b = ((y * weights) @ z).numpy()  # (n, d)
    kkt = np.zeros((d + 1, d + 1))
    kkt[:d, :d] = a
    kkt[:d, d] = 1.0
    kkt[d, :d] = 1.0
    inverse = np.linalg.inv(kkt) if np.linalg.cond(kkt) < 1e13 else np.linalg.pinv(kkt, hermitian=True)
    rhs = np.concatenate([b, delta.numpy()[:, None]], 1)  # (n, d + 1)
    solution = torch.as_tensor(rhs) @ torch.as_tensor(inverse.T)
    inverse = torch.as_tensor(inverse)
    return solution[:, :d], inverse[:d, :d]


def standard_errors(z: torch.Tensor, y: torch.Tensor, phi: torch.Tensor, projector: torch.Tensor,
                    unit_strata: np.ndarray, sampler: PairedStratifiedSampler) -> torch.Tensor:
    """Sandwich standard errors of ``phi`` under stratified sampling without replacement, (n, d).

    The estimate ``phi = P (b - ...)`` moves with ``b - A phi = sum_k g_k``, where stratum ``k``'s
    ``g_k = k(k) N_k mean_u t_u`` over its ``m_k`` units, ``t_u = z_S r_S + z_notS r_notS`` and
    ``r = y - z . phi``. ``Var(P g_k) = (k(k) N_k)^2 (1 - m_k / N_k) S_k^2 / m_k`` with ``S_k^2`` the
    within-stratum variance of ``P t_u``; strata with one unit borrow the pooled variance.
    """
    n, d = phi.shape
    info = sampler.stratum_info()
    residual = y - phi @ z.T  # (n, 2U)
    # the pair's coalitions are complementary, z_notS = 1 - z_S, so
    # P t_u = r_notS P 1 + (r_S - r_notS) P z_S: one (U, d) product instead of one per sample
    small = z[0::2].contiguous()
    projected = small @ projector.T  # (U, d)
    r_small, r_large = residual[:, 0::2], residual[:, 1::2]
    terms = (r_small - r_large)[:, :, None] * projected[None] + r_large[:, :, None] * projector.sum(1)[None, None]
    labels = torch.as_tensor(unit_strata)
    n_strata = len(info)
    sums = torch.zeros(n, n_strata, d, dtype=torch.float64).index_add_(1, labels, terms)
    counts = torch.as_tensor([m for m, _ in info], dtype=torch.float64)
    means = sums / counts.clamp_min(1)[None, :, None]
    spread = terms - means.index_select(1, labels)
    squares = torch.zeros(n, n_strata, d, dtype=torch.float64).index_add_(1, labels, spread * spread)
    dof = (counts - 1).clamp_min(0)
    pooled = squares.sum(1) / dof.sum().clamp_min(1)  # (n, d)
    variance = torch.zeros(n, d, dtype=torch.float64)
    for index, (m, n_units) in enumerate(info):
        if m == 0 or m >= n_units:
            continue
        s2 = squares[:, index] / (m - 1) if m > 1 else pooled
        factor = (kernel_weight(sampler.d, sampler.strata[index].k) * n_units) ** 2 * (1 - m / n_units) / m
        variance += factor * s2
    return variance.sqrt()
