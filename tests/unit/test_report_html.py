"""The HTML report: every section, inline PNG figures only, no network reference, escaped user strings, the
numbers of the evaluation and the reproducibility table."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from lumos.errors import ValidationError
from lumos.explanation import Explanation
from lumos.metrics import Evaluation, SanityReport, SanityRule
from lumos.metrics.randomisation import RandomisationResult
from lumos.report import build
from lumos.report.html import PNG_SIGNATURE

SECTIONS = ["prediction", "explanations", "evaluation", "sanity", "agreement", "summary", "reproducibility"]
W = np.array([[1.0, -2.0, 0.5, 3.0], [-1.5, 0.25, 2.0, -0.75]])
X = np.array([[1.0, 2.0, -1.0, 0.5], [0.5, -1.0, 2.0, 1.0], [-2.0, 0.0, 1.0, 1.5]])
NAMES = ["income", "<script>alert('x')</script>", "age & years", "savings"]


class Page(HTMLParser):
    """Collects the tags' attributes and the ids of the document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def of(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def tabular_explanations() -> dict[str, Explanation]:
    z = X @ W.T
    target = z.argmax(axis=1)
    exact = W[target] * X
    common = {"inputs": X.copy(), "targets": target, "scores": z[np.arange(3), target], "target_description":
              "predicted class"}
    return {
        "integrated_gradients": Explanation(exact, method="integrated_gradients", params={"n_steps": 32},
                                            extras={"convergence_delta": np.zeros(3)}, **common),
        "saliency": Explanation(W[target].copy(), method="saliency", params={"abs": False}, **common),
        "kernel_shap": Explanation(exact + 0.01, method="kernel_shap", params={"n_samples": 64}, seed=123,
                                   extras={"base_value": np.zeros(3)}, **common),
    }


def evaluation() -> Evaluation:
    values = np.array([[[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]],     # integrated_gradients: the most faithful
                       [[0.5, 0.6, 0.7], [0.4, 0.5, 0.3]],
                       [[0.2, 0.3, 0.3], [0.8, 0.7, 0.6]]])
    return Evaluation(methods=["integrated_gradients", "saliency", "kernel_shap"], metrics=["deletion", "insertion"],
                      values=values, properties={"deletion": "faithfulness", "insertion": "faithfulness"},
                      higher_is_better={"deletion": False, "insertion": True},
                      curves={(m, "deletion"): (np.linspace(0, 1, 4), np.full((3, 4), 0.5))
                              for m in ["integrated_gradients", "saliency", "kernel_shap"]},
                      params={"metric_params": {"deletion": {"n_steps": 4}}}, seed=7)


def sanity() -> SanityReport:
    def result(method: str, values: list[float]) -> RandomisationResult:
        return RandomisationResult("cascading", method, ["fc2", "fc1"],
                                   {"spearman_abs": np.array([[v, v] for v in values])})

    results = {"cascading": {"integrated_gradients": result("integrated_gradients", [0.2, 0.1]),
                             "saliency": result("saliency", [0.9, 0.3])}}
    return SanityReport(results, SanityRule(), seed=11, n_samples=2, params={"init": "reset"})


@pytest.fixture(scope="module")
def tabular_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = build(tabular_explanations(), evaluation(), sanity=sanity(),
                 path=tmp_path_factory.mktemp("report") / "sub" / "report.html", feature_names=NAMES,
                 class_names=["<i>declined</i>", "approved"], logits=X @ W.T, title="Credit <model>",
                 max_samples=2)
    assert path.name == "report.html" and path.exists()
    return path.read_text(encoding="utf-8")


def test_every_section_is_there_and_the_navigation_links_to_each(tabular_report: str) -> None:
    page = parse(tabular_report)
    ids = [a["id"] for a in page.of("section")]
    assert ids == SECTIONS
    links = [a["href"] for a in page.of("a")]
    assert links == [f"#{s}" for s in SECTIONS]


def test_every_image_is_an_inline_png_that_decodes(tabular_report: str) -> None:
    images = parse(tabular_report).of("img")
    # 3 methods x 2 samples of bars/waterfalls + metric table + deletion curves + sanity curve + agreement
    assert len(images) == 3 * 2 + 4
    for attrs in images:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 20 and pixels.shape[1] > 20
        assert attrs["alt"]


def test_no_network_reference_and_no_script(tabular_report: str) -> None:
    page = parse(tabular_report)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name, "")
            assert not re.match(r"\s*(https?:)?//", value), (tag, name, value)
    assert "http://" not in tabular_report and "https://" not in tabular_report
    assert not page.of("script") and not page.of("iframe")
    assert "Content-Security-Policy" in tabular_report


def test_user_strings_are_escaped(tabular_report: str) -> None:
    assert "<script>alert" not in tabular_report
    assert html.escape("<script>alert('x')</script>", quote=True) in tabular_report
    assert "age &amp; years" in tabular_report
    assert "<i>declined</i>" not in tabular_report and "&lt;i&gt;declined&lt;/i&gt;" in tabular_report
    assert "<title>Credit &lt;model&gt;</title>" in tabular_report


