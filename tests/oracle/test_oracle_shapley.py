"""Oracle: Shapley methods, feature ablation and occlusion against closed forms and a brute-force Shapley
computation written here (every subset, factorial weights)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import build, rand
from lumos.core.model import NumpyModel
from lumos.methods.perturbation.ablation import FeatureAblation
from lumos.methods.perturbation.occlusion import Occlusion
from lumos.methods.shapley.exact import ExactSHAP
from lumos.methods.shapley.kernel import KernelSHAP
from lumos.methods.shapley.permutation import PermutationSHAP


def brute_force_shapley(f, x: np.ndarray, background: np.ndarray, groups: list[list[int]] | None = None,
                        weights: np.ndarray | None = None) -> np.ndarray:
    """Shapley values of ``v(S) = sum_b w_b f(x_S, b_notS)`` for one sample, by enumerating every subset.

    ``f`` maps a (rows, d) float64 array to one score per row; players are features or ``groups``.
    """
    d = x.shape[0]
    groups = groups or [[j] for j in range(d)]
    k = len(groups)
    w = np.full(len(background), 1.0 / len(background)) if weights is None else weights / weights.sum()

    def v(players: tuple[int, ...]) -> float:
        rows = background.copy()
        for p in players:
            rows[:, groups[p]] = x[groups[p]]
        return float(np.asarray(f(rows), dtype=np.float64) @ w)

    phi = np.zeros(k)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (v((*subset, i)) - v(subset))
    return phi


class Interactions(nn.Module):
    """A small net with products of features (real interactions) and a tanh layer; float64."""

    def __init__(self, d: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        return self.out(h) + (x[:, :1] * x[:, 1:2]) * torch.tensor([1.0, -0.5], dtype=x.dtype) + x[:, 2:3] ** 2


def scores_of(model: nn.Module, target: int):
    def f(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(rows)).numpy()[:, target]
    return f


@pytest.fixture(scope="module")
def interactions() -> tuple[nn.Module, np.ndarray, np.ndarray, np.ndarray]:
    model = build(3, lambda: Interactions(5), torch.float64)
    x = rand(1, 3, 5, dtype=torch.float64).numpy()
    background = rand(2, 6, 5, dtype=torch.float64).numpy()
    reference = np.stack([brute_force_shapley(scores_of(model, 1), row, background) for row in x])
    return model, x, background, reference


# ------------------------------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("method", ["exact", "kernel", "permutation"])
@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_linear_model_with_background(method: str, kind: str) -> None:
    """phi_i = w_i (x_i - mean_b b_i) for a linear model: exactly, even for the sampling estimators."""
    w = np.array([1.5, -2.0, 0.5, 0.0, 3.0, -1.0])
    x = rand(0, 4, 6, dtype=torch.float64).numpy()
    background = rand(1, 9, 6, dtype=torch.float64).numpy()
    expected = w * (x - background.mean(0))
    if kind == "torch":
        model = nn.Linear(6, 1).double()
        with torch.no_grad():
            model.weight.copy_(torch.as_tensor(w)[None])
            model.bias.fill_(0.7)
        inputs, bg = torch.as_tensor(x), torch.as_tensor(background)
    else:
        model = NumpyModel(lambda a: a @ w + 0.7)
        inputs, bg = x, background
    explainer = {"exact": ExactSHAP(model), "kernel": KernelSHAP(model, n_samples=20, seed=1),
                 "permutation": PermutationSHAP(model, n_permutations=2, seed=1)}[method]
    e = explainer.explain(inputs, baseline=bg)
    a = np.asarray(e.attributions)
    assert isinstance(e.attributions, torch.Tensor if kind == "torch" else np.ndarray)
    np.testing.assert_allclose(a, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(e.extras["base_value"], background.mean(0) @ w + 0.7, atol=1e-12)
    assert "interventional" in e.extras["estimand"] and "9 background rows" in e.extras["estimand"]


def test_additive_model_gives_each_feature_its_centred_term() -> None:
    """f(x) = sum_i g_i(x_i): phi_i = g_i(x_i) - mean_b g_i(b_i) (no interactions)."""
    funcs = [np.sin, np.square, np.tanh, lambda t: np.exp(t / 2), lambda t: np.abs(t) * 2]

    def f(a: np.ndarray) -> np.ndarray:
        return sum(g(a[:, i]) for i, g in enumerate(funcs))

    x = rand(3, 2, 5, dtype=torch.float64).numpy()
    background = rand(4, 7, 5, dtype=torch.float64).numpy()
    expected = np.stack([g(x[:, i]) - g(background[:, i]).mean() for i, g in enumerate(funcs)], 1)
    model = NumpyModel(f)
    for explainer in (ExactSHAP(model), KernelSHAP(model, n_samples=10, seed=0),
                      PermutationSHAP(model, n_permutations=2, seed=0)):
        e = explainer.explain(x, baseline=background)
        np.testing.assert_allclose(e.attributions, expected, rtol=0, atol=1e-10, err_msg=explainer.name)


def test_baseline_shapley_with_one_row() -> None:
    """One baseline row: baseline Shapley; for f = x0 * x1 each feature gets half the product's change."""
    model = NumpyModel(lambda a: a[:, 0] * a[:, 1] + a[:, 2])
    x = np.array([[2.0, 3.0, 1.0]])
    e = ExactSHAP(model).explain(x, baseline=np.array([1.0, 1.0, 0.0]))
    # f(x) = 7, f(b) = 1, v({0}) = 2, v({1}) = 3, v({0, 1}) = 6; x2 enters additively (phi_2 = 1);
    # phi_0 = 1/2 [(v(0) - v()) + (v(01) - v(1))] = 1/2 [(2 - 1) + (6 - 3)] = 2; phi_1 = 1/2 [(3-1) + (6-2)] = 3
    np.testing.assert_allclose(e.attributions, [[2.0, 3.0, 1.0]], atol=1e-12)
    assert e.extras["estimand"] == "baseline"
    np.testing.assert_allclose(e.extras["base_value"], [1.0])


