"""Contract: bad input gives a clear error from the lumos hierarchy that names the problem."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lumos
from conftest import (
    GENERAL_METHODS,
    GRADIENT_METHODS,
    METHOD_NAMES,
    NEURAL_METHODS,
    SPATIAL_METHODS,
    STOCHASTIC_METHODS,
    ConstantNet,
    DetachingNet,
    case_for,
    make_explainer,
    make_mlp,
    make_multi_input,
    make_segmentation,
    make_token,
    rand,
    run_method,
)

#: gradient methods that explain any model (the token / constant-model checks below use MLP-like models)
GENERAL_GRADIENT_METHODS = [n for n in GRADIENT_METHODS if n in GENERAL_METHODS]


@pytest.mark.parametrize("name", NEURAL_METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(name: str, bad: float) -> None:
    case = case_for(name)
    x = case.inputs(0, 3)
    where = (1,) + tuple(min(2, size - 1) for size in case.sample_shape)
    x[where] = bad
    with pytest.raises(lumos.ValidationError, match="finite") as info:
        run_method(name, case.model(), x, target=0)
    assert str(where) in str(info.value)  # where the first bad value is


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_wrong_input_shape_for_the_model(name: str) -> None:
    case = case_for(name)
    x, model_error = case.wrong_inputs(0, 4)
    with pytest.raises(lumos.ModelCallError) as info:
        run_method(name, case.model(), x, target=0)
    assert isinstance(info.value, lumos.LumosError)
    message = str(info.value)
    shape = ", ".join(str(s) for s in x.shape[1:])
    assert re.search(rf"shape \(\d+, {shape}\)", message), message  # the shape the model was called with
    assert type(make_explainer(name, case.model())).__name__ in message  # the owner
    assert model_error in message  # the model's own error is kept
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("name", NEURAL_METHODS)
@pytest.mark.parametrize("target", [3, -1, [0, 5, 1]])
def test_target_out_of_range(name: str, target) -> None:
    case = case_for(name)
    with pytest.raises(lumos.TargetError, match=r"valid: 0\.\.2"):
        run_method(name, case.model(), case.inputs(0, 3), target=target)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_target_count_must_match_the_samples(name: str) -> None:
    case = case_for(name)
    with pytest.raises(lumos.TargetError, match=r"one int per sample \(3\)"):
        run_method(name, case.model(), case.inputs(0, 3), target=[0, 1])


@pytest.mark.parametrize("name", NEURAL_METHODS)
@pytest.mark.parametrize("target", ["cat", 1.5, True, object()])
def test_target_of_a_wrong_type(name: str, target) -> None:
    case = case_for(name)
    with pytest.raises(lumos.TargetError):
        run_method(name, case.model(), case.inputs(0, 3), target=target)


@pytest.mark.parametrize("name", GENERAL_GRADIENT_METHODS)
def test_integer_token_inputs_without_layer(name: str) -> None:
    explainer = make_explainer(name, make_token())
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(lumos.ValidationError, match="layer=") as info:
        explainer.explain(ids, 0, baseline=ids)
    assert "floating" in str(info.value)


@pytest.mark.parametrize("name", GENERAL_GRADIENT_METHODS)
@pytest.mark.parametrize("model_class", [ConstantNet, DetachingNet])
def test_model_whose_output_does_not_depend_on_the_input(name: str, model_class) -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="does not depend"):
        run_method(name, model_class(), rand(0, 3, 6), target=0)


@pytest.mark.parametrize("name", GENERAL_GRADIENT_METHODS)
def test_frozen_model_whose_output_does_not_depend_on_the_input(name: str) -> None:
    model = ConstantNet().requires_grad_(False)
    with pytest.raises(lumos.UnsupportedModelError, match="does not depend"):
        run_method(name, model, rand(0, 3, 6), target=0)
    assert not model.logits.requires_grad


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_segmentation_output_without_a_target(name: str) -> None:
    with pytest.raises(lumos.TargetError, match="Region"):
        run_method(name, make_segmentation(), rand(0, 2, 1, 6, 6, dtype=torch.float64), target=None)
    with pytest.raises(lumos.TargetError, match="Region"):  # an int class is not enough either
        run_method(name, make_segmentation(), rand(0, 2, 1, 6, 6, dtype=torch.float64), target=1)


@pytest.mark.parametrize("name", NEURAL_METHODS)
@pytest.mark.parametrize(("param", "value"), [("batch_size", 0), ("batch_size", 1.5), ("batch_size", True),
                                              ("seed", -1), ("seed", 1.0)])
def test_bad_common_hyper_parameters(name: str, param: str, value) -> None:
    with pytest.raises(lumos.ValidationError, match=param) as info:
        make_explainer(name, case_for(name).model(), **{param: value})
    assert repr(value) in str(info.value)


def method_specific_cases() -> list[tuple[str, str, object]]:
    cases = [
        ("integrated_gradients", "n_steps", 0),
        ("integrated_gradients", "n_steps", 2.5),
        ("integrated_gradients", "method", "simpson"),
        ("gradient_shap", "n_samples", 0),
        ("gradient_shap", "noise_std", -0.1),
        ("noise_tunnel", "kind", "median"),
        ("noise_tunnel", "base_method", "not_a_method"),
        ("noise_tunnel", "base_method", "smoothgrad"),  # a tunnel of a tunnel
    ]
    for name in ("smoothgrad", "vargrad", "noise_tunnel"):
        cases += [(name, "n_samples", 0), (name, "noise_level", -1.0), (name, "noise_level", float("nan"))]
    for name in SPATIAL_METHODS:
        cases += [(name, "relu", "yes"), (name, "upsample", 1), (name, "reshape", "grid")]
    cases += [
        ("deeplift", "rule", "linear"),
        ("deeplift", "tolerance", -1.0),
        ("deep_shap", "n_samples", 0),
        ("kernel_shap", "n_samples", 0),
        ("kernel_shap", "tol", -0.1),
        ("permutation_shap", "n_permutations", 0),
        ("permutation_shap", "antithetic", "yes"),
        ("occlusion", "window", 0),
        ("occlusion", "strides", -1),
        ("lime", "n_samples", 0),
        ("lime", "segmentation", "watershed"),
        ("lime", "feature_selection", "lars"),
        ("rise", "n_masks", 0),
        ("rise", "p", 0.0),
        ("attention", "head_reduction", "median"),
        ("attention", "query", "cls"),
        ("attention", "layer_index", 1.5),
        ("attention_rollout", "discard_ratio", 1.0),
        ("attention_rollout", "start_layer", -1),
        ("attention_grad_rollout", "start_layer", -1),
        ("attention_grad_rollout", "subtract_identity", "yes"),
    ]
    return cases


@pytest.mark.parametrize(("name", "param", "value"), method_specific_cases())
def test_bad_method_hyper_parameters(name: str, param: str, value) -> None:
    with pytest.raises(lumos.ValidationError, match=param):
        make_explainer(name, case_for(name).model(), **{param: value})


def test_method_specific_cases_cover_the_stochastic_methods() -> None:
    assert {case[0] for case in method_specific_cases()} >= set(STOCHASTIC_METHODS)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_layer_that_is_not_in_the_model(name: str) -> None:
    cls = lumos.methods.get_method(name)
    case = case_for(name)
    if not cls.supports_layer:
        with pytest.raises(lumos.ValidationError, match="layer="):
            make_explainer(name, case.model(), layer=case.layers[0])
        return
    with pytest.raises(lumos.ValidationError, match="fc3") as info:
        run_method(name, case.model(), case.inputs(0, 2), target=0, layer="fc3")
    assert all(layer in str(info.value) for layer in case.layers)  # lists what is available
    with pytest.raises(lumos.ValidationError, match="not a submodule"):
        run_method(name, case.model(), case.inputs(0, 2), target=0, layer=torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_unexpected_explain_argument(name: str) -> None:
    case = case_for(name)
    with pytest.raises(lumos.ValidationError, match="n_stepz"):
        make_explainer(name, case.model()).explain(case.inputs(0, 2), 0, n_stepz=3)


@pytest.mark.parametrize("name", NEURAL_METHODS)
@pytest.mark.parametrize("inputs", [[1.0, 2.0], "x", (), np.zeros((0, 6), dtype=np.float32),
                                    np.array(1.0, dtype=np.float32)])
def test_inputs_of_a_wrong_kind(name: str, inputs) -> None:
    with pytest.raises(lumos.ValidationError, match="inputs"):
        run_method(name, case_for(name).model(), inputs, target=0)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_inputs_with_different_batch_sizes(name: str) -> None:
    with pytest.raises(lumos.ValidationError, match="batch size"):
        run_method(name, make_multi_input(), (rand(0, 3, 3), rand(1, 2, 2)), target=0)


def test_unknown_method_name_lists_the_methods() -> None:
    with pytest.raises(lumos.ValidationError) as info:
        lumos.explain(make_mlp(), rand(0, 2, 6), method="integrated_gradient", target=0)
    message = str(info.value)
    assert "'integrated_gradient'" in message
    assert all(name in message for name in METHOD_NAMES)


def test_not_a_model() -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="callable"):
        lumos.Saliency("not a model")


@pytest.mark.parametrize("name", SPATIAL_METHODS)
def test_spatial_method_on_a_model_without_a_spatial_layer(name: str) -> None:
    with pytest.raises(lumos.UnsupportedModelError) as info:
        run_method(name, make_mlp(), rand(0, 2, 6), target=0)
    assert "integrated_gradients" in str(info.value)  # says what works instead


@pytest.mark.parametrize("name", SPATIAL_METHODS)
def test_spatial_method_on_several_inputs(name: str) -> None:
    with pytest.raises(lumos.ValidationError, match="one input"):
        run_method(name, make_multi_input(), (rand(0, 3, 3), rand(1, 3, 2)), target=0)
