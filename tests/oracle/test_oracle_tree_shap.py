"""Oracle: TreeSHAP against brute-force Shapley values written here (path-dependent v(S) computed recursively
with the covers, interventional v(S) averaged over a background, every subset enumerated), against
shap.TreeExplainer and the boosters' own implementations where installed, and its errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeRegressor

from lumos.errors import UnsupportedModelError, ValidationError
from lumos.methods.shapley.tree import TreeSHAP
from lumos.methods.shapley.tree_models import read_ensemble


def f32(a: np.ndarray) -> np.ndarray:
    """Values exactly representable in float32 (scikit-learn routes float32 inputs)."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def data(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = f32(rng.normal(size=(n, d)))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + x[:, 2 % d] ** 2 + 0.3 * rng.normal(size=n)
    return x, y


def path_value(tree, x: np.ndarray, subset: set[int], node: int = 0) -> float:
    """Path-dependent v(S): follow x on features in S, average the children by cover otherwise."""
    t = tree.tree_
    left, right = t.children_left[node], t.children_right[node]
    if left < 0:
        return float(t.value[node, 0, 0])
    j = t.feature[node]
    if j in subset:
        return path_value(tree, x, subset, left if x[j] <= t.threshold[node] else right)
    w = t.weighted_n_node_samples
    return (w[left] * path_value(tree, x, subset, left) + w[right] * path_value(tree, x, subset, right)) / w[node]


def shapley(v, d: int) -> np.ndarray:
    """Shapley values of the game ``v(frozenset)`` by enumerating every subset."""
    phi = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for s in itertools.combinations(others, size):
                phi[i] += w * (v(set(s) | {i}) - v(set(s)))
    return phi


def interaction_index(v, d: int) -> np.ndarray:
    """Lundberg et al. (2020) interaction values: Phi_ij = I_ij / 2 off the diagonal, rows sum to phi."""
    out = np.zeros((d, d))
    for i, j in itertools.combinations(range(d), 2):
        others = [k for k in range(d) if k not in (i, j)]
        for size in range(d - 1):
            w = math.factorial(size) * math.factorial(d - size - 2) / math.factorial(d - 1)
            for s in itertools.combinations(others, size):
                s = set(s)
                out[i, j] += w * (v(s | {i, j}) - v(s | {i}) - v(s | {j}) + v(s)) / 2
        out[j, i] = out[i, j]
    phi = shapley(v, d)
    out[np.arange(d), np.arange(d)] = phi - out.sum(1)
    return out


def reuses_a_feature(tree) -> bool:
    t = tree.tree_

    def walk(node: int, seen: tuple[int, ...]) -> bool:
        if t.children_left[node] < 0:
            return False
        j = t.feature[node]
        return j in seen or walk(t.children_left[node], (*seen, j)) or walk(t.children_right[node], (*seen, j))

    return walk(0, ())


@pytest.fixture(scope="module")
def small_trees() -> list[tuple[DecisionTreeRegressor, np.ndarray]]:
    out = []
    for seed, (depth, d) in enumerate([(3, 3), (4, 4), (4, 5), (4, 6)]):
        x, y = data(seed, 200, d)
        out.append((DecisionTreeRegressor(max_depth=depth, random_state=seed).fit(x, y), x[:4]))
    assert any(reuses_a_feature(tree) for tree, _ in out)  # a feature split twice on one path is covered
    return out


# ------------------------------------------------------------------------------------------ brute force
def test_path_dependent_equals_brute_force_on_small_trees(small_trees) -> None:
    for tree, x in small_trees:
        d = x.shape[1]
        e = TreeSHAP(tree, progress=False).explain(x)
        for row, phi in zip(x, e.attributions, strict=True):
            expected = shapley(lambda s, row=row, tree=tree: path_value(tree, row, s), d)
            np.testing.assert_allclose(phi, expected, rtol=1e-10, atol=1e-10)
        base = path_value(tree, x[0], set())
        np.testing.assert_allclose(e.extras["base_value"], base, rtol=1e-12)
        np.testing.assert_allclose(e.attributions.sum(1), tree.predict(x) - base, rtol=1e-10, atol=1e-10)
        assert e.extras["estimand"] == "path-dependent (tree_path_dependent)"


