"""Oracle: guided backprop and deconvolution against hand computations and a naive matrix re-implementation,
for every way of writing a ReLU; input x gradient on bias-free piecewise-linear nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lumos
from conftest import make_cnn, make_relu_styles, rand


def naive_relu_chain(linears: list[nn.Linear], x: torch.Tensor, target: int, rule: str) -> torch.Tensor:
    """Input relevance of ``linear -> ReLU -> linear -> ReLU -> ...`` (a ReLU after every linear), one sample.

    Backward from ``e_target`` through each ReLU with ``rule``: ``"gradient"`` (g * 1[z > 0]), ``"guided"``
    (max(g, 0) * 1[z > 0]) or ``"deconv"`` (max(g, 0)); through each linear layer with ``W^T``.
    """
    pre_activations = []
    a = x
    for linear in linears:
        z = linear.weight.detach() @ a + linear.bias.detach()
        pre_activations.append(z)
        a = z.clamp(min=0)
    g = torch.zeros_like(a)
    g[target] = 1.0
    for linear, z in zip(reversed(linears), reversed(pre_activations), strict=True):
        if rule == "gradient":
            g = g * (z > 0)
        elif rule == "guided":
            g = g.clamp(min=0) * (z > 0)
        else:
            g = g.clamp(min=0)
        g = linear.weight.detach().T @ g
    return g


def hand_built_net() -> nn.Sequential:
    """``x (2) -> Linear(2, 3, no bias) -> ReLU -> Linear(3, 2, no bias)``, weights chosen by hand."""
    first = nn.Linear(2, 3, bias=False).double()
    second = nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [1.0, -1.0], [0.5, -0.5]]))
        second.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-1.0, 1.0, 2.0]]))
    return nn.Sequential(first, nn.ReLU(), second).eval()


def test_hand_built_two_layer_net() -> None:
    # x = (1, -1): hidden pre-activations z = (-1, 2, 1); the class-0 row of the second layer is (1, -2, 3).
    #   gradient: g_hidden = (1, -2, 3) * 1[z > 0] = (0, -2, 3) -> W1^T g = (-0.5, 0.5)
    #   guided:   max(g, 0) * 1[z > 0]             = (0, 0, 3)  -> W1^T g = (1.5, -1.5)
    #   deconv:   max(g, 0)                        = (1, 0, 3)  -> W1^T g = (2.5, 0.5)
    model = hand_built_net()
    x = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    expected = {
        "saliency": [[-0.5, 0.5]],
        "guided_backprop": [[1.5, -1.5]],
        "deconvolution": [[2.5, 0.5]],
    }
    for name, values in expected.items():
        e = lumos.explain(model, x, method=name, target=0)
        torch.testing.assert_close(e.attributions, torch.tensor(values, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "rule"), [("saliency", "gradient"), ("guided_backprop", "guided"),
                                            ("deconvolution", "deconv")])
def test_every_relu_spelling_is_overridden(name: str, rule: str) -> None:
    """F.relu, x.relu(), a reused nn.ReLU, nn.ReLU(inplace=True), torch.relu, F.relu(inplace=True) and
    x.relu_() all get the method's rule: same result as distinct nn.ReLU modules and as the naive formula."""
    model = make_relu_styles(seed=4)
    reference = model.as_sequential()
    x = rand(5, 6, 5, dtype=torch.float64) * 3
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)  # the same function
        outputs = model(x)
    targets = outputs.argmax(1)
    assert bool((outputs.max(1).values > 0).all())  # the target scores are alive (else all zeros)

    e = lumos.explain(model, x, method=name, target=targets)
    e_reference = lumos.explain(reference, x, method=name, target=targets)
    torch.testing.assert_close(e.attributions, e_reference.attributions, rtol=1e-12, atol=1e-14)
    naive = torch.stack([naive_relu_chain(list(model.linears), x[i], int(targets[i]), rule) for i in range(6)])
    torch.testing.assert_close(e.attributions, naive, rtol=1e-12, atol=1e-14)
    assert float(e.attributions.abs().sum()) > 0


def test_guided_and_deconvolution_differ_from_the_gradient() -> None:
    """The overrides are active (the three rules give three different maps on this net)."""
    model = make_relu_styles(seed=4)
    x = rand(5, 6, 5, dtype=torch.float64) * 3
    maps = {name: lumos.explain(model, x, method=name, target=None).attributions
            for name in ("saliency", "guided_backprop", "deconvolution")}
    assert not torch.allclose(maps["saliency"], maps["guided_backprop"])
    assert not torch.allclose(maps["saliency"], maps["deconvolution"])
    assert not torch.allclose(maps["guided_backprop"], maps["deconvolution"])