# ------------------------------------------------------------------------------------------ brute force
def test_exact_shap_matches_brute_force(interactions) -> None:
    model, x, background, reference = interactions
    e = ExactSHAP(model).explain(torch.as_tensor(x), target=1, baseline=torch.as_tensor(background))
    np.testing.assert_allclose(e.attributions.numpy(), reference, rtol=0, atol=1e-10)


def test_kernel_shap_is_exact_when_every_coalition_fits(interactions) -> None:
    model, x, background, reference = interactions
    e = KernelSHAP(model, n_samples=2**5 - 2, seed=3).explain(torch.as_tensor(x), 1, baseline=torch.as_tensor(background))
    assert e.extras["exact"] and e.extras["n_coalitions"] == 30
    np.testing.assert_allclose(e.attributions.numpy(), reference, rtol=0, atol=1e-8)
    np.testing.assert_allclose(e.extras["standard_error"], 0.0, atol=1e-12)


def test_sampled_kernel_shap_is_within_its_standard_errors_and_improves_with_budget() -> None:
    model = build(5, lambda: Interactions(10), torch.float64)
    x = rand(6, 2, 10, dtype=torch.float64)
    background = rand(7, 4, 10, dtype=torch.float64)
    reference = ExactSHAP(model).explain(x, 1, baseline=background).attributions.numpy()
    errors, ses = [], []
    for n_samples in (60, 240, 900):
        trials = [KernelSHAP(model, n_samples=n_samples, seed=s).explain(x, 1, baseline=background) for s in range(6)]
        err = np.stack([t.attributions.numpy() - reference for t in trials])
        se = np.stack([t.extras["standard_error"] for t in trials])
        assert (np.abs(err) <= 5 * se + 1e-9).mean() > 0.97  # within a few standard errors
        errors.append(np.sqrt((err**2).mean()))
        ses.append(np.sqrt((se**2).mean()))
        # the standard errors are sensible: the same size as the actual errors
        assert 0.4 < ses[-1] / errors[-1] < 2.5, (n_samples, ses[-1], errors[-1])
    assert errors[0] > errors[1] > errors[2]
    assert ses[0] > ses[1] > ses[2]


