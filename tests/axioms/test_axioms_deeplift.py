"""Axioms of DeepLIFT / DeepSHAP: summation-to-delta on random networks built from every supported operation
(reused, functional and in-place activations, max and average pooling, batch norm, residuals, concatenation,
reshapes), batch-size invariance, and a transformer-like block whose (approximate) residual is reported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, make_multi_input, rand
from lumos.core.hooks import count_hooks
from lumos.methods.propagation.deep_shap import DeepSHAP
from lumos.methods.propagation.deeplift import DeepLIFT

ACTIVATIONS = [nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.GELU, nn.SiLU]


def assert_sums_to_delta(model: nn.Module, x, baseline, target, rtol: float = 1e-5) -> lumos.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("error", lumos.LumosWarning)  # no summation warning either
        e = DeepLIFT(model).explain(x, target, baseline=baseline)
    parts = e.attributions if isinstance(e.attributions, tuple) else (e.attributions,)
    total = sum(p.reshape(p.shape[0], -1).sum(1) for p in parts)
    with torch.no_grad():
        inputs = x if isinstance(x, tuple) else (x,)
        refs = baseline if isinstance(baseline, tuple) else (baseline,)
        refs = tuple(torch.as_tensor(r, dtype=i.dtype).expand_as(i) for r, i in zip(refs, inputs, strict=True))
        index = torch.arange(inputs[0].shape[0])
        gap = model(*inputs)[index, target] - model(*refs)[index, target]
    assert float(gap.abs().min()) > 1e-3  # a non-trivial difference to explain
    torch.testing.assert_close(total, gap, rtol=rtol, atol=rtol * float(gap.abs().max()))
    np.testing.assert_allclose(e.extras["convergence_delta"], (total - gap).numpy(), atol=1e-12)
    assert float(np.abs(e.extras["relative_convergence_delta"]).max()) < rtol
    return e


class ActivationsMLP(nn.Module):
    """Every listed activation once, then a reused ReLU module, F.relu, x.relu() and in-place ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(len(ACTIVATIONS) + 5))
        self.acts = nn.ModuleList(a() for a in ACTIVATIONS)
        self.relu = nn.ReLU()
        self.relu_inplace = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        layers = iter(self.layers)
        for act in self.acts:
            h = act(next(layers)(h)) + 0.5 * h  # residual keeps the signal alive
        h = self.relu(next(layers)(h))
        h = self.relu(next(layers)(h)) + h  # the same module again
        h = F.relu(next(layers)(h)) - 0.3 * h.relu()
        h = self.relu_inplace(next(layers)(h))
        h = next(layers)(h)
        h.relu_()
        return self.head(h)


@pytest.mark.parametrize("seed", [0, 1])
def test_summation_on_a_random_mlp_with_every_activation_and_relu_spelling(seed: int) -> None:
    model = build(seed, ActivationsMLP, torch.float64)
    with torch.no_grad():  # larger weights: the signal survives 14 layers
        for linear in model.layers:
            linear.weight.mul_(2.0)
    x = rand(seed + 10, 5, 6, dtype=torch.float64) * 2
    assert_sums_to_delta(model, x, rand(seed + 20, 6, dtype=torch.float64), [0, 1, 2, 0, 1])


