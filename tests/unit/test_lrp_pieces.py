"""LRP pieces: every rule against a naive matrix re-implementation (a linear layer, and a convolution in
explicit unfold / matrix form), composites, canonizers and the graph allow-list."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, rand
from lumos.methods.propagation.lrp import (
    LRP,
    AlphaBeta,
    Canonizer,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    LayerOp,
    MergeBatchNorm,
    Pass,
    WSquare,
    ZBox,
    ZPlus,
    named_composite,
)
from lumos.methods.propagation.lrp.graph import CONSERVING_NODES, PASS_NODES
from lumos.methods.propagation.lrp.rules import _NONNEGATIVE_NODES, nonnegative

LOW, HIGH = -2.5, 3.0


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def naive_matrix_rule(rule: str, weight: torch.Tensor, bias: torch.Tensor, a: torch.Tensor, r: torch.Tensor
                      ) -> torch.Tensor:
    """Input relevance of ``z = W a + b`` for ONE sample (``a`` (in,), ``r`` (out,)): contributions
    ``C[k, j]`` and denominators ``sum_j C[k, j] (+ bias part)``, written out from the papers."""
    contributions = a[None, :] * weight  # C[k, j] = a_j w_kj
    if rule == "epsilon":
        z = contributions.sum(1) + bias
        return (contributions / stab(z, 1e-6)[:, None] * r[:, None]).sum(0)
    if rule == "gamma":
        w = weight + 0.25 * weight.clamp(min=0)
        c = a[None, :] * w
        z = c.sum(1) + bias + 0.25 * bias.clamp(min=0)
        return (c / stab(z, 1e-6)[:, None] * r[:, None]).sum(0)
    if rule in ("zplus", "alpha2beta1"):
        alpha, beta = (1.0, 0.0) if rule == "zplus" else (2.0, 1.0)
        pos, neg = contributions.clamp(min=0), contributions.clamp(max=0)
        zp = pos.sum(1) + bias.clamp(min=0)
        zn = neg.sum(1) + bias.clamp(max=0)
        out = alpha * (pos / stab(zp, 1e-12)[:, None] * r[:, None]).sum(0)
        return out - beta * (neg / stab(zn, 1e-12)[:, None] * r[:, None]).sum(0)
    if rule == "zbox":
        c = contributions - LOW * weight.clamp(min=0) - HIGH * weight.clamp(max=0)
        return (c / stab(c.sum(1), 1e-6)[:, None] * r[:, None]).sum(0)
    if rule == "flat":
        c = torch.ones_like(weight)
        return (c / c.sum(1)[:, None] * r[:, None]).sum(0)
    if rule == "wsquare":
        c = weight ** 2
        return (c / c.sum(1)[:, None] * r[:, None]).sum(0)
    raise AssertionError(rule)


RULES = {
    "epsilon": lambda: Epsilon(1e-6),
    "gamma": lambda: Gamma(0.25),
    "zplus": ZPlus,
    "alpha2beta1": lambda: AlphaBeta(2, 1),
    "zbox": lambda: ZBox(LOW, HIGH),
    "flat": Flat,
    "wsquare": WSquare,
}


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("signed_inputs", [False, True])
def test_rule_on_a_linear_layer_matches_the_matrix_form(name: str, signed_inputs: bool) -> None:
    weight, bias = rand(1, 5, 7, dtype=torch.float64), rand(2, 5, dtype=torch.float64) * 0.3
    a = rand(3, 4, 7, dtype=torch.float64)
    a = a if signed_inputs else a.abs()
    r = rand(4, 4, 5, dtype=torch.float64)
    op = LayerOp("linear", weight, bias)
    got = RULES[name]().relevance(op, a, F.linear(a, weight, bias), r)
    expected = torch.stack([naive_matrix_rule(name, weight, bias, a[i], r[i]) for i in range(4)])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert float(got.abs().sum()) > 0


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_on_a_convolution_matches_the_unfolded_matrix_form(name: str) -> None:
    """conv2d(stride 2, padding 1) as a matrix per output position: patches = unfold(a), relevance of each
    patch entry from the matrix rule, folded back (overlapping patches add up)."""
    weight, bias = rand(5, 3, 2, 3, 3, dtype=torch.float64), rand(6, 3, dtype=torch.float64) * 0.3
    a = rand(7, 2, 2, 6, 6, dtype=torch.float64)
    op = LayerOp("conv", weight, bias, stride=2, padding=1, dilation=1, groups=1, n_dims=2)
    z = F.conv2d(a, weight, bias, stride=2, padding=1)
    r = rand(8, *z.shape, dtype=torch.float64)
    got = RULES[name]().relevance(op, a, z, r)

    expected = []
    for i in range(a.shape[0]):
        patches = F.unfold(a[i:i + 1], 3, padding=1, stride=2)[0]  # (C*3*3, L)
        r_flat = r[i].reshape(3, -1)  # (out, L)
        cols = []
        for pos in range(patches.shape[1]):
            patch = patches[:, pos]
            w = weight.reshape(3, -1)
            if name == "flat":  # inputs in the padding are not connected: only in-bounds entries count
                mask = F.unfold(torch.ones_like(a[i:i + 1]), 3, padding=1, stride=2)[0][:, pos]
                c = mask[None, :].expand_as(w)
                cols.append((c / c.sum(1)[:, None] * r_flat[:, pos][:, None]).sum(0))
            elif name == "wsquare":
                mask = F.unfold(torch.ones_like(a[i:i + 1]), 3, padding=1, stride=2)[0][:, pos]
                c = w ** 2 * mask[None, :]
                cols.append((c / c.sum(1)[:, None] * r_flat[:, pos][:, None]).sum(0))
            elif name == "zbox":
                mask = F.unfold(torch.ones_like(a[i:i + 1]), 3, padding=1, stride=2)[0][:, pos]
                c = patch[None, :] * w - (LOW * w.clamp(min=0) + HIGH * w.clamp(max=0)) * mask[None, :]
                cols.append((c / stab(c.sum(1), 1e-6)[:, None] * r_flat[:, pos][:, None]).sum(0))
            else:
                cols.append(naive_matrix_rule(name, w, bias, patch, r_flat[:, pos]))
        patch_relevance = torch.stack(cols, 1)[None]
        expected.append(F.fold(patch_relevance, (6, 6), 3, padding=1, stride=2)[0])
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-9, atol=1e-12)


def naive_flat(forward, a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Flat from its definition: ``W = 1``, ``R_j = sum_k 1[j feeds k] R_k / count_k`` with ``count = 1 @ 1``,
    the transpose taken by autograd of the all-ones layer ``forward``."""
    count = forward(torch.ones_like(a[:1])).clamp_min(1e-12)  # outputs no input reaches keep nothing
    leaf = torch.zeros_like(a).requires_grad_(True)
    (image,) = torch.autograd.grad(forward(leaf), leaf, r / count)
    return image


