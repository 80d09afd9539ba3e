"""Unit: input handling (lumos.core.inputs) and the model adapter (lumos.core.model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lumos
from conftest import make_dict_output, make_mlp, make_train_mode_net, rand
from lumos.core.inputs import prepare_forward_kwargs, prepare_inputs, select_rows
from lumos.core.model import ModelAdapter


def prepare(inputs, float_dtype=torch.float32):  # noqa: ANN001, ANN201
    return prepare_inputs(inputs, owner="T", device=None, float_dtype=float_dtype)


# ---------------------------------------------------------------------------------------------- inputs


def test_prepare_inputs_forms() -> None:
    x = rand(0, 3, 4)
    batch = prepare(x)
    assert batch.tensors[0] is not x and torch.equal(batch.tensors[0], x)  # detached, same values
    assert (batch.n, batch.is_tuple, batch.is_numpy, batch.shapes) == (3, False, False, ((3, 4),))
    both = prepare((x, x[:, :2].numpy()))
    assert both.is_tuple and not both.is_numpy  # mixed: torch results
    as_list = prepare([x.numpy(), x.numpy()])
    assert as_list.is_tuple and as_list.is_numpy
    assert batch.describe() == "(3, 4) float32"


def test_numpy_floats_take_the_models_dtype_and_come_back_as_numpy() -> None:
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    batch = prepare(x, float_dtype=torch.float32)
    assert batch.tensors[0].dtype == torch.float32
    back = batch.to_user([batch.tensors[0] * 2])
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x * 2)
    ids = prepare(np.array([[1, 2]], dtype=np.int64))
    assert ids.tensors[0].dtype == torch.int64 and not ids.is_floating
    non_contiguous = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(prepare(non_contiguous).tensors[0].numpy(), non_contiguous)


def test_to_user_keeps_structure() -> None:
    batch = prepare((rand(0, 2, 3), rand(1, 2, 5)))
    out = batch.to_user([torch.ones(2, 3, requires_grad=True) * 1, torch.zeros(2, 5)])
    assert isinstance(out, tuple) and out[0].shape == (2, 3) and not out[0].requires_grad


@pytest.mark.parametrize(("inputs", "message"), [
    ((), "at least one tensor"),
    (torch.tensor(1.0), "batch dimension"),
    (np.array(1.0), "batch dimension"),
    (torch.zeros(0, 3), "empty"),
    (np.array([["a"]], dtype=object), "dtype object"),
    ((torch.zeros(2, 3), torch.zeros(3, 3)), r"share the batch size.*\(2, 3\), \(3, 3\)"),
    (torch.tensor([[1.0, float("nan")]]), r"inputs must be finite, got 1 NaN/inf value\(s\) \(first at index \(0, 1\)\)"),
    ((torch.zeros(1, 2), torch.tensor([[float("inf")]])), r"inputs\[1\] must be finite"),
    ({"x": torch.zeros(1)}, "torch.Tensor or a numpy array"),
])
def test_prepare_inputs_rejects(inputs, message: str) -> None:
    with pytest.raises(lumos.ValidationError, match=message):
        prepare(inputs)


def test_forward_kwargs_and_select_rows() -> None:
    mask = np.array([[1, 0], [1, 1], [0, 1]])
    kwargs = prepare_forward_kwargs({"attention_mask": mask, "scale": 2.0, "shared": torch.ones(5)}, n=3,
                                    owner="T", device=None, float_dtype=torch.float32)
    assert isinstance(kwargs["attention_mask"], torch.Tensor) and kwargs["scale"] == 2.0
    rows = select_rows(kwargs, torch.tensor([2, 2, 0]), 3)
    torch.testing.assert_close(rows["attention_mask"], torch.tensor([[0, 1], [0, 1], [1, 0]]))
    assert rows["shared"] is kwargs["shared"]  # not per-sample: left alone
    assert select_rows(kwargs, None, 3) == kwargs
    with pytest.raises(lumos.ValidationError, match="forward_kwargs must be a dict"):
        prepare_forward_kwargs([mask], n=3, owner="T", device=None, float_dtype=None)


# ---------------------------------------------------------------------------------------------- model


def test_adapter_selects_outputs() -> None:
    x = rand(0, 2, 6, dtype=torch.float64)
    model = make_dict_output()
    result = model(x)
    torch.testing.assert_close(ModelAdapter(model)((x,)), result["logits"])
    torch.testing.assert_close(ModelAdapter(model, output="features")((x,)), result["features"])
    torch.testing.assert_close(ModelAdapter(lambda v: (v * 2, v))((x,)), x * 2)
    torch.testing.assert_close(ModelAdapter(lambda v: {"scores": v + 1})((x,)), x + 1)  # the only tensor
    torch.testing.assert_close(ModelAdapter(lambda v: v.numpy() * 3)((x,)), x * 3)  # numpy output

    class Output:  # a Hugging Face style ModelOutput: attribute access
        def __init__(self, logits: torch.Tensor) -> None:
            self.logits = logits

    torch.testing.assert_close(ModelAdapter(lambda v: Output(v - 1), output="logits")((x,)), x - 1)


@pytest.mark.parametrize(("model", "message"), [
    (lambda v: {"a": v, "b": v}, "say which holds the scores with output='key'"),
    (lambda v: "text", "must be a tensor"),
    (lambda v: v.sum(), "0-d tensor"),
    (lambda v: v[:1], "returned 1 rows for 2 samples"),
])
def test_adapter_rejects_outputs(model, message: str) -> None:
    with pytest.raises(lumos.ValidationError, match=message):
        ModelAdapter(model, owner="T")((rand(0, 2, 3),))


def test_adapter_wraps_model_errors() -> None:
    def broken(x):  # noqa: ANN001, ANN202
        raise KeyError("inner")

    with pytest.raises(lumos.ModelCallError, match=r"T: calling the model on inputs of shape \(2, 3\) failed: "
                                                   r"KeyError: 'inner'") as info:
        ModelAdapter(broken, owner="T")((rand(0, 2, 3),))
    assert isinstance(info.value.__cause__, KeyError)

    def lumos_error(x):  # noqa: ANN001, ANN202
        raise lumos.TargetError("ours")

    with pytest.raises(lumos.TargetError, match="ours"):  # our own errors pass through unwrapped
        ModelAdapter(lumos_error)((rand(0, 2, 3),))


def test_adapter_properties() -> None:
    model = make_mlp(dtype=torch.float64)
    adapter = ModelAdapter(model)
    assert adapter.module is model and adapter.device == torch.device("cpu")
    assert adapter.float_dtype == torch.float64
    function = ModelAdapter(lambda v: v)
    assert function.module is None and function.device is None and function.float_dtype is None  # inputs keep theirs
    buffers_only = ModelAdapter(nn.BatchNorm1d(3, affine=False))
    assert buffers_only.device == torch.device("cpu")


def test_find_layer() -> None:
    model = make_mlp()
    adapter = ModelAdapter(model, owner="T")
    assert adapter.find_layer("fc2") == ("fc2", model.fc2)
    assert adapter.find_layer(model.act) == ("act", model.act)
    assert adapter.find_layer(model) == ("<model>", model)
    with pytest.raises(lumos.ValidationError, match="available: fc1, act, fc2"):
        adapter.find_layer("fc9")
    with pytest.raises(lumos.ValidationError, match="must be an nn.Module or a dotted module name"):
        adapter.find_layer(3)
    with pytest.raises(lumos.UnsupportedModelError, match="needs a torch.nn.Module"):
        ModelAdapter(lambda v: v, owner="T").find_layer("fc1")


def test_eval_mode_restores_everything_even_on_error() -> None:
    model = make_train_mode_net()
    model.fc2.eval()
    model.fc1.weight.requires_grad_(False)
    grad = torch.ones_like(model.fc2.weight)
    model.fc2.weight.grad = grad
    adapter = ModelAdapter(model)
    with pytest.raises(RuntimeError, match="inside"), adapter.eval_mode():
        assert not any(m.training for m in model.modules())
        model.fc1.weight.requires_grad_(True)
        model.fc2.weight.grad = None
        model.fc2.bias.grad = torch.zeros_like(model.fc2.bias)
        raise RuntimeError("inside")
    assert model.training and model.fc1.training and not model.fc2.training
    assert not model.fc1.weight.requires_grad
    assert model.fc2.weight.grad is grad and model.fc2.bias.grad is None


def test_adapter_rejects_bad_arguments() -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="callable"):
        ModelAdapter(3)
    with pytest.raises(lumos.ValidationError, match="output must be"):
        ModelAdapter(lambda v: v, output=[0])


def test_float64_inputs_explain_a_float32_model_and_come_back_as_float64():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5, dtype=torch.float64)
    e64 = lumos.explain(model, x, method="integrated_gradients", target=1, n_steps=8)
    e32 = lumos.explain(model, x.float(), method="integrated_gradients", target=1, n_steps=8)
    assert e64.attributions.dtype == torch.float64
    torch.testing.assert_close(e64.attributions.float(), e32.attributions)
    # closed form of a linear model: IG = w_c * (x - 0)
    torch.testing.assert_close(e64.attributions, (model.weight[1].detach().double() * x), rtol=1e-5, atol=1e-6)