def test_interventional_equals_brute_force_and_is_efficient() -> None:
    x, y = data(7, 300, 5)
    forest = RandomForestRegressor(4, max_depth=4, random_state=0).fit(x, y)
    background = x[100:107]
    e = TreeSHAP(forest, progress=False).explain(x[:3], baseline=background)

    def v(row: np.ndarray, s: set[int]) -> float:
        rows = background.copy()
        rows[:, sorted(s)] = row[sorted(s)]
        return float(forest.predict(rows).mean())

    for row, phi in zip(x[:3], e.attributions, strict=True):
        np.testing.assert_allclose(phi, shapley(lambda s, row=row: v(row, s), 5), rtol=1e-10, atol=1e-10)
    base = forest.predict(background).mean()
    np.testing.assert_allclose(e.extras["base_value"], base, rtol=1e-12)
    np.testing.assert_allclose(e.attributions.sum(1), forest.predict(x[:3]) - base, atol=1e-10)
    assert e.extras["estimand"] == "interventional over 7 background rows"
    assert e.extras["n_evaluations"] == 3 + 7


def test_forest_and_boosting_are_sums_of_their_trees() -> None:
    """A forest's values are the mean of its trees'; a boosted model's the learning-rate-scaled sum."""
    x, y = data(3, 200, 4)
    forest = RandomForestRegressor(3, max_depth=3, random_state=0).fit(x, y)
    boost = GradientBoostingRegressor(n_estimators=3, max_depth=3, learning_rate=0.5, random_state=0).fit(x, y)
    rows = x[:3]
    per_tree = [TreeSHAP(t, progress=False).explain(rows).attributions for t in forest.estimators_]
    np.testing.assert_allclose(TreeSHAP(forest, progress=False).explain(rows).attributions,
                               np.mean(per_tree, 0), atol=1e-12)
    per_stage = [TreeSHAP(s[0], progress=False).explain(rows).attributions for s in boost.estimators_]
    np.testing.assert_allclose(TreeSHAP(boost, progress=False).explain(rows).attributions,
                               0.5 * np.sum(per_stage, 0), atol=1e-12)


def test_interactions_equal_brute_force_and_rows_sum_to_values(small_trees) -> None:
    tree, x = small_trees[1]
    d = x.shape[1]
    e = TreeSHAP(tree, interactions=True, progress=False).explain(x[:2])
    inter = e.extras["interactions"]
    assert inter.shape == (2, d, d)
    np.testing.assert_allclose(inter.sum(2), e.attributions, atol=1e-10)
    np.testing.assert_allclose(inter, inter.transpose(0, 2, 1), atol=1e-12)
    for row, matrix in zip(x[:2], inter, strict=True):
        np.testing.assert_allclose(matrix, interaction_index(lambda s, row=row: path_value(tree, row, s), d),
                                   atol=1e-10)


def test_classifier_outputs_and_targets() -> None:
    """Forests explain class probabilities (target=None: predicted class); boosting the log-odds margin."""
    x, y = data(5, 300, 4)
    classes = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    forest = RandomForestClassifier(5, max_depth=4, random_state=0).fit(x, classes)
    e = TreeSHAP(forest, progress=False).explain(x[:6])
    proba = forest.predict_proba(x[:6])
    predicted = proba.argmax(1)
    np.testing.assert_array_equal(e.targets, predicted)
    np.testing.assert_allclose(e.scores, proba[np.arange(6), predicted], atol=1e-12)
    np.testing.assert_allclose(e.attributions.sum(1) + e.extras["base_value"], e.scores, atol=1e-10)
    e2 = TreeSHAP(forest, progress=False).explain(x[:6], target=2)
    np.testing.assert_allclose(e2.attributions.sum(1) + e2.extras["base_value"], proba[:, 2], atol=1e-10)
    boost = GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, classes > 0)
    eb = TreeSHAP(boost, progress=False).explain(x[:6])
    np.testing.assert_allclose(eb.scores, boost.decision_function(x[:6]), atol=1e-10)
    assert "margin" in eb.extras["output"]


