"""Faithfulness metrics against closed forms on linear models and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_linear, make_train_mode_net, rand
from lumos.errors import ValidationError
from lumos.methods.gradient import IntegratedGradients
from lumos.metrics import faithfulness as F
from lumos.metrics import faithfulness_sampled as S
from lumos.metrics.road import NEIGHBOURS, noisy_linear_impute, road

QUIET = {"progress": False}


def linear(weights: list[float], bias: float = 0.0) -> nn.Linear:
    """A one-output linear model f(x) = w.x + b in float64."""
    model = nn.Linear(len(weights), 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights], dtype=torch.float64))
        model.bias.fill_(bias)
    return model.eval()


# ---------------------------------------------------------------------------------------------- deletion / insertion


def test_deletion_and_insertion_equal_a_hand_computation_on_four_features() -> None:
    model = linear([1.0, -2.0, 0.5, 3.0], bias=0.5)
    x = torch.tensor([[2.0, 1.0, -4.0, 1.0]], dtype=torch.float64)
    a = torch.tensor([[2.0, -2.0, -2.0, 3.0]], dtype=torch.float64)  # w * x; ties broken by feature order
    # order: x3 (3), x0 (2), x1 (-2), x2 (-2); f(x) = 2 - 2 - 2 + 3 + 0.5 = 1.5
    deletion_curve = [1.5, 1.5 - 3, 1.5 - 3 - 2, 1.5 - 3 - 2 + 2, 0.5]
    result = F.deletion(model, x, a, n_steps=4, **QUIET)
    np.testing.assert_allclose(result.curves[0], deletion_curve)
    np.testing.assert_allclose(result.x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(result.values, np.trapezoid(result.curves, result.x, axis=1))
    assert result.values[0] == pytest.approx(np.trapezoid(deletion_curve, [0, 0.25, 0.5, 0.75, 1]))
    insertion_curve = [0.5, 0.5 + 3, 0.5 + 3 + 2, 0.5 + 3 + 2 - 2, 1.5]
    result = F.insertion(model, x, a, n_steps=4, **QUIET)
    np.testing.assert_allclose(result.curves[0], insertion_curve)
    np.testing.assert_allclose(result.values, np.trapezoid(result.curves, result.x, axis=1))
    # two steps over four features remove two features per step; a constant baseline replaces them
    result = F.deletion(model, x, a, n_steps=2, baseline=1.0, **QUIET)
    np.testing.assert_allclose(result.curves[0], [1.5, 1.5 - 3 - 2 + (3 + 1), 1.0 * (1 - 2 + 0.5 + 3) + 0.5])


def test_deletion_curve_of_the_exact_ranking_lies_below_random_rankings() -> None:
    d = 30
    w = rand(0, d, dtype=torch.float64).tolist()
    model = linear(w)
    x = rand(1, 8, d, dtype=torch.float64)
    exact = x * torch.tensor(w, dtype=torch.float64)
    curve = F.deletion(model, x, exact, n_steps=10, **QUIET)
    for seed in range(3):
        random = F.deletion(model, x, rand(10 + seed, 8, d, dtype=torch.float64), n_steps=10, **QUIET)
        assert (curve.curves <= random.curves + 1e-12).all()
        assert curve.values.mean() < random.values.mean()
        assert (F.insertion(model, x, exact, **QUIET).values >= F.insertion(
            model, x, rand(20 + seed, 8, d, dtype=torch.float64), **QUIET).values - 1e-12).all()


def test_probability_score_is_the_softmax_of_the_target_class() -> None:
    model = make_linear()
    x = rand(2, 3, 4, dtype=torch.float64)
    a = rand(3, 3, 4, dtype=torch.float64)
    result = F.deletion(model, x, a, target=1, n_steps=4, score="probability", **QUIET)
    order = torch.argsort(-a, dim=1, stable=True)
    for i in range(3):
        xx = x[i].clone()
        expected = [torch.softmax(model(xx[None]), 1)[0, 1].item()]
        for j in order[i]:
            xx[j] = 0.0
            expected.append(torch.softmax(model(xx[None]), 1)[0, 1].item())
        np.testing.assert_allclose(result.curves[i], expected, rtol=1e-12)


def test_image_features_are_pixels_over_channels_and_patches() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 1)).double().eval()
    w = model[1].weight.detach().reshape(2, 4, 4)
    x = rand(4, 2, 2, 4, 4, dtype=torch.float64)
    a = (x * w).detach()
    result = F.deletion(model, x, a, n_steps=16, **QUIET)
    pixel = a.sum(1).reshape(2, -1)  # channel-summed pixel relevance
    contributions = torch.sort(pixel, dim=1, descending=True).values
    expected = result.curves[:, :1] - np.concatenate([np.zeros((2, 1)), contributions.cumsum(1).numpy()], 1)
    np.testing.assert_allclose(result.curves, expected, atol=1e-10)
    patched = F.region_perturbation(model, x, a, patch_size=2, **QUIET)
    assert patched.curves.shape == (2, 5)  # four 2x2 patches + the clean input


# ---------------------------------------------------------------------------------------------- region perturbation


def test_region_perturbation_aopc_morf_and_lerf_by_hand() -> None:
    model = linear([1.0, -2.0, 0.5, 3.0])
    x = torch.tensor([[2.0, 1.0, -4.0, 1.0]], dtype=torch.float64)
    a = x * torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)  # [2, -2, -2, 3]
    morf = F.region_perturbation(model, x, a, order="morf", **QUIET)
    # MoRF drops: 0, 3, 5, 3, 1 -> AOPC = 12 / 5 (Samek et al.: average over k = 0..L)
    assert morf.values[0] == pytest.approx(12 / 5)
    lerf = F.region_perturbation(model, x, a, order="lerf", **QUIET)
    # LeRF order (ascending, stable): x1 (-2), x2 (-2), x0 (2), x3 (3): drops 0, -2, -4, -2, 1
    assert lerf.values[0] == pytest.approx(-7 / 5)
    assert morf.higher_is_better and not lerf.higher_is_better


# ---------------------------------------------------------------------------------------------- correlation


def test_faithfulness_correlation_is_one_for_exact_linear_attributions_and_small_for_random() -> None:
    d = 40
    w = rand(5, d, dtype=torch.float64)
    model = linear(w.tolist(), bias=0.3)
    x = rand(6, 30, d, dtype=torch.float64)
    exact = x * w
    result = S.faithfulness_correlation(model, x, exact, subset_size=8, n_runs=40, seed=0, **QUIET)
    np.testing.assert_allclose(result.values, 1.0, atol=1e-10)
    random = S.faithfulness_correlation(model, x, rand(7, 30, d, dtype=torch.float64), subset_size=8, n_runs=40,
                                        seed=0, **QUIET)
    assert abs(np.nanmean(random.values)) < 0.1
    assert np.nanmean(np.abs(random.values)) < 0.4
    assert result.params["subset_size"] == 8


def test_faithfulness_correlation_matches_a_naive_computation_and_ignores_batch_size() -> None:
    model = make_train_mode_net().eval()
    x = rand(8, 4, 6)
    a = rand(9, 4, 6)
    result = S.faithfulness_correlation(model, x, a, target=2, subset_size=2, n_runs=12, seed=3, **QUIET)
    subsets = S._random_subsets(4, 12, 6, 2, seed=3)
    with torch.no_grad():
        fx = model(x)[:, 2].double()
        for i in range(4):
            sums, drops = [], []
            for k in range(12):
                xx = x[i].clone()
                xx[subsets[i, k]] = 0.0
                drops.append(float(fx[i] - model(xx[None])[0, 2]))
                sums.append(float(a[i, subsets[i, k]].double().sum()))
            assert result.values[i] == pytest.approx(np.corrcoef(sums, drops)[0, 1], abs=1e-6)
    again = S.faithfulness_correlation(model, x, a, target=2, subset_size=2, n_runs=12, seed=3, batch_size=5,
                                       **QUIET)
    np.testing.assert_allclose(again.values, result.values, rtol=1e-5)  # float32 model: BLAS order


# ---------------------------------------------------------------------------------------------- infidelity


def test_infidelity_is_zero_for_the_gradient_of_a_linear_model_and_matches_a_naive_loop() -> None:
    w = [1.0, -2.0, 0.5, 3.0, 0.25]
    model = linear(w, bias=0.1)
    x = rand(10, 6, 5, dtype=torch.float64)
    gradient = torch.tensor(w, dtype=torch.float64).expand(6, 5)
    for normalize in (True, False):
        result = S.infidelity(model, x, gradient, sigma=0.3, n_perturbations=20, normalize=normalize, seed=1,
                              **QUIET)
        np.testing.assert_allclose(result.values, 0.0, atol=1e-20)
    wrong = rand(11, 6, 5, dtype=torch.float64)
    result = S.infidelity(model, x, wrong, sigma=0.3, n_perturbations=7, normalize=False, seed=2, **QUIET)
    for i in range(6):
        errors = []
        for k in range(7):
            noise = S._perturbation(i * 7 + k, 2, (5,), 0.3)
            drop = (model(x[i:i + 1]) - model((x[i] - noise)[None])).item()
            errors.append((float(noise @ wrong[i]) - drop) ** 2)
        assert result.values[i] == pytest.approx(np.mean(errors), rel=1e-10)
    scaled = S.infidelity(model, x, wrong, sigma=0.3, n_perturbations=7, normalize=True, seed=2, **QUIET)
    assert (scaled.values <= result.values + 1e-12).all()  # the optimal scale can only lower the error


def test_infidelity_square_removal_matches_a_naive_loop() -> None:
    """Squares of side 2 replaced by the baseline, one corner per row drawn up front (tops, then lefts)."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3).double()
    model = torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 2).double())
    x = torch.rand(3, 2, 5, 5, generator=g, dtype=torch.float64)
    a = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    m, seed = 6, 4
    result = S.infidelity(model, x, a, target=1, perturbation="square", square_size=2, baseline=0.5,
                          n_perturbations=m, normalize=False, seed=seed, **QUIET)
    generator = torch.Generator().manual_seed(seed)
    tops = torch.randint(0, 4, (3 * m,), generator=generator)
    lefts = torch.randint(0, 4, (3 * m,), generator=generator)
    with torch.no_grad():
        for i in range(3):
            errors = []
            for k in range(m):
                top, left = int(tops[i * m + k]), int(lefts[i * m + k])
                mask = torch.zeros(2, 5, 5, dtype=torch.float64)
                mask[:, top:top + 2, left:left + 2] = 1.0
                perturbation = (x[i] - 0.5) * mask
                drop = (model(x[i:i + 1])[0, 1] - model((x[i] - perturbation)[None])[0, 1]).item()
                errors.append((float((perturbation * a[i]).sum()) - drop) ** 2)
            assert result.values[i] == pytest.approx(np.mean(errors), rel=1e-10)