class RandomCNN(nn.Module):
    """conv -> BN -> ReLU (reused) -> maxpool (reused) -> conv -> F.relu -> avgpool, a residual and a
    concatenation, reshapes, adaptive pooling, a functional max pool and a tanh head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 2 * 2 + 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu(self.bn(self.conv1(x))))             # (4, 8, 8)
        r = F.relu(self.conv2(h)) + h                                 # residual
        h = self.relu(self.conv3(torch.cat([r, h], dim=1)))           # concatenation, ReLU reused
        pooled = self.pool(h)                                         # max pool module reused: (4, 4, 4)
        a = self.avg(pooled).flatten(1)                               # (16,)
        b = F.adaptive_max_pool2d(h, 1).view(h.shape[0], -1)          # (4,)
        z = torch.cat([a, b], dim=1).reshape(h.shape[0], 20)
        return self.fc(torch.tanh(z)).permute(1, 0).t()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summation_on_a_random_cnn_with_pooling_batchnorm_residual_and_concat(seed: int) -> None:
    model = build(seed, RandomCNN, torch.float64)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(seed))
        model.bn.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(seed + 1))
    x = rand(seed + 30, 4, 2, 16, 16, dtype=torch.float64) * 2
    baseline = rand(seed + 40, 4, 2, 16, 16, dtype=torch.float64)  # one baseline per sample
    assert_sums_to_delta(model, x, baseline, [0, 1, 2, 1])
    assert_sums_to_delta(model, x, 0.0, [2, 1, 0, 0])


def test_summation_in_float32_and_overlapping_max_pool_windows() -> None:
    model = build(4, lambda: nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.MaxPool1d(3, stride=1),
                                           nn.Flatten(), nn.Linear(3 * 10, 2)))
    x = rand(50, 6, 1, 14)
    e = DeepLIFT(model).explain(x, 1, baseline=rand(51, 1, 14))
    assert float(np.abs(e.extras["relative_convergence_delta"]).max()) < 1e-4
    assert e.attributions.dtype == torch.float32


def test_multi_input_model_sums_to_delta() -> None:
    model = make_multi_input(dtype=torch.float64)
    a, b = rand(52, 4, 3, dtype=torch.float64), rand(53, 4, 2, dtype=torch.float64)
    e = assert_sums_to_delta(model, (a, b), (torch.zeros(3, dtype=torch.float64), rand(54, 2, dtype=torch.float64)),
                             [0, 1, 0, 1])
    assert isinstance(e.attributions, tuple) and all(float(t.abs().sum()) > 0 for t in e.attributions)


def test_layer_attributions_sum_to_delta() -> None:
    model = build(6, RandomCNN, torch.float64)
    x = rand(55, 3, 2, 16, 16, dtype=torch.float64)
    e = DeepLIFT(model, layer="conv3").explain(x, [0, 1, 2])
    assert e.attributions.shape == (3, 4, 8, 8) and e.layer == "conv3"
    full = DeepLIFT(model).explain(x, [0, 1, 2])
    np.testing.assert_allclose(e.attributions.sum((1, 2, 3)).numpy(), full.attributions.sum((1, 2, 3)).numpy(),
                               rtol=1e-10)  # both sum to the same f(x) - f(0)
    assert float(np.abs(e.extras["relative_convergence_delta"]).max()) < 1e-10


@pytest.mark.parametrize("method", ["deeplift", "deep_shap"])
def test_batch_size_does_not_change_results(method: str) -> None:
    model = build(7, RandomCNN, torch.float64)
    x = rand(56, 5, 2, 16, 16, dtype=torch.float64)
    if method == "deeplift":
        run = lambda bs: DeepLIFT(model, batch_size=bs).explain(x, None, baseline=0.5)  # noqa: E731
    else:
        background = rand(57, 3, 2, 16, 16, dtype=torch.float64)
        run = lambda bs: DeepSHAP(model, batch_size=bs).explain(x, None, baseline=background)  # noqa: E731
    whole, pieces = run(None), run(2)
    torch.testing.assert_close(whole.attributions, pieces.attributions, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(whole.targets, pieces.targets)
    np.testing.assert_allclose(whole.extras["convergence_delta"], pieces.extras["convergence_delta"], atol=1e-12)


class Block(nn.Module):
    """A transformer-like block: LayerNorm -> single-head attention (scaled_dot_product_attention) -> residual
    -> LayerNorm -> GELU MLP -> residual -> mean over tokens -> head."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 16), nn.GELU(), nn.Linear(16, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + F.scaled_dot_product_attention(q, k, v)
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


class HandAttention(Block):
    """The same block with attention written by hand (matmul, softmax)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        weights = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(-1)
        x = x + weights @ v
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


def test_transformer_block_sums_to_delta_and_a_real_residual_is_reported() -> None:
    model = build(8, Block, torch.float64)
    twin = build(8, HandAttention, torch.float64)
    x = rand(58, 3, 5, 8, dtype=torch.float64)
    e = assert_sums_to_delta(model, x, 0.0, [0, 1, 2])  # LayerNorm from a zero baseline, softmax, products
    e_twin = DeepLIFT(twin).explain(x, [0, 1, 2])
    torch.testing.assert_close(e.attributions, e_twin.attributions, rtol=1e-8, atol=1e-10)  # same decomposition
    e_ref = assert_sums_to_delta(model, x, rand(59, 5, 8, dtype=torch.float64), [0, 1, 2])
    assert not torch.allclose(e.attributions, e_ref.attributions)
    # a target that is not linear in the output (a probability) is differentiated plainly: the residual is
    # real, reported per sample, and warned about
    with pytest.warns(lumos.LumosWarning, match="do not sum"):
        e_prob = DeepLIFT(model).explain(x, lambda out: out.softmax(-1)[:, 0])
    with torch.no_grad():
        prob = model(x).softmax(-1)[:, 0] - model(torch.zeros_like(x)).softmax(-1)[:, 0]
    np.testing.assert_allclose(e_prob.extras["convergence_delta"], e_prob.attributions.sum((1, 2)).numpy() - prob.numpy(),
                               atol=1e-12)
    assert float(np.abs(e_prob.extras["convergence_delta"]).max()) > 1e-6


def test_deep_shap_summation_against_the_base_value_on_a_cnn() -> None:
    model = build(9, RandomCNN, torch.float64)
    x = rand(59, 2, 2, 16, 16, dtype=torch.float64)
    background = rand(60, 4, 2, 16, 16, dtype=torch.float64)
    e = DeepSHAP(model).explain(x, [1, 2], baseline=background)
    np.testing.assert_allclose(e.attributions.sum((1, 2, 3)).numpy(), e.scores - e.extras["base_value"],
                               rtol=1e-10)
    assert e.extras["n_evaluations"] == 2 + 2 * 2 * 4
    assert count_hooks(model) == 0
