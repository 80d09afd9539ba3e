"""Oracle: DeepLIFT's RevealCancel rule against hand-computed values (the paper's min example), a naive numpy
re-implementation of the paper's rules layer by layer, Rescale where no neuron mixes signs, and summation-to-delta
on random MLPs and CNNs; DeepSHAP with rule="reveal_cancel"; errors and model state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, rand
from lumos.core.hooks import count_hooks
from lumos.methods.propagation.deep_shap import DeepSHAP
from lumos.methods.propagation.deeplift import DeepLIFT

F64 = torch.float64


class MinOfTwo(nn.Module):
    """``min(x1, x2)`` written as ``x1 - relu(x1 - x2)`` or ``relu(x1) - relu(x1 - x2)`` (for x >= 0)."""

    def __init__(self, spelling: int) -> None:
        super().__init__()
        self.spelling = spelling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, :1], x[:, 1:2]
        first = a if self.spelling == 0 else F.relu(a)
        return first - torch.relu(a - b)


@pytest.mark.parametrize("spelling", [0, 1])
@pytest.mark.parametrize("value", [1.0, 2.5])
def test_min_example_splits_the_difference_fairly(spelling: int, value: float) -> None:
    """x1 = x2 = v, reference 0. h = x1 - x2: Δh+ = v (from x1), Δh- = -v (from x2), h' = 0.
    RevealCancel: Δrelu+ = ½(relu(v) - 0) + ½(relu(0) - relu(-v)) = v/2, Δrelu- = ½(relu(-v) - 0) + ½(relu(0) -
    relu(v)) = -v/2: m+ = m- = ½. x1: v (the first term) - ½ v = v/2; x2: -(½ · -v) = v/2.
    Rescale: Δh = 0, m = relu'(0) = 0: x1 gets the whole v, x2 nothing."""
    model = MinOfTwo(spelling)
    x = torch.tensor([[value, value]], dtype=F64)
    e = DeepLIFT(model, rule="reveal_cancel").explain(x, 0, baseline=0.0)
    torch.testing.assert_close(e.attributions, torch.tensor([[value / 2, value / 2]], dtype=F64), rtol=0, atol=1e-15)
    r = DeepLIFT(model).explain(x, 0, baseline=0.0)
    torch.testing.assert_close(r.attributions, torch.tensor([[value, 0.0]], dtype=F64), rtol=0, atol=1e-15)


def test_min_example_with_unequal_inputs() -> None:
    """x = (3, 1), reference 0: Δh+ = 3, Δh- = -1. Δrelu+ = ½(3 - 0) + ½(2 - 0) = 2.5, Δrelu- = ½(0 - 0) + ½(2 - 3)
    = -0.5; m+ = 2.5 / 3, m- = 0.5. x1: 3 - 3 m+ = 0.5; x2: -(-1 · m-) = 0.5. Sum = min(3, 1) = 1."""
    e = DeepLIFT(MinOfTwo(0), rule="reveal_cancel").explain(torch.tensor([[3.0, 1.0]], dtype=F64), 0, baseline=0.0)
    torch.testing.assert_close(e.attributions, torch.tensor([[0.5, 0.5]], dtype=F64), rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------- naive oracle


def _pos(w: np.ndarray) -> np.ndarray:
    return np.maximum(w, 0.0)


def _neg(w: np.ndarray) -> np.ndarray:
    return np.minimum(w, 0.0)


def _reveal_cancel(f, z_ref: np.ndarray, p: np.ndarray, n: np.ndarray, df) -> tuple[np.ndarray, ...]:
    """Δy±, m± of the paper (limit ½(f'(z') + f'(z' + Δ∓)) where Δ± = 0)."""
    dy_p = 0.5 * (f(z_ref + p) - f(z_ref)) + 0.5 * (f(z_ref + p + n) - f(z_ref + n))
    dy_n = 0.5 * (f(z_ref + n) - f(z_ref)) + 0.5 * (f(z_ref + p + n) - f(z_ref + p))
    m_p = np.where(p != 0, dy_p / np.where(p != 0, p, 1.0), 0.5 * (df(z_ref) + df(z_ref + n)))
    m_n = np.where(n != 0, dy_n / np.where(n != 0, n, 1.0), 0.5 * (df(z_ref) + df(z_ref + p)))
    return dy_p, dy_n, m_p, m_n


def naive_reveal_cancel(weights, biases, acts, x: np.ndarray, x_ref: np.ndarray, target: int) -> np.ndarray:
    """linear -> act -> ... -> linear, the paper's rules written out: at each linear layer the total difference
    of its input is split by sign (half each at 0) and multiplied by W+ / W-; at each nonlinearity RevealCancel."""
    total, a_ref = x - x_ref, x_ref
    cache = []
    for (W, b), (f, df) in zip(zip(weights[:-1], biases[:-1], strict=True), acts, strict=True):
        w_pos = (total > 0) + 0.5 * (total == 0)
        a_p, a_n = total * w_pos, total * (1 - w_pos)
        p = _pos(W) @ a_p + _neg(W) @ a_n
        n = _neg(W) @ a_p + _pos(W) @ a_n
        z_ref = W @ a_ref + b
        dy_p, dy_n, m_p, m_n = _reveal_cancel(f, z_ref, p, n, df)
        cache.append((W, w_pos, m_p, m_n))
        total, a_ref = dy_p + dy_n, f(z_ref)
    g = weights[-1][target]  # the output is linear in both streams of the last activation
    for W, w_pos, m_p, m_n in reversed(cache):
        g_p, g_n = g * m_p, g * m_n  # multipliers of the layer's pre-activation streams
        m_ap = _pos(W).T @ g_p + _neg(W).T @ g_n
        m_an = _neg(W).T @ g_p + _pos(W).T @ g_n
        g = w_pos * m_ap + (1 - w_pos) * m_an  # both streams of the layer's input share it
    return (x - x_ref) * g


RELU = (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float))
TANH = (np.tanh, lambda z: 1 - np.tanh(z) ** 2)
SIGMOID = (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2)


