"""Model-based metrics on a multi-input model: the same values as on the single-input model that takes the
inputs concatenated (features and references split per input, rows split back into the model's inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lumos
from lumos import metrics
from lumos.errors import ValidationError


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(10, 16, generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(16, 3, generator=g, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.w1) @ self.w2


class _TwoInputs(nn.Module):
    """The same network on (a (n, 4), b (n, 6)): their concatenation is _Net's input."""

    def __init__(self, net: _Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b.reshape(b.shape[0], -1)], 1))


def _data():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, 6, generator=g, dtype=torch.float64)
    attr_a = torch.randn(5, 4, generator=g, dtype=torch.float64)
    attr_b = torch.randn(5, 6, generator=g, dtype=torch.float64)
    net = _Net()
    return net, _TwoInputs(net), (a, b), (attr_a, attr_b)


CASES = [
    ("deletion", {"n_steps": 5}),
    ("insertion", {"n_steps": 5}),
    ("region_perturbation", {"n_steps": 4}),
    ("comprehensiveness", {}),
    ("sufficiency", {}),
    ("faithfulness_correlation", {"n_runs": 30, "subset_size": 3, "seed": 3}),
    ("infidelity", {"n_perturbations": 20, "seed": 4}),
    ("completeness_residual", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("baseline", [0.25, "tuple"])
def test_multi_input_metric_equals_the_concatenated_single_input_metric(name: str, kwargs: dict, baseline) -> None:
    net, two, (a, b), (attr_a, attr_b) = _data()
    fn = getattr(metrics, name)
    if baseline == "tuple":
        multi_baseline = (torch.full((4,), -0.5, dtype=torch.float64), torch.linspace(0, 1, 6, dtype=torch.float64))
        single_baseline = torch.cat(multi_baseline)
    else:
        multi_baseline = single_baseline = baseline
    extra = {} if name == "infidelity" else {"baseline": None}
    if extra:
        extra["baseline"] = multi_baseline
    multi = fn(two, (a, b), (attr_a, attr_b), target=1, **extra, **kwargs)
    if extra:
        extra["baseline"] = single_baseline
    single = fn(net, torch.cat([a, b], 1), torch.cat([attr_a, attr_b], 1), target=1, **extra, **kwargs)
    np.testing.assert_allclose(multi.values, single.values, rtol=1e-12, atol=1e-12)
    if single.curves is not None:
        np.testing.assert_allclose(multi.curves, single.curves, rtol=1e-12, atol=1e-12)
    assert multi.n_evaluations == single.n_evaluations


def test_multi_input_features_follow_each_inputs_shape_and_groups() -> None:
    """An image input and a tabular input: pixels of the image (all channels) and columns of the table."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 2)).double()

    class ImageAndTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(2 * 3 * 3 + 4, 2).double()

        def forward(self, image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([image.flatten(1), table], 1))

    del net
    model = ImageAndTable()
    image, table = torch.rand(2, 2, 3, 3, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    attributions = (torch.rand(2, 2, 3, 3, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64))
    result = metrics.deletion(model, (image, table), attributions, target=0, n_steps=13)
    assert result.curves.shape == (2, 14)  # 9 pixels + 4 columns = 13 features, one removed per step
    groups = (np.zeros((2, 3, 3), dtype=np.int64), np.array([0, 0, 1, 1]))
    grouped = metrics.deletion(model, (image, table), attributions, target=0, n_steps=3, feature_groups=groups)
    assert grouped.curves.shape == (2, 4)  # 1 image group + 2 column groups
    with pytest.raises(ValidationError, match="tuple of 2 integer arrays"):
        metrics.deletion(model, (image, table), attributions, target=0, feature_groups=groups[1])


def test_multi_input_errors_name_what_is_expected() -> None:
    _, two, (a, b), (attr_a, attr_b) = _data()
    with pytest.raises(ValidationError, match=r"attributions must have the inputs' shape"):
        metrics.deletion(two, (a, b), torch.cat([attr_a, attr_b], 1), target=1)
    with pytest.raises(ValidationError, match="tuple of 2 baselines"):
        metrics.deletion(two, (a, b), (attr_a, attr_b), target=1, baseline=(0.0, 0.0, 0.0))
    with pytest.raises(ValidationError, match=r"needs image inputs .*\(baseline of inputs\[0\]\)"):
        metrics.deletion(two, (a, b), (attr_a, attr_b), target=1, baseline="blur")
    with pytest.raises(ValidationError, match="one dtype"):
        metrics.deletion(lambda p, q: p[:, :1] + q[:, :1].double(), (a, b.long()), (attr_a, attr_b), target=0)
    with pytest.raises(ValidationError, match="single-input models"):
        metrics.road(two, (a, b), (attr_a, attr_b), target=1)


def test_multi_input_metrics_on_an_explanation_and_in_evaluate() -> None:
    net, two, (a, b), _ = _data()
    explanation = lumos.explain(two, (a, b), method="integrated_gradients", target=1, n_steps=64)
    residual = metrics.completeness_residual(two, None, explanation, baseline=0.0)
    assert float(np.abs(residual.values).max()) < 1e-4  # IG's completeness, through the metric
    evaluation = metrics.evaluate(two, (a, b), methods=["saliency", "integrated_gradients"],
                                  metrics=["deletion", "insertion", "completeness_residual"], target=1)
    frame = evaluation.to_pandas()
    assert len(frame) > 0 and np.isfinite(evaluation.mean).all()


def test_sanity_check_on_a_two_input_model() -> None:
    """Randomising the weights of the two-input network changes its saliency maps (both inputs' parts)."""
    _, two, (a, b), _ = _data()
    report = lumos.sanity_check(two, (a, b), ["saliency"], target=1, seed=0)
    assert report.methods == ["saliency"]
    assert report.passed["saliency"]
