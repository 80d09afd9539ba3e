"""Unit: the Explanation result type (lumos.explanation): views, pandas export and the .npz format."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

import lumos
from conftest import make_linear, rand
from lumos.explanation import FORMAT_VERSION, Explanation, stack_names

ATTR = np.array([[0.5, -2.0, 1.0, 0.0], [-0.1, 0.2, -3.0, 0.3]])


def test_top_features_values() -> None:
    e = Explanation(attributions=ATTR, feature_names=["age", "income", "debt", "score"])
    assert e.top_features(2) == [[("income", -2.0), ("debt", 1.0)], [("debt", -3.0), ("score", 0.3)]]
    assert e.top_features(1, by="positive") == [[("debt", 1.0)], [("score", 0.3)]]
    assert e.top_features(2, by="negative") == [[("income", -2.0), ("score", 0.0)], [("debt", -3.0), ("age", -0.1)]]
    assert len(e.top_features(10)[0]) == 4  # at most every feature
    assert len(e) == 2


def test_top_features_default_names() -> None:
    image = np.zeros((1, 1, 2, 3))
    image[0, 0, 1, 2] = 5.0
    image[0, 0, 0, 1] = -4.0
    assert Explanation(attributions=image).top_features(2) == [[("(0, 1, 2)", 5.0), ("(0, 0, 1)", -4.0)]]
    pair = Explanation(attributions=(torch.tensor([[1.0, -3.0]]), torch.tensor([[2.0]])))
    assert pair.top_features(3) == [[("x1", -3.0), ("x2", 2.0), ("x0", 1.0)]]  # tuple: flattened in order
    assert Explanation(attributions=ATTR).top_features(1)[0] == [("x1", -2.0)]


@pytest.mark.parametrize(("k", "by"), [(0, "abs"), (1.5, "abs"), (True, "abs"), (2, "largest")])
def test_top_features_rejects(k, by: str) -> None:
    with pytest.raises(lumos.ValidationError, match="top_features"):
        Explanation(attributions=ATTR).top_features(k, by=by)


def test_wrong_number_of_feature_names() -> None:
    with pytest.raises(lumos.ValidationError, match="3 names for 4 features"):
        Explanation(attributions=ATTR, feature_names=["a", "b", "c"]).top_features(1)
    with pytest.raises(lumos.ValidationError, match="2 names for 4 features"):
        lumos.Saliency(make_linear()).explain(rand(0, 2, 4, dtype=torch.float64), 0, feature_names=["a", "b"])
    assert stack_names(("a", 1), 2, owner="T") == ["a", "1"]
    assert stack_names(None, 2, owner="T") is None
    with pytest.raises(lumos.ValidationError, match="T: feature_names has 1 names for 2 features"):
        stack_names(["a"], 2, owner="T")


def test_to_pandas_with_feature_names() -> None:
    pd = pytest.importorskip("pandas")
    x = rand(1, 3, 4, dtype=torch.float64)
    e = lumos.Saliency(make_linear()).explain(x, [0, 1, 2], feature_names=["a", "b", "c", "d"])
    frame = e.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["a", "b", "c", "d"] and frame.index.name == "sample"
    np.testing.assert_array_equal(frame.to_numpy(), e.attributions.numpy())
    assert list(Explanation(attributions=ATTR).to_pandas().columns) == ["x0", "x1", "x2", "x3"]
    with pytest.raises(lumos.ValidationError, match="2-d"):
        Explanation(attributions=np.zeros((2, 1, 3, 3))).to_pandas()


def test_save_load_tuple_attributions_without_pickle(tmp_path) -> None:
    e = Explanation(
        attributions=(np.arange(6.0).reshape(2, 3), np.ones((2, 1, 2, 2), dtype=np.float32)),
        inputs=(np.zeros((2, 3)), np.zeros((2, 1, 2, 2), dtype=np.float32)),
        targets=np.array([1, 0]),
        scores=np.array([0.5, 0.25]),
        method="integrated_gradients",
        params={"n_steps": 8, "method": "gauss_legendre"},
        target_description="class per sample",
        seed=None,
        layer=None,
        feature_names=None,
        extras={"convergence_delta": np.array([1e-3, -2e-3]), "n_evaluations": 40, "note": "ok"},
    )
    path = e.save(tmp_path / "sub" / "run.npz")  # parent folders are created
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["__meta__", "attributions_0", "attributions_1", "extra__convergence_delta",
                                      "inputs_0", "inputs_1", "scores", "targets"]
        meta = json.loads(bytes(data["__meta__"]).decode())
        assert meta["format_version"] == FORMAT_VERSION and meta["array_type"] == "numpy"
        assert all(data[name].dtype != object for name in data.files)
    loaded = lumos.load(path)
    assert isinstance(loaded.attributions, tuple) and len(loaded.attributions) == 2
    for got, want in zip(loaded.attributions + loaded.inputs, e.attributions + e.inputs, strict=True):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.targets, [1, 0])
    np.testing.assert_array_equal(loaded.scores, [0.5, 0.25])
    assert loaded.params == e.params and loaded.method == e.method
    assert loaded.extras["n_evaluations"] == 40 and loaded.extras["note"] == "ok"
    np.testing.assert_array_equal(loaded.extras["convergence_delta"], [1e-3, -2e-3])


def test_save_load_torch_attributions_and_more_than_ten_inputs(tmp_path) -> None:
    parts = tuple(torch.full((1, 2), float(i)) for i in range(12))
    e = Explanation(attributions=parts, inputs=parts, feature_names=[f"f{i}" for i in range(24)], seed=7,
                    layer="embeddings")
    loaded = lumos.load(e.save(tmp_path / "many"))
    assert len(loaded.attributions) == 12
    for i, t in enumerate(loaded.attributions):
        assert isinstance(t, torch.Tensor) and torch.equal(t, parts[i])
    assert loaded.feature_names == e.feature_names and loaded.seed == 7 and loaded.layer == "embeddings"


def test_save_rejects_metadata_that_is_not_json(tmp_path) -> None:
    e = Explanation(attributions=ATTR, params={"model": object()})
    with pytest.raises(lumos.ValidationError, match="JSON"):
        e.save(tmp_path / "bad.npz")


def test_save_path_suffix(tmp_path) -> None:
    e = Explanation(attributions=ATTR)
    assert e.save(tmp_path / "a").name == "a.npz"
    assert e.save(tmp_path / "b.npz").name == "b.npz"
    assert e.save(tmp_path / "c.json").name == "c.json.npz"


def test_load_errors(tmp_path) -> None:
    with pytest.raises(lumos.ValidationError, match="no such file"):
        lumos.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(lumos.ValidationError, match="not a lumos explanation"):
        lumos.load(tmp_path / "other.npz")
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as archive:  # an object array would need pickle
        np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        archive.write(tmp_path / "obj.npy", "__meta__.npy")
    with pytest.raises(ValueError, match="allow_pickle"):
        lumos.load(tmp_path / "evil.npz")


def test_repr_and_views() -> None:
    e = Explanation(attributions=torch.zeros(2, 3), method="saliency", target_description="class 1",
                    extras={"n_evaluations": 2})
    assert repr(e) == "Explanation(method='saliency', attributions=(2, 3), target='class 1', extras=['n_evaluations'])"
    assert not e.is_tuple and isinstance(e.attribution_arrays()[0], np.ndarray)
    assert set(e.versions) == {"lumos", "torch", "numpy", "python"} and e.versions["lumos"] == lumos.__version__
