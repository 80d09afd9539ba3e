"""Robustness metrics (max / average sensitivity, local Lipschitz estimate) against naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_linear, make_smooth_mlp, make_train_mode_net, rand
from lumos.core.seeding import torch_generator
from lumos.errors import ValidationError
from lumos.methods.gradient import InputXGradient, Saliency
from lumos.metrics.robustness import avg_sensitivity, local_lipschitz_estimate, max_sensitivity


def naive_noise(seed: int, n: int, m: int, shape: tuple[int, ...], radius: float) -> torch.Tensor:
    generator = torch_generator(seed)
    return (torch.rand((n, m, *shape), generator=generator, dtype=torch.float64) * 2 - 1) * radius


def test_sensitivity_is_zero_for_a_constant_explanation() -> None:
    model = make_linear()
    x = rand(0, 5, 4, dtype=torch.float64)
    for metric in (max_sensitivity, avg_sensitivity):
        np.testing.assert_allclose(metric(model, x, "saliency", target=1, seed=0).values, 0.0, atol=1e-15)


def test_max_and_average_sensitivity_equal_a_naive_loop() -> None:
    model = make_smooth_mlp()  # float64, tanh: the gradient changes smoothly with the input
    x = rand(1, 3, 6, dtype=torch.float64)
    radius, m = 0.4, 6
    noise = naive_noise(7, 3, m, (6,), radius)
    explainer = Saliency(model)
    targets = model(x).argmax(1)
    expected_max, expected_avg = [], []
    for i in range(3):
        a0 = explainer.explain(x[i:i + 1], int(targets[i])).attributions.double()
        ratios = []
        for j in range(m):
            xj = (x[i] + noise[i, j])[None]
            aj = explainer.explain(xj, int(targets[i])).attributions.double()
            ratios.append(float(torch.linalg.norm(aj - a0) / torch.linalg.norm(a0)))
        expected_max.append(max(ratios))
        expected_avg.append(np.mean(ratios))
    result = max_sensitivity(model, x, explainer, radius=radius, n_samples=m, seed=7)
    np.testing.assert_allclose(result.values, expected_max, rtol=1e-7)
    assert not result.higher_is_better
    result = avg_sensitivity(model, x, "saliency", radius=radius, n_samples=m, seed=7)
    np.testing.assert_allclose(result.values, expected_avg, rtol=1e-7)
    assert (result.values > 0).all()
    unnormalised = max_sensitivity(model, x, explainer, radius=radius, n_samples=m, seed=7, normalize=False)
    assert not np.allclose(unnormalised.values, expected_max)


def test_local_lipschitz_estimate_by_hand_on_a_linear_model() -> None:
    model = make_linear()
    x = rand(2, 4, 4, dtype=torch.float64)
    w = model.weight[2].detach()
    radius, m = 0.1, 5
    noise = naive_noise(3, 4, m, (4,), radius)
    # input x gradient of a linear model: a(x) = w * x, so a(x') - a(x) = w * u
    expected = (torch.linalg.norm(w * noise, dim=-1) / torch.linalg.norm(noise, dim=-1)).max(dim=1).values
    result = local_lipschitz_estimate(model, x, InputXGradient(model), target=2, radius=radius, n_samples=m, seed=3)
    np.testing.assert_allclose(result.values, expected.numpy(), rtol=1e-7)
    again = local_lipschitz_estimate(model, x.numpy(), "input_x_gradient", target=2, radius=radius, n_samples=m,
                                     seed=3)
    np.testing.assert_allclose(again.values, result.values, rtol=1e-12)


def test_the_model_state_is_kept_and_errors_name_the_argument() -> None:
    model = make_train_mode_net()
    x = rand(4, 3, 6)
    max_sensitivity(model, x, "integrated_gradients", explainer_params={"n_steps": 4}, seed=0)
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValidationError, match="radius"):
        max_sensitivity(model, x, "saliency", radius=0.0)
    with pytest.raises(ValidationError, match="n_samples"):
        avg_sensitivity(model, x, "saliency", n_samples=0)
    with pytest.raises(ValidationError, match="method must be one of"):
        local_lipschitz_estimate(model, x, "no_such_method")
    with pytest.raises(ValidationError, match="norm"):
        max_sensitivity(model, x, "saliency", norm="l3")


def test_robustness_on_a_two_input_model_by_hand() -> None:
    """Two inputs, each with its own noise drawn in input order; norms over both inputs together."""

    class TwoInputLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(5)
            self.wa = torch.nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64))
            self.wb = torch.nn.Parameter(torch.randn(2, 2, 2, generator=g, dtype=torch.float64))

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ self.wa + torch.einsum("nij,ijk->nk", b, self.wb)

    model = TwoInputLinear()
    a, b = rand(6, 4, 3, dtype=torch.float64), rand(7, 4, 2, 2, dtype=torch.float64)
    radius, m, seed = 0.2, 5, 11
    generator = torch_generator(seed)
    noise_a = (torch.rand((4, m, 3), generator=generator, dtype=torch.float64) * 2 - 1) * radius
    noise_b = (torch.rand((4, m, 2, 2), generator=generator, dtype=torch.float64) * 2 - 1) * radius
    # input x gradient of a linear model: a(x) = w * x, so a(x') - a(x) = w * u, input by input
    wa, wb = model.wa[:, 1].detach(), model.wb[..., 1].detach()
    change = torch.cat([(wa * noise_a), (wb * noise_b).reshape(4, m, -1)], 2)
    distance = torch.cat([noise_a, noise_b.reshape(4, m, -1)], 2)
    expected = (torch.linalg.norm(change, dim=-1) / torch.linalg.norm(distance, dim=-1)).max(dim=1).values
    result = local_lipschitz_estimate(model, (a, b), "input_x_gradient", target=1, radius=radius, n_samples=m,
                                      seed=seed)
    np.testing.assert_allclose(result.values, expected.numpy(), rtol=1e-10)
    clean = torch.cat([wa * a, (wb * b).reshape(4, -1)], 1)
    expected_avg = (torch.linalg.norm(change, dim=-1) / torch.linalg.norm(clean, dim=-1)[:, None]).mean(dim=1)
    average = avg_sensitivity(model, (a.numpy(), b.numpy()), InputXGradient(model), target=1, radius=radius,
                              n_samples=m, seed=seed)
    np.testing.assert_allclose(average.values, expected_avg.numpy(), rtol=1e-10)
    np.testing.assert_allclose(max_sensitivity(model, (a, b), "saliency", target=1, seed=0).values, 0.0, atol=1e-15)
    with pytest.raises(ValidationError, match=r"inputs\[1\] must be a floating"):
        max_sensitivity(model, (a, b.long()), "saliency", target=1)
