"""Oracle: the CAM family against closed forms (a hand-built network, GAP + linear heads) and naive
re-implementations written here with explicit loops over channels (weights, ScoreCAM, AblationCAM, EigenCAM),
on image, token (ViT-like) and segmentation models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos
from conftest import build, make_cnn, make_segmentation, rand
from lumos.methods.cam.eigen_cam import EigenCAM
from lumos.methods.cam.gradient_cams import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from lumos.methods.cam.guided_grad_cam import GuidedGradCAM
from lumos.methods.cam.linear_head_cam import CAM
from lumos.methods.cam.perturbation_cams import AblationCAM, ScoreCAM
from lumos.methods.gradient.guided import GuidedBackprop

DOUBLE = torch.float64


# ---------------------------------------------------------------------------------------------- models
class HandBuilt(nn.Module):
    """x (N, 1, 2, 2) -> 1x1 conv to 2 channels with weights (2, 1), no bias -> flatten -> linear (8 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([2.0, 1.0]).reshape(2, 1, 1, 1))
            # class 0: channel 0 weights [[1, 0], [2, 1]] (mean 1), channel 1 [[0, 1], [-1, 2]] (mean 0.5)
            self.fc.weight.copy_(torch.tensor([[1.0, 0, 2, 1, 0, 1, -1, 2], [0.0] * 8]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class GapNet(nn.Module):
    """(N, 2, 8, 8) -> conv -> ReLU -> conv -> ReLU -> global average pool -> linear (5 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, stride=2)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean((2, 3)))


class ToyViT(nn.Module):
    """(N, 2, 8, 8) -> 2x2 patches (4x4 grid, 6 dims) -> [class token; 16 patch tokens] -> token MLP -> mean."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(2, 6, 2, stride=2)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.block = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(torch.tanh(self.block(tokens)).mean(1))


def gap_net() -> GapNet:
    return build(3, GapNet, DOUBLE)


def layer_and_grads(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: list[int] | None,
                    score=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive: the layer's output A and dS/dA of sum_n S_n via a hook keeping A in the graph."""
    store = []
    handle = layer.register_forward_hook(lambda m, a, o: store.append(o))
    try:
        out = model(x)
    finally:
        handle.remove()
    s = score(out) if score is not None else out[torch.arange(x.shape[0]), torch.tensor(target)]
    (grad,) = torch.autograd.grad(s.sum(), store[0])
    return store[0].detach(), grad


# ---------------------------------------------------------------------------------------------- closed forms
def test_grad_cam_on_a_hand_built_network() -> None:
    # A_k = a_k x with a = (2, 1); S_0 = sum V_kij A_kij; dS/dA_k = V_k; w = (mean V_0, mean V_1) = (1, 0.5)
    # M = ReLU(2 x + 0.5 x) = ReLU(2.5 x) with x = [[1, 2], [3, -1]] -> [[2.5, 5], [7.5, 0]]
    model = HandBuilt().double().eval()
    x = torch.tensor([[[[1.0, 2.0], [3.0, -1.0]]]], dtype=DOUBLE)
    e = GradCAM(model, layer="conv", upsample=False).explain(x, target=0)
    torch.testing.assert_close(e.attributions, torch.tensor([[[[2.5, 5.0], [7.5, 0.0]]]], dtype=DOUBLE))
    np.testing.assert_allclose(e.extras["channel_weights"], [[1.0, 0.5]])
    assert e.layer == "conv" and e.extras["layer"] == "conv"
    e_signed = GradCAM(model, layer="conv", upsample=False, relu=False).explain(x, target=0)
    torch.testing.assert_close(e_signed.attributions, 2.5 * x)
    # HiResCAM keeps positions: sum_k V_k * A_k = [[2, 0], [12, -2]] + [[0, 2], [-3, -2]] -> ReLU [[2, 2], [9, 0]]
    e_hires = HiResCAM(model, layer="conv", upsample=False).explain(x, target=0)
    torch.testing.assert_close(e_hires.attributions, torch.tensor([[[[2.0, 2.0], [9.0, 0.0]]]], dtype=DOUBLE))
    # layer found automatically: conv is the last module with a spatial output (fc's is the model output)
    assert GradCAM(model).explain(x, target=0).extras["layer"] == "conv"


def test_upsampling_and_channel_broadcast() -> None:
    model = gap_net()
    x = rand(1, 3, 2, 8, 8, dtype=DOUBLE)
    raw = GradCAM(model, upsample=False).explain(x, target=[0, 1, 2])
    full = GradCAM(model).explain(x, target=[0, 1, 2])
    assert raw.attributions.shape == (3, 1, 4, 4) and raw.layer == "act2"
    assert full.attributions.shape == x.shape and full.layer is None and full.extras["layer"] == "act2"
    expected = F.interpolate(raw.attributions, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full.attributions[:, :1], expected)
    torch.testing.assert_close(full.attributions[:, 1:], expected)  # same map on every input channel
    signed = GradCAM(model, upsample=False, relu=False).explain(x, target=[0, 1, 2]).attributions
    expected = F.interpolate(signed, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    normalized = GradCAM(model, normalize=True, relu=False).explain(x, target=[0, 1, 2]).attributions
    low, high = expected.amin((1, 2), keepdim=True), expected.amax((1, 2), keepdim=True)
    assert bool((high > low).all())
    torch.testing.assert_close(normalized[:, 0], (expected - low) / (high - low))
    with torch.no_grad():
        model.conv2.weight.zero_()  # activations constant over space: a constant map
    constant = GradCAM(model, normalize=True, relu=False).explain(x, target=0)
    assert float(constant.attributions.abs().max()) == 0.0  # a constant map normalises to zeros, not NaN


def test_cam_equals_grad_cam_times_positions_for_gap_linear_heads() -> None:
    # S_c = sum_k W_ck mean_ij A_kij + b_c: dS/dA_kij = W_ck / (h w), so Grad-CAM = CAM / (h w), and
    # HiResCAM (G_k constant over positions) = Grad-CAM exactly; CAM's weights are the head's rows.
    model = gap_net()
    x = rand(2, 3, 2, 8, 8, dtype=DOUBLE)
    target = [2, 0, 1]
    for relu in (True, False):
        cam = CAM(model, relu=relu, upsample=False).explain(x, target=target)
        grad = GradCAM(model, relu=relu, upsample=False).explain(x, target=target)
        hires = HiResCAM(model, relu=relu, upsample=False).explain(x, target=target)
        torch.testing.assert_close(cam.attributions, 16 * grad.attributions)  # h * w = 4 * 4
        torch.testing.assert_close(hires.attributions, grad.attributions)
    np.testing.assert_allclose(cam.extras["channel_weights"], model.fc.weight.detach().numpy()[target])
    assert cam.extras["head"] == "fc" and cam.extras["n_evaluations"] == 3
    # CAM's definition: the spatial mean of the (signed) map plus the bias is the class score
    signed = CAM(model, relu=False, upsample=False).explain(x, target=target)
    np.testing.assert_allclose(signed.attributions.mean((1, 2, 3)).numpy() + model.fc.bias.detach().numpy()[target],
                               signed.scores, rtol=1e-10)


def test_hires_cam_differs_from_grad_cam_when_the_gradient_varies_over_space() -> None:
    model = make_cnn(dtype=DOUBLE)  # flatten + linear head: the gradient differs per position
    x = rand(4, 3, 1, 8, 8, dtype=DOUBLE)
    grad = GradCAM(model, relu=False, upsample=False).explain(x, target=0).attributions
    hires = HiResCAM(model, relu=False, upsample=False).explain(x, target=0).attributions
    assert float((grad - hires).abs().max()) > 1e-3
    # HiResCAM's total is sum_kij G_kij A_kij (checked against autograd)
    a, g = layer_and_grads(model, model.pool, x, [0, 0, 0])
    torch.testing.assert_close(hires.sum((1, 2, 3)), (a * g).sum((1, 2, 3)))


def test_cam_refuses_other_heads() -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="grad_cam"):
        CAM(make_cnn()).explain(rand(0, 2, 1, 8, 8), target=0)
    with pytest.raises(lumos.ValidationError, match="class"):
        CAM(gap_net()).explain(rand(0, 2, 2, 8, 8, dtype=DOUBLE), target=lambda out: out[:, 0])


# ---------------------------------------------------------------------------------------------- naive weights
def naive_weights(name: str, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Channel weights with explicit loops over samples, channels and positions (one sample's formulas)."""
    n, k, h, w = a.shape
    out = torch.zeros(n, k, dtype=a.dtype)
    for s in range(n):
        for c in range(k):
            total_a = float(a[s, c].sum())
            value = 0.0
            for i in range(h):
                for j in range(w):
                    gij, aij = float(g[s, c, i, j]), float(a[s, c, i, j])
                    if name == "grad_cam":
                        value += gij / (h * w)
                    elif name == "xgrad_cam":
                        value += (aij / total_a) * gij if total_a != 0 else 0.0
                    else:  # grad_cam_plus_plus
                        denominator = 2 * gij**2 + total_a * gij**3
                        alpha = gij**2 / denominator if denominator != 0 else 0.0
                        value += alpha * max(gij, 0.0)
            out[s, c] = value
    return out


@pytest.mark.parametrize("cls", [GradCAM, XGradCAM, GradCAMPlusPlus])
def test_channel_weights_against_a_naive_loop(cls) -> None:
    model = make_cnn(dtype=DOUBLE)
    x = rand(5, 3, 1, 8, 8, dtype=DOUBLE)
    target = [0, 2, 1]
    e = cls(model, layer="bn", upsample=False, relu=False).explain(x, target=target)
    a, g = layer_and_grads(model, model.bn, x, target)
    weights = naive_weights(cls.name, a, g)
    np.testing.assert_allclose(e.extras["channel_weights"], weights.numpy(), rtol=1e-10, atol=1e-12)
    expected = sum(weights[:, c, None, None] * a[:, c] for c in range(a.shape[1]))
    torch.testing.assert_close(e.attributions[:, 0], expected)


@pytest.mark.parametrize("cls", [HiResCAM, LayerCAM])
def test_elementwise_maps_against_a_naive_loop(cls) -> None:
    model = make_cnn(dtype=DOUBLE)
    x = rand(6, 3, 1, 8, 8, dtype=DOUBLE)
    e = cls(model, layer="conv", upsample=False).explain(x, target=[1, 0, 2])
    a, g = layer_and_grads(model, model.conv, x, [1, 0, 2])
    expected = torch.zeros(3, 8, 8, dtype=DOUBLE)
    for c in range(a.shape[1]):
        expected += (g[:, c].clamp(min=0) if cls is LayerCAM else g[:, c]) * a[:, c]
    torch.testing.assert_close(e.attributions[:, 0], expected.clamp(min=0))
    assert "channel_weights" not in e.extras


def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_grad_cam() -> None:
    model = gap_net()
    x = rand(7, 2, 2, 8, 8, dtype=DOUBLE)
    e = GuidedGradCAM(model).explain(x, target=[1, 2])
    guided = GuidedBackprop(model).explain(x, target=[1, 2]).attributions
    cam = GradCAM(model).explain(x, target=[1, 2]).attributions
    torch.testing.assert_close(e.attributions, guided * cam)
    assert e.extras["n_evaluations"] == 4
    with pytest.raises(lumos.ValidationError, match="upsample"):
        GuidedGradCAM(model, upsample=False)


# ---------------------------------------------------------------------------------------------- perturbations
def naive_score_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    a, _ = layer_and_grads(model, layer, x, target)
    maps = []
    for s in range(x.shape[0]):
        scores = []
        for c in range(a.shape[1]):
            up = F.interpolate(a[s:s + 1, c:c + 1], size=x.shape[2:], mode="bilinear", align_corners=False)
            low, high = up.min(), up.max()
            mask = (up - low) / (high - low) if high > low else torch.zeros_like(up)
            with torch.no_grad():
                scores.append(model(x[s:s + 1] * mask)[0, target[s]])
        weights = torch.softmax(torch.stack(scores), 0)
        maps.append(sum(weights[c] * a[s, c] for c in range(a.shape[1])))
    return torch.stack(maps).clamp(min=0)


def naive_ablation_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    a, _ = layer_and_grads(model, layer, x, target)
    maps = []
    for s in range(x.shape[0]):
        with torch.no_grad():
            base = model(x[s:s + 1])[0, target[s]]
        weights = []
        for c in range(a.shape[1]):
            def zero_channel(m, args, out, c=c):
                out = out.clone()
                out[:, c] = 0
                return out
            handle = layer.register_forward_hook(zero_channel)
            with torch.no_grad():
                ablated = model(x[s:s + 1])[0, target[s]]
            handle.remove()
            weights.append((base - ablated) / base)
        maps.append(sum(weights[c] * a[s, c] for c in range(a.shape[1])))
    return torch.stack(maps).clamp(min=0)


@pytest.mark.parametrize(("cls", "naive"), [(ScoreCAM, naive_score_cam), (AblationCAM, naive_ablation_cam)])
def test_perturbation_cams_against_a_naive_per_channel_loop(cls, naive) -> None:
    model = gap_net()
    x = rand(8, 3, 2, 8, 8, dtype=DOUBLE)
    target = [0, 1, 2]
    expected = naive(model, model.act2, x, target)
    results = [cls(model, batch_size=b, upsample=False).explain(x, target=target) for b in (1, 4, None)]
    for e in results:
        torch.testing.assert_close(e.attributions[:, 0], expected)
        assert e.extras["layer"] == "act2" and e.extras["n_evaluations"] == 3 + 3 * 5
    np.testing.assert_allclose(results[0].extras["channel_weights"], results[2].extras["channel_weights"], rtol=1e-12)
    if cls is ScoreCAM:
        np.testing.assert_allclose(results[0].extras["channel_weights"].sum(1), 1.0)


def test_score_cam_scores_are_masked_inputs_of_every_channel() -> None:
    model = gap_net()
    x = rand(9, 2, 2, 8, 8, dtype=DOUBLE)
    e = ScoreCAM(model).explain(x, target=1)
    np.testing.assert_allclose(e.extras["channel_weights"],
                               torch.softmax(torch.as_tensor(e.extras["channel_scores"]), 1).numpy(), rtol=1e-12)


def test_eigen_cam_against_numpy_svd() -> None:
    model = gap_net()
    x = rand(10, 3, 2, 8, 8, dtype=DOUBLE)
    e = EigenCAM(model, upsample=False, relu=False).explain(x)
    a, _ = layer_and_grads(model, model.act2, x, [0, 0, 0])
    for s in range(3):
        m = a[s].numpy().reshape(a.shape[1], -1).T  # positions x channels
        centred = m - m.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        total = m.sum(1)
        if np.dot(projection - projection.mean(), total - total.mean()) < 0:
            projection = -projection
        np.testing.assert_allclose(e.attributions[s, 0].numpy().ravel(), projection, rtol=1e-8, atol=1e-10)
    relu = EigenCAM(model, upsample=False).explain(x, target=2)
    torch.testing.assert_close(relu.attributions, e.attributions.clamp(min=0))  # class-independent
    np.testing.assert_array_equal(relu.targets, [2, 2, 2])


# ---------------------------------------------------------------------------------------------- tokens, regions
def test_token_layer_is_reshaped_to_the_patch_grid() -> None:
    model = build(11, ToyViT, DOUBLE)
    x = rand(12, 2, 2, 8, 8, dtype=DOUBLE)
    e = GradCAM(model, layer="block", upsample=False, relu=False).explain(x, target=[0, 2])
    assert e.attributions.shape == (2, 1, 4, 4)
    a, g = layer_and_grads(model, model.block, x, [0, 2])  # (N, 17, 6): class token + 16 patches
    grid_a = a[:, 1:].transpose(1, 2).reshape(2, 6, 4, 4)
    grid_g = g[:, 1:].transpose(1, 2).reshape(2, 6, 4, 4)
    expected = (grid_g.mean((2, 3))[:, :, None, None] * grid_a).sum(1)
    torch.testing.assert_close(e.attributions[:, 0], expected)
    # the same with the layer found (tokens=True) and with an explicit reshape=
    found = GradCAM(model, tokens=True, upsample=False, relu=False).explain(x, target=[0, 2])
    assert found.extras["layer"] == "block.1"  # the innermost module returning the block's output (its ReLU)
    torch.testing.assert_close(found.attributions, e.attributions)

    def to_grid(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].transpose(1, 2).reshape(t.shape[0], t.shape[2], 4, 4)

    custom = GradCAM(model, layer="block", reshape=to_grid, upsample=False, relu=False).explain(x, target=[0, 2])
    torch.testing.assert_close(custom.attributions, e.attributions)
    # token layers work through every variant, including the ablation of patch-token channels
    ablation = AblationCAM(model, layer="block", upsample=False, relu=False).explain(x, target=[0, 2])
    base = ablation.scores
    for c in (0, 3):
        def zero(m, args, out, c=c):
            out = out.clone()
            out[:, 1:, c] = 0
            return out
        handle = model.block.register_forward_hook(zero)
        with torch.no_grad():
            ablated = model(x)[torch.arange(2), torch.tensor([0, 2])]
        handle.remove()
        np.testing.assert_allclose(ablation.extras["channel_weights"][:, c], (base - ablated.numpy()) / base,
                                   rtol=1e-10)
    assert GradCAM(model, layer="block").explain(x, target=0).attributions.shape == x.shape


def test_region_target_on_a_segmentation_net() -> None:
    model = make_segmentation()
    x = rand(13, 2, 1, 6, 6, dtype=DOUBLE)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[1:4, 2:5] = True
    target = lumos.targets.Region(1, mask)
    e = GradCAM(model, upsample=False, relu=False).explain(x, target=target)
    assert e.extras["layer"] == "conv1"  # conv2's output is the model's output: not a CAM layer
    a, g = layer_and_grads(model, model.conv1, x, None, score=lambda out: (out[:, 1] * mask).flatten(1).sum(1))
    expected = (g.mean((2, 3))[:, :, None, None] * a).sum(1)
    torch.testing.assert_close(e.attributions[:, 0], expected)
    np.testing.assert_allclose(e.scores, (model(x)[:, 1] * mask).flatten(1).sum(1).detach().numpy())
    score = ScoreCAM(model, batch_size=3).explain(x, target=target)  # through the batching engine too
    assert score.attributions.shape == x.shape and float(score.attributions.sum()) > 0


def test_multi_output_target() -> None:
    model = gap_net()
    x = rand(14, 2, 2, 8, 8, dtype=DOUBLE)
    e = GradCAM(model, relu=False, upsample=False).explain(x, target=lumos.targets.Output(2))
    a, g = layer_and_grads(model, model.act2, x, [2, 2])
    torch.testing.assert_close(e.attributions[:, 0], (g.mean((2, 3))[:, :, None, None] * a).sum(1))
