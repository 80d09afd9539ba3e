"""Oracle: DeepLIFT / DeepSHAP against exact Shapley values, hand-computed multipliers and a naive
layer-by-layer re-implementation; DeepSHAP against the average of DeepLIFT and interventional Shapley values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, make_linear, make_relu_styles, rand
from lumos.core.hooks import count_hooks
from lumos.methods.propagation.deep_shap import DeepSHAP
from lumos.methods.propagation.deeplift import DeepLIFT


def exact_shapley(f, x: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Shapley values of ``v(S) = f(x on S, baseline elsewhere)`` by enumerating every coalition."""
    d = x.shape[0]
    phi = torch.zeros(d, dtype=x.dtype)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
                point = baseline.clone()
                point[list(subset)] = x[list(subset)]
                without = f(point)
                point[i] = x[i]
                phi[i] += weight * (f(point) - without)
    return phi


class ReluOfSum(nn.Module):
    """``f(x) = relu(w . x + b)``: one output."""

    def __init__(self, w: list[float], b: float) -> None:
        super().__init__()
        self.fc = nn.Linear(len(w), 1).double()
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([w], dtype=torch.float64))
            self.fc.bias.fill_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


# w = (1.5, -0.7, 2.0), b = -1: (a) equal contributions w_i (x_i - x'_i) = 0.8 crossing the kink (z' = -1,
# z = 1.4): Shapley is symmetric, so each gets relu(1.4)/3 = Rescale; (b) every coalition on the positive side
# (z' = 1.9, contributions (0.6, 0.7, -1): every partial sum > 0): both are w_i (x_i - x'_i); (c) baseline at the kink (z' = 0) with
# same-sign contributions: every coalition is linear again
RELU_OF_SUM_CASES = [
    ([0.8 / 1.5, 0.8 / -0.7, 0.8 / 2.0], [0.0, 0.0, 0.0]),
    ([1.0, -1.0, 0.5], [0.6, 0.0, 1.0]),
    ([1.0, -1.0, 1.0], [0.5, 0.0, 0.125]),
]


@pytest.mark.parametrize(("x", "baseline"), RELU_OF_SUM_CASES)
def test_deeplift_on_a_relu_of_a_sum_is_the_exact_shapley_value(x, baseline) -> None:
    model = ReluOfSum([1.5, -0.7, 2.0], -1.0).eval()
    x_t = torch.tensor([x], dtype=torch.float64)
    b_t = torch.tensor([baseline], dtype=torch.float64)
    e = DeepLIFT(model).explain(x_t, 0, baseline=b_t)
    with torch.no_grad():
        phi = exact_shapley(lambda p: model(p[None])[0, 0], x_t[0], b_t[0])
    torch.testing.assert_close(e.attributions[0], phi, rtol=1e-12, atol=1e-12)
    assert float(phi.abs().sum()) > 0.1


def test_deeplift_on_a_relu_of_a_sum_differs_from_shapley_when_unequal_contributions_cross_the_kink() -> None:
    """Not Shapley in general: relu(-1 + c1 + c2) with c = (2, 1): Shapley (1.5, 0.5), Rescale (4/3, 2/3)."""
    model = ReluOfSum([2.0, 1.0], -1.0).eval()
    e = DeepLIFT(model).explain(torch.tensor([[1.0, 1.0]], dtype=torch.float64), 0)
    torch.testing.assert_close(e.attributions[0], torch.tensor([4 / 3, 2 / 3], dtype=torch.float64))
    with torch.no_grad():
        phi = exact_shapley(lambda p: model(p[None])[0, 0], torch.ones(2, dtype=torch.float64),
                            torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(phi, torch.tensor([1.5, 0.5], dtype=torch.float64))


ACTIVATIONS = {
    "relu": (nn.ReLU(), lambda z: np.maximum(z, 0)),
    "leaky_relu": (nn.LeakyReLU(0.1), lambda z: np.where(z > 0, z, 0.1 * z)),
    "elu": (nn.ELU(0.7), lambda z: np.where(z > 0, z, 0.7 * (np.exp(z) - 1))),
    "selu": (nn.SELU(), lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1))),
    "sigmoid": (nn.Sigmoid(), lambda z: 1 / (1 + np.exp(-z))),
    "tanh": (nn.Tanh(), np.tanh),
    "softplus": (nn.Softplus(), lambda z: np.log1p(np.exp(z))),
    "gelu": (nn.GELU(), lambda z: z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))),
    "silu": (nn.SiLU(), lambda z: z / (1 + np.exp(-z))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_rescale_multiplier_of_every_activation_on_a_one_layer_example(name: str) -> None:
    """f(x) = v . act(W x): attribution_i = sum_j v_j m_j W_ji (x_i - x'_i) with m_j = Δact_j / Δz_j."""
    module, act = ACTIVATIONS[name]
    W = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]])
    v = np.array([1.0, -0.5, 2.0])
    first = nn.Linear(2, 3, bias=False).double()
    second = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(W))
        second.weight.copy_(torch.from_numpy(v[None]))
    model = nn.Sequential(first, module, second).eval()
    x, xb = np.array([0.8, -0.6]), np.array([-0.3, 0.4])
    z, zb = W @ x, W @ xb
    m = (act(z) - act(zb)) / (z - zb)
    expected = ((v * m) @ W) * (x - xb)
    e = DeepLIFT(model).explain(torch.tensor(x[None]), 0, baseline=torch.tensor(xb[None]))
    np.testing.assert_allclose(e.attributions[0].numpy(), expected, rtol=1e-10, atol=1e-12)
    assert abs(float(expected.sum()) - float(v @ (act(z) - act(zb)))) < 1e-12  # the formula conserves


