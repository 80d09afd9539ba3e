"""Contract for methods that explain fitted tree ensembles (TreeSHAP): the same promises as the registry
contract (structure and type of the result, values, determinism, batch-size invariance, save/load, clear
errors), on scikit-learn trees instead of torch models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor

import lumos
from conftest import TREE_METHODS, make_explainer, make_mlp, rand


def data(seed: int = 0, n: int = 60, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    x = rand(seed, n, d, dtype=torch.float64).numpy()
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1).astype(int)  # 3 classes
    return x, y


def forest() -> RandomForestClassifier:
    x, y = data()
    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)


@pytest.mark.parametrize("name", TREE_METHODS)
def test_numpy_and_torch_in_mirror_the_inputs_and_sum_to_the_prediction(name: str) -> None:
    model = forest()
    x = data(1, 5)[0]
    e_np = make_explainer(name, model).explain(x, target=1)
    assert isinstance(e_np.attributions, np.ndarray) and e_np.attributions.shape == x.shape
    e_t = make_explainer(name, model).explain(torch.from_numpy(x), target=1)
    assert isinstance(e_t.attributions, torch.Tensor)
    np.testing.assert_allclose(e_t.attributions.numpy(), e_np.attributions, rtol=1e-12, atol=1e-12)
    prediction = model.predict_proba(x)[:, 1]  # efficiency: values sum to f(x) - base value
    np.testing.assert_allclose(e_np.attributions.sum(1) + e_np.extras["base_value"], prediction, atol=1e-9)
    assert e_np.method == name and "path-dependent" in e_np.extras["estimand"]


@pytest.mark.parametrize("name", TREE_METHODS)
def test_target_none_batch_size_and_determinism(name: str) -> None:
    model = forest()
    x = data(2, 7)[0]
    e = make_explainer(name, model).explain(x)
    np.testing.assert_array_equal(e.targets, model.predict_proba(x).argmax(1))
    again = make_explainer(name, model, batch_size=2).explain(x)
    np.testing.assert_allclose(again.attributions, e.attributions, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", TREE_METHODS)
def test_interventional_with_a_background_and_save_load(name: str, tmp_path) -> None:  # noqa: ANN001
    x, y = data(3, 80)
    model = RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0).fit(x, x[:, 0] - x[:, 1] * y)
    background = data(4, 10)[0]
    e = make_explainer(name, model).explain(x[:4], baseline=background)
    assert "interventional" in e.extras["estimand"]
    np.testing.assert_allclose(e.attributions.sum(1) + e.extras["base_value"], model.predict(x[:4]), atol=1e-9)
    loaded = lumos.load(e.save(tmp_path / "tree.npz"))
    np.testing.assert_array_equal(loaded.attributions, e.attributions)
    assert loaded.params == e.params


@pytest.mark.parametrize("name", TREE_METHODS)
def test_boosted_classifier_explains_the_margin(name: str) -> None:
    x, y = data(5, 80)
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(x, (y > 0).astype(int))
    e = make_explainer(name, model).explain(x[:3], target=0)
    margin = model.decision_function(x[:3])
    np.testing.assert_allclose(e.attributions.sum(1) + e.extras["base_value"], margin, atol=1e-9)


@pytest.mark.parametrize("name", TREE_METHODS)
def test_clear_errors(name: str) -> None:
    with pytest.raises(lumos.UnsupportedModelError):
        make_explainer(name, make_mlp()).explain(rand(0, 3, 6))
    model = forest()
    with pytest.raises(lumos.ValidationError):
        make_explainer(name, model).explain(data(0, 3, 5)[0])  # 5 features for a 6-feature model
    with pytest.raises(lumos.TargetError):
        make_explainer(name, model).explain(data(0, 3)[0], target=7)
    with pytest.raises(lumos.ValidationError, match="finite"):
        bad = data(0, 3)[0]
        bad[1, 2] = np.nan
        make_explainer(name, model).explain(bad)