def test_reveal_cancel_equals_a_naive_layer_by_layer_implementation() -> None:
    model = build(3, lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 6),
                                           nn.Sigmoid(), nn.Linear(6, 3)), F64)
    x = rand(10, 4, 5, dtype=F64) * 2
    baseline = rand(11, 5, dtype=F64)
    targets = [0, 2, 1, 2]
    e = DeepLIFT(model, rule="reveal_cancel").explain(x, targets, baseline=baseline)
    linears = [model[0], model[2], model[4], model[6]]
    weights = [m.weight.detach().numpy() for m in linears]
    biases = [m.bias.detach().numpy() for m in linears]
    naive = np.stack([naive_reveal_cancel(weights, biases, [RELU, TANH, SIGMOID], x[i].numpy(), baseline.numpy(),
                                          targets[i]) for i in range(4)])
    np.testing.assert_allclose(e.attributions.numpy(), naive, rtol=1e-10, atol=1e-12)
    # a different decomposition from Rescale on this network (neurons receive mixed-sign contributions)
    rescale = DeepLIFT(model).explain(x, targets, baseline=baseline).attributions
    assert float((rescale - e.attributions).abs().max()) > 1e-3


def test_reveal_cancel_equals_rescale_when_no_neuron_mixes_signs() -> None:
    """One input feature: every neuron's difference is a single term, so Δ+ or Δ- is 0 everywhere and
    RevealCancel's Δy± reduce to f(z) - f(z'), the Rescale multiplier."""
    model = build(4, lambda: nn.Sequential(nn.Linear(1, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)),
                  F64)
    x = rand(12, 7, 1, dtype=F64) * 3
    rc = DeepLIFT(model, rule="reveal_cancel").explain(x, 1, baseline=rand(13, 1, dtype=F64))
    rs = DeepLIFT(model).explain(x, 1, baseline=rand(13, 1, dtype=F64))
    torch.testing.assert_close(rc.attributions, rs.attributions, rtol=1e-12, atol=1e-14)
    assert float(rc.attributions.abs().min()) > 1e-6


# ---------------------------------------------------------------------------------------------- summation


def assert_exact(model: nn.Module, x, baseline, target, **kwargs) -> lumos.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("error", lumos.LumosWarning)
        e = DeepLIFT(model, rule="reveal_cancel", **kwargs).explain(x, target, baseline=baseline)
    parts = e.attributions if isinstance(e.attributions, tuple) else (e.attributions,)
    total = sum(p.reshape(p.shape[0], -1).sum(1) for p in parts)
    with torch.no_grad():
        refs = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
        index = torch.arange(x.shape[0])
        gap = model(x)[index, target] - model(refs)[index, target]
    assert float(gap.abs().min()) > 1e-4  # a non-trivial difference to explain
    np.testing.assert_allclose(total.numpy(), gap.numpy(), rtol=1e-10, atol=1e-10 * float(gap.abs().max()))
    return e