def naive_deeplift_mlp(linears: list[nn.Linear], x: torch.Tensor, baseline: torch.Tensor, target: int) -> torch.Tensor:
    """``linear -> ReLU -> ... -> linear`` (ReLU between layers), explicit multipliers layer by layer."""
    a, ab = x, baseline
    multipliers = []
    for linear in linears[:-1]:
        z, zb = linear(a), linear(ab)
        dz = z - zb
        m = torch.where(dz.abs() > 1e-12, (z.relu() - zb.relu()) / torch.where(dz == 0, 1.0, dz), (z > 0).double())
        multipliers.append(m)
        a, ab = z.relu(), zb.relu()
    g = linears[-1].weight[target]
    for linear, m in zip(reversed(linears[:-1]), reversed(multipliers), strict=True):
        g = linear.weight.T @ (g * m)
    return g * (x - baseline)


def test_deeplift_equals_a_naive_layer_by_layer_implementation() -> None:
    model = build(3, lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)),
                  torch.float64)
    x = rand(10, 4, 5, dtype=torch.float64) * 2
    baseline = rand(11, 5, dtype=torch.float64)
    targets = [0, 2, 1, 2]
    e = DeepLIFT(model).explain(x, targets, baseline=baseline)
    linears = [model[0], model[2], model[4]]
    with torch.no_grad():
        naive = torch.stack([naive_deeplift_mlp(linears, x[i], baseline, targets[i]) for i in range(4)])
    torch.testing.assert_close(e.attributions, naive, rtol=1e-10, atol=1e-12)
    # DeepLIFT is not the gradient times input difference here (some ReLUs switch between x and x')
    assert not torch.allclose(e.attributions, lumos.explain(model, x, method="input_x_gradient", target=targets)
                              .attributions)


def test_every_relu_spelling_gets_the_rescale_rule() -> None:
    """F.relu, x.relu(), a reused nn.ReLU, in-place ReLUs: same as distinct nn.ReLU modules and as naive."""
    model = make_relu_styles(seed=4)
    reference = model.as_sequential()
    x = rand(5, 6, 5, dtype=torch.float64) * 3
    baseline = rand(6, 5, dtype=torch.float64)
    a = DeepLIFT(model).explain(x, 1, baseline=baseline).attributions
    b = DeepLIFT(reference).explain(x, 1, baseline=baseline).attributions
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert float(a.abs().sum()) > 0


def test_max_pool_rule_routes_the_window_difference() -> None:
    """One window of 4: x = (1, 5, 2, 0), x' = (4, 0, 0, 3): y - y' = 5 - 4 = 1. |Δ| at the input's winner (pos 1)
    is 5 >= |Δ| at the baseline's winner (pos 0) = 3: the whole difference goes to position 1, multiplier 1/5."""
    model = nn.Sequential(nn.MaxPool1d(4), nn.Flatten()).double().eval()
    x = torch.tensor([[[1.0, 5.0, 2.0, 0.0]]], dtype=torch.float64)
    xb = torch.tensor([[[4.0, 0.0, 0.0, 3.0]]], dtype=torch.float64)
    e = DeepLIFT(model).explain(x, 0, baseline=xb)
    torch.testing.assert_close(e.attributions, torch.tensor([[[0.0, 1.0, 0.0, 0.0]]], dtype=torch.float64))
    # baseline's winner moved more: x = (1, 3.5, 2, 0), x' = (9, 0, 0, 3): Δy = 3.5 - 9 = -5.5, |Δ0| = 8 > 3.5
    x2 = torch.tensor([[[1.0, 3.5, 2.0, 0.0]]], dtype=torch.float64)
    xb2 = torch.tensor([[[9.0, 0.0, 0.0, 3.0]]], dtype=torch.float64)
    e2 = DeepLIFT(model).explain(x2, 0, baseline=xb2)
    torch.testing.assert_close(e2.attributions, torch.tensor([[[-5.5, 0.0, 0.0, 0.0]]], dtype=torch.float64))