# ---------------------------------------------------------------------------------------------- ERASER


def test_comprehensiveness_and_sufficiency_by_hand() -> None:
    model = linear([1.0, -2.0, 0.5, 3.0], bias=0.5)
    x = torch.tensor([[2.0, 1.0, -4.0, 1.0]], dtype=torch.float64)  # contributions 2, -2, -2, 3; f(x) = 1.5
    a = torch.tensor([[0.1, 0.4, 0.2, 0.3]], dtype=torch.float64)  # ranking x1, x3, x2, x0
    comp = F.comprehensiveness(model, x, a, fractions=(0.25, 0.5), **QUIET)
    # top 1 removed (x1): f = 3.5, drop -2; top 2 removed (x1, x3): f = 0.5, drop 1
    assert comp.values[0] == pytest.approx((-2 + 1) / 2)
    suff = F.sufficiency(model, x, a, fractions=(0.25, 0.5), **QUIET)
    # only x1 kept: f = -1.5, drop 3; only x1, x3 kept: f = 1.5, drop 0
    assert suff.values[0] == pytest.approx((3 + 0) / 2)
    default = F.comprehensiveness(model, x, a, **QUIET)  # 1, 5, 10, 20, 50 % of 4 features: 1, 1, 1, 1, 2
    assert default.values[0] == pytest.approx((4 * -2 + 1) / 5)


