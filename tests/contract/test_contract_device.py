"""Contract on an accelerator (skipped without CUDA): results live on the inputs' device and equal the CPU's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lumos
from conftest import (
    NEURAL_METHODS,
    case_for,
    explain_args,
    make_explainer,
    make_segmentation,
    rand,
)
from lumos.core.hooks import count_hooks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_args(name: str, x) -> dict:  # noqa: ANN001
    return explain_args(name, x)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_cuda_in_cuda_out_equals_cpu(name: str) -> None:
    model = case_for(name).image_model(dtype=torch.float64)
    x = rand(0, 3, 1, 8, 8, dtype=torch.float64)
    target = [0, 2, 1]
    cpu = make_explainer(name, model).explain(x, target, **cuda_args(name, x))
    gpu_model = copy.deepcopy(model).cuda()
    gpu = make_explainer(name, gpu_model).explain(x.cuda(), torch.tensor(target).cuda(),
                                                  **cuda_args(name, x.cuda()))
    assert gpu.attributions.device.type == "cuda"
    torch.testing.assert_close(gpu.attributions.cpu(), cpu.attributions, rtol=1e-9, atol=1e-11)
    assert count_hooks(gpu_model) == 0
    # CPU or numpy inputs to a CUDA model: computed there, returned in the caller's form
    from_cpu = make_explainer(name, gpu_model).explain(x, target, **cuda_args(name, x))
    assert from_cpu.attributions.device.type == "cpu"
    from_numpy = make_explainer(name, gpu_model).explain(x.numpy(), target, **cuda_args(name, x.numpy()))
    assert isinstance(from_numpy.attributions, np.ndarray)
    np.testing.assert_allclose(from_numpy.attributions, cpu.attributions.numpy(), rtol=1e-9, atol=1e-11)


def test_cuda_region_and_neuron_targets() -> None:
    model = make_segmentation().cuda()
    x = rand(1, 2, 1, 6, 6, dtype=torch.float64).cuda()
    mask = torch.ones(6, 6, dtype=torch.bool)  # a CPU mask with a CUDA model
    e = lumos.IntegratedGradients(model, n_steps=8).explain(x, lumos.targets.Region(1, mask))
    assert e.attributions.device.type == "cuda"
    n = lumos.Saliency(model).explain(x, lumos.targets.Neuron("conv1", 2))
    assert n.attributions.device.type == "cuda" and float(n.attributions.abs().sum()) > 0