def test_kernel_shap_tol_keeps_sampling_until_stable() -> None:
    model = build(5, lambda: Interactions(10), torch.float64)
    x = rand(6, 2, 10, dtype=torch.float64)
    background = rand(7, 4, 10, dtype=torch.float64)
    reference = ExactSHAP(model).explain(x, 1, baseline=background).attributions.numpy()
    e = KernelSHAP(model, n_samples=40, tol=2e-3, seed=0).explain(x, 1, baseline=background)
    assert e.extras["converged"] and e.extras["n_rounds"] > 1
    assert float(e.extras["standard_error"].max()) <= 2e-3
    assert np.abs(e.attributions.numpy() - reference).max() < 5 * 2e-3
    n = e.extras["n_coalitions"]
    assert e.extras["n_evaluations"] == 2 * 4 * (n + 1) + 2  # f(x), v(empty) and every coalition once


def test_permutation_shap_converges_to_brute_force(interactions) -> None:
    model, x, background, reference = interactions
    e = PermutationSHAP(model, n_permutations=400, seed=0).explain(torch.as_tensor(x), 1,
                                                                   baseline=torch.as_tensor(background))
    err = np.abs(e.attributions.numpy() - reference)
    assert err.max() < 0.03
    assert (err <= 5 * e.extras["standard_error"] + 1e-9).all()


def test_feature_groups_match_brute_force_over_groups(interactions) -> None:
    model, x, background, _ = interactions
    groups = [[0, 3], [1], [2, 4]]
    reference = np.stack([brute_force_shapley(scores_of(model, 0), row, background, groups) for row in x])
    ids = np.array([0, 1, 2, 0, 2])
    for spec in (groups, ids):
        e = ExactSHAP(model).explain(torch.as_tensor(x), 0, baseline=torch.as_tensor(background), feature_groups=spec)
        np.testing.assert_allclose(e.extras["group_values"], reference, atol=1e-10)
        a = e.attributions.numpy()
        np.testing.assert_allclose(a, reference[:, [0, 1, 2, 0, 2]], atol=1e-10)  # every member: its group's value
    k = KernelSHAP(model, n_samples=6, seed=0).explain(torch.as_tensor(x), 0, baseline=torch.as_tensor(background),
                                                       feature_groups=groups)
    np.testing.assert_allclose(k.extras["group_values"], reference, atol=1e-8)


def test_background_weights(interactions) -> None:
    model, x, background, _ = interactions
    weights = np.array([1.0, 2.0, 0.0, 3.0, 1.0, 1.0])
    reference = np.stack([brute_force_shapley(scores_of(model, 1), row, background, weights=weights) for row in x])
    e = ExactSHAP(model).explain(torch.as_tensor(x), 1, baseline=torch.as_tensor(background),
                                 background_weights=weights)
    np.testing.assert_allclose(e.attributions.numpy(), reference, atol=1e-10)
    assert "weighted" in e.extras["estimand"]


