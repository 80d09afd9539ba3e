"""Oracle: closed forms of every gradient method on a linear model ``f(x) = W x + b``.

The weights are fixed (see ``LINEAR_WEIGHT`` in conftest); everything runs in float64, so "exact" means
equal up to a few ulps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lumos
from conftest import LINEAR_BIAS, LINEAR_WEIGHT, make_linear, make_mlp, rand
from lumos.methods.gradient.integrated_gradients import QUADRATURE_RULES

W = LINEAR_WEIGHT
TARGETS = torch.tensor([0, 2, 1, 2, 0])


@pytest.fixture
def x() -> torch.Tensor:
    return rand(10, 5, 4, dtype=torch.float64)


def rows(target: torch.Tensor) -> torch.Tensor:
    """W[c] for each sample's class c: shape (n, 4)."""
    return W[target]


def test_saliency_is_the_weight_row(x: torch.Tensor) -> None:
    e = lumos.Saliency(make_linear()).explain(x, TARGETS)
    torch.testing.assert_close(e.attributions, rows(TARGETS), rtol=0, atol=0)
    e_abs = lumos.Saliency(make_linear(), absolute=True).explain(x, TARGETS)
    torch.testing.assert_close(e_abs.attributions, rows(TARGETS).abs(), rtol=0, atol=0)
    np.testing.assert_allclose(e.scores, (x @ W.T + LINEAR_BIAS)[range(5), TARGETS])


def test_input_x_gradient_is_x_times_the_weight_row(x: torch.Tensor) -> None:
    e = lumos.InputXGradient(make_linear()).explain(x, TARGETS)
    torch.testing.assert_close(e.attributions, x * rows(TARGETS), rtol=0, atol=0)


@pytest.mark.parametrize("rule", QUADRATURE_RULES)
@pytest.mark.parametrize("n_steps", [2, 7])
def test_integrated_gradients_is_weight_times_difference(x: torch.Tensor, rule: str, n_steps: int) -> None:
    baseline = rand(11, 4, dtype=torch.float64)  # one baseline for every sample
    e = lumos.IntegratedGradients(make_linear(), n_steps=n_steps, method=rule).explain(x, TARGETS,
                                                                                       baseline=baseline)
    expected = rows(TARGETS) * (x - baseline)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(e.extras["convergence_delta"], 0, atol=1e-13)
    np.testing.assert_allclose(e.extras["baseline_scores"],
                               (baseline @ W.T + LINEAR_BIAS)[TARGETS].numpy())
    assert e.extras["n_evaluations"] == 5 * (2 + n_steps)  # inputs, baselines, path points


@pytest.mark.parametrize("baseline_kind", ["none", "number", "per_sample", "numpy", "list"])
def test_integrated_gradients_baseline_forms(x: torch.Tensor, baseline_kind: str) -> None:
    per_sample = rand(12, 5, 4, dtype=torch.float64)
    other = rand(13, 4, dtype=torch.float64)
    baseline, reference = {
        "none": (None, torch.zeros(4, dtype=torch.float64)),
        "number": (0.5, torch.full((4,), 0.5, dtype=torch.float64)),
        "per_sample": (per_sample, per_sample),
        "numpy": (per_sample.numpy(), per_sample),
        "list": ([per_sample, other, 1.0], (per_sample + other + 1.0) / 3),  # attributions are averaged
    }[baseline_kind]
    e = lumos.IntegratedGradients(make_linear(), n_steps=3).explain(x, TARGETS, baseline=baseline)
    torch.testing.assert_close(e.attributions, rows(TARGETS) * (x - reference), rtol=1e-13, atol=1e-14)


def test_integrated_gradients_rejects_a_baseline_of_the_wrong_shape(x: torch.Tensor) -> None:
    with pytest.raises(lumos.ValidationError, match=r"baseline must be a number or have shape \(4,\)"):
        lumos.IntegratedGradients(make_linear()).explain(x, 0, baseline=torch.zeros(3))
    with pytest.raises(lumos.ValidationError, match="finite"):
        lumos.IntegratedGradients(make_linear()).explain(x, 0, baseline=torch.full((4,), float("nan")))
    with pytest.raises(lumos.ValidationError, match="empty list"):
        lumos.IntegratedGradients(make_linear()).explain(x, 0, baseline=[])


