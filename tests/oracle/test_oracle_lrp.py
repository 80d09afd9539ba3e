"""Oracle: LRP against closed forms (gradient x input on a linear model), conservation laws on bias-free
networks, and naive layer-by-layer re-implementations; model state and hooks after every call."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, make_cnn, make_linear, make_relu_styles, rand
from lumos.core.hooks import count_hooks
from lumos.methods.propagation.lrp import LRP, Epsilon, Gamma, MergeBatchNorm, ZPlus


def test_lrp_epsilon_on_a_linear_model_is_gradient_times_input() -> None:
    model = make_linear()
    x = rand(0, 5, 4, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 1, 0])
    e = LRP(model, composite="epsilon", epsilon=1e-12).explain(x, targets)
    expected = x * model.weight.detach()[targets]
    torch.testing.assert_close(e.attributions, expected, rtol=1e-9, atol=1e-12)
    ixg = lumos.InputXGradient(model).explain(x, targets).attributions
    torch.testing.assert_close(e.attributions, ixg, rtol=1e-9, atol=1e-12)


class Zoo(nn.Module):
    """Bias-free: conv, ReLU, max pool, a residual add, nearest and bilinear upsampling, average pooling,
    Identity, Flatten, Dropout, a functional F.relu, a concatenation and linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.identity = nn.Identity()
        self.avg = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(2 * 4 * 4 * 4, 6, bias=False)
        self.fc2 = nn.Linear(6, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))                      # (N, 4, 8, 8)
        h = self.relu(self.conv2(h) + h)                  # residual add
        h = self.identity(self.pool(h))                   # (N, 4, 4, 4)
        u = F.interpolate(self.up(h), scale_factor=0.5, mode="bilinear")  # nearest up, bilinear down
        h = torch.cat([h, self.avg(self.up(u))], 1)      # (N, 8, 4, 4)
        return self.fc2(F.relu(self.drop(self.fc1(self.flatten(h)))))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus"])
def test_relevance_is_conserved_on_a_bias_free_network(composite: str) -> None:
    model = build(3, Zoo, torch.float64)
    x = rand(1, 5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    targets = out.argmax(1)
    e = LRP(model, composite=composite, epsilon=1e-12).explain(x, targets)
    score = out[torch.arange(5), targets]
    torch.testing.assert_close(torch.as_tensor(e.scores), score)
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), score, rtol=1e-8, atol=1e-10)
    assert np.abs(e.extras["conservation_residual"]).max() < 1e-8
    np.testing.assert_allclose(e.extras["relevance_sum"], score.numpy(), rtol=1e-8)
    assert float(e.attributions.abs().sum()) > 0
    assert e.extras["n_evaluations"] == 5


def test_lrp_zero_equals_gradient_times_input_on_a_bias_free_relu_network() -> None:
    """LRP-0 = gradient x input on bias-free ReLU networks (Montavon et al. 2019, section 10.2.1), through
    residual sums (proportional split, not the gradient's duplication), pooling and upsampling; a larger
    epsilon or z+ on the convolutions gives a different map."""
    model = build(3, Zoo, torch.float64)
    x = rand(1, 5, 1, 8, 8, dtype=torch.float64)
    ixg = lumos.InputXGradient(model).explain(x, 0).attributions
    lrp = LRP(model, composite="epsilon", epsilon=1e-13).explain(x, 0).attributions
    torch.testing.assert_close(lrp, ixg, rtol=1e-7, atol=1e-12)
    plus = LRP(model, composite="epsilon_plus").explain(x, 0).attributions
    assert not torch.allclose(plus, ixg, rtol=1e-3, atol=1e-6)


def naive_chain(linears: list[nn.Linear], rules: list[str], x: torch.Tensor, target: int) -> torch.Tensor:
    """LRP on ``linear -> ReLU -> ... -> linear`` (ReLU after every layer but the last), one sample:
    relevance e_target * f_target, then each layer's rule in matrix form from the top; ReLUs pass it."""
    activations = [x]
    for i, layer in enumerate(linears):
        z = layer.weight.detach() @ activations[-1] + layer.bias.detach()
        activations.append(z.clamp(min=0) if i < len(linears) - 1 else z)
    r = torch.zeros_like(activations[-1])
    r[target] = activations[-1][target]
    for layer, rule, a in zip(reversed(linears), reversed(rules), reversed(activations[:-1]), strict=True):
        w, b = layer.weight.detach(), layer.bias.detach()
        if rule == "gamma":
            w, b = w + 0.25 * w.clamp(min=0), b + 0.25 * b.clamp(min=0)
        c = a[None, :] * w
        if rule == "zplus":
            c, b = c.clamp(min=0), b.clamp(min=0)
        z = c.sum(1) + b
        eps = 1e-3 if rule == "epsilon_big" else 1e-6 if rule != "zplus" else 1e-12
        r = (c / (z + eps * torch.where(z >= 0, 1.0, -1.0).double())[:, None] * r[:, None]).sum(0)
    return r


