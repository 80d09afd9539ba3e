"""Contract: an explanation leaves the model and the process as it found them.

No hook survives a call (also when it raises); train/eval mode, ``requires_grad`` flags, ``.grad`` tensors and
buffers are restored; the explanation itself is computed in eval mode; the global RNG state is untouched.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import lumos
from conftest import (
    GENERAL_METHODS,
    METHOD_NAMES,
    NEURAL_METHODS,
    case_for,
    make_explainer,
    make_relu_styles,
    make_token,
    rand,
    run_method,
)
from lumos.core.hooks import count_hooks


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_no_hook_left_after_a_call(name: str) -> None:
    case = case_for(name)
    model = case.image_model()
    x = rand(0, 3, 1, 8, 8)
    calls: list[int] = []
    last = case.last_layer
    getattr(model, last).register_forward_hook(lambda m, a, o: calls.append(1))  # the user's own hook
    assert count_hooks(model) == 1
    # a Neuron target captures an inner layer with a hook of its own (after the CAM layer for spatial methods)
    target = lumos.targets.Neuron(case.first_layer if case.kind == "any" else last, 1)
    run_method(name, model, x, target=1 if name == "cam" else target)  # (CAM explains classes only)
    assert count_hooks(model) == 1  # ours are gone, the user's is still there ...
    calls.clear()
    model(x)
    assert calls == [1]  # ... and still works


LAYER_METHODS = [n for n in GENERAL_METHODS if lumos.methods.get_method(n).supports_layer]


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_no_hook_left_after_a_layer_call(name: str) -> None:
    model = make_token()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    explainer = make_explainer(name, model, layer="embeddings")
    background = name in ("gradient_shap", "deep_shap")
    kwargs = {"baseline": torch.tensor([[0, 0, 0, 0], [9, 9, 9, 9]])} if background else {}
    if lumos.methods.get_method(name).stochastic and not background:
        # noise tunnels add noise to the inputs: not defined for token ids, and said so
        with pytest.raises(lumos.ValidationError, match="floating-point"):
            explainer.explain(ids, 0, forward_kwargs={"attention_mask": mask})
    else:
        e = explainer.explain(ids, 0, forward_kwargs={"attention_mask": mask}, **kwargs)
        assert e.attributions.shape == (2, 4, 4)
        assert e.layer == "embeddings"
        assert float(e.attributions.abs().sum()) > 0
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_no_hook_left_when_a_layer_hook_raises(name: str) -> None:
    model = make_relu_styles()  # its `act` module runs twice per forward pass
    with pytest.raises(lumos.ValidationError, match="more than once"):
        run_method(name, model, rand(0, 2, 5, dtype=torch.float64), target=0, layer="act")
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_no_hook_left_when_the_model_raises(name: str) -> None:
    case = case_for(name)
    model = case.raising_model().train()
    x = case.inputs(0, 2)
    with pytest.raises(lumos.ModelCallError, match="boom inside forward"):
        run_method(name, model, x, target=lumos.targets.Neuron(case.raising_layer, 0))
    assert count_hooks(model) == 0
    assert all(m.training for m in model.modules())  # mode restored on the error path too


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_no_hook_left_when_the_target_is_out_of_range(name: str) -> None:
    case = case_for(name)
    model = case.model()
    x = case.inputs(0, 2)
    with pytest.raises(lumos.TargetError):
        run_method(name, model, x, target=3)
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_train_mode_model_is_explained_in_eval_mode_and_restored(name: str) -> None:
    case = case_for(name)
    model = case.train_mode_model()
    model.bn.eval()  # a mixed state must come back exactly
    modes_before = {n: m.training for n, m in model.named_modules()}
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    eval_copy = copy.deepcopy(model).eval()
    x = case.inputs(3, 4)

    e = run_method(name, model, x, target=[0, 1, 2, 0])
    expected = run_method(name, eval_copy, x, target=[0, 1, 2, 0])

    torch.testing.assert_close(e.attributions, expected.attributions, rtol=0, atol=0)
    np.testing.assert_array_equal(e.scores, expected.scores)
    assert {n: m.training for n, m in model.named_modules()} == modes_before
    for n, b in model.named_buffers():  # no batchnorm statistics were updated
        torch.testing.assert_close(b, buffers_before[n], rtol=0, atol=0)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_requires_grad_flags_and_grads_are_unchanged(name: str) -> None:
    case = case_for(name)
    model = case.image_model()
    first, last = getattr(model, case.first_layer), getattr(model, case.last_layer)
    for p in first.parameters():  # frozen feature extractor
        p.requires_grad_(False)
    existing = torch.full_like(last.weight, 0.25)
    last.weight.grad = existing
    flags_before = {n: p.requires_grad for n, p in model.named_parameters()}
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}

    e = run_method(name, model, rand(1, 3, 1, 8, 8), target=1)

    assert float(e.attributions.abs().sum()) > 0  # gradients flow through frozen layers
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags_before
    assert last.weight.grad is existing
    torch.testing.assert_close(existing, torch.full_like(existing, 0.25), rtol=0, atol=0)
    for n, p in model.named_parameters():
        if p is not last.weight:
            assert p.grad is None, n
        torch.testing.assert_close(p.detach(), params_before[n], rtol=0, atol=0)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_global_rng_state_is_untouched(name: str) -> None:
    case = case_for(name)
    model = case.train_mode_model()  # dropout would draw from the global RNG if it ran in train mode
    x = case.inputs(4, 3)
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    run_method(name, model, x, target=0)
    run_method(name, model, x, target=0, **({"seed": None} if name in _stochastic() else {}))
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def _stochastic() -> list[str]:
    return [n for n in METHOD_NAMES if lumos.methods.get_method(n).stochastic]


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_init_stores_configuration_only(name: str) -> None:
    model = case_for(name).train_mode_model()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    make_explainer(name, model)
    assert calls == []  # no model call
    assert count_hooks(model) == 1  # no hook of ours
    assert model.training  # no mode change
