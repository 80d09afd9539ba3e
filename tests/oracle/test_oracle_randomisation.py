"""Randomisation tests and their similarity measures against known answers and direct scipy/skimage calls."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity
from torch import nn

from conftest import build, make_cnn, rand
from lumos.core.seeding import derive_seed
from lumos.methods.base import Attribution, ExplainContext, Explainer
from lumos.methods.gradient.saliency import Saliency
from lumos.metrics.randomisation import (
    model_parameter_randomisation,
    parameter_layers,
    random_logit,
    randomise_layer,
)
from lumos.metrics.similarity import (
    average_ranks,
    explanation_maps,
    hog_cell,
    hog_similarity,
    row_correlation,
    spearman_similarity,
    ssim_similarity,
)


class InputAsAttribution(Explainer):
    """Ignores the model: the attribution is the input itself (fails every randomisation test by construction)."""

    name = "input_as_attribution"

    def _attribute(self, context: ExplainContext) -> Attribution:
        return Attribution(tuple(t.clone() for t in context.batch.tensors), None)


class SharedLog(list):
    """A list that the copies of an explainer share (``rebind`` deep-copies the explainer's configuration)."""

    def __deepcopy__(self, memo: dict) -> SharedLog:
        return self


class ChangedLayers(Explainer):
    """Records, at each explain call, which layers of the model it explains differ from the trained model."""

    name = "changed_layers"

    def __init__(self, model: nn.Module, *, trained: dict[str, torch.Tensor], log: list, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        self.trained = trained
        self.log = log

    def _attribute(self, context: ExplainContext) -> Attribution:
        state = context.adapter.module.state_dict()
        changed = {key.rsplit(".", 1)[0] for key, value in state.items() if not torch.equal(value, self.trained[key])}
        self.log.append(frozenset(changed))
        return Attribution(tuple(t.clone() for t in context.batch.tensors), None)


class MLP3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(5, 7)
        self.middle = nn.Linear(7, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.middle(torch.relu(self.inner(x)))))


class Reordered(nn.Module):
    """Modules declared head-first but called input-first: the order must come from the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.body = nn.Linear(5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


def naive_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(len(a))])


# ---------------------------------------------------------------------------------------------- measures


def test_spearman_equals_scipy_on_values_and_magnitudes() -> None:
    r = np.random.default_rng(0)
    a, b = r.normal(size=(6, 5, 7)), r.normal(size=(6, 5, 7))
    b[:, 0, :3] = 0.0  # ties
    a[:2] += 0.5 * b[:2]  # some correlation
    np.testing.assert_allclose(spearman_similarity(a, b, absolute=False), naive_spearman(a, b), atol=1e-12)
    np.testing.assert_allclose(spearman_similarity(a, b), naive_spearman(np.abs(a), np.abs(b)), atol=1e-12)
    np.testing.assert_allclose(spearman_similarity(a, -a, absolute=False), -1.0)
    np.testing.assert_allclose(spearman_similarity(a, -a), 1.0)  # magnitudes unchanged by the sign


def test_average_ranks_equal_scipy_rankdata_with_ties_and_nans() -> None:
    r = np.random.default_rng(3)
    for trial in range(100):
        rows = np.round(r.normal(size=(int(r.integers(1, 9)), int(r.integers(1, 60)))), int(r.integers(0, 3)))
        np.testing.assert_array_equal(average_ranks(rows), stats.rankdata(rows, axis=1), err_msg=str(trial))
    rows = np.array([[3.0, 1.0, 3.0, 2.0], [0.0, np.nan, 1.0, 1.0]])
    np.testing.assert_array_equal(average_ranks(rows)[0], [3.5, 1.0, 3.5, 2.0])
    assert np.isnan(average_ranks(rows)[1]).all()


def test_constant_rows_follow_the_documented_convention() -> None:
    a = np.array([[1.0, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 0]])
    b = np.array([[0.0, 0, 0, 0], [4, 1, 2, 3], [0, 0, 0, 0]])
    np.testing.assert_array_equal(row_correlation(a, b), [0.0, 0.0, np.nan])


def test_ssim_equals_skimage_per_sample() -> None:
    r = np.random.default_rng(1)
    a, b = r.random((4, 9, 12)), 3 * r.random((4, 9, 12)) - 1
    b[0] = a[0] * 2 + 0.5  # same shape after the [0, 1] rescaling
    expected_raw = [structural_similarity(a[i], b[i], data_range=1.0) for i in range(4)]
    np.testing.assert_allclose(ssim_similarity(a, b, rescale=False), expected_raw, atol=1e-12)

    def unit(m: np.ndarray) -> np.ndarray:
        return (m - m.min()) / (m.max() - m.min())

    expected = [structural_similarity(unit(a[i]), unit(b[i]), data_range=1.0) for i in range(4)]
    np.testing.assert_allclose(ssim_similarity(a, b), expected, atol=1e-12)
    assert ssim_similarity(a, b)[0] == pytest.approx(1.0)


def test_hog_similarity_is_the_pearson_correlation_of_skimage_hog() -> None:
    r = np.random.default_rng(2)
    a, b = r.random((3, 16, 16)), r.random((3, 16, 16))
    b[1] = a[1] + 0.3 * b[1]
    cell = hog_cell((16, 16))
    assert cell == 4

    def features(m: np.ndarray) -> np.ndarray:
        m = (m - m.min()) / (m.max() - m.min())
        return hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), block_norm="L2-Hys")

    expected = [stats.pearsonr(features(a[i]), features(b[i]))[0] for i in range(3)]
    np.testing.assert_allclose(hog_similarity(a, b), expected, atol=1e-12)
    assert hog_similarity(a, a) == pytest.approx(np.ones(3))


def test_image_maps_pool_channels_by_summing_magnitudes() -> None:
    a = rand(0, 2, 3, 4, 5).numpy()
    maps = explanation_maps(a)
    np.testing.assert_allclose(maps.magnitude, np.abs(a).sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(maps.signed, a.sum(axis=1), rtol=1e-6)
    assert maps.is_image and not explanation_maps(a.reshape(2, -1)).is_image


# ---------------------------------------------------------------------------------------------- layers


def test_layers_come_in_forward_order_and_the_cascade_goes_from_the_output_down() -> None:
    model = build(0, Reordered)
    x = rand(1, 4, 5)
    assert parameter_layers(model, x) == ["body", "head"]
    mlp = build(0, MLP3)
    trained = {k: v.clone() for k, v in mlp.state_dict().items()}
    for mode, expected in (("cascading", [{"head"}, {"head", "middle"}, {"head", "middle", "inner"}]),
                           ("independent", [{"head"}, {"middle"}, {"inner"}])):
        log = SharedLog()
        result = model_parameter_randomisation(mlp, rand(2, 4, 5), [ChangedLayers(mlp, trained=trained, log=log)],
                                               mode=mode, seed=3, measures=["spearman_abs"], progress=False)
        assert result["changed_layers"].steps == ["head", "middle", "inner"]
        assert log == [frozenset(), *map(frozenset, expected)]  # first call: the trained model itself


def test_reset_reinitialises_with_the_layers_own_scheme_and_keeps_the_global_rng() -> None:
    layer = nn.Linear(30, 20)
    expected = copy.deepcopy(layer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        expected.reset_parameters()
    state = torch.get_rng_state()
    randomise_layer(layer, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(layer.weight, expected.weight) and torch.equal(layer.bias, expected.bias)
    bound = 1 / np.sqrt(30)  # kaiming-uniform(a=sqrt(5)) of nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(layer.weight.detach().abs().max()) <= bound


def test_normal_init_redraws_with_the_std_of_the_original_values() -> None:
    layer = nn.Linear(200, 100)
    with torch.no_grad():
        layer.weight.mul_(10.0)
    std = float(layer.weight.detach().std())
    before = layer.weight.detach().clone()
    randomise_layer(layer, seed=0, init="normal")
    assert not torch.equal(before, layer.weight)
    assert float(layer.weight.detach().std()) == pytest.approx(std, rel=0.02)
    assert float(layer.weight.detach().mean()) == pytest.approx(0.0, abs=0.05 * std)


# ---------------------------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_a_method_that_ignores_the_model_has_similarity_one_at_every_layer(mode: str) -> None:
    model = make_cnn(0)
    x = rand(0, 5, 1, 8, 8)
    result = model_parameter_randomisation(model, x, [InputAsAttribution(model)], mode=mode, seed=0,
                                           progress=False)["input_as_attribution"]
    assert result.steps == ["fc", "bn", "conv"]
    assert set(result.similarity) == {"spearman_abs", "spearman", "ssim", "hog"}
    for values in result.similarity.values():
        assert values.shape == (3, 5)
        np.testing.assert_allclose(values, 1.0, atol=1e-12)


def test_saliency_of_a_linear_head_changes_as_the_closed_form_says() -> None:
    model = build(0, lambda: nn.Linear(12, 3)).double()
    x = rand(1, 4, 12, dtype=torch.float64)
    target = 1
    result = model_parameter_randomisation(model, x, ["saliency"], target, seed=5, measures=["spearman_abs", "spearman"],
                                           progress=False)["saliency"]
    randomised = copy.deepcopy(model)
    randomise_layer(randomised, seed=derive_seed(5, 0))
    before = model.weight[target].detach().numpy()  # d(Wx + b)_c / dx = W_c for every sample
    after = randomised.weight[target].detach().numpy()
    expected_abs = stats.spearmanr(np.abs(before), np.abs(after))[0]
    expected = stats.spearmanr(before, after)[0]
    np.testing.assert_allclose(result.similarity["spearman_abs"], np.full((1, 4), expected_abs), atol=1e-12)
    np.testing.assert_allclose(result.similarity["spearman"], np.full((1, 4), expected), atol=1e-12)
    assert expected_abs < 0.9


def test_saliency_depends_on_the_top_layer_of_a_two_layer_net() -> None:
    model = build(0, lambda: nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)))
    x = rand(2, 8, 16)
    result = model_parameter_randomisation(model, x, ["saliency", InputAsAttribution(model)], mode="independent",
                                           seed=0, measures=["spearman_abs"], progress=False)
    assert result["saliency"].steps == ["2", "0"]
    assert result["saliency"].mean("spearman_abs")[0] < 0.6  # the head randomised alone changes the map
    np.testing.assert_allclose(result["input_as_attribution"].mean("spearman_abs"), 1.0)


def test_random_logit_of_two_opposite_class_weights_is_minus_one() -> None:
    model = nn.Linear(6, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1]]))
        model.bias.zero_()
    x = rand(3, 5, 6, dtype=torch.float64)
    result = random_logit(model, x, ["saliency"], seed=0, measures=["spearman_abs", "spearman"],
                          progress=False)["saliency"]
    predicted = (x @ model.weight.T).argmax(1).numpy()
    np.testing.assert_array_equal(result.extras["random_classes"], 1 - predicted)  # the only other class
    np.testing.assert_allclose(result.similarity["spearman_abs"], -1.0)
    np.testing.assert_allclose(result.similarity["spearman"], -1.0)
    same = random_logit(model, x, [InputAsAttribution(model)], seed=0, measures=["spearman_abs"], progress=False)
    np.testing.assert_allclose(same["input_as_attribution"].similarity["spearman_abs"], 1.0)


def test_random_logit_classes_differ_from_the_target_and_follow_the_seed() -> None:
    model = build(0, lambda: nn.Linear(4, 7))
    x = rand(4, 50, 4)
    first = random_logit(model, x, [Saliency(model)], 2, seed=1, measures=["spearman"], progress=False)["saliency"]
    classes = first.extras["random_classes"]
    assert (classes != 2).all() and set(classes) == set(range(7)) - {2}
    again = random_logit(model, x, [Saliency(model)], 2, seed=1, measures=["spearman"], progress=False)["saliency"]
    np.testing.assert_array_equal(again.extras["random_classes"], classes)
