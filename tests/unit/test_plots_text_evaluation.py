"""Text display (HTML and figure) and evaluation displays (curves, metric table, agreement matrix, sanity
cascade): escaped tokens with sign/intensity colours, AUCs against np.trapezoid, cell texts equal the values."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest

from lumos import metrics
from lumos.errors import ValidationError
from lumos.explanation import Explanation
from lumos.plots.colors import NEGATIVE_RGB, POSITIVE_RGB
from lumos.plots.evaluation import (
    AgreementMatrixDisplay,
    CurveDisplay,
    MetricTableDisplay,
    SanityCascadeDisplay,
)
from lumos.plots.text import TextDisplay, wrap_tokens

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


@pytest.fixture()
def no_pyplot_state():
    figures, backend = plt.get_fignums(), matplotlib.get_backend()
    yield
    assert plt.get_fignums() == figures
    assert matplotlib.get_backend() == backend


def check_saved(display, tmp_path) -> None:
    png = display.save(tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(io.BytesIO(png), format="png")[..., :3].var() > 0
    assert ET.parse(display.save(tmp_path / "plot.svg")).getroot().tag.endswith("svg")


# ---------------------------------------------------------------------------------------------- text

TOKENS = ["The", "<b>", "film", "&", "\"great\"", "$x$", "ending", "was", "rushed"]
VALUES = np.array([0.0, 0.5, -0.25, 1.0, -2.0, 0.1, 0.0, -0.5, 1.5])

SPAN = re.compile(r'<span style="background-color: rgba\((\d+), (\d+), (\d+), ([0-9.]+)\);[^>]*>(.*?)</span>')


def test_html_has_one_escaped_span_per_token_coloured_by_sign_and_magnitude() -> None:
    html = TextDisplay(TOKENS, VALUES, title="ig <run>").to_html()
    spans = SPAN.findall(html)
    assert len(spans) == len(TOKENS) == html.count("<span")
    assert [s[4] for s in spans] == ["The", "&lt;b&gt;", "film", "&amp;", "&quot;great&quot;", "$x$", "ending", "was",
                                     "rushed"]
    assert "<b>" not in html and "ig &lt;run&gt;" in html
    for (r, g, b, a, _), v in zip(spans, VALUES, strict=True):
        assert (int(r), int(g), int(b)) == (POSITIVE_RGB if v >= 0 else NEGATIVE_RGB)
        assert float(a) == pytest.approx(abs(v) / 2.0, abs=1e-3)  # the largest |value| is fully opaque
    lowered = html.lower()
    assert "<script" not in lowered and "http" not in lowered and "<link" not in lowered and "url(" not in lowered
    assert TextDisplay(TOKENS, VALUES)._repr_html_() == TextDisplay(TOKENS, VALUES).to_html()


def test_embedding_attributions_are_summed_over_d_and_checked() -> None:
    a = np.random.default_rng(0).normal(size=(2, len(TOKENS), 4))
    e = Explanation(attributions=a, method="integrated_gradients")
    d = TextDisplay.from_explanation(e, TOKENS, index=1)
    np.testing.assert_allclose(d.values_, a[1].sum(axis=1))
    np.testing.assert_allclose(TextDisplay(TOKENS, a[1], reduce="l2").values_, np.linalg.norm(a[1], axis=1))
    with pytest.raises(ValidationError, match="9 tokens but 3 attributions"):
        TextDisplay(TOKENS, [1.0, 2.0, 3.0])
    with pytest.raises(ValidationError, match="tokens must be a list of strings"):
        TextDisplay("a sentence", [1.0])
    with pytest.raises(ValidationError, match=r"index must be an int in \[0, 2\)"):
        TextDisplay.from_explanation(e, TOKENS, index=2)
    with pytest.raises(ValidationError, match="needs token attributions"):
        TextDisplay.from_explanation(Explanation(attributions=np.zeros((1, 2, 3, 4)), method="m"), TOKENS)


def test_text_figure_draws_each_token_once_with_its_colour_and_wraps(tmp_path, no_pyplot_state) -> None:
    d = TextDisplay(TOKENS * 3, np.tile(VALUES, 3), width=20).plot()
    assert [t.get_text() for t in d.texts_] == TOKENS * 3  # "$x$" is drawn literally, not as mathtext
    for text, (r, g, b, a) in zip(d.texts_, d.colors_, strict=True):
        face = text.get_bbox_patch().get_facecolor()
        np.testing.assert_allclose(face, (r / 255, g / 255, b / 255, a), atol=1e-6)
    assert len(d.lines_) > 1
    for line in d.lines_:
        assert sum(len(d.tokens[i]) for i in line) + (len(line) - 1) <= 20
    assert [i for line in d.lines_ for i in line] == list(range(len(TOKENS) * 3))
    assert wrap_tokens(["a" * 30, "b"], 10) == [[0], [1]]  # a long token gets its own line
    check_saved(d, tmp_path)


# ---------------------------------------------------------------------------------------------- curves


def test_curves_auc_in_the_legend_matches_trapezoid(tmp_path, no_pyplot_state) -> None:
    x = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    per_sample = np.random.default_rng(1).uniform(size=(6, 5))
    d = CurveDisplay({"ig": np.exp(-3 * x), "saliency": per_sample}, x, kind="deletion").plot()
    assert d.auc_["ig"] == pytest.approx(np.trapezoid(np.exp(-3 * x), x))
    assert d.auc_["saliency"] == pytest.approx(np.trapezoid(per_sample.mean(axis=0), x))
    labels = [t.get_text() for t in d.legend_.get_texts()]
    assert labels == [f"ig (AUC = {d.auc_['ig']:.3f})", f"saliency (AUC = {d.auc_['saliency']:.3f})"]
    np.testing.assert_allclose(d.lines_["saliency"].get_ydata(), per_sample.mean(axis=0))
    np.testing.assert_allclose(d.lines_["ig"].get_xdata(), x)
    assert d.ax_.get_xlabel() == "fraction of features removed"
    assert "insertion" in CurveDisplay({"a": [0, 1]}, kind="insertion").plot().ax_.get_title()
    check_saved(d, tmp_path)
    with pytest.raises(ValidationError, match="increasing"):
        CurveDisplay({"a": [1, 2, 3]}, x=[0, 0.5, 0.4])
    with pytest.raises(ValidationError, match="same number of points"):
        CurveDisplay({"a": [1, 2, 3], "b": [1, 2]})
    with pytest.raises(ValidationError, match="kind must be one of"):
        CurveDisplay({"a": [1, 2]}, kind="removal")


# ---------------------------------------------------------------------------------------------- metric table


def test_metric_table_writes_the_values_and_colours_good_the_same_way(tmp_path, no_pyplot_state) -> None:
    table = {"ig": {"faithfulness": 0.8, "sparseness": 0.3, "deletion_auc": 0.2},
             "saliency": {"faithfulness": 0.5, "sparseness": 0.6, "deletion_auc": 0.4},
             "grad_cam": {"faithfulness": 0.65, "deletion_auc": 0.1}}
    d = MetricTableDisplay.from_dict(table, higher_is_better={"deletion_auc": False}).plot()
    assert d.metrics == ["faithfulness", "sparseness", "deletion_auc"]
    texts = [[t.get_text() for t in row] for row in d.texts_]
    assert texts == [["0.8", "0.3", "0.2"], ["0.5", "0.6", "0.4"], ["0.65", "n/a", "0.1"]]
    # per column: best = 1, worst = 0; deletion AUC is better when lower
    np.testing.assert_allclose(d.goodness_[:, 0], [1.0, 0.0, 0.5])
    np.testing.assert_allclose(d.goodness_[:2, 1], [0.0, 1.0])
    assert np.isnan(d.goodness_[2, 1])
    np.testing.assert_allclose(d.goodness_[:, 2], [2 / 3, 0.0, 1.0])
    assert [t.get_text() for t in d.ax_.get_xticklabels()] == ["faithfulness \u2191", "sparseness \u2191",
                                                               "deletion_auc \u2193"]
    check_saved(d, tmp_path)
    with pytest.raises(ValidationError, match=r"values must be \(methods, metrics\) = \(2, 2\)"):
        MetricTableDisplay(np.zeros((2, 3)), ["a", "b"], ["m", "n"])
    with pytest.raises(ValidationError, match="unknown metrics"):
        MetricTableDisplay(np.zeros((1, 1)), ["a"], ["m"], higher_is_better={"q": False})


# ---------------------------------------------------------------------------------------------- agreement


def test_agreement_matrix_from_lumos_metrics(tmp_path, no_pyplot_state) -> None:
    g = np.random.default_rng(2)
    a = g.normal(size=(5, 10))
    explanations = {"ig": a, "saliency": a + 0.3 * g.normal(size=a.shape), "random": g.normal(size=a.shape)}
    names, matrix = metrics.agreement_matrix(explanations, metric="rank_agreement", k=4)
    d = AgreementMatrixDisplay(names, matrix, metric="rank_agreement").plot()
    np.testing.assert_allclose(np.asarray(d.image_.get_array()), matrix)
    assert [[t.get_text() for t in row] for row in d.texts_] == [[f"{v:.2f}" for v in row] for row in matrix]
    assert [t.get_text() for t in d.ax_.get_yticklabels()] == ["ig", "saliency", "random"]
    assert d.image_.get_clim() == (0.0, 1.0)
    signed = AgreementMatrixDisplay(["a", "b"], [[1.0, -0.5], [-0.5, 1.0]]).plot()
    assert signed.image_.get_clim() == (-1.0, 1.0) and signed.image_.get_cmap().name == "RdBu_r"
    check_saved(d, tmp_path)
    with pytest.raises(ValidationError, match=r"matrix must be square \(3, 3\)"):
        AgreementMatrixDisplay(["a", "b", "c"], np.eye(2))


# ---------------------------------------------------------------------------------------------- sanity cascade


def test_sanity_cascade_rows_methods_columns_layers(tmp_path, no_pyplot_state) -> None:
    g = np.random.default_rng(3)
    maps = {name: {col: g.normal(size=(6, 6)) for col in ["original", "fc2", "conv2", "conv1"]}
            for name in ["ig", "saliency"]}
    d = SanityCascadeDisplay(maps, absolute=True, scores={"ig": [1, 0.6, 0.3, 0.1], "saliency": [1, 1, 0.9, 0.9]})
    d.plot()
    assert d.axes_.shape == (2, 4)
    assert [a.get_title() for a in d.axes_[0]] == ["original", "fc2", "conv2", "conv1"]
    assert [d.axes_[r, 0].get_ylabel() for r in range(2)] == ["ig", "saliency"]
    for r, name in enumerate(maps):
        for c, col in enumerate(maps[name]):
            np.testing.assert_allclose(np.asarray(d.cell_images_[r][c].get_array()), np.abs(maps[name][col]))
    assert d.axes_[0, 2].get_xlabel() == "0.30"
    check_saved(d, tmp_path)
    listed = SanityCascadeDisplay({"ig": [np.ones((3, 3))] * 3}, columns=["original", "b", "a"]).plot()
    assert [a.get_title() for a in listed.axes_[0]] == ["original", "b", "a"]
    with pytest.raises(ValidationError, match="columns has 2 names for 3 maps"):
        SanityCascadeDisplay({"ig": [np.ones((3, 3))] * 3}, columns=["original", "b"])
    with pytest.raises(ValidationError, match="has columns"):
        SanityCascadeDisplay({"ig": {"original": np.ones((2, 2))}, "sg": {"other": np.ones((2, 2))}})


def kept_result(method: str, steps: list[str], maps: np.ndarray, spearman: np.ndarray):
    from lumos.metrics.randomisation import RandomisationResult

    return RandomisationResult("cascading", method, steps, {"spearman_abs": spearman}, maps=maps)


def test_sanity_cascade_from_results_draws_the_kept_maps(tmp_path, no_pyplot_state) -> None:
    g = np.random.default_rng(4)
    steps = ["fc2", "fc1", "conv2", "conv1"]
    maps = {m: np.abs(g.normal(size=(5, 3, 9, 9))).astype(np.float32) for m in ["saliency", "guided_backprop"]}
    sims = {m: g.uniform(size=(4, 3)) for m in maps}
    results = {m: kept_result(m, steps, maps[m], sims[m]) for m in maps}
    d = SanityCascadeDisplay.from_results(results, index=1).plot()
    assert d.columns == ["original", *steps] and d.names == ["saliency", "guided_backprop"]
    assert d.axes_.shape == (2, 5)
    for r, m in enumerate(maps):
        for c in range(5):  # column c draws stored map c of sample 1 (c = 0: the trained model)
            np.testing.assert_array_equal(np.asarray(d.cell_images_[r][c].get_array()), maps[m][c, 1])
        assert [d.axes_[r, c].get_xlabel() for c in range(5)] == ["1.00", *[f"{v:.2f}" for v in sims[m][:, 1]]]
    assert d.cell_images_[0][0].get_cmap().name != "RdBu_r"  # magnitudes: a sequential colour map
    check_saved(d, tmp_path)
    # at most 3 columns: the original, the first and the last step
    short = SanityCascadeDisplay.from_results(results, index=0, max_columns=3, measure=None)
    assert short.columns == ["original", "fc2", "conv1"] and short.scores is None
    np.testing.assert_array_equal(short.rows[1][2], maps["guided_backprop"][4, 0])
    # methods that kept no maps are left out
    results["no_maps"] = kept_result("no_maps", steps, None, sims["saliency"])
    assert SanityCascadeDisplay.from_results(results).names == ["saliency", "guided_backprop"]


def test_sanity_cascade_from_results_errors() -> None:
    steps = ["fc"]
    ok = kept_result("s", steps, np.ones((2, 1, 8, 8), np.float32), np.ones((1, 1)))
    with pytest.raises(ValidationError, match="no result kept its maps"):
        SanityCascadeDisplay.from_results({"s": kept_result("s", steps, None, np.ones((1, 1)))})
    with pytest.raises(ValidationError, match=r"index must be an int in \[0, 1\)"):
        SanityCascadeDisplay.from_results({"s": ok}, index=1)
    with pytest.raises(ValidationError, match="max_columns must be an int >= 2"):
        SanityCascadeDisplay.from_results({"s": ok}, max_columns=1)
    with pytest.raises(ValidationError, match="measure must be one of"):
        SanityCascadeDisplay.from_results({"s": ok}, measure="ssim")
    with pytest.raises(ValidationError, match="needs 2-D"):
        SanityCascadeDisplay.from_results({"s": kept_result("s", steps, np.ones((2, 1, 8)), np.ones((1, 1)))})