def test_product_of_two_activations_is_split_exactly() -> None:
    """f(x) = x0 * x1 (a gate): the bilinear rule gives the Shapley values ((x1 + x1')/2 Δx0, (x0 + x0')/2 Δx1)."""

    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, :1] * torch.sigmoid(x[:, 1:2])) + x[:, 2:] * x[:, 2:]

    x = torch.tensor([[2.0, 1.0, 3.0]], dtype=torch.float64)
    xb = torch.tensor([[0.5, -1.0, 1.0]], dtype=torch.float64)
    e = DeepLIFT(Gate()).explain(x, 0, baseline=xb)
    phi = exact_shapley(lambda p: Gate()(p[None])[0, 0], x[0], xb[0])
    torch.testing.assert_close(e.attributions[0], phi, rtol=1e-12, atol=1e-12)


class PoolCNN(nn.Module):
    """conv -> ReLU -> max pool -> conv -> ReLU (in place) -> adaptive max pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = F.adaptive_max_pool2d(F.relu(self.conv2(h), inplace=True), 1)
        return self.fc(h.flatten(1))


class SequenceFirst(nn.Module):
    """Moves the batch to dimension 1 before its ReLU (a sequence-first layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, length, 4)
        return self.fc2(torch.relu(self.fc1(x.transpose(0, 1)))).mean(0)


