"""Weighted linear surrogate models for LIME, fitted for every explained sample at once.

For sample ``i`` with representations ``z_k`` (rows), model scores ``y_k`` and kernel weights ``w_k``:
weighted means ``z_bar = sum w z / sum w``, ``y_bar`` likewise; centred Gram ``G = sum_k w_k (z_k - z_bar)
(z_k - z_bar)^T``, ``c = sum_k w_k (z_k - z_bar)(y_k - y_bar)``. Ridge on a feature set ``S``:
``beta_S = (G_SS + alpha I)^-1 c_S`` (no penalty on the intercept ``y_bar - z_bar . beta``); the other
coefficients are 0. This is scikit-learn's ``Ridge(alpha).fit(z, y, sample_weight=w)``. Local fidelity:
weighted ``R^2 = 1 - sum w (y - y_hat)^2 / sum w (y - y_bar)^2`` (1 when ``y`` is constant and fitted).

Feature selection (``n_features = k``), following Ribeiro et al. (2016) and the lime package:

- ``"forward_selection"``: greedily add the feature whose ridge (``alpha = 0.01``) fit has the best weighted
  ``R^2``, k times (R^2 from the Gram matrices, so each candidate costs a d x d solve, not a pass over rows);
- ``"highest_weights"``: the k largest ``|beta_j|`` of a ridge (``alpha = 0.01``) on all features;
- ``"lasso_path"``: the last point of the weighted Lasso path (``sklearn.linear_model.lars_path`` on
  ``sqrt(w) (z - z_bar)``) with at most k non-zero coefficients (one path per sample);
- ``"none"``: every feature; ``"auto"``: ``"none"`` when ``k`` is None, else forward selection for
  ``k <= 6`` and highest weights above (lime's rule).

Example::

    model = fit_surrogate(z, y, w, valid, alpha=1.0, feature_selection="auto", n_features=None,
                          instance=torch.ones(d))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SELECTIONS = ("auto", "none", "forward_selection", "highest_weights", "lasso_path")
_SELECTION_ALPHA = 0.01


@dataclass
class Surrogate:
    """Per-sample surrogate: ``coef`` (n, d), ``intercept``, ``score`` (weighted R^2), ``local_prediction``
    (the surrogate at the instance) (n,), ``selected`` (n, d) bool."""

    coef: torch.Tensor
    intercept: torch.Tensor
    score: torch.Tensor
    local_prediction: torch.Tensor
    selected: torch.Tensor


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    try:
        return torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
    except RuntimeError:  # singular (alpha = 0 with collinear features): minimum-norm solution
        return (torch.linalg.pinv(a, hermitian=True) @ b.unsqueeze(-1)).squeeze(-1)


def ridge(gram: torch.Tensor, c: torch.Tensor, selected: torch.Tensor, alpha: float) -> torch.Tensor:
    """Ridge coefficients on each sample's ``selected`` features, 0 elsewhere, ``(n, d)``."""
    both = selected[:, :, None] & selected[:, None, :]
    diagonal = torch.where(selected, torch.as_tensor(alpha, dtype=gram.dtype), torch.ones((), dtype=gram.dtype))
    a = torch.where(both, gram, torch.zeros((), dtype=gram.dtype)) + torch.diag_embed(diagonal)
    beta = _solve(a, torch.where(selected, c, torch.zeros((), dtype=c.dtype)))
    return torch.where(selected, beta, torch.zeros((), dtype=beta.dtype))