def test_prediction_states_the_softmax_confidence(tabular_report: str) -> None:
    z = X @ W.T
    for i in range(2):
        probs = [math.exp(v) / sum(math.exp(u) for u in z[i]) for v in z[i]]
        assert f"<td>{100 * max(probs):.1f}%</td>" in tabular_report
    assert "2 of 3 samples shown." in tabular_report


def test_evaluation_table_ranking_and_most_faithful_sentence(tabular_report: str) -> None:
    ev = evaluation()
    assert ("Most faithful for this model: integrated_gradients (deletion 0.2, insertion 0.8).") in tabular_report
    for i, _ in enumerate(ev.methods):
        for j, _ in enumerate(ev.metrics):
            assert f"{ev.mean[i, j]:.4g} &plusmn; {ev.std[i, j]:.4g}" in tabular_report
    assert "Ranking on faithfulness (best first): integrated_gradients, kernel_shap, saliency." in tabular_report


def test_sanity_section_states_pass_and_fail_with_the_evidence(tabular_report: str) -> None:
    assert "Passed the sanity checks: integrated_gradients. Failed: saliency." in tabular_report
    section = tabular_report.split('id="sanity"')[1].split("</section>")[0]
    assert "0.9 <span class=\"fail\">FAIL</span>" in section      # saliency's max over the cascade
    assert "0.2 <span class=\"pass\">pass</span>" in section


def test_agreement_names_the_most_and_least_agreeing_pair(tabular_report: str) -> None:
    explanations = tabular_explanations()
    top = {name: [set(np.argsort(-np.abs(e.attributions[i]), kind="stable")[:3]) for i in range(3)]
           for name, e in explanations.items()}
    names = list(explanations)
    pairs = {(a, b): np.mean([len(top[a][i] & top[b][i]) / 3 for i in range(3)])
             for k, a in enumerate(names) for b in names[k + 1:]}
    best, worst = max(pairs, key=pairs.get), min(pairs, key=pairs.get)
    assert f"Most agreeing pair: {best[0]} and {best[1]} ({pairs[best]:.4g})." in tabular_report
    assert f"Least agreeing pair: {worst[0]} and {worst[1]} ({pairs[worst]:.4g})." in tabular_report


def test_reproducibility_lists_each_methods_params_seed_and_versions(tabular_report: str) -> None:
    section = tabular_report.split('id="reproducibility"')[1].split("</section>")[0]
    for name, e in tabular_explanations().items():
        assert html.escape(json.dumps(e.params, sort_keys=True)) in section, name
    assert "<td>123</td>" in section                 # kernel_shap's seed
    assert "<td>7</td>" in section and "<td>11</td>" in section   # evaluation and sanity seeds
    assert html.escape('"n_steps": 4') in section and "reset" in section
    assert '"torch": "' in html.unescape(section)


def test_summary_is_about_the_most_faithful_method_for_the_audience(tabular_report: str) -> None:
    section = tabular_report.split('id="summary"')[1].split("</section>")[0]
    assert "About integrated_gradients (the most faithful of the evaluated methods)." in section
    assert "Written for: domain expert." in section
    assert "Of the 3 methods evaluated, integrated_gradients is the most faithful to the model" in section


def test_image_and_text_reports(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 1, 8, 8))
    maps = {m: Explanation(rng.normal(size=(3, 1, 8, 8)), inputs=images, targets=np.array([0, 1, 2]),
                           scores=np.ones(3), method=m) for m in ("saliency", "grad_cam")}
    text = build(maps, path=tmp_path / "images.html", audience="end_user").read_text()
    assert len(parse(text).of("img")) == 2     # the comparison grid and the agreement matrix
    assert "part of the picture that mattered most" in text
    tokens = Explanation(np.array([[0.5, -0.2, 0.1]]), targets=np.array([1]), scores=np.array([0.3]),
                         method="lime", extras={"tokens": [["good", "<film>", "!"]]})
    page = build([tokens], path=tmp_path / "text.html").read_text()
    assert "data-attribution" in page and "&lt;film&gt;" in page and "<film>" not in page
    assert "Agreement needs at least two explanations" in page


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    e = tabular_explanations()["saliency"]
    with pytest.raises(ValidationError, match="explanations is empty"):
        build([], path=tmp_path / "r.html")
    with pytest.raises(ValidationError, match="must be a lumos Explanation"):
        build({"a": np.zeros(3)}, path=tmp_path / "r.html")
    with pytest.raises(ValidationError, match="same samples"):
        build([e, Explanation(np.zeros((2, 4)), method="x")], path=tmp_path / "r.html")
    with pytest.raises(ValidationError, match="audience must be one of"):
        build([e], path=tmp_path / "r.html", audience="everyone")
    with pytest.raises(ValidationError, match="max_samples must be an int"):
        build([e], path=tmp_path / "r.html", max_samples=0)
