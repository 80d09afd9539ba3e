"""LIME's weighted surrogate against scikit-learn's weighted Ridge, fitted for every sample at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from lumos.methods.perturbation.surrogate import fit_surrogate


def _data(shared: bool, binary: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, m, d = 3, 400, 6
    shape = (m, d) if shared else (n, m, d)
    z = (rng.random(shape) < 0.5).astype(float) if binary else rng.normal(size=shape) * 3 + 5
    zn = np.broadcast_to(z, (n, m, d))
    w = rng.random((n, m)) + 0.1
    y = np.einsum("nmd,d->nm", zn, rng.normal(size=d)) + rng.normal(size=(n, m)) + 40.0
    return torch.as_tensor(z), torch.as_tensor(y), torch.as_tensor(w), zn


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 1e-3])
def test_surrogate_equals_sklearn_weighted_ridge(shared: bool, binary: bool, alpha: float) -> None:
    z, y, w, zn = _data(shared, binary)
    n, _, d = zn.shape
    valid = torch.ones(n, d, dtype=torch.bool)
    fit = fit_surrogate(z, y, w, valid, alpha=alpha, feature_selection="none", n_features=None,
                        instance=torch.ones(d, dtype=torch.float64))
    for i in range(n):
        ref = Ridge(alpha=alpha).fit(zn[i], y[i].numpy(), sample_weight=w[i].numpy())
        np.testing.assert_allclose(fit.coef[i].numpy(), ref.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(float(fit.intercept[i]), ref.intercept_, rtol=1e-9)
        r2 = r2_score(y[i].numpy(), ref.predict(zn[i]), sample_weight=w[i].numpy())
        np.testing.assert_allclose(float(fit.score[i]), r2, rtol=1e-8)
        np.testing.assert_allclose(float(fit.local_prediction[i]), ref.predict(np.ones((1, d)))[0], rtol=1e-9)


def test_surrogate_invalid_columns_get_zero_and_match_ridge_on_the_rest() -> None:
    z, y, w, zn = _data(False, True, seed=1)
    n, _, d = zn.shape
    valid = torch.ones(n, d, dtype=torch.bool)
    valid[1, [0, 4]] = False
    fit = fit_surrogate(z, y, w, valid, alpha=1.0, feature_selection="none", n_features=None,
                        instance=torch.ones(d, dtype=torch.float64))
    assert float(fit.coef[1, 0]) == 0.0 and float(fit.coef[1, 4]) == 0.0
    keep = valid[1].numpy()
    ref = Ridge(alpha=1.0).fit(zn[1][:, keep], y[1].numpy(), sample_weight=w[1].numpy())
    np.testing.assert_allclose(fit.coef[1].numpy()[keep], ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(fit.intercept[1]), ref.intercept_, rtol=1e-9)


def test_surrogate_of_a_constant_model_is_a_perfect_flat_fit() -> None:
    z, _, w, zn = _data(False, True, seed=2)
    n, m, d = zn.shape
    y = torch.full((n, m), 0.7312, dtype=torch.float64)
    fit = fit_surrogate(z, y, w, torch.ones(n, d, dtype=torch.bool), alpha=1.0, feature_selection="none",
                        n_features=None, instance=torch.ones(d, dtype=torch.float64))
    np.testing.assert_allclose(fit.coef.numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(fit.intercept.numpy(), 0.7312, rtol=1e-12)
    np.testing.assert_allclose(fit.score.numpy(), 1.0)


@pytest.mark.parametrize("sampling", ["bernoulli", "size"])
def test_discretized_sampler_draws_uniformly_inside_or_outside_the_bin(sampling: str) -> None:
    """Quartile-bin LIME: a kept feature takes a value drawn uniformly from the background rows in the
    sample's bin, a hidden one uniformly from the rows outside it; Bernoulli coalitions keep each feature with
    probability 1/2, independently of the row drawn."""
    from lumos.methods.perturbation.lime import _discretized

    g = torch.Generator().manual_seed(0)
    background = torch.rand(37, 3, generator=g, dtype=torch.float64)  # distinct values: a value names its row
    x = torch.stack([background[5], background[30]]) + 1e-9
    m = 60_000
    rows, keep, valid = _discretized(x, background, m, torch.Generator().manual_seed(1), sampling)
    assert bool(valid.all())
    edges = torch.quantile(background, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0).T
    bins_bg = (background[:, :, None] > edges[None]).sum(2)
    bins_x = (x[:, :, None] > edges[None]).sum(2)
    for i in range(2):
        for j in range(3):
            in_bin = bins_bg[:, j] == bins_x[i, j]
            for kept, rows_allowed in ((True, in_bin), (False, ~in_bin)):
                values = rows[i, keep[i, :, j] == kept, j]
                row_of = (values[:, None] == background[None, :, j]).float().argmax(1)
                assert bool((values[:, None] == background[None, :, j]).any(1).all())
                assert bool(rows_allowed[row_of].all())  # never a row from the wrong side of the bin
                counts = torch.bincount(row_of, minlength=37)[rows_allowed].double()
                expected = values.numel() / int(rows_allowed.sum())
                assert float((counts - expected).abs().max()) < 5 * expected**0.5  # uniform over the allowed rows
            if sampling == "bernoulli":
                assert abs(float(keep[i, :, j].double().mean()) - 0.5) < 0.01


def test_discretized_sampler_column_entirely_in_one_bin_draws_every_row_equally() -> None:
    """A feature whose whole background falls in the sample's bin (quartile edges at its maximum) cannot be
    hidden: it stays kept and takes any background row with equal probability."""
    from lumos.methods.perturbation.lime import _discretized

    column = torch.cat([torch.linspace(-1.0, 0.5, 8, dtype=torch.float64), torch.ones(32, dtype=torch.float64)])
    background = torch.stack([column, torch.linspace(0, 1, 40, dtype=torch.float64)], 1)
    x = torch.tensor([[0.0, 0.3]], dtype=torch.float64)
    rows, keep, valid = _discretized(x, background, 80_000, torch.Generator().manual_seed(3), "bernoulli")
    assert valid.tolist() == [[False, True]]
    assert bool(keep[0, :, 0].all())
    values = rows[0, :, 0]
    for v in column[:8]:  # each of the 8 distinct low values: 1/40 of the draws
        assert abs(float((values == v).double().mean()) - 1 / 40) < 5 * (1 / 40 * 39 / 40 / 80_000) ** 0.5
    assert abs(float((values == 1.0).double().mean()) - 32 / 40) < 0.01
