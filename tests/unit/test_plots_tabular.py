"""Tabular displays (bar, waterfall, force, beeswarm, dependence): bars, steps, segments and dots are checked
against the attributions (order, heights, signs, cumulative sums, jitter determinism); bad input raises."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from lumos.errors import ValidationError
from lumos.explanation import Explanation
from lumos.plots.colors import NEGATIVE_COLOR, POSITIVE_COLOR
from lumos.plots.summary import BeeswarmDisplay, DependenceDisplay
from lumos.plots.tabular import BarDisplay, ForceDisplay, WaterfallDisplay

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

NAMES = ["age", "income", "height", "weight", "score", "rooms", "distance", "year"]


@pytest.fixture()
def no_pyplot_state():
    figures, backend = plt.get_fignums(), matplotlib.get_backend()
    yield
    assert plt.get_fignums() == figures
    assert matplotlib.get_backend() == backend


def explanation(n: int = 40, *, base=0.25) -> Explanation:
    g = np.random.default_rng(0)
    x = g.normal(size=(n, len(NAMES)))
    weights = np.array([3.0, -2.0, 0.5, 1.5, -0.25, 0.1, -1.0, 0.75])
    extras = {} if base is None else {"base_value": base}
    return Explanation(attributions=torch.from_numpy(x * weights), inputs=torch.from_numpy(x), method="kernel_shap",
                       feature_names=list(NAMES), extras=extras)


def check_saved(display, tmp_path) -> None:
    png = display.save(tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(io.BytesIO(png), format="png")[..., :3].var() > 0
    assert ET.parse(display.save(tmp_path / "plot.svg")).getroot().tag.endswith("svg")


# ---------------------------------------------------------------------------------------------- bar


def test_bar_shows_the_k_largest_by_magnitude_with_signed_colours(tmp_path, no_pyplot_state) -> None:
    e = explanation()
    values = e.attributions[3].numpy()
    d = BarDisplay.from_explanation(e, index=3, k=5).plot()
    expected = sorted(range(len(NAMES)), key=lambda j: -abs(values[j]))[:5]
    assert list(d.shown_) == expected
    assert len(d.bars_) == 5
    np.testing.assert_allclose([b.get_width() for b in d.bars_], values[expected])
    ys = [b.get_y() + b.get_height() / 2 for b in d.bars_]
    assert ys == sorted(ys, reverse=True)  # the most important on top
    for bar, v in zip(d.bars_, values[expected], strict=True):
        assert to_hex(bar.get_facecolor()) == (POSITIVE_COLOR if v >= 0 else NEGATIVE_COLOR)
    labels = [t.get_text() for t in d.ax_.get_yticklabels()]
    x = e.inputs[3].numpy()
    assert labels == [f"{NAMES[j]} = {x[j]:.4g}" for j in expected]
    assert [t.get_text().strip() for t in d.value_texts_] == [f"{v:+.3g}" for v in values[expected]]
    assert d.ax_.get_title() == "kernel_shap - sample 3"
    check_saved(d, tmp_path)


# ---------------------------------------------------------------------------------------------- waterfall


def test_waterfall_runs_from_the_base_value_to_the_prediction(tmp_path, no_pyplot_state) -> None:
    e = explanation(base=np.linspace(0, 1, 40))  # one base value per sample
    values = e.attributions[5].numpy()
    d = WaterfallDisplay.from_explanation(e, index=5, k=4).plot()
    base = np.linspace(0, 1, 40)[5]
    assert d.cumulative_[0] == pytest.approx(base)
    assert d.cumulative_[-1] == pytest.approx(base + values.sum())
    assert d.prediction_ == pytest.approx(base + values.sum())
    # k - 1 = 3 features, the rest grouped at the bottom; each step starts where the previous ended
    order = np.argsort(-np.abs(values), kind="stable")
    assert d.steps_[0][0] == "other (5 features)"
    assert d.steps_[0][1] == pytest.approx(values[order[3:]].sum())
    np.testing.assert_allclose([s[1] for s in d.steps_[1:]], values[order[:3]][::-1])  # largest on top
    for previous, step in zip(d.steps_, d.steps_[1:], strict=False):
        assert step[2] == pytest.approx(previous[3])
    for bar, (_, value, start, _end) in zip(d.bars_, d.steps_, strict=True):
        assert sorted([bar.get_x(), bar.get_x() + bar.get_width()]) == pytest.approx(sorted([start, start + value]))
    texts = [t.get_text() for t in d.ax_.texts]
    assert f"E[f(X)] = {base:.4g}" in texts and f"f(x) = {base + values.sum():.4g}" in texts
    check_saved(d, tmp_path)


def test_waterfall_without_grouping_and_base_value_rules() -> None:
    values = np.array([0.5, -1.0, 2.0])
    d = WaterfallDisplay(values, base_value=1.0, k=10).plot()
    assert [s[1] for s in d.steps_] == [0.5, -1.0, 2.0]  # all shown, smallest at the bottom
    np.testing.assert_allclose(d.cumulative_, [1.0, 1.5, 0.5, 2.5])
    with pytest.raises(ValidationError, match="needs a base value"):
        WaterfallDisplay.from_explanation(explanation(base=None))
    with pytest.raises(ValidationError, match="scalar or one value per sample"):
        WaterfallDisplay.from_explanation(explanation(base=np.zeros(3)))
    d2 = WaterfallDisplay.from_explanation(explanation(base=None), base_value=-2.0)
    assert d2.base_value == -2.0
    with pytest.raises(ValidationError, match="base_value must be a finite number"):
        WaterfallDisplay(values, base_value=float("nan"))


# ---------------------------------------------------------------------------------------------- force


def test_force_strip_pushes_meet_at_the_prediction(tmp_path, no_pyplot_state) -> None:
    e = explanation()
    values = e.attributions[0].numpy()
    d = ForceDisplay.from_explanation(e, index=0, k=3).plot()
    fx = 0.25 + values.sum()
    assert d.prediction_ == pytest.approx(fx)
    pos = [s for s in d.segments_ if s[1] > 0]
    neg = [s for s in d.segments_ if s[1] < 0]
    assert pos[-1][3] == pytest.approx(fx) and neg[0][2] == pytest.approx(fx)
    assert pos[0][2] == pytest.approx(fx - values[values > 0].sum())
    assert neg[-1][3] == pytest.approx(fx - values[values < 0].sum())
    for j, v, start, end in d.segments_:
        assert end - start == pytest.approx(abs(v)) and values[j] == v
    assert abs(pos[-1][1]) == max(abs(s[1]) for s in pos)  # the largest push sits next to f(x)
    assert abs(neg[0][1]) == max(abs(s[1]) for s in neg)
    assert len(d.patches_) == np.count_nonzero(values)
    labelled = [t.get_text() for t in d.ax_.texts
                if " = " in t.get_text() and not t.get_text().startswith(("f(x)", "base"))]
    assert len(labelled) == 3
    check_saved(d, tmp_path)


# ---------------------------------------------------------------------------------------------- beeswarm


def test_beeswarm_orders_features_and_places_dots_at_the_attributions(tmp_path, no_pyplot_state) -> None:
    e = explanation()
    a, x = e.attributions.numpy(), e.inputs.numpy()
    d = BeeswarmDisplay.from_explanation(e, k=6, seed=3).plot()
    mean_abs = np.abs(a).mean(axis=0)
    expected = list(np.argsort(-mean_abs))[:6]
    assert list(d.shown_) == expected
    assert [t.get_text() for t in d.ax_.get_yticklabels()] == [NAMES[j] for j in expected]
    for row, (j, dots) in enumerate(zip(expected, d.collections_, strict=True)):
        offsets = dots.get_offsets()
        np.testing.assert_allclose(offsets[:, 0], a[:, j])
        centre = len(expected) - 1 - row
        assert np.all(np.abs(offsets[:, 1] - centre) <= 0.4 + 1e-12)
        colours = np.asarray(dots.get_array())
        lo, hi = np.percentile(x[:, j], [5, 95])
        np.testing.assert_allclose(colours, np.clip((x[:, j] - lo) / (hi - lo), 0, 1))
    # seeded jitter: same seed, same picture; another seed, other offsets
    again = BeeswarmDisplay.from_explanation(e, k=6, seed=3).plot()
    other = BeeswarmDisplay.from_explanation(e, k=6, seed=4).plot()
    np.testing.assert_array_equal(again.collections_[0].get_offsets(), d.collections_[0].get_offsets())
    assert not np.allclose(other.collections_[0].get_offsets()[:, 1], d.collections_[0].get_offsets()[:, 1])
    assert d.colorbar_ is not None
    check_saved(d, tmp_path)


def test_beeswarm_without_feature_values_and_errors() -> None:
    d = BeeswarmDisplay(np.array([[1.0, -4.0], [2.0, 0.0]]), k=None).plot()
    assert list(d.shown_) == [1, 0] and d.colorbar_ is None  # mean |a|: 1.5 and 2
    with pytest.raises(ValidationError, match=r"values must be \(N, features\)"):
        BeeswarmDisplay(np.zeros(5))
    with pytest.raises(ValidationError, match="feature_names has 2 names for 8 features"):
        BeeswarmDisplay(np.zeros((3, 8)), feature_names=["a", "b"])


# ---------------------------------------------------------------------------------------------- dependence


def test_dependence_plots_feature_values_against_attributions(tmp_path, no_pyplot_state) -> None:
    e = explanation()
    a, x = e.attributions.numpy(), e.inputs.numpy()
    d = DependenceDisplay.from_explanation(e, "income", color_by="age").plot()
    np.testing.assert_allclose(d.scatter_.get_offsets(), np.column_stack([x[:, 1], a[:, 1]]))
    np.testing.assert_allclose(np.asarray(d.scatter_.get_array()), x[:, 0])
    assert d.ax_.get_xlabel() == "income" and d.colorbar_.ax.get_ylabel() == "age"
    by_index = DependenceDisplay.from_explanation(e, 6).plot()
    np.testing.assert_allclose(by_index.scatter_.get_offsets()[:, 1], a[:, 6])
    assert by_index.colorbar_ is None
    check_saved(d, tmp_path)
    with pytest.raises(ValidationError, match="'salary' is not a feature name"):
        DependenceDisplay.from_explanation(e, "salary")
    with pytest.raises(ValidationError, match="color_by"):
        DependenceDisplay.from_explanation(e, "age", color_by=99)
    no_inputs = Explanation(attributions=a, method="m")
    with pytest.raises(ValidationError, match="needs the feature values"):
        DependenceDisplay.from_explanation(no_inputs, 0)


# ---------------------------------------------------------------------------------------------- errors


def test_tabular_displays_reject_images_bad_index_and_names() -> None:
    image = Explanation(attributions=np.zeros((2, 3, 4, 4)), method="m")
    for cls in (BarDisplay, BeeswarmDisplay):
        with pytest.raises(ValidationError, match=r"needs tabular attributions \(N, features\)"):
            cls.from_explanation(image)
    with pytest.raises(ValidationError, match=r"BarDisplay: index must be an int in \[0, 40\)"):
        BarDisplay.from_explanation(explanation(), index=40)
    with pytest.raises(ValidationError, match="k must be an int >= 1"):
        BarDisplay(np.ones(3), k=0)
    with pytest.raises(ValidationError, match="feature_names has 2 names for 3 features"):
        BarDisplay(np.ones(3), feature_names=["a", "b"])
    bad_names = Explanation(attributions=np.zeros((2, 3)), feature_names=["a"], method="m")
    with pytest.raises(ValidationError, match="feature_names has 1 names for 3 features"):
        BarDisplay.from_explanation(bad_names)
