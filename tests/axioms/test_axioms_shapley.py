"""Axioms of the Shapley estimators (efficiency, symmetry, dummy) on random small models, plus determinism
under a seed, batch-size invariance and leaving torch models as they were."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import lumos
from conftest import build, make_train_mode_net, rand
from lumos.core.hooks import count_hooks
from lumos.core.model import NumpyModel
from lumos.methods.perturbation.ablation import FeatureAblation
from lumos.methods.perturbation.occlusion import Occlusion
from lumos.methods.shapley.exact import ExactSHAP
from lumos.methods.shapley.kernel import KernelSHAP
from lumos.methods.shapley.permutation import PermutationSHAP

SHAPLEY = {
    "exact": lambda m, **kw: ExactSHAP(m, **kw),
    "kernel_exact": lambda m, **kw: KernelSHAP(m, n_samples=62, seed=0, **kw),
    "kernel_sampled": lambda m, **kw: KernelSHAP(m, n_samples=20, seed=0, **kw),
    "permutation": lambda m, **kw: PermutationSHAP(m, n_permutations=6, seed=0, **kw),
}
ALL = {**SHAPLEY, "ablation": lambda m, **kw: FeatureAblation(m, **kw),
       "occlusion": lambda m, **kw: Occlusion(m, window=2, strides=1, **kw)}


class Net(nn.Module):
    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, 7)
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x))) + x[:, :1] * x[:, 1:2]


def net(seed: int = 0) -> Net:
    return build(seed, Net, torch.float64)


@pytest.mark.parametrize("name", SHAPLEY)
def test_efficiency(name: str) -> None:
    """sum_i phi_i = f(x) - base value, to rounding, for exact and sampled estimators alike."""
    model = net(1)
    x, background = rand(0, 4, 6, dtype=torch.float64), rand(1, 5, 6, dtype=torch.float64)
    e = SHAPLEY[name](model).explain(x, target=[0, 1, 2, 1], baseline=background)
    with torch.no_grad():
        fx = model(x)[torch.arange(4), torch.tensor([0, 1, 2, 1])]
        base = model(background)[:, [0, 1, 2, 1]].mean(0)
    np.testing.assert_allclose(e.extras["base_value"], base.numpy(), atol=1e-12)
    np.testing.assert_allclose(e.attributions.sum(1).numpy(), (fx - base).numpy(), atol=1e-10)
    np.testing.assert_allclose(e.extras["convergence_delta"], 0.0, atol=1e-10)


@pytest.mark.parametrize("name", SHAPLEY)
def test_symmetry_and_dummy(name: str) -> None:
    """f depends on x0 and x1 only through x0 + x1 (symmetric players) and not at all on x3 (a dummy)."""
    def f(a: np.ndarray) -> np.ndarray:
        s = a[:, 0] + a[:, 1]
        return np.sin(s) * a[:, 2] + s**2 + np.tanh(a[:, 4] * a[:, 2])

    x = np.array([[0.3, 0.3, -1.2, 5.0, 0.7], [1.0, 1.0, 0.5, -2.0, -1.1]])
    background = rand(3, 6, 5, dtype=torch.float64).numpy()
    background[:, 1] = background[:, 0]  # symmetry needs the players to be exchangeable in the background too
    e = SHAPLEY[name](NumpyModel(f)).explain(x, baseline=background)
    a = e.attributions
    if name == "kernel_sampled":  # a sampled regression spreads a little error onto the dummy, within its SE
        assert (np.abs(a[:, 3]) <= 4 * e.extras["standard_error"][:, 3]).all()
    else:
        np.testing.assert_allclose(a[:, 3], 0.0, atol=1e-12)  # dummy: every marginal contribution is 0
    if name in ("exact", "kernel_exact"):
        np.testing.assert_allclose(a[:, 0], a[:, 1], atol=1e-10)  # symmetry (exact methods)
    assert np.abs(a[:, 2]).min() > 1e-3  # the others matter


@pytest.mark.parametrize("name", ["kernel_sampled", "permutation"])
def test_seeded_determinism(name: str) -> None:
    model = net(2)
    x, background = rand(0, 3, 6, dtype=torch.float64), rand(1, 4, 6, dtype=torch.float64)
    make = {"kernel_sampled": lambda s: KernelSHAP(model, n_samples=20, seed=s),
            "permutation": lambda s: PermutationSHAP(model, n_permutations=4, seed=s)}[name]
    torch.manual_seed(123)
    first = make(7).explain(x, 0, baseline=background)
    torch.manual_seed(456)
    second = make(7).explain(x, 0, baseline=background)
    other = make(8).explain(x, 0, baseline=background)
    torch.testing.assert_close(first.attributions, second.attributions, rtol=0, atol=0)
    assert first.seed == 7
    assert float((first.attributions - other.attributions).abs().max()) > 1e-6
    drawn = make(None).explain(x, 0, baseline=background)
    again = make(drawn.seed).explain(x, 0, baseline=background)
    torch.testing.assert_close(drawn.attributions, again.attributions, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_batch_size_invariance_and_numpy_inputs(name: str) -> None:
    model = net(3)
    x, background = rand(0, 3, 6, dtype=torch.float64), rand(1, 4, 6, dtype=torch.float64)
    reference = ALL[name](model).explain(x, 1, baseline=background)
    small = ALL[name](model, batch_size=7).explain(x, 1, baseline=background)
    torch.testing.assert_close(small.attributions, reference.attributions, rtol=0, atol=1e-12)
    assert small.extras["n_evaluations"] == reference.extras["n_evaluations"]
    from_numpy = ALL[name](model).explain(x.numpy(), 1, baseline=background.numpy())
    assert isinstance(from_numpy.attributions, np.ndarray)
    np.testing.assert_allclose(from_numpy.attributions, reference.attributions.numpy(), atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_model_state_restored_and_no_hooks(name: str) -> None:
    model = make_train_mode_net()
    model.fc2.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    eval_copy = copy.deepcopy(model).eval()
    x = rand(3, 2, 6)
    e = ALL[name](model).explain(x, target=lumos.targets.Neuron("fc1", 2), baseline=rand(4, 3, 6))
    expected = ALL[name](eval_copy).explain(x, target=lumos.targets.Neuron("fc1", 2), baseline=rand(4, 3, 6))
    torch.testing.assert_close(e.attributions, expected.attributions, rtol=0, atol=0)  # computed in eval mode
    assert count_hooks(model) == 0
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, buffers[n], rtol=0, atol=0)
    with pytest.raises(lumos.ModelCallError):  # and when the model raises
        ALL[name](model).explain(rand(3, 2, 5), 0, baseline=0.0)
    assert count_hooks(model) == 0 and {n: m.training for n, m in model.named_modules()} == modes


def test_multi_input_model_and_tuple_baselines() -> None:
    """Two inputs: features of both are players; efficiency over all of them."""
    from conftest import make_multi_input

    model = make_multi_input(dtype=torch.float64)
    a, b = rand(0, 2, 3, dtype=torch.float64), rand(1, 2, 2, dtype=torch.float64)
    background = (rand(2, 4, 3, dtype=torch.float64), rand(3, 4, 2, dtype=torch.float64))
    e = ExactSHAP(model).explain((a, b), 1, baseline=background)
    assert isinstance(e.attributions, tuple) and e.attributions[1].shape == (2, 2)
    total = e.attributions[0].sum(1) + e.attributions[1].sum(1)
    with torch.no_grad():
        fx = model(a, b)[:, 1]
    np.testing.assert_allclose(total.numpy(), (fx.numpy() - e.extras["base_value"]), atol=1e-10)
    k = KernelSHAP(model, n_samples=30, seed=0).explain((a, b), 1, baseline=background)
    torch.testing.assert_close(k.attributions[0], e.attributions[0], rtol=0, atol=1e-8)