FLAT_CONVS = {  # (n_dims, in, out, kernel, stride, padding, dilation, groups, spatial)
    "conv2d_groups": (2, 6, 4, (3, 2), (2, 1), (1, 0), 1, 2, (7, 6)),
    "conv2d_depthwise_dilated": (2, 4, 8, 3, 1, 2, 2, 4, (6, 5)),
    "conv1d": (1, 3, 5, 4, 3, 2, 1, 1, (11,)),
    "conv3d": (3, 2, 3, 2, 1, 1, 1, 1, (3, 4, 3)),
    "padding_beyond_kernel": (2, 2, 3, 1, 2, 2, 1, 1, (4, 4)),
}


@pytest.mark.parametrize("case", sorted(FLAT_CONVS))
def test_flat_on_any_convolution_geometry_matches_its_definition(case: str) -> None:
    d, c_in, c_out, kernel, stride, padding, dilation, groups, spatial = FLAT_CONVS[case]
    kernel = (kernel,) * d if isinstance(kernel, int) else kernel
    weight = rand(11, c_out, c_in // groups, *kernel, dtype=torch.float64)
    a = rand(12, 3, c_in, *spatial, dtype=torch.float64)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
    op = LayerOp("conv", weight, None, stride, padding, dilation, groups, d)
    z = conv(a, weight, None, stride, padding, dilation, groups)
    r = rand(13, *z.shape, dtype=torch.float64)
    got = Flat().relevance(op, a, z, r)
    ones = torch.ones_like(weight)
    expected = naive_flat(lambda t: conv(t, ones, None, stride, padding, dilation, groups), a, r)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert got.shape == a.shape and float(got.abs().sum()) > 0


def test_flat_on_linear_and_affine_layers_spreads_evenly() -> None:
    weight = rand(14, 5, 7, dtype=torch.float64)
    a, r = rand(15, 4, 7, dtype=torch.float64), rand(16, 4, 5, dtype=torch.float64)
    got = Flat().relevance(LayerOp("linear", weight), a, F.linear(a, weight), r)
    torch.testing.assert_close(got, naive_flat(lambda t: F.linear(t, torch.ones_like(weight)), a, r))
    torch.testing.assert_close(got.sum(1), r.sum(1))
    a, r = rand(17, 2, 3, 4, dtype=torch.float64), rand(18, 2, 3, 4, dtype=torch.float64)
    scale = rand(19, 3, dtype=torch.float64)
    got = Flat().relevance(LayerOp("affine", scale), a, a * scale[:, None], r)
    torch.testing.assert_close(got, r)


def test_epsilon_conserves_without_bias_and_absorbs_with_it() -> None:
    weight = rand(1, 4, 6, dtype=torch.float64)
    a = rand(2, 3, 6, dtype=torch.float64)
    z = F.linear(a, weight)
    got = Epsilon(1e-9).relevance(LayerOp("linear", weight), a, z, z)
    torch.testing.assert_close(got.sum(1), z.sum(1), rtol=1e-7, atol=1e-9)


def test_rules_validate_their_parameters() -> None:
    with pytest.raises(lumos.ValidationError, match="alpha - beta"):
        AlphaBeta(2, 2)
    with pytest.raises(lumos.ValidationError, match="epsilon"):
        Epsilon(-1.0)
    with pytest.raises(lumos.ValidationError, match="gamma"):
        Gamma(float("nan"))
    with pytest.raises(lumos.ValidationError, match="low"):
        ZBox(2.0, 1.0)
    with pytest.raises(lumos.ValidationError, match="Pass"):
        Composite({nn.Linear: Pass()})


def test_pass_returns_relevance_unchanged() -> None:
    r = rand(0, 3, 4)
    assert Pass().relevance(LayerOp("affine", torch.ones(4)), r, r, r) is r


class TwoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                                      nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, 4), nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_composites_pick_rules_by_name_first_layer_type_and_default() -> None:
    model = build(0, TwoConvNet, torch.float64)
    composite = Composite({nn.Conv2d: Gamma(0.5), "classifier.3": Flat()}, default=Epsilon(0.01), first=WSquare())
    conv0, conv2 = model.features[0], model.features[2]
    lin1, lin3 = model.classifier[1], model.classifier[3]
    assert isinstance(composite.rule_for("classifier.3", lin3, "linear", 0, False), Flat)
    assert isinstance(composite.rule_for("features.0", conv0, "conv", 2, True), WSquare)
    assert isinstance(composite.rule_for("features.2", conv2, "conv", 2, False), Gamma)
    assert isinstance(composite.rule_for("classifier.1", lin1, "linear", 0, False), Epsilon)
    assert isinstance(composite.rule_for(None, None, "conv", 2, False), Gamma)  # functional F.conv2d
    assert "Gamma(0.5)" in composite.describe() and "classifier.3" in composite.describe()
    plus = named_composite("epsilon_plus_flat", epsilon=1e-6)
    assert isinstance(plus.rule_for("features.2", conv2, "conv", 2, False), ZPlus)
    assert isinstance(plus.rule_for("features.0", conv0, "conv", 2, True), Flat)
    assert isinstance(plus.rule_for("classifier.1", lin1, "linear", 0, False), Epsilon)
    box = named_composite("epsilon_gamma_box", epsilon=1e-6, low=0.0, high=1.0)
    assert isinstance(box.first, ZBox) and isinstance(box.rule_for("x", conv2, "conv", 2, False), Gamma)
    ab = named_composite("epsilon_alpha2_beta1", epsilon=1e-6)
    assert isinstance(ab.rule_for("x", conv2, "conv", 2, False), AlphaBeta)


