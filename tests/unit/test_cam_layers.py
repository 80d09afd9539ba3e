"""Unit: finding the CAM layer, token-grid layouts, errors, and leaving the model as it was (no hook, state
restored, no growth of memory or objects over many calls)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

import lumos
from conftest import build, make_cnn, make_mlp, make_multi_input, make_train_mode_net, rand
from lumos.core.hooks import count_hooks
from lumos.methods.cam.eigen_cam import EigenCAM
from lumos.methods.cam.gradient_cams import GradCAM
from lumos.methods.cam.layers import make_layout, token_grid
from lumos.methods.cam.linear_head_cam import CAM
from lumos.methods.cam.perturbation_cams import AblationCAM, ScoreCAM

ALL_CAMS = ["cam", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "hires_cam", "layer_cam", "score_cam",
            "ablation_cam", "eigen_cam", "guided_grad_cam"]


class ConvAfterPool(nn.Module):
    """conv -> ReLU -> maxpool -> conv (the last spatial module) -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)  # (N, 4, 1, 1): h * w = 1, not a map
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gap(self.conv2(self.pool(self.act(self.conv1(x))))).flatten(1))


class Block(nn.Module):
    """A residual block whose ReLU module runs twice and whose sum is written in place (as in torchvision)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.conv1(x)))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.layer1 = nn.Sequential(Block(3), Block(3))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer1(self.stem(x))), 1))


def sequential_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))


# ---------------------------------------------------------------------------------------------- finding the layer
def test_last_spatial_layer_is_the_conv_after_the_last_pool() -> None:
    model = build(0, ConvAfterPool)
    assert GradCAM(model).explain(rand(0, 2, 1, 8, 8), target=0).extras["layer"] == "conv2"


def test_last_spatial_layer_of_a_sequential() -> None:
    model = build(1, sequential_cnn)
    e = GradCAM(model, upsample=False).explain(rand(1, 2, 1, 8, 8), target=1)
    assert e.extras["layer"] == "3" and e.attributions.shape == (2, 1, 4, 4)  # the last ReLU, not "" or "4"


def test_last_spatial_layer_of_a_resnet_is_the_last_block() -> None:
    model = build(2, TinyResNet)
    x = rand(2, 3, 1, 6, 6)
    e = GradCAM(model, relu=False, upsample=False).explain(x, target=[0, 1, 0])
    # layer1.1.relu runs twice, layer1.1.bn's tensor is modified in place afterwards: the block is named
    assert e.extras["layer"] == "layer1.1"
    by_name = GradCAM(model, layer=model.layer1[1], relu=False, upsample=False).explain(x, target=[0, 1, 0])
    torch.testing.assert_close(e.attributions, by_name.attributions)
    # the container returns the very same tensor: same map
    outer = GradCAM(model, layer="layer1", relu=False, upsample=False).explain(x, target=[0, 1, 0])
    torch.testing.assert_close(e.attributions, outer.attributions)
    assert count_hooks(model) == 0


def test_no_spatial_layer_is_a_clear_error() -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="fc1.*gradient method") as info:
        GradCAM(make_mlp()).explain(rand(0, 2, 6), target=0)
    assert "GradCAM" in str(info.value) and "saliency" in str(info.value)


def test_a_layer_run_twice_is_refused() -> None:
    model = build(2, TinyResNet)
    for cls in (GradCAM, ScoreCAM, EigenCAM):
        with pytest.raises(lumos.ValidationError, match="more than once"):
            cls(model, layer="layer1.0.relu").explain(rand(0, 2, 1, 6, 6), target=0)
        assert count_hooks(model) == 0


def test_found_layer_is_cached_and_follows_a_replaced_module() -> None:
    model = build(0, ConvAfterPool)
    x = rand(0, 2, 1, 8, 8)
    assert GradCAM(model).explain(x, target=0).extras["layer"] == "conv2"
    model.conv2 = nn.Identity()  # no longer a spatial layer of its own: found again
    model.fc = nn.Linear(3, 3)
    assert GradCAM(model).explain(x, target=0).extras["layer"] == "pool"


def test_one_dimensional_signals() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2))
    model = build(3, lambda: model)
    x = rand(3, 2, 2, 10)
    e = GradCAM(model).explain(x, target=1)
    assert e.extras["layer"] == "1" and e.attributions.shape == x.shape
    raw = GradCAM(model, upsample=False).explain(x, target=1)
    expected = torch.nn.functional.interpolate(raw.attributions, size=10, mode="linear", align_corners=False)
    torch.testing.assert_close(e.attributions[:, :1], expected)
    torch.testing.assert_close(CAM(model, upsample=False).explain(x, target=1).attributions, 8 * raw.attributions)


# ---------------------------------------------------------------------------------------------- layouts
def test_token_grid() -> None:
    assert token_grid(17) == (1, 4, 4)  # class token + 16 patches
    assert token_grid(16) == (0, 4, 4)
    assert token_grid(201) == (5, 14, 14)  # class + 4 register tokens
    assert token_grid(1 + 14 * 20, (224, 320)) == (1, 14, 20)  # non-square image: its aspect ratio
    assert token_grid(17, (8, 8)) == (1, 4, 4)


def test_token_layout_and_positions() -> None:
    layout = make_layout((2, 17, 3), (2, 1, 8, 8), None, owner="t", layer_name="blocks")
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float64).reshape(2, 17, 3)
    grid = layout(tokens)
    assert grid.shape == (2, 3, 4, 4)
    torch.testing.assert_close(grid[1, 2, 0, 1], tokens[1, 2, 2])  # token 1 + (0 * 4 + 1), channel 2
    positions = layout.positions((2, 17, 3))
    assert positions.shape == (3, 16)
    np.testing.assert_array_equal(positions[2].numpy(), [3 * t + 2 for t in range(1, 17)])  # class token kept
    spatial = make_layout((2, 4, 3, 3), (2, 1, 6, 6), None, owner="t", layer_name="conv")
    np.testing.assert_array_equal(spatial.positions((2, 4, 3, 3))[1].numpy(), np.arange(9, 18))
    with pytest.raises(lumos.ValidationError, match="reshape="):
        make_layout((2, 5), (2, 1, 6, 6), None, owner="GradCAM", layer_name="fc")


def test_reshape_must_give_a_map() -> None:
    model = make_cnn()
    with pytest.raises(lumos.ValidationError, match="reshape"):
        GradCAM(model, layer="pool", reshape=lambda t: t.flatten(1)).explain(rand(0, 2, 1, 8, 8), target=0)
    with pytest.raises(lumos.ValidationError, match="reshape"):
        GradCAM(model, reshape="tokens")


# ---------------------------------------------------------------------------------------------- errors
def test_tuple_inputs_are_refused() -> None:
    with pytest.raises(lumos.ValidationError, match="one input tensor"):
        GradCAM(make_multi_input()).explain((rand(0, 2, 3), rand(1, 2, 2)), target=0)


def test_bad_options() -> None:
    for name in ("relu", "upsample", "normalize", "tokens"):
        with pytest.raises(lumos.ValidationError, match=name):
            GradCAM(make_cnn(), **{name: 1})
    with pytest.raises(lumos.UnknownParameterError):
        GradCAM(make_cnn(), n_steps=3)


def test_registry_metadata() -> None:
    for name in ALL_CAMS:
        cls = lumos.methods.get_method(name)
        assert cls.needs_spatial_layer and cls.supports_layer and cls.family == "cam" and cls.reference
    info = {row["name"]: row for row in lumos.method_info()}
    assert info["grad_cam"]["needs_spatial_layer"] and not info["saliency"]["needs_spatial_layer"]


# ---------------------------------------------------------------------------------------------- model state
def gap_cnn() -> nn.Module:
    return build(4, lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                          nn.Dropout(0.3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                          nn.Linear(4, 3)))


@pytest.mark.parametrize("name", ALL_CAMS)
def test_model_state_restored_and_no_hook_left(name: str) -> None:
    model = gap_cnn().train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model[6].register_forward_hook(lambda m, a, o: None)  # the user's own hook stays
    e = lumos.methods.get_method(name)(model, batch_size=2).explain(rand(5, 3, 1, 6, 6), target=[0, 1, 2])
    assert e.attributions.shape == (3, 1, 6, 6) and bool(torch.isfinite(e.attributions).all())
    assert count_hooks(model) == 1
    assert all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[6].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["grad_cam", "score_cam", "ablation_cam", "cam"])
def test_no_hook_left_when_the_call_raises(name: str) -> None:
    model = make_train_mode_net()
    cnn = make_cnn().train()
    for m, x, target in ((model, rand(0, 2, 6), 0), (cnn, rand(0, 2, 1, 8, 8), 7)):
        with pytest.raises(lumos.LumosError):
            lumos.methods.get_method(name)(m).explain(x, target=target)
        assert count_hooks(m) == 0 and m.training


def test_many_calls_do_not_grow_memory_or_objects() -> None:
    model = gap_cnn()
    x = rand(6, 2, 1, 6, 6)
    explainers = [GradCAM(model), ScoreCAM(model), AblationCAM(model), CAM(model), EigenCAM(model)]

    def run(n: int) -> None:
        for _ in range(n):
            for explainer in explainers:
                explainer.explain(x, target=1)

    run(3)  # warm caches
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        run(25)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        run(25)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 64 * 1024, (first, second)
    assert len(gc.get_objects()) - objects < 200
    assert count_hooks(model) == 0