# ------------------------------------------------------------------------------------------ scikit-learn
@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")
def test_sklearn_models_through_predict_functions() -> None:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    assert sklearn
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = X[:, :6]
    logistic = LogisticRegression(max_iter=300).fit(X, y)
    background, samples = X[:8], X[100:103]
    # decision_function is linear: the closed form holds exactly
    e = KernelSHAP(logistic.decision_function, n_samples=30, seed=0).explain(samples, baseline=background)
    np.testing.assert_allclose(e.attributions, logistic.coef_[0] * (samples - background.mean(0)), atol=1e-10)
    # predict_proba (an estimator object also works) against brute force
    for model in (logistic, MLPClassifier(hidden_layer_sizes=(8,), max_iter=40, random_state=0).fit(X, y)):
        reference = np.stack([brute_force_shapley(lambda a, m=model: m.predict_proba(a)[:, 1], row, background)
                              for row in samples])
        for explainer in (ExactSHAP(model.predict_proba), KernelSHAP(model, n_samples=62, seed=0)):
            e = explainer.explain(samples, target=1, baseline=background)
            np.testing.assert_allclose(e.attributions, reference, atol=1e-10)
            np.testing.assert_allclose(e.scores, model.predict_proba(samples)[:, 1], atol=1e-12)
    Xd, yd = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(Xd[:, :5], yd)
    samples, background = Xd[:2, :5], Xd[50:56, :5]
    reference = np.stack([brute_force_shapley(forest.predict, row, background) for row in samples])
    e = PermutationSHAP(forest.predict, n_permutations=4, seed=0).explain(samples.astype(np.float32),
                                                                          baseline=background.astype(np.float32))
    assert e.attributions.dtype == np.float32
    np.testing.assert_allclose(e.attributions.sum(1), reference.sum(1), rtol=1e-5)  # efficiency
    e = ExactSHAP(forest).explain(samples, baseline=background)  # 1-d output: one score per sample
    np.testing.assert_allclose(e.attributions, reference, atol=1e-8)


# ------------------------------------------------------------------------------------------ ablation, occlusion
def test_feature_ablation_closed_form() -> None:
    w = np.array([1.0, -2.0, 0.5, 3.0])
    model = NumpyModel(lambda a: a @ w + a[:, 0] * a[:, 1])
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    baseline = np.array([0.5, 0.0, 1.0, 1.0])
    e = FeatureAblation(model).explain(x, baseline=baseline)
    fx = x[0] @ w + 2.0
    expected = [fx - (np.array([0.5, 2, 3, 4]) @ w + 1.0), fx - (np.array([1, 0, 3, 4]) @ w + 0.0),
                fx - (np.array([1, 2, 1, 4]) @ w + 2.0), fx - (np.array([1, 2, 3, 1]) @ w + 2.0)]
    np.testing.assert_allclose(e.attributions[0], expected, atol=1e-12)
    g = FeatureAblation(model).explain(x, baseline=baseline, feature_groups=[[0, 1]])
    both = fx - (np.array([0.5, 0, 3, 4]) @ w + 0.0)
    np.testing.assert_allclose(g.attributions[0], [both, both, expected[2], expected[3]], atol=1e-12)
    np.testing.assert_allclose(g.extras["group_values"][0], [both, expected[2], expected[3]], atol=1e-12)


def test_occlusion_closed_form_on_a_linear_image_model() -> None:
    """Linear model: a window's drop is sum_{e in window} w_e (x_e - fill); each element gets the mean drop of the
    windows covering it (naive re-implementation with explicit loops)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).double()
    x = rand(8, 2, 2, 5, 5, dtype=torch.float64)
    e = Occlusion(model, window=(2, 3, 3), strides=2).explain(x, target=2, baseline=0.5)
    weight = model[1].weight[2].detach().reshape(2, 5, 5)
    expected = torch.zeros_like(x)
    for k in range(2):
        total = torch.zeros(2, 5, 5, dtype=torch.float64)
        count = torch.zeros(2, 5, 5, dtype=torch.float64)
        for r in (0, 2):  # starts 0, 2 (and 5 - 3 = 2 is already there)
            for c in (0, 2):
                window = (slice(0, 2), slice(r, r + 3), slice(c, c + 3))
                drop = (weight[window] * (x[k][window] - 0.5)).sum()
                total[window] += drop
                count[window] += 1
        expected[k] = total / count
    torch.testing.assert_close(e.attributions, expected, rtol=0, atol=1e-12)
    assert e.extras["n_windows"] == 4