def test_every_relu_spelling_gives_the_same_relevance_as_the_naive_chain() -> None:
    """F.relu, x.relu(), a reused nn.ReLU, inplace ReLUs, torch.relu, x.relu_(): same as one nn.ReLU per
    layer and as the naive matrix chain."""
    model = make_relu_styles(seed=4)
    reference = model.as_sequential()
    x = rand(5, 6, 5, dtype=torch.float64) * 3
    with torch.no_grad():
        targets = model(x).argmax(1)
    e = LRP(model, composite="epsilon").explain(x, targets)
    e_ref = LRP(reference, composite="epsilon").explain(x, targets)
    torch.testing.assert_close(e.attributions, e_ref.attributions, rtol=1e-12, atol=1e-14)
    linears = list(model.linears)
    naive = torch.stack([naive_chain(linears, ["epsilon"] * 8, x[i], int(targets[i])) for i in range(6)])
    # the last ReLU of the styles net follows the last linear layer: relevance of a positive score is unchanged
    torch.testing.assert_close(e.attributions, naive, rtol=1e-9, atol=1e-12)
    assert float(e.attributions.abs().sum()) > 0


class ViewReluNet(nn.Module):
    """An in-place ReLU on a view (left to autograd's ReluBackward0) beside the out-of-place spelling."""

    def __init__(self, inplace_on_view: bool) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 6), nn.Linear(6, 3)
        self.inplace_on_view = inplace_on_view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.inplace_on_view:
            h = h * 1.0
            h[:, :4].relu_()
        else:
            h = torch.cat([h[:, :4].relu(), h[:, 4:]], 1)
        return self.fc2(h)


def test_in_place_relu_on_a_view_equals_the_out_of_place_spelling() -> None:
    x = rand(6, 4, 5, dtype=torch.float64)
    view_net = build(7, lambda: ViewReluNet(True), torch.float64)
    plain_net = build(7, lambda: ViewReluNet(False), torch.float64)
    e_view = LRP(view_net, composite="epsilon").explain(x, target=1)
    e_plain = LRP(plain_net, composite="epsilon").explain(x, target=1)
    torch.testing.assert_close(e_view.attributions, e_plain.attributions, rtol=1e-12, atol=1e-14)
    assert float(e_view.attributions.abs().sum()) > 0


def test_in_place_relus_cost_no_recomputed_layer_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """conv -> ReLU(inplace) twice: z+ needs one forward with W+ per convolution, and nothing else (the
    convolutions' own outputs, changed in place, are not recomputed: z+ never reads them). Same relevance as
    the out-of-place network."""
    from lumos.methods.propagation.lrp.rules import LayerOp as Op

    def net(inplace: bool) -> nn.Module:
        return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(3, 4, 3),
                             nn.ReLU(inplace=inplace), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

    x = rand(20, 3, 2, 6, 6, dtype=torch.float64).abs()  # non-negative: one z+ forward per layer
    expected = LRP(build(21, lambda: net(False), torch.float64), composite="epsilon_plus").explain(x, target=2)
    calls: list[str] = []
    original = Op.forward
    monkeypatch.setattr(Op, "forward", lambda self, *args: calls.append(self.kind) or original(self, *args))
    got = LRP(build(21, lambda: net(True), torch.float64), composite="epsilon_plus").explain(x, target=2)
    assert calls == ["conv", "conv"]
    torch.testing.assert_close(got.attributions, expected.attributions, rtol=1e-12, atol=1e-14)
    assert float(got.attributions.abs().sum()) > 0


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_composite_by_type_and_by_name_picks_the_right_rules() -> None:
    model = build(2, Chain, torch.float64)
    x = rand(6, 4, 5, dtype=torch.float64).abs()
    targets = torch.tensor([0, 1, 2, 0])
    composite = {nn.Linear: Gamma(0.25), "fc3": Epsilon(1e-3), "fc1": ZPlus()}
    e = LRP(model, composite=composite).explain(x, targets)
    linears = [model.fc1, model.fc2, model.fc3]
    naive = torch.stack([naive_chain(linears, ["zplus", "gamma", "epsilon_big"], x[i], int(targets[i]))
                         for i in range(4)])
    torch.testing.assert_close(e.attributions, naive, rtol=1e-9, atol=1e-12)
    other = LRP(model, composite={nn.Linear: Gamma(0.25)}).explain(x, targets)
    assert not torch.allclose(other.attributions, e.attributions)
    assert "fc3: Epsilon(0.001)" in e.extras["composite"]