def test_composite_errors_name_the_problem() -> None:
    model = build(0, TwoConvNet, torch.float64)
    with pytest.raises(lumos.ValidationError, match="low= and high="):
        LRP(model, composite="epsilon_gamma_box")
    with pytest.raises(lumos.ValidationError, match="epsilon_plus"):
        LRP(model, composite="epsilon_pluss")
    with pytest.raises(lumos.ValidationError, match="classifier.9"):
        LRP(model, composite={"classifier.9": Epsilon()})
    with pytest.raises(lumos.ValidationError, match="rule"):
        LRP(model, composite={nn.Linear: "epsilon"})
    with pytest.raises(lumos.ValidationError, match="canonizers"):
        LRP(model, canonizers=["merge"])
    with pytest.raises(lumos.ValidationError, match="epsilon"):
        LRP(model, epsilon=-1.0)


def test_nonnegative_reads_relu_outputs_off_the_graph_and_checks_others() -> None:
    x = rand(0, 2, 1, 4, 4).requires_grad_(True)
    assert nonnegative(F.max_pool2d(torch.relu(x), 2).flatten(1))
    assert not nonnegative(x * 1.0)
    assert nonnegative(x.detach().abs() * 1.0)
    # LRP's own pass-through ReLU is read off the graph too (no value check: a value check would be a .min())
    from lumos.methods.propagation.lrp.functions import ReluPass
    relu_out = ReluPass.apply(x * 1.0, False)
    assert type(relu_out.grad_fn).__name__ in _NONNEGATIVE_NODES and nonnegative(relu_out.flatten(1))