def test_torch_in_torch_out() -> None:
    x, y = data(2, 100, 3)
    tree = DecisionTreeRegressor(max_depth=3, random_state=0).fit(x, y)
    inputs = torch.as_tensor(x[:4])
    e = TreeSHAP(tree, progress=False).explain(inputs)
    assert isinstance(e.attributions, torch.Tensor) and e.attributions.shape == inputs.shape
    np.testing.assert_allclose(e.attributions.numpy(), TreeSHAP(tree, progress=False).explain(x[:4]).attributions)


# ------------------------------------------------------------------------------------------ references
def test_equals_shap_tree_explainer_on_forest_and_boosting() -> None:
    shap = pytest.importorskip("shap")
    x, y = data(11, 400, 6)
    forest = RandomForestRegressor(20, max_depth=8, random_state=0).fit(x, y)
    boost = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y > np.median(y))
    for model in (forest, boost):
        e = TreeSHAP(model, interactions=model is forest, progress=False).explain(x[:20])
        explainer = shap.TreeExplainer(model)
        np.testing.assert_allclose(e.attributions, explainer.shap_values(x[:20]), rtol=0, atol=1e-6)
        np.testing.assert_allclose(e.extras["base_value"], np.ravel(explainer.expected_value)[0], atol=1e-6)
        if model is forest:
            np.testing.assert_allclose(e.extras["interactions"], explainer.shap_interaction_values(x[:20]),
                                       atol=1e-6)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosters_native_and_own_implementation_agree(library: str) -> None:
    lib = pytest.importorskip(library)
    x, y = data(13, 300, 5)
    classes = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    if library == "xgboost":
        models = [lib.XGBRegressor(n_estimators=15, max_depth=4).fit(x, y),
                  lib.XGBClassifier(n_estimators=15, max_depth=4).fit(x, classes)]
    else:
        models = [lib.LGBMRegressor(n_estimators=15, num_leaves=8, verbose=-1).fit(x, y),
                  lib.LGBMClassifier(n_estimators=15, num_leaves=8, verbose=-1).fit(x, classes)]
    for model in models:
        target = 1 if library and hasattr(model, "classes_") else None
        native = TreeSHAP(model, progress=False).explain(x[:10], target=target)
        own = TreeSHAP(model, use_native=False, progress=False).explain(x[:10], target=target)
        scale = 1 + np.abs(native.attributions).max()
        np.testing.assert_allclose(own.attributions, native.attributions, atol=2e-5 * scale)
        np.testing.assert_allclose(own.extras["base_value"], native.extras["base_value"], atol=2e-5 * scale)
        assert np.abs(native.extras["convergence_delta"]).max() < 1e-4 * scale
        margin = read_ensemble(model, owner="test").predict(x[:10])[:, target or 0]
        np.testing.assert_allclose(own.attributions.sum(1) + own.extras["base_value"], margin, atol=1e-9)
        shap = pytest.importorskip("shap")
        reference = shap.TreeExplainer(model).shap_values(x[:10])
        reference = reference[:, :, target] if reference.ndim == 3 else reference
        np.testing.assert_allclose(native.attributions, reference, atol=1e-6 * scale)
    if library == "xgboost":
        native = TreeSHAP(models[0], interactions=True, progress=False).explain(x[:5])
        own = TreeSHAP(models[0], interactions=True, use_native=False, progress=False).explain(x[:5])
        np.testing.assert_allclose(own.extras["interactions"], native.extras["interactions"], atol=1e-4)


# ------------------------------------------------------------------------------------------ errors
def test_errors() -> None:
    x, y = data(1, 50, 3)
    tree = DecisionTreeRegressor(max_depth=2).fit(x, y)
    with pytest.raises(UnsupportedModelError, match="RandomForest.*xgboost.*lightgbm"):
        TreeSHAP(torch.nn.Linear(3, 1))
    with pytest.raises(ValidationError, match=r"\(n_samples, 3\).*3 features"):
        TreeSHAP(tree, progress=False).explain(np.zeros((2, 4)))
    with pytest.raises(ValidationError, match="needs background rows"):
        TreeSHAP(tree, feature_perturbation="interventional", progress=False).explain(x[:2])
    with pytest.raises(ValidationError, match="feature_perturbation must be one of"):
        TreeSHAP(tree, feature_perturbation="marginal")