def merged_copy(model: nn.Module) -> nn.Module:
    """The CNN with its batch norm folded into the convolution by hand (and replaced by Identity)."""
    merged = copy.deepcopy(model)
    bn, conv = model.bn, merged.conv
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias.detach())
    merged.bn = nn.Identity()
    return merged


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_alpha2_beta1"])
def test_merge_batch_norm_equals_the_hand_merged_model_and_restores_it(composite: str) -> None:
    model = make_cnn(dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = rand(7, 4, 1, 8, 8, dtype=torch.float64)
    merged = merged_copy(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), model(x), rtol=1e-6, atol=1e-6)  # the same function
    e = LRP(model, composite=composite, canonizers=[MergeBatchNorm()]).explain(x, [0, 1, 2, 0])
    e_hand = LRP(merged, composite=composite, canonizers=[]).explain(x, [0, 1, 2, 0])
    torch.testing.assert_close(e.attributions, e_hand.attributions, rtol=1e-7, atol=1e-10)
    e_unmerged = LRP(model, composite=composite, canonizers=[]).explain(x, [0, 1, 2, 0])
    assert not torch.allclose(e_unmerged.attributions, e.attributions)  # the canonizer matters
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert count_hooks(model) == 0


class FailsAfterBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(self.conv(x))
        raise RuntimeError("boom after batch norm")


