"""Axioms of attribution (Sundararajan et al. 2017): completeness, implementation invariance, symmetry,
dummy and linearity."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import lumos
from conftest import GENERAL_METHODS, build, make_cnn, make_smooth_mlp, rand, run_method


def ig(model: nn.Module, x: torch.Tensor, target=0, n_steps: int = 32, baseline=0.0, **params) -> lumos.Explanation:
    return lumos.IntegratedGradients(model, n_steps=n_steps, **params).explain(x, target, baseline=baseline)


# ---------------------------------------------------------------------------------------------- completeness


def test_completeness_residual_shrinks_with_more_steps() -> None:
    model = make_smooth_mlp(seed=3)
    x = rand(40, 4, 6, dtype=torch.float64) * 2
    residuals = []
    for n_steps in (1, 2, 4, 8, 16):
        e = ig(model, x, target=[0, 1, 2, 0], n_steps=n_steps)
        residuals.append(float(np.abs(e.extras["convergence_delta"]).max()))
    assert all(later < earlier for earlier, later in zip(residuals, residuals[1:], strict=False)), residuals
    assert residuals[-1] < 1e-9 < residuals[0]  # spectral convergence on a smooth model


class SmoothCNN(nn.Module):
    """conv -> batchnorm -> GELU -> average pool -> linear: a smooth function of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.GELU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))).flatten(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_completeness_on_a_random_smooth_cnn(dtype: torch.dtype) -> None:
    model = build(11, SmoothCNN, dtype)
    x = rand(41, 8, 1, 8, 8, dtype=dtype)
    e = ig(model, x, target=None, n_steps=256)
    with torch.no_grad():
        target = torch.as_tensor(e.targets)
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    relative = np.abs(e.extras["convergence_delta"]) / np.abs(gap.numpy())
    assert relative.max() < 1e-3, relative
    np.testing.assert_allclose(e.extras["relative_convergence_delta"], relative, rtol=1e-4)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(e.attributions.flatten(1).sum(1) - gap, e.extras["convergence_delta"],
                               atol=tolerance)
    if dtype == torch.float64:  # spectral convergence: 32 Gauss-Legendre nodes are already exact
        assert float(np.max(ig(model, x, target=None, n_steps=32).extras["relative_convergence_delta"])) < 1e-10


def test_completeness_on_a_random_relu_cnn_converges_at_rate_one_over_n() -> None:
    """A ReLU/maxpool CNN has a piecewise-constant gradient along the path: the residual falls like 1/n
    (any quadrature rule), so at 256 steps it is small relative to the batch's output gaps, not to each
    sample's (a sample whose |f(x) - f(0)| is tiny can keep a relative residual of a few percent)."""
    model = make_cnn(seed=0, dtype=torch.float64)
    x = rand(50, 16, 1, 8, 8, dtype=torch.float64)
    residual, relative = {}, {}
    for n_steps in (64, 256):
        e = ig(model, x, target=None, n_steps=n_steps)
        delta = np.abs(e.extras["convergence_delta"])
        gap = delta / e.extras["relative_convergence_delta"]
        residual[n_steps], relative[n_steps] = delta.mean(), delta.sum() / gap.sum()
    assert residual[256] < residual[64] / 3
    assert relative[256] < 5e-3


def test_gradient_shap_completeness_in_expectation() -> None:
    """sum(phi) = f(x) - E f(x'): the convergence delta is within a few standard errors of 0."""
    model = make_smooth_mlp(seed=6)
    x = rand(42, 3, 6, dtype=torch.float64)
    background = rand(43, 10, 6, dtype=torch.float64)
    e = lumos.GradientSHAP(model, n_samples=2000, seed=0).explain(x, 1, baseline=background)
    with torch.no_grad():
        gap = model(x)[:, 1] - model(background)[:, 1].mean()
    torch.testing.assert_close(torch.as_tensor(e.attributions.sum(1)), gap, rtol=0.05, atol=0.02)


# ---------------------------------------------------------------------------------------------- invariance


class TwoPathNet(nn.Module):
    """``W2 relu(W1 x + b1)`` with every hidden unit split into a 1/4 and a 3/4 copy (the same function)."""

    def __init__(self, first: nn.Linear, second: nn.Linear) -> None:
        super().__init__()
        self.first = nn.Linear(first.in_features, 2 * first.out_features).double()
        self.second = nn.Linear(2 * first.out_features, second.out_features).double()
        with torch.no_grad():
            self.first.weight.copy_(torch.cat([first.weight * 0.25, first.weight * 0.75]))
            self.first.bias.copy_(torch.cat([first.bias * 0.25, first.bias * 0.75]))
            self.second.weight.copy_(torch.cat([second.weight, second.weight], dim=1))
            self.second.bias.copy_(second.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


@pytest.mark.parametrize("name", GENERAL_METHODS)  # (the CAM family explains spatial layers)
def test_implementation_invariance(name: str) -> None:
    """Two networks computing the same function get the same attributions (units split and permuted)."""
    original = build(7, lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), torch.float64)
    other = TwoPathNet(original[0], original[2]).eval()
    permutation = torch.tensor([3, 0, 8, 5, 1, 9, 2, 7, 4, 6])
    with torch.no_grad():  # permute the hidden units too
        other.first.weight.copy_(other.first.weight[permutation])
        other.first.bias.copy_(other.first.bias[permutation])
        other.second.weight.copy_(other.second.weight[:, permutation])
    x = rand(44, 4, 6, dtype=torch.float64) * 2
    with torch.no_grad():
        torch.testing.assert_close(other(x), original(x), rtol=1e-13, atol=1e-13)
    a = run_method(name, original, x, target=[0, 1, 2, 1]).attributions
    b = run_method(name, other, x, target=[0, 1, 2, 1]).attributions
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert float(a.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- symmetry


class SymmetricNet(nn.Module):
    """``f(x) = tanh(x0 + x1) * 2 + sin(x2) + 0.5 x3^2``: symmetric in x0 and x1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 2 * torch.tanh(x[:, 0] + x[:, 1]) + torch.sin(x[:, 2]) + 0.5 * x[:, 3] ** 2
        return out[:, None]


@pytest.mark.parametrize("name", ["integrated_gradients", "saliency", "input_x_gradient", "gradient_shap"])
def test_symmetry_preservation(name: str) -> None:
    x = torch.tensor([[0.7, 0.7, 1.0, -1.0], [-1.2, -1.2, 0.3, 2.0]], dtype=torch.float64)
    if name == "gradient_shap":  # a background symmetric in x0, x1 keeps the expectation symmetric
        background = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, -1.0, 1.0]], dtype=torch.float64)
        e = lumos.GradientSHAP(SymmetricNet(), n_samples=16, seed=0).explain(x, baseline=background)
    else:
        e = lumos.methods.get_method(name)(SymmetricNet()).explain(x)
    a = e.attributions
    torch.testing.assert_close(a[:, 0], a[:, 1], rtol=1e-12, atol=1e-14)
    assert float(a[:, 0].abs().min()) > 1e-3


# ---------------------------------------------------------------------------------------------- dummy


class IgnoresFeature(nn.Module):
    """A model that never reads feature 2 (it is sliced away)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x[:, :2], x[:, 3:]], dim=1))


