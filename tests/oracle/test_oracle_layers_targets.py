"""Oracle: layer attribution, every kind of target, output selectors and multi-input models, each against
gradients computed by hand in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from conftest import (
    make_cnn,
    make_dict_output,
    make_mlp,
    make_multi_input,
    make_segmentation,
    make_token,
    make_tuple_output,
    rand,
)
from lumos.targets import Class, Neuron, Output, Region

IDS = torch.tensor([[3, 7, 1, 12, 5], [9, 2, 2, 0, 0], [4, 4, 18, 6, 11]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


def grad_of(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradient of ``fn(*inputs).sum()`` with respect to every input."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    return torch.autograd.grad(fn(*leaves).sum(), leaves)


# ---------------------------------------------------------------------------------------------- layers


def test_layer_integrated_gradients_on_the_embeddings() -> None:
    """IG at the embedding layer: completeness f(ids) - f(baseline ids), and equal to IG written by hand."""
    model = make_token()
    target = torch.tensor([0, 1, 1])
    n_steps = 24
    e = lumos.IntegratedGradients(model, layer="embeddings", n_steps=n_steps).explain(
        IDS, target, baseline=0, forward_kwargs={"attention_mask": MASK})
    assert e.layer == "embeddings"
    assert e.attributions.shape == (3, 5, 4)

    with torch.no_grad():
        f_x = model(IDS, attention_mask=MASK)[torch.arange(3), target]
        f_0 = model(torch.zeros_like(IDS), attention_mask=MASK)[torch.arange(3), target]
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), f_x - f_0, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(e.extras["convergence_delta"], 0, atol=1e-10)

    # by hand: Gauss-Legendre nodes on [0, 1], gradients of the post-embedding function
    embedded = model.embeddings(IDS).detach()
    embedded_0 = model.embeddings(torch.zeros_like(IDS)).detach()
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    total = torch.zeros_like(embedded)
    for node, weight in zip((nodes + 1) / 2, weights / 2, strict=True):
        point = embedded_0 + float(node) * (embedded - embedded_0)
        (g,) = grad_of(lambda p: model.pooled(p, MASK)[torch.arange(3), target], point)
        total += float(weight) * g
    expected = (embedded - embedded_0) * total
    torch.testing.assert_close(e.attributions, expected, rtol=1e-10, atol=1e-12)
    # masked tokens get exactly nothing
    assert bool((e.attributions[1, 3:] == 0).all()) and bool((e.attributions[2, 4] == 0).all())


def test_layer_integrated_gradients_batch_size_and_per_sample_masks() -> None:
    model = make_token()
    explain = lambda b: lumos.IntegratedGradients(model, layer="embeddings", n_steps=6, batch_size=b).explain(  # noqa: E731
        IDS, 1, baseline=0, forward_kwargs={"attention_mask": MASK}).attributions
    torch.testing.assert_close(explain(1), explain(None), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(explain(4), explain(None), rtol=1e-12, atol=1e-14)


def test_layer_gradient_shap_uses_each_samples_mask() -> None:
    """Background token rows are paired with each sample's own attention mask."""
    model = make_token()
    background = torch.tensor([[0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    e = lumos.GradientSHAP(model, layer="embeddings", n_samples=8, seed=0).explain(
        IDS, 0, baseline=background, forward_kwargs={"attention_mask": MASK})
    with torch.no_grad():
        expected = torch.stack([
            model(background, attention_mask=MASK[i].expand(2, 5))[:, 0].mean() for i in range(3)
        ])
    np.testing.assert_allclose(e.extras["base_value"], expected.numpy(), rtol=1e-12)
    assert e.attributions.shape == (3, 5, 4)
    assert bool((e.attributions[1, 3:] == 0).all())


@pytest.mark.parametrize("layer", ["fc1", "act"])
def test_layer_saliency_is_the_gradient_at_the_layer_output(layer: str) -> None:
    model = make_mlp(dtype=torch.float64)
    x = rand(20, 4, 6, dtype=torch.float64)
    target = torch.tensor([2, 0, 1, 2])
    captured = {}

    def keep(module, args, output):  # noqa: ANN001, ANN202
        output.retain_grad()
        captured["out"] = output

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        model(x).gather(1, target[:, None]).sum().backward()
    finally:
        handle.remove()
    activation, gradient = captured["out"].detach(), captured["out"].grad
    model.zero_grad(set_to_none=True)

    e = lumos.Saliency(model, layer=layer).explain(x, target)
    torch.testing.assert_close(e.attributions, gradient, rtol=1e-12, atol=1e-14)
    ixg = lumos.InputXGradient(model, layer=model.get_submodule(layer)).explain(x, target)  # a module works too
    torch.testing.assert_close(ixg.attributions, activation * gradient, rtol=1e-12, atol=1e-14)
    assert ixg.layer == layer


def test_layer_integrated_gradients_completeness_inside_a_cnn() -> None:
    model = make_cnn(dtype=torch.float64)
    x = rand(21, 3, 1, 8, 8, dtype=torch.float64)
    e = lumos.IntegratedGradients(model, layer="pool", n_steps=4).explain(x, 1, baseline=0.0)
    # after the pool layer the model is linear: IG is exact with any rule
    with torch.no_grad():
        gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), gap, rtol=1e-12, atol=1e-12)
    assert e.attributions.shape == (3, 4, 4, 4)


# ---------------------------------------------------------------------------------------------- targets


def test_class_per_sample() -> None:
    model = make_mlp(dtype=torch.float64)
    x = rand(22, 3, 6, dtype=torch.float64)
    target = [2, 0, 1]
    expected = grad_of(lambda v: model(v)[torch.arange(3), torch.tensor(target)], x)[0]
    for form in (target, np.array(target), torch.tensor(target), Class(target), (2, 0, 1)):
        e = lumos.Saliency(model).explain(x, form)
        torch.testing.assert_close(e.attributions, expected, rtol=0, atol=0)
        np.testing.assert_array_equal(e.targets, target)


def test_output_of_a_multi_output_regressor() -> None:
    model = make_mlp(dtype=torch.float64)  # read as a regressor with 3 outputs
    x = rand(23, 4, 6, dtype=torch.float64)
    expected = grad_of(lambda v: model(v)[:, 1], x)[0]
    e = lumos.Saliency(model).explain(x, Output(1))
    torch.testing.assert_close(e.attributions, expected, rtol=0, atol=0)
    assert e.target_description == "output 1"
    np.testing.assert_array_equal(e.targets, [1, 1, 1, 1])


def test_single_output_model_with_target_none() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(6, 1)).double()
    x = rand(24, 3, 6, dtype=torch.float64)
    e = lumos.Saliency(model).explain(x)
    torch.testing.assert_close(e.attributions, model[0].weight.detach().expand(3, 6), rtol=0, atol=0)
    squeezed = lambda v: model(v)[:, 0]  # noqa: E731 - a function returning shape (batch,)
    e_1d = lumos.Saliency(squeezed).explain(x)
    torch.testing.assert_close(e_1d.attributions, e.attributions, rtol=0, atol=0)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_region_target(per_sample: bool, weights: bool) -> None:
    model = make_segmentation()
    x = rand(25, 2, 1, 6, 6, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    shape = (2, 6, 6) if per_sample else (6, 6)
    mask = torch.rand(shape, generator=generator, dtype=torch.float64)
    mask = mask if weights else mask > 0.5
    m = mask.to(torch.float64)
    expected = grad_of(lambda v: model(v)[:, 2] * m, x)[0]
    e = lumos.Saliency(model).explain(x, Region(2, mask.numpy() if per_sample else mask))
    torch.testing.assert_close(e.attributions, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(e.targets, [2, 2])
    # integrated gradients with a region target is complete: sum = region score(x) - region score(0)
    ig = lumos.IntegratedGradients(model, n_steps=32).explain(x, Region(2, mask), baseline=0.0)
    with torch.no_grad():
        gap = ((model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]) * m).flatten(1).sum(1)
    torch.testing.assert_close(ig.attributions.flatten(1).sum(1), gap, rtol=1e-9, atol=1e-10)


def test_region_target_errors() -> None:
    model = make_segmentation()
    x = rand(26, 2, 1, 6, 6, dtype=torch.float64)
    with pytest.raises(lumos.TargetError, match=r"valid: 0\.\.2"):
        lumos.Saliency(model).explain(x, Region(3, torch.ones(6, 6)))
    with pytest.raises(lumos.TargetError, match=r"\(6, 6\) or \(2, 6, 6\)"):
        lumos.Saliency(model).explain(x, Region(0, torch.ones(5, 5)))
    with pytest.raises(lumos.TargetError, match="dense output"):
        lumos.Saliency(make_mlp()).explain(rand(0, 2, 6), Region(0, torch.ones(3)))


@pytest.mark.parametrize("layer_spec", ["conv", "module"])
def test_neuron_channel_target(layer_spec: str) -> None:
    model = make_cnn(dtype=torch.float64)
    x = rand(27, 3, 1, 8, 8, dtype=torch.float64)
    layer = "conv" if layer_spec == "conv" else model.conv
    expected = grad_of(lambda v: model.conv(v)[:, 2].flatten(1).sum(1), x)[0]
    e = lumos.Saliency(model).explain(x, Neuron(layer, 2))
    torch.testing.assert_close(e.attributions, expected, rtol=1e-12, atol=1e-14)
    # one unit: (channel, row, column)
    unit = grad_of(lambda v: model.conv(v)[:, 1, 3, 4], x)[0]
    e_unit = lumos.Saliency(model).explain(x, Neuron(layer, (1, 3, 4)))
    torch.testing.assert_close(e_unit.attributions, unit, rtol=1e-12, atol=1e-14)
    # IG of a neuron is complete too
    ig = lumos.IntegratedGradients(model, n_steps=4).explain(x, Neuron(layer, 2), baseline=0.0)
    with torch.no_grad():
        gap = (model.conv(x)[:, 2] - model.conv(torch.zeros_like(x))[:, 2]).flatten(1).sum(1)
    torch.testing.assert_close(ig.attributions.flatten(1).sum(1), gap, rtol=1e-10, atol=1e-12)


def test_neuron_index_out_of_range() -> None:
    model = make_cnn()
    with pytest.raises(lumos.TargetError, match="Neuron"):
        lumos.Saliency(model).explain(rand(0, 2, 1, 8, 8), Neuron("conv", 4))
    with pytest.raises(lumos.TargetError, match="Neuron"):
        lumos.Saliency(model).explain(rand(0, 2, 1, 8, 8), Neuron("conv", (0, 8, 0)))
    with pytest.raises(lumos.ValidationError, match="conv9"):
        lumos.Saliency(model).explain(rand(0, 2, 1, 8, 8), Neuron("conv9", 0))


def test_callable_target() -> None:
    model = make_mlp(dtype=torch.float64)
    x = rand(28, 5, 6, dtype=torch.float64)

    def margin(out: torch.Tensor) -> torch.Tensor:
        return out[:, 0] - out[:, 1]

    expected = grad_of(lambda v: margin(model(v)), x)[0]
    e = lumos.Saliency(model, batch_size=2).explain(x, margin)
    torch.testing.assert_close(e.attributions, expected, rtol=0, atol=0)
    assert e.targets is None
    assert e.target_description == "margin"
    with pytest.raises(lumos.TargetError, match="one score per row"):
        lumos.Saliency(model).explain(x, lambda out: out)


# ---------------------------------------------------------------------------------------------- outputs


def test_output_selectors_for_dict_and_tuple_models() -> None:
    x = rand(29, 4, 6, dtype=torch.float64)
    dict_model, tuple_model = make_dict_output(), make_tuple_output()
    tuple_model.load_state_dict(dict_model.state_dict())
    expected = grad_of(lambda v: dict_model(v)["logits"][:, 2], x)[0]

    by_default = lumos.Saliency(dict_model).explain(x, 2)  # a dict's "logits" entry
    by_key = lumos.Saliency(dict_model, output="logits").explain(x, 2)
    by_position = lumos.Saliency(tuple_model, output=1).explain(x, 2)
    by_function = lumos.Saliency(tuple_model, output=lambda result: result[1]).explain(x, 2)
    for e in (by_default, by_key, by_position, by_function):
        torch.testing.assert_close(e.attributions, expected, rtol=0, atol=0)

    features = lumos.Saliency(dict_model, output="features").explain(x, 7)
    torch.testing.assert_close(features.attributions, grad_of(lambda v: dict_model(v)["features"][:, 7], x)[0],
                               rtol=0, atol=0)
    first = lumos.Saliency(tuple_model).explain(x, 7)  # a tuple's first element by default
    torch.testing.assert_close(first.attributions, features.attributions, rtol=0, atol=0)


def test_output_selector_errors() -> None:
    x = rand(30, 2, 6, dtype=torch.float64)
    with pytest.raises(lumos.ValidationError, match="'scores'"):
        lumos.Saliency(make_dict_output(), output="scores").explain(x, 0)
    with pytest.raises(lumos.ValidationError, match="output=5"):
        lumos.Saliency(make_tuple_output(), output=5).explain(x, 0)
    with pytest.raises(lumos.ValidationError, match="output must be"):
        lumos.Saliency(make_tuple_output(), output=1.5)


def test_multi_input_integrated_gradients_completeness() -> None:
    model = make_multi_input(dtype=torch.float64)
    a, b = rand(31, 4, 3, dtype=torch.float64), rand(32, 4, 2, dtype=torch.float64)
    a0, b0 = rand(33, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    e = lumos.IntegratedGradients(model, n_steps=32).explain((a, b), 1, baseline=(a0, b0))
    with torch.no_grad():
        gap = model(a, b)[:, 1] - model(a0.expand(4, 3), b0.expand(4, 2))[:, 1]
    total = e.attributions[0].sum(1) + e.attributions[1].sum(1)
    torch.testing.assert_close(total, gap, rtol=1e-10, atol=1e-12)
    assert float(e.attributions[1].abs().sum()) > 0
    with pytest.raises(lumos.ValidationError, match="one baseline per input"):
        lumos.IntegratedGradients(model).explain((a, b), 1, baseline=torch.zeros(3))