def line_background(n_bg: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Background rows ``j * v`` (j = 0..n_bg-1): any average of drawn rows is ``(integer / m) * v``."""
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    return torch.arange(n_bg, dtype=torch.float64)[:, None] * v, v


def test_gradient_shap_per_draw_structure(x: torch.Tensor) -> None:
    """Each draw contributes exactly ``W[c] * (x - x'_j)``: the attribution is W[c] * (x - mean of drawn rows)."""
    background, v = line_background(4)
    m = 7
    e = lumos.GradientSHAP(make_linear(), n_samples=m, seed=3).explain(x, TARGETS, baseline=background)
    drawn_mean = x - e.attributions / rows(TARGETS)  # (n, 4): must be (k / m) * v, 0 <= k <= 3 m
    k = drawn_mean / v * m
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)
    assert bool((k.round() == k.round()[:, :1]).all())  # the same draws for every feature of a sample
    assert bool(((k >= -1e-9) & (k <= 3 * m + 1e-9)).all())
    # base value: the mean of f over the whole background, per sample's class
    f_bg = background @ W.T + LINEAR_BIAS
    np.testing.assert_allclose(e.extras["base_value"], f_bg.mean(0)[TARGETS].numpy(), rtol=1e-13)
    # convergence delta: sum(attr) - (f(x) - E f(x')) = W[c] . (E x' - drawn mean)
    expected_delta = (rows(TARGETS) * (background.mean(0) - drawn_mean)).sum(1)
    np.testing.assert_allclose(e.extras["convergence_delta"], expected_delta.numpy(), atol=1e-12)


def test_gradient_shap_with_one_background_row_is_exact(x: torch.Tensor) -> None:
    reference = rand(14, 1, 4, dtype=torch.float64)
    e = lumos.GradientSHAP(make_linear(), n_samples=5, seed=0).explain(x, TARGETS, baseline=reference)
    torch.testing.assert_close(e.attributions, rows(TARGETS) * (x - reference), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(e.extras["convergence_delta"], 0, atol=1e-13)
    np.testing.assert_allclose(e.extras["standard_error"], 0, atol=1e-13)


def test_gradient_shap_in_expectation(x: torch.Tensor) -> None:
    background = rand(15, 20, 4, dtype=torch.float64)
    m = 4000
    e = lumos.GradientSHAP(make_linear(), n_samples=m, seed=1).explain(x, TARGETS, baseline=background)
    expected = rows(TARGETS) * (x - background.mean(0))
    se = torch.as_tensor(e.extras["standard_error"])
    # the standard error is the right one: sqrt(var_j(W[c] (x - x'_j)) / m) with the background's variance
    true_se = (rows(TARGETS).abs() * background.std(0, unbiased=False)) / np.sqrt(m)
    torch.testing.assert_close(se, true_se, rtol=0.08, atol=0)
    assert bool(((e.attributions - expected).abs() <= 4.5 * true_se).all())
    # and with input noise (mean zero), the same expectation
    noisy = lumos.GradientSHAP(make_linear(), n_samples=m, noise_std=0.3, seed=2).explain(
        x, TARGETS, baseline=background)
    noisy_se = torch.as_tensor(noisy.extras["standard_error"])
    true_noisy_se = rows(TARGETS).abs() * (background.var(0, unbiased=False) + 0.3**2).sqrt() / np.sqrt(m)
    torch.testing.assert_close(noisy_se, true_noisy_se, rtol=0.08, atol=0)  # the noise adds its variance
    assert bool(((noisy.attributions - expected).abs() <= 4.5 * true_noisy_se).all())


def test_smoothgrad_of_a_linear_model_is_the_weight_row(x: torch.Tensor) -> None:
    e = lumos.SmoothGrad(make_linear(), n_samples=6, noise_level=0.5, seed=0).explain(x, TARGETS)
    torch.testing.assert_close(e.attributions, rows(TARGETS), rtol=1e-14, atol=0)
    sq = lumos.NoiseTunnel(make_linear(), base_method="saliency", kind="smoothgrad_sq", n_samples=3,
                           seed=0).explain(x, TARGETS)
    torch.testing.assert_close(sq.attributions, rows(TARGETS) ** 2, rtol=1e-14, atol=0)


def test_vargrad_of_a_linear_model_is_zero(x: torch.Tensor) -> None:
    e = lumos.VarGrad(make_linear(), n_samples=6, noise_level=0.5, seed=0).explain(x, TARGETS)
    torch.testing.assert_close(e.attributions, torch.zeros_like(x), rtol=0, atol=1e-28)


class HalfSquare(torch.nn.Module):
    """``f(x) = 0.5 * ||x||^2`` (one output): the gradient is x itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x * x).flatten(1).sum(1, keepdim=True)


def test_noise_tunnel_noise_scale() -> None:
    """With gradient x: SmoothGrad -> x, VarGrad -> sigma^2 = (noise_level * (max - min))^2 per sample."""
    x = rand(16, 3, 4, dtype=torch.float64)
    level, m = 0.2, 3000
    sigma = level * (x.max(1).values - x.min(1).values)
    vg = lumos.VarGrad(HalfSquare(), n_samples=m, noise_level=level, seed=0).explain(x).attributions
    torch.testing.assert_close(vg, (sigma**2)[:, None].expand_as(x), rtol=0.1, atol=0)
    sg = lumos.SmoothGrad(HalfSquare(), n_samples=m, noise_level=level, seed=0).explain(x).attributions
    assert bool(((sg - x).abs() <= 4.5 * sigma[:, None] / np.sqrt(m)).all())


@pytest.mark.parametrize("base", ["saliency", "input_x_gradient", "integrated_gradients", "guided_backprop"])
def test_noise_tunnel_without_noise_is_the_base_method(base: str) -> None:
    model = make_mlp(dtype=torch.float64)
    x = rand(17, 4, 6, dtype=torch.float64)
    tunnel = lumos.NoiseTunnel(model, base_method=base, n_samples=3, noise_level=0.0, seed=0,
                               base_params={"n_steps": 5} if base == "integrated_gradients" else None)
    expected = lumos.methods.get_method(base)(model, **({"n_steps": 5} if base == "integrated_gradients" else {}))
    e = tunnel.explain(x, [0, 1, 2, 0], baseline=0.25 if base == "integrated_gradients" else None)
    want = expected.explain(x, [0, 1, 2, 0], baseline=0.25 if base == "integrated_gradients" else None)
    torch.testing.assert_close(e.attributions, want.attributions, rtol=1e-12, atol=1e-14)
    vg = lumos.NoiseTunnel(model, base_method=base, kind="vargrad", n_samples=3, noise_level=0.0, seed=0,
                           base_params={"n_steps": 5} if base == "integrated_gradients" else None)
    zeros = vg.explain(x, [0, 1, 2, 0], baseline=0.25 if base == "integrated_gradients" else None)
    torch.testing.assert_close(zeros.attributions, torch.zeros_like(x), rtol=0, atol=1e-20)
    assert e.params["base_method"] == base


@pytest.mark.parametrize("baseline_kind", ["one_sample", "per_sample", "tuple_per_sample"])
def test_noise_tunnel_passes_baselines_of_every_shape(baseline_kind: str) -> None:
    """Square inputs (batch == features) make a baseline of one sample's shape look like a per-sample one."""
    model = torch.nn.Linear(3, 2).double()
    x = rand(18, 3, 3, dtype=torch.float64)
    baseline = {"one_sample": rand(19, 3, dtype=torch.float64),
                "per_sample": rand(19, 3, 3, dtype=torch.float64)}.get(baseline_kind)
    if baseline_kind == "tuple_per_sample":
        baseline = (rand(19, 3, 3, dtype=torch.float64),)
        x = (x,)
    e = lumos.NoiseTunnel(model, base_method="integrated_gradients", n_samples=4, noise_level=0.0, seed=0,
                          base_params={"n_steps": 2}).explain(x, 1, baseline=baseline)
    reference = baseline[0] if isinstance(baseline, tuple) else baseline
    inputs = x[0] if isinstance(x, tuple) else x
    attributions = e.attributions[0] if isinstance(x, tuple) else e.attributions
    torch.testing.assert_close(attributions, model.weight.detach()[1] * (inputs - reference), rtol=1e-13,
                               atol=1e-14)


def test_noise_tunnel_over_a_stochastic_method_is_seeded_and_independent() -> None:
    """The base method's draws use a seed derived from the tunnel's seed (not the same stream as the noise)."""
    from lumos.core.seeding import derive_seed

    x = rand(20, 3, 4, dtype=torch.float64)
    background = rand(21, 6, 4, dtype=torch.float64)
    tunnel = lumos.NoiseTunnel(make_linear(), base_method="gradient_shap", n_samples=1, noise_level=0.0, seed=5,
                               base_params={"n_samples": 3})
    e = tunnel.explain(x, 0, baseline=background)
    same = lumos.GradientSHAP(make_linear(), n_samples=3, seed=derive_seed(5, 1)).explain(x, 0, baseline=background)
    torch.testing.assert_close(e.attributions, same.attributions, rtol=1e-13, atol=1e-14)
    assert e.seed == 5
    assert torch.equal(tunnel.explain(x, 0, baseline=background).attributions, e.attributions)
    assert derive_seed(5, 1) != 5 and derive_seed(5, 1) != derive_seed(5, 2) and derive_seed(5, 1) == derive_seed(5, 1)
    assert 0 <= derive_seed(2**62, 7) < 2**63


def test_gradient_shap_standard_error_is_merged_exactly_across_chunks() -> None:
    """In one chunk the standard error is the plain two-pass formula; chunks that split samples anywhere
    (batch_size 1, 4, 7) must merge to the same value."""
    model = make_mlp(dtype=torch.float64)
    x = rand(22, 3, 6, dtype=torch.float64)
    background = rand(23, 5, 6, dtype=torch.float64)
    runs = [lumos.GradientSHAP(model, n_samples=6, seed=0, batch_size=b).explain(x, 1, baseline=background)
            for b in (None, 1, 4, 7)]
    for e in runs[1:]:
        np.testing.assert_allclose(e.extras["standard_error"], runs[0].extras["standard_error"], rtol=1e-10)
        torch.testing.assert_close(e.attributions, runs[0].attributions, rtol=1e-12, atol=1e-14)
    assert float(np.min(runs[0].extras["standard_error"])) > 0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), batch_size=st.one_of(st.none(), st.integers(1, 9)), n_steps=st.integers(2, 6),
       n_baselines=st.integers(1, 3), rule=st.sampled_from(QUADRATURE_RULES), seed=st.integers(0, 2**16))
def test_integrated_gradients_indexing_property(n: int, batch_size, n_steps: int, n_baselines: int, rule: str,
                                                seed: int) -> None:
    """Any number of samples, baselines, steps and any chunking: IG of a linear model is W[c] (x - mean x')."""
    x = rand(seed, n, 4, dtype=torch.float64)
    baselines = [rand(seed + 1 + k, n, 4, dtype=torch.float64) for k in range(n_baselines)]
    target = torch.arange(n) % 3
    e = lumos.IntegratedGradients(make_linear(), n_steps=n_steps, method=rule, batch_size=batch_size).explain(
        x, target, baseline=baselines)
    expected = W[target] * (x - torch.stack(baselines).mean(0))
    torch.testing.assert_close(e.attributions, expected, rtol=1e-12, atol=1e-13)
