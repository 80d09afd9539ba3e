"""Unit: target normalisation and resolution (lumos.core.targets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from lumos.core.targets import (
    Class,
    Expanded,
    Neuron,
    Output,
    Predicted,
    PredictedClass,
    Region,
    ScoreFunction,
    as_target,
)

OUT = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [-1.0, -2.0, 4.0], [0.0, 1.0, 0.9]])
ROWS = torch.arange(4)


def resolve(target, output=OUT):  # noqa: ANN001, ANN201
    return target.resolve(output, owner="Test")


def test_as_target_kinds() -> None:
    assert isinstance(as_target(None, owner="T"), Predicted)
    for value, expected in [(2, [2]), (np.int64(1), [1]), ([0, 2, 1, 1], [0, 2, 1, 1]), ((1, 0), [1, 0]),
                            (np.array([2, 0]), [2, 0]), (torch.tensor([1, 1]), [1, 1]), (torch.tensor(2), [2]),
                            (np.array([1.0, 2.0]), [1, 2])]:
        target = as_target(value, owner="T")
        assert type(target) is Class
        np.testing.assert_array_equal(target.indices(), expected)
    region = Region(0, torch.ones(2, 2))
    assert as_target(region, owner="T") is region

    def fn(out):  # noqa: ANN001, ANN202
        return out[:, 0]

    assert isinstance(as_target(fn, owner="T"), ScoreFunction)


@pytest.mark.parametrize("bad", ["cat", 1.5, True, np.bool_(True), [1.5, 2.0], [[0, 1], [1, 0]],
                                 np.array([True, False]), object(), {"a": 1}])
def test_as_target_rejects(bad) -> None:
    with pytest.raises(lumos.TargetError, match="T: target"):
        as_target(bad, owner="T")


def test_class_scores_and_range() -> None:
    target = resolve(Class(2))
    np.testing.assert_array_equal(target.indices(), [2, 2, 2, 2])  # expanded to every sample
    torch.testing.assert_close(target.score(OUT, ROWS, {}), OUT[:, 2])
    per_sample = resolve(Class([1, 0, 2, 1]))
    torch.testing.assert_close(per_sample.score(OUT, ROWS, {}), torch.tensor([2.0, 3.0, 4.0, 1.0]))
    # rows map to samples through sample_index (e.g. many path points per sample)
    torch.testing.assert_close(per_sample.score(OUT, torch.tensor([2, 2, 0, 3]), {}),
                               torch.tensor([-1.0, 0.5, -2.0, 1.0]))
    with pytest.raises(lumos.TargetError, match=r"Test: target 3 is out of range .* \(valid: 0\.\.2\)"):
        resolve(Class(3))
    with pytest.raises(lumos.TargetError, match=r"target -1 is out of range"):
        resolve(Class([0, -1, 0, 0]))
    with pytest.raises(lumos.TargetError, match=r"one int per sample \(4\), got 2 values"):
        resolve(Class([0, 1]))
    with pytest.raises(lumos.TargetError, match="Region"):
        resolve(Class(0), torch.zeros(4, 3, 2, 2))


def test_class_resolution_with_n_samples() -> None:
    """A first chunk of rows is enough to resolve a per-sample target for all samples."""
    target = Class([0, 1, 2, 0, 1, 2]).resolve(OUT[:2], owner="T", n_samples=6)
    np.testing.assert_array_equal(target.indices(), [0, 1, 2, 0, 1, 2])


def test_output_is_described_as_an_output() -> None:
    assert resolve(Output(1)).describe() == "output 1"
    assert resolve(Class(1)).describe() == "class 1"
    assert resolve(Class([0, 1, 0, 1])).describe() == "class per sample"


def test_predicted() -> None:
    target = resolve(Predicted())
    assert isinstance(target, PredictedClass)
    np.testing.assert_array_equal(target.indices(), [1, 0, 2, 1])
    assert target.describe() == "predicted class"
    torch.testing.assert_close(Predicted().score(OUT, ROWS, {}), torch.tensor([2.0, 3.0, 4.0, 1.0]))
    column = OUT[:, :1]
    torch.testing.assert_close(Predicted().score(column, ROWS, {}), column[:, 0])  # one output: itself
    flat = OUT[:, 0]
    single = Predicted().resolve(flat, owner="T")
    torch.testing.assert_close(single.score(flat, ROWS, {}), flat)
    with pytest.raises(lumos.TargetError, match=r"Region\(class_index, mask\)"):
        resolve(Predicted(), torch.zeros(4, 3, 2, 2))


def test_region() -> None:
    output = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    target = Region(1, mask).resolve(output, owner="T")
    expected = (output[:, 1] * mask).sum((1, 2))
    torch.testing.assert_close(target.score(output, torch.arange(2), {}), expected)
    per_sample = torch.stack([mask, 1 - mask])
    target = Region(2, per_sample.numpy()).resolve(output, owner="T")
    torch.testing.assert_close(target.score(output, torch.tensor([1, 1]), {}),
                               (output[:, 2] * per_sample[1]).sum((1, 2)))
    assert target.describe() == "class 2 over a region"
    np.testing.assert_array_equal(target.indices(), [2])


def test_neuron_scores() -> None:
    activation = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)
    layer = torch.nn.Identity()
    captured = {layer: activation}
    torch.testing.assert_close(Neuron(layer, 1).score(None, None, captured), activation[:, 1].sum(1))
    torch.testing.assert_close(Neuron(layer, (2, 1)).score(None, None, captured), activation[:, 2, 1])
    for bad in (3, -1, (0,), (0, 2), (0, 0, 0), 1.5):
        with pytest.raises(lumos.TargetError, match=r"Neuron: index .* \(batch, 3, 2\)"):
            Neuron(layer, bad).score(None, None, captured)
    assert Neuron("features.0", 1).describe() == "neuron 1 of features.0"
    assert Neuron("features.0", 1).layers == ("features.0",)


def test_score_function_checks_its_result() -> None:
    target = ScoreFunction(lambda out: out.sum(1))
    torch.testing.assert_close(target.score(OUT, ROWS, {}), OUT.sum(1))
    with pytest.raises(lumos.TargetError, match=r"shape \(4,\)"):
        ScoreFunction(lambda out: out).score(OUT, ROWS, {})
    with pytest.raises(lumos.TargetError, match=r"shape \(4,\)"):
        ScoreFunction(lambda out: 1.0).score(OUT, ROWS, {})


def test_expanded_maps_rows_to_samples() -> None:
    """Rows 0..2 belong to sample 0, rows 3..5 to sample 1 (factor 3)."""
    output = torch.arange(6 * 3, dtype=torch.float64).reshape(6, 3)
    inner = Class([2, 0]).resolve(output[::3], owner="T")
    target = Expanded(inner, 3).resolve(output, owner="T")
    scores = target.score(output, torch.arange(6), {})
    torch.testing.assert_close(scores, output[torch.arange(6), torch.tensor([2, 2, 2, 0, 0, 0])])
    np.testing.assert_array_equal(target.indices(), [2, 0])
    assert target.describe() == "class per sample"