def test_pass_through_relu_returns_relevance_unchanged_in_and_out_of_place() -> None:
    from lumos.methods.propagation.lrp.functions import ReluPass
    x = rand(1, 3, 5).requires_grad_(True)
    r = rand(2, 3, 5)
    for inplace in (False, True):
        h = x * 2.0
        out = ReluPass.apply(h, inplace)
        assert (out is h) == inplace and torch.equal(out, torch.relu(x * 2.0))
        (grad,) = torch.autograd.grad(out, x, r)
        torch.testing.assert_close(grad, 2.0 * r)  # R passes the ReLU unchanged, then the x2 scaling


def test_allow_lists_do_not_contain_unsupported_operations() -> None:
    for name in ("MulBackward0", "ExpBackward0", "SoftmaxBackward0", "NativeLayerNormBackward0", "BmmBackward0",
                 "MmBackward0", "AddmmBackward0", "NativeBatchNormBackward0", "ConvolutionBackward0"):
        assert name not in CONSERVING_NODES and name not in PASS_NODES


class _Scale(Canonizer):
    """A model-rewriting canonizer (doubles every weight, swaps in a new child) that may fail half way."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def rewrite(self, model: nn.Module) -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(2.0)
        model.classifier[2] = nn.Tanh()
        if self.fail:
            raise RuntimeError("canonizer failed")


@pytest.mark.parametrize("fail", [False, True])
def test_canonizer_restores_the_model_bit_for_bit(fail: bool) -> None:
    model = build(0, TwoConvNet, torch.float64)
    relu = model.classifier[2]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: p for k, p in model.named_parameters()}
    x = rand(1, 2, 1, 5, 5, dtype=torch.float64)
    explainer = LRP(model, canonizers=[MergeBatchNorm(), _Scale(fail)])
    if fail:
        with pytest.raises(RuntimeError, match="canonizer failed"):
            explainer.explain(x, 0)
    else:
        e = explainer.explain(x, 0)
        with torch.no_grad():  # the explanation saw the rewritten model (weights x2, a tanh)
            twice = build(0, TwoConvNet, torch.float64)
            for p in twice.parameters():
                p.mul_(2.0)
            twice.classifier[2] = nn.Tanh()
            torch.testing.assert_close(torch.as_tensor(e.scores), twice(x)[:, 0])
    assert model.classifier[2] is relu
    for k, p in model.named_parameters():
        assert p is params[k]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert lumos.core.hooks.count_hooks(model) == 0
