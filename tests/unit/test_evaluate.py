"""lumos.metrics.evaluate and the Evaluation result: shapes, values, ranking, persistence, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_mlp, rand
from lumos.errors import ValidationError
from lumos.methods.gradient import IntegratedGradients, Saliency
from lumos.metrics import METRIC_INFO, METRICS, evaluate, load_evaluation
from lumos.metrics.complexity import sparseness
from lumos.metrics.faithfulness import deletion

METRIC_NAMES = ["deletion", "insertion", "faithfulness_correlation", "sparseness", "max_sensitivity"]


@pytest.fixture(scope="module")
def evaluation():
    model = make_mlp()
    x = rand(1, 5, 6)
    return model, x, evaluate(model, x, methods=["saliency", "integrated_gradients"], metrics=METRIC_NAMES, seed=0,
                              n_steps=8, progress=False, metric_params={"deletion": {"n_steps": 6}})


def test_values_shapes_and_agreement_with_the_metrics_called_directly(evaluation) -> None:
    model, x, ev = evaluation
    assert ev.values.shape == (2, 5, 5) and ev.methods == ["saliency", "integrated_gradients"]
    e = IntegratedGradients(model, n_steps=8).explain(x)
    np.testing.assert_allclose(ev.value("integrated_gradients", "deletion"),
                               deletion(model, x, e, n_steps=6, progress=False).values, rtol=1e-6)
    np.testing.assert_allclose(ev.value("saliency", "sparseness"), sparseness(Saliency(model).explain(x)), rtol=1e-6)
    grid, curves = ev.curve("saliency", "deletion")
    assert grid.shape == (7,) and curves.shape == (5, 7)
    np.testing.assert_allclose(ev.mean, np.nanmean(ev.values, axis=2))
    np.testing.assert_allclose(ev.std, np.nanstd(ev.values, axis=2))
    assert (ev.count == 5).all()
    assert ev.properties["max_sensitivity"] == "robustness" and ev.higher_is_better["insertion"]


def test_to_pandas_summary_and_repr(evaluation) -> None:
    _, _, ev = evaluation
    frame = ev.to_pandas()
    assert list(frame.columns) == ["method", "metric", "property", "higher_is_better", "sample", "value"]
    assert len(frame) == 2 * 5 * 5
    row = frame[(frame.method == "integrated_gradients") & (frame.metric == "insertion") & (frame["sample"] == 3)]
    assert row.value.item() == ev.value("integrated_gradients", "insertion")[3]
    summary = ev.summary()
    assert set(summary.columns) >= {"method", "metric", "mean", "std", "n"}
    assert "integrated_gradients" in repr(ev) and "(lower better)" in repr(ev)


def test_ranking_follows_the_values_and_higher_is_better(evaluation) -> None:
    _, _, ev = evaluation
    for metric in METRIC_NAMES:
        means = {m: ev.value(m, metric).mean() for m in ev.methods}
        best = max(means, key=means.get) if ev.higher_is_better[metric] else min(means, key=means.get)
        only = type(ev)(ev.methods, [metric], ev.values[:, [ev.metrics.index(metric)]],
                        {metric: "p"}, {metric: ev.higher_is_better[metric]})
        assert only.ranking("p")[0] == best
    ranks = {m: [] for m in ev.methods}
    for metric in [m for m in ev.metrics if METRIC_INFO[m].property == "faithfulness"]:
        means = ev.mean[:, ev.metrics.index(metric)]
        order = np.argsort(-means if ev.higher_is_better[metric] else means)
        for position, index in enumerate(order):
            ranks[ev.methods[index]].append(position)
    expected = sorted(ev.methods, key=lambda m: (np.mean(ranks[m]), ev.methods.index(m)))
    assert ev.ranking("faithfulness") == expected
    with pytest.raises(ValidationError, match="property must be one of"):
        ev.ranking("beauty")


def test_save_load_round_trip_and_determinism(evaluation, tmp_path) -> None:
    model, x, ev = evaluation
    path = ev.save(tmp_path / "ev")
    loaded = load_evaluation(path)
    np.testing.assert_array_equal(loaded.values, ev.values)
    assert loaded.methods == ev.methods and loaded.metrics == ev.metrics and loaded.seed == 0
    np.testing.assert_array_equal(loaded.curve("saliency", "insertion")[1], ev.curve("saliency", "insertion")[1])
    assert loaded.ranking("faithfulness") == ev.ranking("faithfulness")
    again = evaluate(model, x, methods=["saliency", "integrated_gradients"], metrics=METRIC_NAMES, seed=0,
                     n_steps=8, progress=False, metric_params={"deletion": {"n_steps": 6}})
    np.testing.assert_array_equal(again.values, ev.values)
    other = evaluate(model, x, methods=["saliency"], metrics=["faithfulness_correlation"], seed=1, progress=False)
    assert not np.array_equal(other.values[0, 0], ev.values[0, 2])


def test_explanations_and_numpy_models() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(60, 4))
    labels = (data @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(int)
    clf = sklearn.LogisticRegression().fit(data, labels)
    ev = evaluate(clf, data[:4], methods={"feature_ablation": {}, "kernel_shap": {"n_samples": 64}},
                  metrics=["deletion", "comprehensiveness", "complexity"], target=1, baseline=0.0, seed=0,
                  progress=False)
    assert ev.values.shape == (2, 3, 4) and np.isfinite(ev.values).all()
    given = evaluate(clf.predict_proba, None, explanations=[_ablation(clf, data[:4])], metrics=["deletion"],
                     target=1, baseline=0.0, progress=False, seed=0)
    np.testing.assert_allclose(given.values[0, 0], ev.values[0, 0])


def _ablation(clf, x):
    from lumos.methods.perturbation import FeatureAblation

    return FeatureAblation(clf).explain(x, 1, baseline=0.0)


def test_errors() -> None:
    model = make_mlp()
    x = rand(2, 3, 6)
    with pytest.raises(ValidationError, match="unknown metric.*available: .*deletion"):
        evaluate(model, x, methods=["saliency"], metrics=["delection"])
    with pytest.raises(ValidationError, match="methods="):
        evaluate(model, x, metrics=["deletion"])
    with pytest.raises(ValidationError, match="accepted by none"):
        evaluate(model, x, methods=["saliency"], n_stepz=3)
    with pytest.raises(ValidationError, match="n_steps must be an int >= 1"):
        evaluate(model, x, methods=["saliency"], metrics=["deletion"], metric_params={"deletion": {"n_steps": 0}},
                 progress=False)
    assert set(METRICS) <= set(METRIC_INFO)
    assert torch.is_tensor(x)