# ---------------------------------------------------------------------------------------------- completeness


def test_completeness_residual_of_integrated_gradients_on_a_linear_model_is_zero() -> None:
    model = make_linear()
    x = rand(12, 5, 4, dtype=torch.float64)
    e = IntegratedGradients(model, n_steps=4).explain(x, target=1, baseline=0.0)
    result = S.completeness_residual(model, None, e, **QUIET)
    np.testing.assert_allclose(result.values, 0.0, atol=1e-12)
    off = S.completeness_residual(model, x, e.attributions * 2, target=1, relative=True, **QUIET)
    np.testing.assert_allclose(off.values, 1.0, rtol=1e-10)  # |2 D - D| / |D|


# ---------------------------------------------------------------------------------------------- ROAD


def test_noisy_linear_imputation_solves_the_neighbour_average_system() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 7, 9))
    removed = rng.random((7, 9)) < 0.6
    filled = noisy_linear_impute(image, removed, noise_std=0.0)
    for y, x in zip(*np.nonzero(removed), strict=True):
        total, weighted = 0.0, np.zeros(3)
        for (dy, dx), weight in NEIGHBOURS:
            if 0 <= y + dy < 7 and 0 <= x + dx < 9:
                total += weight
                weighted += weight * filled[:, y + dy, x + dx]
        np.testing.assert_allclose(filled[:, y, x], weighted / total, atol=1e-10)
    np.testing.assert_array_equal(filled[:, ~removed], image[:, ~removed])
    noisy = noisy_linear_impute(image, removed, noise_std=0.5, rng=np.random.default_rng(1))
    assert 0.3 < np.std(noisy[:, removed] - filled[:, removed]) < 0.7