def _r2(gram: torch.Tensor, c: torch.Tensor, syy: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    rss = syy - 2 * (beta * c).sum(1) + torch.einsum("nd,nde,ne->n", beta, gram, beta)
    return torch.where(syy > 0, 1 - rss / syy.clamp_min(1e-300), torch.ones_like(syy))


def fit_surrogate(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, valid: torch.Tensor, *, alpha: float,
                  feature_selection: str, n_features: int | None, instance: torch.Tensor) -> Surrogate:
    """Fit the weighted linear surrogate of every sample (see the module doc).

    Args:
        z: representations, ``(m, d)`` shared by the samples or ``(n, m, d)``.
        y: model scores ``(n, m)``; w: kernel weights ``(n, m)``; valid: ``(n, d)`` bool, the features of
            each sample (invalid columns get coefficient 0).
        instance: the representation of the explained instance, ``(d,)`` or ``(n, d)``.
    """
    y, w = y.to(torch.float64), w.to(torch.float64)
    n, d = valid.shape
    m = y.shape[1]
    # weighted sums from one (n, m, d) buffer, the rows scaled by sqrt(w) (one pass, one allocation; z may be
    # bool): S_zz = Zs^T Zs, [S_z, S_zy] = Zs^T [sqrt(w), sqrt(w) yc]; centred: G = S_zz - S_z S_z^T / S_w.
    # The scores (n, m) are centred directly.
    total = w.sum(1)
    y_bar = (w * y).sum(1) / total
    yc = y - y_bar[:, None]
    root = w.sqrt()
    scaled = torch.mul(z.expand(n, m, d) if z.ndim == 2 else z, root[:, :, None])
    if scaled.dtype != torch.float64:
        scaled = scaled.to(torch.float64)
    s_zz = scaled.transpose(1, 2) @ scaled
    sums = scaled.transpose(1, 2) @ torch.stack([root, root * yc], 2)  # (n, d, 2)
    del scaled
    s_z, s_zy = sums[..., 0], sums[..., 1]
    z_bar = s_z / total[:, None]
    gram = s_zz - s_z[:, :, None] * z_bar[:, None, :]
    c = s_zy - z_bar * (w * yc).sum(1, keepdim=True)
    syy = (w * yc * yc).sum(1)
    gram = torch.where(valid[:, :, None] & valid[:, None, :], gram, torch.zeros((), dtype=gram.dtype))
    c = torch.where(valid, c, torch.zeros((), dtype=c.dtype))

    selection = feature_selection
    if selection == "auto":
        selection = "none" if n_features is None else ("forward_selection" if n_features <= 6 else "highest_weights")
    if selection == "none" or n_features is None:
        selected = valid.clone()
    elif selection == "forward_selection":
        selected = _forward(gram, c, syy, valid, n_features)
    elif selection == "highest_weights":
        beta = ridge(gram, c, valid, _SELECTION_ALPHA).abs()
        order = torch.where(valid, beta, torch.full((), -1.0, dtype=beta.dtype)).argsort(dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order).scatter_(1, order, torch.arange(d).expand(n, d).contiguous())
        selected = valid & (ranks < n_features)
    else:
        zn = (z.expand(n, m, d) if z.ndim == 2 else z).to(torch.float64)
        selected = _lasso(zn - z_bar[:, None, :], yc, w, valid, n_features)

    beta = ridge(gram, c, selected, alpha)
    intercept = y_bar - (z_bar * beta).sum(1)
    # weighted residual sum of squares from the same sums: sum w (yc - zc beta)^2 = syy - 2 beta.c + beta G beta
    rss = (syy - 2 * (beta * c).sum(1) + torch.einsum("nd,nde,ne->n", beta, gram, beta)).clamp_min(0)
    # a constant model (y equal up to rounding: syy at the level of float64 rounding of y_bar) is fitted perfectly
    flat = syy <= 1e-24 * total * y_bar.square()
    score = torch.where(flat, torch.ones_like(syy), 1 - rss / syy.clamp_min(1e-300))
    inst = instance.to(torch.float64)
    local = intercept + (inst.expand(n, d) * beta).sum(1)
    return Surrogate(beta, intercept, score, local, selected)


def _forward(gram: torch.Tensor, c: torch.Tensor, syy: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    n, d = valid.shape
    selected = torch.zeros_like(valid)
    rows = torch.arange(n)
    for _ in range(min(k, d)):
        best = torch.full((n,), -torch.inf, dtype=torch.float64)
        choice = torch.zeros(n, dtype=torch.long)
        for j in range(d):
            free = valid[:, j] & ~selected[:, j]
            if not bool(free.any()):
                continue
            candidate = selected.clone()
            candidate[:, j] = True
            r2 = _r2(gram, c, syy, ridge(gram, c, candidate, _SELECTION_ALPHA))
            better = free & (r2 > best)
            best = torch.where(better, r2, best)
            choice = torch.where(better, torch.full_like(choice, j), choice)
        found = torch.isfinite(best)
        selected[rows[found], choice[found]] = True
    return selected


def _lasso(zc: torch.Tensor, yc: torch.Tensor, w: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    from sklearn.linear_model import lars_path  # lazy: only this selection needs scikit-learn

    selected = torch.zeros_like(valid)
    root = w.sqrt()
    for i in range(valid.shape[0]):
        columns = torch.nonzero(valid[i]).flatten()
        x = (zc[i][:, columns] * root[i][:, None]).numpy()
        target = (yc[i] * root[i]).numpy()
        _, _, coefs = lars_path(x, target, method="lasso")
        chosen = np.zeros(0, dtype=np.int64)
        for step in range(coefs.shape[1] - 1, -1, -1):
            nonzero = np.flatnonzero(coefs[:, step])
            if len(nonzero) <= k:
                chosen = nonzero
                break
        selected[i, columns[torch.as_tensor(chosen, dtype=torch.long)]] = True
    return selected