class MixedMLP(nn.Module):
    """Every common activation, a residual, a negated and a scaled branch, an in-place ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(6))
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.layers[0](x))
        h = torch.tanh(self.layers[1](h)) - 0.5 * h
        h = torch.sigmoid(self.layers[2](h)) * -2.0 + h / 3.0
        h = F.elu(self.layers[3](h)) + F.softplus(self.layers[4](h))
        g = self.layers[5](h)
        g.relu_()
        return self.head(-g + h)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(F.relu(self.bn(self.conv1(x))))  # (4, 8, 8)
        h = torch.tanh(self.conv2(h)) + h  # residual
        h = F.avg_pool2d(h, 2)
        return self.fc(torch.sigmoid(h).flatten(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_summation_is_exact_on_random_mlps(seed: int) -> None:
    model = build(seed, MixedMLP, F64)
    with torch.no_grad():
        for linear in model.layers:
            linear.weight.mul_(2.0)
    assert_exact(model, rand(seed + 20, 5, 6, dtype=F64) * 2, rand(seed + 21, 6, dtype=F64), [0, 1, 2, 0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_summation_is_exact_on_random_cnns(seed: int) -> None:
    model = build(seed, SmallCNN, F64)
    with torch.no_grad():  # statistics and signed scales: the streams swap where the scale is negative
        model.bn.running_mean.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(seed))
        model.bn.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(seed + 1))
        model.bn.weight.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(seed + 2))
    x = rand(seed + 30, 3, 2, 16, 16, dtype=F64) * 2
    e = assert_exact(model, x, rand(seed + 31, 3, 2, 16, 16, dtype=F64), [0, 1, 2])
    assert not torch.allclose(e.attributions, DeepLIFT(model).explain(x, [0, 1, 2], baseline=rand(
        seed + 31, 3, 2, 16, 16, dtype=F64)).attributions)
    assert_exact(model, x, 0.0, [2, 0, 1])


def test_layer_attributions_sum_to_delta() -> None:
    model = build(5, SmallCNN, F64)
    x = rand(40, 3, 2, 16, 16, dtype=F64)
    e = DeepLIFT(model, rule="reveal_cancel", layer="bn").explain(x, [0, 1, 2])  # (a layer no skip path bypasses)
    assert e.attributions.shape == (3, 4, 16, 16) and e.layer == "bn"
    assert float(np.abs(e.extras["relative_convergence_delta"]).max()) < 1e-10


def test_batch_size_does_not_change_results() -> None:
    model = build(6, SmallCNN, F64)
    x = rand(41, 5, 2, 16, 16, dtype=F64)
    whole = DeepLIFT(model, rule="reveal_cancel").explain(x, None, baseline=0.5)
    pieces = DeepLIFT(model, rule="reveal_cancel", batch_size=2).explain(x, None, baseline=0.5)
    torch.testing.assert_close(whole.attributions, pieces.attributions, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(whole.targets, pieces.targets)


def test_deep_shap_reveal_cancel_is_the_average_over_the_background() -> None:
    model = build(7, lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)),
                  F64)
    x, background = rand(42, 3, 4, dtype=F64), rand(43, 4, 4, dtype=F64)
    e = DeepSHAP(model, rule="reveal_cancel").explain(x, [0, 1, 1], baseline=background)
    expected = torch.stack([DeepLIFT(model, rule="reveal_cancel").explain(x, [0, 1, 1], baseline=b).attributions
                            for b in background]).mean(0)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(e.attributions.sum(1).numpy(), e.scores - e.extras["base_value"], rtol=1e-10)
    assert e.params["rule"] == "reveal_cancel"
    assert not torch.allclose(e.attributions, DeepSHAP(model).explain(x, [0, 1, 1], baseline=background).attributions)


# ---------------------------------------------------------------------------------------------- errors, state


def test_unsupported_operation_raises_and_the_model_is_left_as_it_was() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.exp(self.fc(x)))

    model = build(1, Net).train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(lumos.UnsupportedModelError, match=r"torch\.exp"):
        DeepLIFT(model, rule="reveal_cancel").explain(rand(0, 2, 4), 0)
    assert model.training and count_hooks(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not torch._C._is_torch_function_mode_enabled()


def test_state_restored_and_plain_autograd_after_a_call() -> None:
    model = build(8, SmallCNN, F64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = rand(44, 2, 2, 16, 16, dtype=F64)
    DeepLIFT(model, rule="reveal_cancel").explain(x, 0)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.requires_grad for p in model.parameters()) and not model.training
    leaf = x.clone().requires_grad_(True)
    model(leaf)[:, 0].sum().backward()
    twin = x.clone().requires_grad_(True)
    torch.autograd.grad(model(twin)[:, 0].sum(), twin)
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0


def test_rule_validation() -> None:
    with pytest.raises(lumos.ValidationError, match="rule"):
        DeepLIFT(nn.Linear(2, 1), rule="linear")
    with pytest.raises(lumos.ValidationError, match="rule"):
        DeepSHAP(nn.Linear(2, 1), rule="revealcancel")
    assert DeepLIFT(nn.Linear(2, 1), rule="reveal_cancel").get_params()["rule"] == "reveal_cancel"
