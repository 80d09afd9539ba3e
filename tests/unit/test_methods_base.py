"""Unit: the Explainer base class (lumos.methods.base) and the one-line shortcut (lumos.api)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from conftest import NEURAL_METHODS, make_mlp, make_token, rand
from lumos.methods.base import Attribution, ExplainContext


class Constant(lumos.Explainer):
    """Not registered: attributions are a constant (or whatever ``make`` returns)."""

    name = "constant_for_tests"
    family = "test"

    def __init__(self, model, *, make=None, **kwargs) -> None:  # noqa: ANN001
        super().__init__(model, **kwargs)
        self.make = make or (lambda x: torch.full_like(x, 2.0))

    def _attribute(self, context: ExplainContext) -> Attribution:
        return Attribution(tuple(self.make(x) for x in context.batch.tensors), None, {"custom": torch.ones(2)})


def test_a_minimal_explainer_gets_the_whole_contract() -> None:
    e = Constant(make_mlp()).explain(rand(0, 2, 6).numpy(), 1, feature_names=[f"f{i}" for i in range(6)])
    assert isinstance(e.attributions, np.ndarray)
    np.testing.assert_array_equal(e.attributions, np.full((2, 6), 2.0, dtype=np.float32))
    assert e.method == "constant_for_tests" and e.scores is None and e.params == {}
    np.testing.assert_array_equal(e.targets, [1, 1])
    np.testing.assert_array_equal(e.extras["custom"], [1.0, 1.0])  # tensors in extras become arrays
    assert e.feature_names == [f"f{i}" for i in range(6)]
    assert "constant_for_tests" not in lumos.method_names()


def test_wrong_attribution_shape_is_an_internal_error() -> None:
    with pytest.raises(RuntimeError, match=r"attributions\[0\] have shape \(2, 3\), inputs \(2, 6\)"):
        Constant(make_mlp(), make=lambda x: x[:, :3]).explain(rand(0, 2, 6), 0)


def test_non_finite_attributions_warn() -> None:
    with pytest.warns(lumos.LumosWarning, match="NaN or infinite"):
        Constant(make_mlp(), make=lambda x: x / 0).explain(rand(0, 2, 6), 0)


def test_layer_argument_checks() -> None:
    class NoLayer(Constant):
        supports_layer = False

    with pytest.raises(lumos.ValidationError, match="does not support layer="):
        NoLayer(make_mlp(), layer="fc1")
    with pytest.raises(lumos.ValidationError, match="layer must be an nn.Module or a dotted module name"):
        lumos.Saliency(make_mlp(), layer=3)


def test_explain_shortcut_passes_data_arguments() -> None:
    model = make_token()
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    e = lumos.explain(model, ids, method="integrated_gradients", target=1, layer="embeddings", n_steps=4,
                      baseline=0, forward_kwargs={"attention_mask": mask})
    direct = lumos.IntegratedGradients(model, layer="embeddings", n_steps=4).explain(
        ids, 1, baseline=0, forward_kwargs={"attention_mask": mask})
    torch.testing.assert_close(e.attributions, direct.attributions, rtol=0, atol=0)
    assert bool((e.attributions[0, 2] == 0).all())  # the masked token
    assert e.params == {"n_steps": 4, "method": "gauss_legendre"}
    with pytest.raises(lumos.UnknownParameterError, match="n_stepz.*valid parameters: .*n_steps"):
        lumos.explain(model, ids, method="integrated_gradients", n_stepz=4)


def test_progress_bar_shows_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    lumos.Saliency(make_mlp(), batch_size=1, progress=True).explain(rand(0, 3, 6), 0)
    assert "gradients" in capsys.readouterr().err
    lumos.Saliency(make_mlp(), batch_size=1, progress=False).explain(rand(0, 3, 6), 0)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_grad_modes_of_the_caller(name: str) -> None:
    """Under no_grad every method still works (same result); under inference_mode a gradient method says why
    it cannot, and a gradient-free one works."""
    from conftest import case_for, make_explainer, run_method

    case = case_for(name)
    model = case.model()
    x = case.inputs(1, 3)
    expected = run_method(name, model, x, target=1).attributions
    with torch.no_grad():
        torch.testing.assert_close(run_method(name, model, x, target=1).attributions, expected, rtol=0, atol=0)
    assert torch.is_grad_enabled()
    if make_explainer(name, model).requires_gradients:  # (a noise tunnel's depends on its base method)
        with torch.inference_mode(), pytest.raises(lumos.UnsupportedModelError, match="inference_mode"):
            run_method(name, model, x, target=1)
    else:
        with torch.inference_mode():
            result = run_method(name, model, x, target=1).attributions
        torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_bfloat16_models_give_float32_scores_and_extras() -> None:
    model = make_mlp(dtype=torch.bfloat16)
    x = rand(0, 3, 6, dtype=torch.bfloat16)
    e = lumos.IntegratedGradients(model, n_steps=4).explain(x, 1)
    assert e.attributions.dtype == torch.bfloat16  # attributions mirror the inputs
    assert e.scores.dtype == np.float32 and e.extras["convergence_delta"].dtype == np.float32
    with torch.no_grad():
        np.testing.assert_array_equal(e.scores, model(x)[:, 1].float().numpy())


def test_bfloat16_explanations_save_and_load_as_float32(tmp_path) -> None:
    model = make_mlp(dtype=torch.bfloat16)
    x = rand(0, 3, 6, dtype=torch.bfloat16)
    e = lumos.Saliency(model).explain(x, 1)
    loaded = lumos.load(e.save(tmp_path / "e.npz"))
    assert loaded.attributions.dtype == torch.float32  # numpy has no bfloat16: saved exactly as float32
    torch.testing.assert_close(loaded.attributions, e.attributions.float(), rtol=0, atol=0)