#: surrogate / sampling estimators without the dummy property: LIME's ridge fit on sampled perturbations and
#: RISE's mask average give an unused feature a small non-zero value (sampling noise)
NO_DUMMY_AXIOM = ("lime", "rise")


@pytest.mark.parametrize("name", [n for n in GENERAL_METHODS if n not in NO_DUMMY_AXIOM])
def test_dummy_feature_gets_zero(name: str) -> None:
    model = build(8, IgnoresFeature, torch.float64)
    x = rand(45, 5, 6, dtype=torch.float64) * 2
    # sampled KernelSHAP holds the dummy axiom only approximately (tests/axioms/test_axioms_shapley.py);
    # here it runs in its exact regime (all 2^6 - 2 coalitions)
    overrides = {"kernel_shap": {"n_samples": 64}, "occlusion": {"window": 1}}.get(name, {})
    a = run_method(name, model, x, target=[0, 1, 2, 0, 1], **overrides).attributions
    if lumos.methods.get_method(name).requires_gradients:
        assert bool((a[:, 2] == 0).all())
    else:  # differences of model outputs computed in different batches: zero up to rounding
        torch.testing.assert_close(a[:, 2], torch.zeros_like(a[:, 2]), rtol=0, atol=1e-12)
    assert float(a.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- linearity


class Combination(nn.Module):
    def __init__(self, f: nn.Module, g: nn.Module, a: float, b: float) -> None:
        super().__init__()
        self.f, self.g, self.a, self.b = f, g, a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * self.f(x) + self.b * self.g(x)


@pytest.mark.parametrize("rule", ["gauss_legendre", "riemann_trapezoid"])
def test_linearity_in_the_model(rule: str) -> None:
    f, g = make_smooth_mlp(seed=9), copy.deepcopy(make_cnn(seed=10, dtype=torch.float64))
    g_flat = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), g)
    f_wide = nn.Sequential(nn.Linear(64, 6).double(), f)
    x = rand(46, 3, 64, dtype=torch.float64)
    h = Combination(f_wide, g_flat, 0.7, -1.3)
    target = [0, 2, 1]
    ig_f = ig(f_wide, x, target, n_steps=16, method=rule).attributions
    ig_g = ig(g_flat, x, target, n_steps=16, method=rule).attributions
    ig_h = ig(h, x, target, n_steps=16, method=rule).attributions
    torch.testing.assert_close(ig_h, 0.7 * ig_f - 1.3 * ig_g, rtol=1e-10, atol=1e-12)