def one_row_differs(baseline: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Per-sample baselines: ``baseline`` for the first n - 1 samples, another one for the last (not shared)."""
    rows = baseline.unsqueeze(0).repeat(n, *([1] * baseline.ndim))
    rows[-1] = rand(seed, *baseline.shape, dtype=baseline.dtype)
    return rows


@pytest.mark.parametrize("factory, shape", [(PoolCNN, (1, 8, 8)), (SequenceFirst, (3, 4))])
def test_a_shared_baseline_gives_the_per_row_answer(factory, shape) -> None:
    """One baseline for every sample runs as one row, once per call (broadcast over the batch); the answer is
    the one of the same baseline given row by row. A model that does not batch along dimension 0
    (SequenceFirst) falls back to a baseline row per sample, with the same answer."""
    model = build(12, factory, torch.float64)
    x = rand(13, 5, *shape, dtype=torch.float64) * 2
    baseline = rand(14, *shape, dtype=torch.float64)
    targets = [0, 2, 1, 1, 0]
    reference = DeepLIFT(model).explain(x, targets, baseline=one_row_differs(baseline, 5, 15))
    assert reference.extras["n_evaluations"] == 10
    shared_rows = 6 if factory is PoolCNN else 10
    for batch_size in (None, 2):
        e = DeepLIFT(model, batch_size=batch_size).explain(x, targets, baseline=baseline)
        torch.testing.assert_close(e.attributions[:4], reference.attributions[:4], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(e.attributions.sum(tuple(range(1, x.ndim))).numpy(),
                                   e.scores - e.extras["baseline_scores"], rtol=1e-10)
        assert e.extras["n_evaluations"] == shared_rows
    assert float(reference.attributions.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------- DeepSHAP


def test_deep_shap_is_the_average_of_deeplift_over_the_background() -> None:
    model = build(5, lambda: nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 2)), torch.float64)
    x = rand(20, 3, 4, dtype=torch.float64)
    background = rand(21, 5, 4, dtype=torch.float64)
    e = DeepSHAP(model).explain(x, [0, 1, 1], baseline=background)
    expected = torch.stack([DeepLIFT(model).explain(x, [0, 1, 1], baseline=b).attributions for b in background])
    torch.testing.assert_close(e.attributions, expected.mean(0), rtol=1e-12, atol=1e-13)
    with torch.no_grad():
        base = model(background)[:, [0, 1, 1]].mean(0)
    np.testing.assert_allclose(e.extras["base_value"], base.numpy(), rtol=1e-12)
    np.testing.assert_allclose(e.attributions.sum(1).numpy(), e.scores - e.extras["base_value"], rtol=1e-10)


def test_deep_shap_on_a_linear_model_is_the_interventional_shapley_value() -> None:
    model = make_linear()
    x = rand(22, 4, 4, dtype=torch.float64)
    background = rand(23, 7, 4, dtype=torch.float64)
    e = DeepSHAP(model).explain(x, 2, baseline=background)
    expected = model.weight[2].detach() * (x - background.mean(0))
    torch.testing.assert_close(e.attributions, expected, rtol=1e-12, atol=1e-13)


def test_deep_shap_sampling_is_seeded() -> None:
    model = build(5, lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), torch.float64)
    x, background = rand(24, 3, 4, dtype=torch.float64), rand(25, 9, 4, dtype=torch.float64)
    a = DeepSHAP(model, n_samples=4, seed=3).explain(x, 0, baseline=background)
    b = DeepSHAP(model, n_samples=4, seed=3).explain(x, 0, baseline=background)
    c = DeepSHAP(model, n_samples=4, seed=4).explain(x, 0, baseline=background)
    torch.testing.assert_close(a.attributions, b.attributions, rtol=0, atol=0)
    assert not torch.allclose(a.attributions, c.attributions)
    assert a.seed == 3
    np.testing.assert_allclose(a.attributions.sum(1).numpy(), a.scores - a.extras["base_value"], rtol=1e-10)


# ---------------------------------------------------------------------------------------------- errors, state


class UsesExp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.inner = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.exp(self.fc(x)))


@pytest.mark.parametrize(("body", "op"), [
    (lambda h: torch.exp(h), "torch.exp"),
    (lambda h: h.abs(), "Tensor.abs"),
    (lambda h: h.max(dim=1, keepdim=True).values.expand_as(h), "Tensor.max"),
    (lambda h: torch.sort(h, dim=1).values, "torch.sort"),
    (lambda h: h / h.sum(1, keepdim=True), "Tensor.div"),
])
def test_unsupported_operation_error_names_the_op_and_alternatives(body, op: str) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.head = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(body(self.fc(x)))

    model = build(1, Net).train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(lumos.UnsupportedModelError) as info:
        DeepLIFT(model).explain(rand(0, 2, 4), 0)
    message = str(info.value)
    assert op in message and "integrated_gradients" in message, message
    assert model.training and count_hooks(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not torch._C._is_torch_function_mode_enabled()


def test_module_is_named_in_the_error() -> None:
    model = build(2, lambda: nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), UsesExp())))
    with pytest.raises(lumos.UnsupportedModelError, match=r"torch\.exp in module '1\.1' \(UsesExp\)"):
        DeepLIFT(model).explain(rand(0, 2, 4), 0)


def test_operations_on_parameters_only_are_fine() -> None:
    """Nonlinear ops on parameters alone (a softplus scale, exp of a log-temperature) are constants."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.log_scale = nn.Parameter(torch.tensor(0.3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).relu() * torch.exp(self.log_scale) + F.softplus(self.log_scale)

    model = build(3, Scaled, torch.float64)
    e = DeepLIFT(model).explain(rand(1, 3, 4, dtype=torch.float64), 0)
    assert float(np.abs(e.extras["convergence_delta"]).max()) < 1e-12
    assert all(p.requires_grad for p in model.parameters())


def test_plain_autograd_works_after_a_call() -> None:
    """No mode is left active: a later backward gives the plain gradient."""
    model = make_relu_styles(seed=4)
    x = (rand(5, 3, 5, dtype=torch.float64) * 3).requires_grad_(True)
    DeepLIFT(model).explain(x.detach(), 0, baseline=rand(6, 5, dtype=torch.float64))
    model(x)[:, 0].sum().backward()
    reference = x.detach().clone().requires_grad_(True)
    model.as_sequential()(reference)[:, 0].sum().backward()
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-12, atol=1e-14)


def test_unknown_rule_raises_a_clear_error() -> None:
    assert DeepLIFT(make_linear(), rule="reveal_cancel").rule == "reveal_cancel"  # see test_oracle_reveal_cancel.py
    with pytest.raises(lumos.ValidationError, match="rule"):
        DeepLIFT(make_linear(), rule="linear")