def test_road_morf_on_a_linear_image_model_equals_the_imputed_scores() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(1 * 6 * 6, 2)).double().eval()
    x = rand(13, 2, 1, 6, 6, dtype=torch.float64)
    a = (x * model[1].weight[0].detach().reshape(1, 6, 6)).detach()
    result = road(model, x, a, target=0, fractions=(0.25, 0.5), noise_std=0.0, **QUIET)
    for i in range(2):
        order = torch.argsort(-a[i].reshape(-1), stable=True).numpy()
        for k, fraction in enumerate((0.25, 0.5)):
            removed = np.zeros(36, dtype=bool)
            removed[order[: round(fraction * 36)]] = True
            filled = noisy_linear_impute(x[i].numpy(), removed.reshape(6, 6), noise_std=0.0)
            expected = model(torch.from_numpy(filled)[None])[0, 0].item()
            assert result.curves[i, k] == pytest.approx(expected, rel=1e-10)
    lerf = road(model, x, a, target=0, order="lerf", fractions=(0.25, 0.5), noise_std=0.0, **QUIET)
    assert (result.values < lerf.values).all()  # removing the most relevant pixels hurts more


def test_road_tabular_uses_the_conditional_mean_of_the_background() -> None:
    model = linear([1.0, 2.0, -1.0])
    rng = np.random.default_rng(2)
    background = rng.normal(size=(500, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    a = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    result = road(model, x, a, background=background, fractions=(0.34,), noise_std=0.0, **QUIET)
    mean, cov = background.mean(0), np.cov(background, rowvar=False)
    k, r = [0, 2], [1]
    imputed = mean[r] + (x.numpy()[0, k] - mean[k]) @ np.linalg.solve(cov[np.ix_(k, k)], cov[np.ix_(k, r)])
    assert result.curves[0, 0] == pytest.approx(1.0 + 2.0 * imputed[0] - 3.0, rel=1e-5)
    with pytest.raises(ValidationError, match="background"):
        road(model, x, a, **QUIET)


# ---------------------------------------------------------------------------------------------- models, state, errors


def test_numpy_models_and_batch_size_give_the_same_values() -> None:
    w = np.array([1.0, -2.0, 0.5, 3.0])
    torch_model = linear(w.tolist())
    x = rand(14, 5, 4, dtype=torch.float64)
    a = rand(15, 5, 4, dtype=torch.float64)
    from lumos.core.model import NumpyModel

    numpy_model = NumpyModel(lambda arr: arr @ w)
    for metric in (F.deletion, F.insertion, F.comprehensiveness, S.faithfulness_correlation):
        reference = metric(torch_model, x, a, **QUIET).values
        np.testing.assert_allclose(metric(numpy_model, x.numpy(), a.numpy(), **QUIET).values, reference, rtol=1e-12)
        np.testing.assert_allclose(metric(torch_model, x, a, batch_size=3, **QUIET).values, reference, rtol=1e-12)


def test_the_model_state_is_restored_even_when_a_metric_raises() -> None:
    model = make_train_mode_net()
    model.fc1.weight.requires_grad_(False)
    x = rand(16, 4, 6)
    F.deletion(model, x, rand(17, 4, 6), **QUIET)
    with pytest.raises(ValidationError):
        F.deletion(model, x, rand(17, 4, 5), **QUIET)
    assert model.training and model.bn.training
    assert not model.fc1.weight.requires_grad and model.fc2.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_errors_name_the_argument() -> None:
    model = make_linear()
    x = rand(18, 2, 4, dtype=torch.float64)
    with pytest.raises(ValidationError, match="n_steps must be an int >= 1"):
        F.deletion(model, x, x, n_steps=0)
    with pytest.raises(ValidationError, match=r"attributions must have the inputs' shape \(2, 4\)"):
        F.insertion(model, x, x[:, :3])
    with pytest.raises(ValidationError, match="score must be one of"):
        F.deletion(model, x, x, score="logits")
    with pytest.raises(ValidationError, match="order must be one of"):
        F.region_perturbation(model, x, x, order="up")
    with pytest.raises(ValidationError, match="subset_size must be at most"):
        S.faithfulness_correlation(model, x, x, subset_size=9)
    with pytest.raises(ValidationError, match="fractions"):
        F.sufficiency(model, x, x, fractions=(0.0, 2.0))
    with pytest.raises(ValidationError, match="square"):
        S.infidelity(model, x, x, perturbation="square")
    with pytest.raises(ValidationError, match="probability"):
        F.deletion(linear([1.0, 2.0, 3.0, 4.0]), x, x, score="probability", progress=False)