def test_model_is_restored_and_no_hook_is_left_after_an_error() -> None:
    model = build(0, FailsAfterBatchNorm, torch.float64).train()
    model.conv.weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(lumos.ModelCallError, match="boom after batch norm"):
        LRP(model).explain(rand(0, 2, 1, 5, 5, dtype=torch.float64), 0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert count_hooks(model) == 0
    assert all(m.training for m in model.modules())
    assert not model.conv.weight.requires_grad and model.conv.bias.requires_grad


class Unsupported(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.kind == "product":
            h = h * torch.tanh(h)
        elif self.kind == "softmax":
            h = torch.softmax(h, 1)
        elif self.kind == "layer_norm":
            h = self.norm(h)
        elif self.kind == "exp":
            h = h.exp()
        elif self.kind == "division":
            h = x / (h.abs() + 1.0)
        return self.fc2(h)


@pytest.mark.parametrize(("kind", "words"), [("product", "multiplication of two"), ("softmax", "softmax"),
                                              ("layer_norm", "NativeLayerNormBackward0"), ("exp", "exp"),
                                              ("division", "division")])
def test_an_operation_without_a_rule_raises_a_clear_error(kind: str, words: str) -> None:
    model = build(0, lambda: Unsupported(kind), torch.float64)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(lumos.UnsupportedModelError, match=words) as info:
        LRP(model).explain(rand(0, 3, 4, dtype=torch.float64), 0)
    assert "integrated_gradients" in str(info.value) and "occlusion" in str(info.value)
    assert count_hooks(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_batch_size_does_not_change_relevance() -> None:
    model = build(3, Zoo, torch.float64)
    x = rand(1, 5, 1, 8, 8, dtype=torch.float64)
    a = LRP(model, composite="epsilon_plus_flat", batch_size=2).explain(x, 1)
    b = LRP(model, composite="epsilon_plus_flat").explain(x, 1)
    torch.testing.assert_close(a.attributions, b.attributions, rtol=1e-12, atol=1e-14)


class Block(nn.Module):
    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=bias), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.Sequential(Block(4, bias), Block(4, bias))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class TinyVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 2 * 2, 8), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _randomise_batch_norm(model: nn.Module, centred: bool) -> None:
    """Non-trivial batch norm statistics; with ``centred=False`` small shifts and biases (1% of the scale)."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.mul_(0.01)
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                if not centred:
                    m.running_mean.normal_(0, 0.005, generator=generator)
                    m.bias.normal_(0, 0.005, generator=generator)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_plus_flat"])
def test_resnet_with_batch_norm_and_residual_adds(composite: str) -> None:
    x = rand(2, 3, 2, 4, 4, dtype=torch.float64)
    exact = build(1, lambda: TinyResNet(bias=False), torch.float64)
    _randomise_batch_norm(exact, centred=True)  # bias-free after merging: conservation is exact
    e = LRP(exact, composite=composite, epsilon=1e-12).explain(x, 0)
    score = torch.as_tensor(e.scores)
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), score, rtol=1e-7, atol=1e-9)
    model = build(1, TinyResNet, torch.float64)
    _randomise_batch_norm(model, centred=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    e = LRP(model, composite=composite).explain(x, 0)
    assert np.isfinite(e.attributions.numpy()).all() and float(e.attributions.abs().sum()) > 0
    assert np.abs(e.extras["conservation_residual"]).max() < 0.3  # small biases absorb some relevance
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert count_hooks(model) == 0


def test_vgg_style_network_with_batch_norm_and_dropout() -> None:
    model = build(4, TinyVGG, torch.float64)
    _randomise_batch_norm(model, centred=False)
    x = rand(3, 4, 2, 8, 8, dtype=torch.float64)
    e = LRP(model, composite="epsilon_plus_flat").explain(x, [0, 1, 2, 0])
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(e.scores), model(x)[torch.arange(4), torch.tensor([0, 1, 2, 0])])
    assert np.isfinite(e.attributions.numpy()).all() and float(e.attributions.abs().sum()) > 0
    assert np.abs(e.extras["conservation_residual"]).max() < 0.3


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fa, self.fb, self.head = nn.Linear(3, 4, bias=False), nn.Linear(2, 4, bias=False), nn.Linear(4, 2, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fa(a) + self.fb(b)))


def test_tuple_inputs_share_the_relevance_of_the_sum() -> None:
    model = build(0, TwoInputs, torch.float64)
    a, b = rand(1, 4, 3, dtype=torch.float64), rand(2, 4, 2, dtype=torch.float64)
    e = LRP(model, composite="epsilon", epsilon=1e-12).explain((a, b), 1)
    ra, rb = e.attributions
    total = ra.sum(1) + rb.sum(1)
    torch.testing.assert_close(total, torch.as_tensor(e.scores), rtol=1e-8, atol=1e-10)
    # naive: proportional split of the hidden relevance between the two terms of the sum
    with torch.no_grad():
        za, zb = model.fa(a), model.fb(b)
        h = torch.relu(za + zb)
        c = h * model.head.weight[1]
        r_hidden = c  # relevance of each hidden unit (epsilon rule of the head, bias-free)
        share = r_hidden / (za + zb)
        expected_a = (a[:, None, :] * model.fa.weight[None] * (share * za / za)[:, :, None]).sum(1)
    torch.testing.assert_close(ra, expected_a, rtol=1e-8, atol=1e-10)


def test_relevance_at_a_layer_sums_to_the_score() -> None:
    model = build(3, Zoo, torch.float64)
    x = rand(1, 3, 1, 8, 8, dtype=torch.float64)
    e = LRP(model, composite="epsilon", epsilon=1e-12, layer="pool").explain(x, 2)
    assert e.attributions.shape == (3, 4, 4, 4) and e.layer == "pool"
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), torch.as_tensor(e.scores), rtol=1e-8, atol=1e-10)


def test_region_target_seeds_each_pixel_with_its_own_score() -> None:
    class Seg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.Conv2d(3, 2, 3, padding=1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c2(torch.relu(self.c1(x)))

    model = build(0, Seg, torch.float64)
    x = rand(0, 2, 1, 5, 5, dtype=torch.float64)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1:3, 2:5] = True
    e = LRP(model, composite="epsilon", epsilon=1e-12).explain(x, lumos.targets.Region(class_index=1, mask=mask))
    with torch.no_grad():
        region_score = (model(x)[:, 1] * mask).sum((1, 2))
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), region_score, rtol=1e-8, atol=1e-10)


class Activations(nn.Module):
    """Bias-free linear layers with tanh, GELU, SiLU, sigmoid and leaky ReLU between them."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6, bias=False) for _ in range(5))
        self.head = nn.Linear(6, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.layers[0](x))
        h = F.gelu(self.layers[1](h))
        h = F.silu(self.layers[2](h))
        h = self.layers[3](h).sigmoid()
        h = F.leaky_relu(self.layers[4](h), 0.1)
        return self.head(h)


def test_elementwise_activations_pass_relevance_through_unchanged() -> None:
    model = build(5, Activations, torch.float64)
    x = rand(3, 5, 6, dtype=torch.float64)
    e = LRP(model, composite="epsilon", epsilon=1e-12).explain(x, 1)
    torch.testing.assert_close(e.attributions.sum(1), torch.as_tensor(e.scores), rtol=1e-8, atol=1e-10)
    # naive: relevance passes each activation unchanged; each bias-free linear layer is LRP-0
    with torch.no_grad():
        acts, h = [], x
        fns = [torch.tanh, F.gelu, F.silu, torch.sigmoid, lambda t: F.leaky_relu(t, 0.1)]
        for layer, fn in zip(model.layers, fns, strict=True):
            acts.append(h)
            h = fn(layer(h))
        r = h * model.head.weight[1]  # relevance of the head's inputs
        for layer, a in zip(reversed(model.layers), reversed(acts), strict=True):
            z = layer(a)
            r = a * ((r / z) @ layer.weight)
    torch.testing.assert_close(e.attributions, r, rtol=1e-8, atol=1e-10)