def test_override_is_not_left_active() -> None:
    model = make_relu_styles(seed=4)
    x = (rand(5, 6, 5, dtype=torch.float64) * 3).requires_grad_(True)
    e = lumos.GuidedBackprop(model).explain(x.detach())
    targets = torch.as_tensor(e.targets)
    model(x).gather(1, targets[:, None]).sum().backward()  # a plain backward afterwards: the plain gradient
    naive = torch.stack([naive_relu_chain(list(model.linears), x[i].detach(), int(targets[i]), "gradient")
                         for i in range(6)])
    torch.testing.assert_close(x.grad, naive, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(x.grad, e.attributions)


def test_guided_backprop_on_a_cnn_matches_the_autograd_function() -> None:
    """With maxpool and convolution: guided backprop = autograd with a hand-written guided ReLU."""

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):  # noqa: ANN001, ANN205
            ctx.save_for_backward(z)
            return z.clamp(min=0)

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            (z,) = ctx.saved_tensors
            return g.clamp(min=0) * (z > 0)

    model = make_cnn(dtype=torch.float64)
    x = rand(6, 3, 1, 8, 8, dtype=torch.float64).requires_grad_(True)
    h = model.pool(GuidedReLU.apply(model.bn(model.conv(x))))
    out = model.fc(h.flatten(1))
    out[:, 1].sum().backward()
    e = lumos.GuidedBackprop(model).explain(x.detach(), 1)
    torch.testing.assert_close(e.attributions, x.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rectifier", ["relu6", "hardtanh01", "threshold", "clamp_min"])
@pytest.mark.parametrize(("name", "rule"), [("guided_backprop", "guided"), ("deconvolution", "deconv")])
def test_other_rectifiers_get_the_rule(rectifier: str, name: str, rule: str) -> None:
    """ReLU6 (EfficientNet, MobileNet), hardtanh, threshold and clamp(min=0) are rectifiers too: the rule applies
    where the unit is in its linear range (naive formula: backward with W^T, gradient clamped at 0 and
    masked by the unit's own derivative for guided backprop, clamped only for deconvolution)."""
    act = {"relu6": lambda z: torch.nn.functional.relu6(z), "hardtanh01": lambda z: torch.nn.functional.hardtanh(z, 0, 1),
           "threshold": lambda z: torch.nn.functional.threshold(z, 0.0, 0.0), "clamp_min": lambda z: z.clamp(min=0)}
    high = {"relu6": 6.0, "hardtanh01": 1.0, "threshold": float("inf"), "clamp_min": float("inf")}[rectifier]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc3(act[rectifier](self.fc2(act[rectifier](self.fc1(x)))))

    torch.manual_seed(0)
    model = Net().double().eval()
    x = rand(7, 4, 5, dtype=torch.float64) * 2
    e = lumos.explain(model, x, method=name, target=2)
    layers = [model.fc1, model.fc2, model.fc3]
    for i in range(4):
        zs, a = [], x[i]
        for layer in layers[:-1]:
            z = layer.weight.detach() @ a + layer.bias.detach()
            zs.append(z)
            a = z.clamp(0, high)
        g = layers[-1].weight.detach()[2]
        for layer, z in zip(reversed(layers[:-1]), reversed(zs), strict=True):
            g = g.clamp(min=0) * ((z > 0) & (z < high)) if rule == "guided" else g.clamp(min=0)
            g = layer.weight.detach().T @ g
        torch.testing.assert_close(e.attributions[i], g, rtol=1e-12, atol=1e-14)


def test_a_model_without_rectifiers_gets_a_warning() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    with pytest.warns(lumos.LumosWarning, match="no rectifier"):
        e = lumos.GuidedBackprop(model).explain(rand(0, 3, 4, dtype=torch.float64), 1)
    torch.testing.assert_close(e.attributions, lumos.Saliency(model).explain(rand(0, 3, 4, dtype=torch.float64),
                                                                             1).attributions)


def test_input_x_gradient_sums_to_the_output_of_a_bias_free_relu_net() -> None:
    """A bias-free ReLU/maxpool/linear net is positively homogeneous: f(x) = x . grad f(x)."""
    model = make_cnn(dtype=torch.float64, bias=False, batchnorm=False)
    x = rand(7, 4, 1, 8, 8, dtype=torch.float64)
    e = lumos.InputXGradient(model).explain(x, [0, 1, 2, 0])
    with torch.no_grad():
        f = model(x)[torch.arange(4), torch.tensor([0, 1, 2, 0])]
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), f, rtol=1e-12, atol=1e-12)
    assert float(f.abs().min()) > 1e-3  # not trivially zero


class _ReferenceReLU(torch.autograd.Function):
    """ReLU whose backward is guided (``max(g, 0) * 1[z > 0]``) or deconvolution (``max(g, 0)``)."""

    @staticmethod
    def forward(ctx, z, rule):  # noqa: ANN001, ANN205
        ctx.save_for_backward(z)
        ctx.rule = rule
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (z,) = ctx.saved_tensors
        g = g.clamp(min=0)
        return (g * (z > 0) if ctx.rule == "guided" else g), None


class _SharedGradientNet(nn.Module):
    """``out = W3 relu(W2 (relu(h) + h))`` with ``h = W1 x``: the gradient reaching the inner ReLU is also the
    gradient of the skip branch (autograd hands the same tensor to both inputs of an addition), so a rule
    that modified its incoming gradient in place would corrupt the skip branch."""

    def __init__(self, relu=torch.relu) -> None:  # noqa: ANN001
        super().__init__()
        generator = torch.Generator().manual_seed(11)
        self.w1 = nn.Parameter(torch.randn(6, 4, generator=generator, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(6, 6, generator=generator, dtype=torch.float64))
        self.w3 = nn.Parameter(torch.randn(3, 6, generator=generator, dtype=torch.float64))
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.w1.T
        inner = self.relu(h) + h
        return self.relu(inner @ self.w2.T) @ self.w3.T


@pytest.mark.parametrize(("name", "rule"), [("guided_backprop", "guided"), ("deconvolution", "deconv")])
def test_rules_do_not_corrupt_gradients_shared_with_skip_branches(name: str, rule: str) -> None:
    model = _SharedGradientNet().eval()
    reference = _SharedGradientNet(relu=lambda z: _ReferenceReLU.apply(z, rule)).eval()
    x = rand(5, 7, 4, dtype=torch.float64).requires_grad_(True)
    for target in range(3):
        x.grad = None
        reference(x)[:, target].sum().backward()
        e = lumos.explain(model, x.detach(), method=name, target=target)
        torch.testing.assert_close(e.attributions, x.grad, rtol=1e-12, atol=1e-14)
        assert float(e.attributions.abs().sum()) > 0
