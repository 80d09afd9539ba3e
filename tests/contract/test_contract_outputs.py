"""Contract: every registered method returns an Explanation that mirrors the inputs (structure, shape, array
type, device), holds finite values and records what produced it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from conftest import (
    FAST_PARAMS,
    GENERAL_METHODS,
    METHOD_NAMES,
    NEURAL_METHODS,
    case_for,
    explain_args,
    make_explainer,
    make_multi_input,
    method_params,
    rand,
    run_method,
)


def test_every_registered_method_has_test_settings() -> None:
    """A new method must be added to FAST_PARAMS, so that the contract suite covers it."""
    assert sorted(FAST_PARAMS) == METHOD_NAMES


def test_registry_metadata_is_complete() -> None:
    rows = lumos.method_info()
    assert [row["name"] for row in rows] == METHOD_NAMES
    for row in rows:
        cls = lumos.methods.get_method(row["name"])
        assert issubclass(cls, lumos.Explainer)
        assert row["class"] == cls.__name__
        assert row["family"] and row["reference"], row
        assert isinstance(row["stochastic"], bool) and isinstance(row["supports_layer"], bool)
        assert getattr(lumos, cls.__name__) is cls  # exported in the public API


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_torch_in_torch_out(name: str) -> None:
    model = case_for(name).image_model()
    x = rand(1, 4, 1, 8, 8)
    e = run_method(name, model, x, target=[0, 1, 2, 1])
    assert isinstance(e, lumos.Explanation)
    a = e.attributions
    assert isinstance(a, torch.Tensor)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert bool(torch.isfinite(a).all())
    assert not a.requires_grad
    assert float(a.abs().sum()) > 0  # something was computed
    assert e.method == name
    np.testing.assert_array_equal(e.targets, [0, 1, 2, 1])
    with torch.no_grad():
        expected_scores = model(x)[torch.arange(4), torch.tensor([0, 1, 2, 1])]
    np.testing.assert_allclose(e.scores, expected_scores.numpy(), rtol=1e-5, atol=1e-6)
    assert isinstance(e.extras["n_evaluations"], int) and e.extras["n_evaluations"] >= 4
    torch.testing.assert_close(e.inputs, x)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_numpy_in_numpy_out_same_values(name: str) -> None:
    case = case_for(name)
    model = case.model()
    x = case.inputs(2, 5)
    e_torch = run_method(name, model, x, target=1)
    e_numpy = run_method(name, model, x.numpy(), target=1)
    assert isinstance(e_numpy.attributions, np.ndarray)
    assert e_numpy.attributions.shape == tuple(x.shape)
    assert isinstance(e_numpy.inputs, np.ndarray)
    assert np.isfinite(e_numpy.attributions).all()
    np.testing.assert_allclose(e_numpy.attributions, e_torch.attributions.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", GENERAL_METHODS)
def test_tuple_in_tuple_out(name: str) -> None:
    model = make_multi_input()
    a, b = rand(3, 4, 3), rand(4, 4, 2)
    e = run_method(name, model, (a, b), target=0)
    assert isinstance(e.attributions, tuple) and len(e.attributions) == 2
    assert e.attributions[0].shape == a.shape and e.attributions[1].shape == b.shape
    assert all(isinstance(t, torch.Tensor) and bool(torch.isfinite(t).all()) for t in e.attributions)
    assert all(float(t.abs().sum()) > 0 for t in e.attributions)  # both inputs matter to this model
    # numpy tuple in: numpy tuple out, same values
    e_np = run_method(name, model, (a.numpy(), b.numpy()), target=0)
    assert isinstance(e_np.attributions, tuple) and all(isinstance(t, np.ndarray) for t in e_np.attributions)
    for got, want in zip(e_np.attributions, e.attributions, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_target_none_is_the_predicted_class(name: str) -> None:
    case = case_for(name)
    model = case.model()
    x = case.inputs(5, 6)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    e_none = run_method(name, model, x, target=None)
    e_explicit = run_method(name, model, x, target=predicted)
    np.testing.assert_array_equal(e_none.targets, predicted.numpy())
    torch.testing.assert_close(e_none.attributions, e_explicit.attributions)
    assert e_none.target_description == "predicted class"


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_explain_shortcut_equals_the_class(name: str) -> None:
    case = case_for(name)
    model = case.model()
    x = case.inputs(6, 3)
    e_short = lumos.explain(model, x, method=name, target=2, **explain_args(name, x), **method_params(name))
    e_class = make_explainer(name, model).explain(x, 2, **explain_args(name, x))
    torch.testing.assert_close(e_short.attributions, e_class.attributions, rtol=0, atol=0)
    assert e_short.params == e_class.params
