"""Oracle: ShapleyInteractions against known interactions (f = x0 x1 + x2), a brute-force Shapley interaction
index written here, ExactSHAP, and TreeSHAP's interventional interaction values on a tree."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.tree import DecisionTreeRegressor
from torch import nn

from conftest import build, rand
from lumos.core.model import NumpyModel
from lumos.errors import ValidationError
from lumos.methods.shapley.exact import ExactSHAP
from lumos.methods.shapley.interactions import ShapleyInteractions
from lumos.methods.shapley.tree import TreeSHAP


def brute_force_interactions(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Phi_ij = I_ij / 2 (i != j), Phi_ii = phi_i - sum_{j != i} Phi_ij, from v(S) = mean_b f(x_S, b_notS)."""
    d = x.shape[0]

    def v(s: set[int]) -> float:
        rows = background.copy()
        rows[:, sorted(s)] = x[sorted(s)]
        return float(np.mean(f(rows)))

    out = np.zeros((d, d))
    phi = np.zeros(d)
    for i in range(d):
        others = [k for k in range(d) if k != i]
        for size in range(d):
            w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for s in itertools.combinations(others, size):
                phi[i] += w * (v(set(s) | {i}) - v(set(s)))
    for i, j in itertools.combinations(range(d), 2):
        others = [k for k in range(d) if k not in (i, j)]
        for size in range(d - 1):
            w = math.factorial(size) * math.factorial(d - size - 2) / math.factorial(d - 1)
            for s in itertools.combinations(others, size):
                s = set(s)
                out[i, j] += w * (v(s | {i, j}) - v(s | {i}) - v(s | {j}) + v(s)) / 2
        out[j, i] = out[i, j]
    out[np.arange(d), np.arange(d)] = phi - out.sum(1)
    return out


def test_known_pairwise_term() -> None:
    """f = x0 x1 + x2 against baseline 0: Phi_01 = Phi_10 = x0 x1 / 2, Phi_22 = x2, everything else 0."""
    x = rand(0, 5, 3, dtype=torch.float64).numpy()
    e = ShapleyInteractions(NumpyModel(lambda a: a[:, 0] * a[:, 1] + a[:, 2])).explain(x, baseline=0.0)
    expected = np.zeros((5, 3, 3))
    expected[:, 0, 1] = expected[:, 1, 0] = x[:, 0] * x[:, 1] / 2
    expected[:, 2, 2] = x[:, 2]
    np.testing.assert_allclose(e.extras["interactions"], expected, atol=1e-12)
    np.testing.assert_allclose(e.attributions, np.stack([x[:, 0] * x[:, 1] / 2] * 2 + [x[:, 2]], 1), atol=1e-12)
    np.testing.assert_allclose(e.extras["base_value"], 0.0, atol=1e-12)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc(x))) + x[:, :1] * x[:, 2:3] * x[:, 3:4]


def test_equals_brute_force_on_a_network_with_background() -> None:
    model = build(0, Net, torch.float64)
    x = rand(1, 2, 4, dtype=torch.float64)
    background = rand(2, 5, 4, dtype=torch.float64)
    e = ShapleyInteractions(model).explain(x, target=1, baseline=background)

    def f(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(rows))[:, 1].numpy()

    inter = e.extras["interactions"]
    for row, matrix in zip(x.numpy(), inter, strict=True):
        np.testing.assert_allclose(matrix, brute_force_interactions(f, row, background.numpy()), atol=1e-10)
    np.testing.assert_allclose(inter.sum(2), e.attributions.numpy(), atol=1e-12)
    np.testing.assert_allclose(inter.sum((1, 2)), e.scores - e.extras["base_value"], atol=1e-10)
    exact = ExactSHAP(model).explain(x, target=1, baseline=background)
    np.testing.assert_allclose(e.attributions.numpy(), exact.attributions.numpy(), atol=1e-12)
    assert isinstance(e.attributions, torch.Tensor)


def test_tree_interventional_interactions_match_the_generic_method() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)).astype(np.float32).astype(np.float64)
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, x[:, 0] * x[:, 1] + np.sin(x[:, 2]))
    background = x[50:56]
    generic = ShapleyInteractions(tree).explain(x[:3], baseline=background)
    fast = TreeSHAP(tree, interactions=True, progress=False).explain(x[:3], baseline=background)
    np.testing.assert_allclose(fast.extras["interactions"], generic.extras["interactions"], atol=1e-10)
    np.testing.assert_allclose(fast.attributions, generic.attributions, atol=1e-10)


def test_feature_groups_are_the_players() -> None:
    """Groups {0, 1} and {2}: f = x0 x1 + x2 has no interaction between the two groups."""
    x = rand(4, 3, 3, dtype=torch.float64).numpy()
    e = ShapleyInteractions(NumpyModel(lambda a: a[:, 0] * a[:, 1] + a[:, 2])).explain(
        x, baseline=0.0, feature_groups=np.array([0, 0, 1]))
    inter = e.extras["interactions"]
    assert inter.shape == (3, 2, 2)
    np.testing.assert_allclose(inter[:, 0, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(inter[:, 0, 0], x[:, 0] * x[:, 1], atol=1e-12)
    np.testing.assert_allclose(e.attributions[:, :2], np.stack([x[:, 0] * x[:, 1]] * 2, 1), atol=1e-12)


def test_refuses_too_many_players() -> None:
    model = NumpyModel(lambda a: a.sum(1))
    with pytest.raises(ValidationError, match=r"d = 13 players is above the limit of 12"):
        ShapleyInteractions(model).explain(np.zeros((1, 13)), baseline=0.0)
