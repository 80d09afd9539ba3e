"""Plain-language summaries: every number they state is parsed back and compared with the data.

The explanations are hand-built from a linear model f_c(x) = W_c . x + b_c, whose exact attributions against
the zero baseline are a_j = W_cj x_j (what integrated gradients, DeepLIFT and exact Shapley values all give).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from lumos.errors import ValidationError
from lumos.explanation import Explanation
from lumos.metrics import Evaluation, SanityReport, SanityRule
from lumos.metrics.randomisation import RandomisationResult
from lumos.report import summarize
from lumos.report.facts import REGION_NAMES

W = np.array([[0.8, -2.5, 1.2, 0.05, -0.4],
              [-0.3, 1.1, -0.7, 2.0, 0.6]])
B = np.array([0.2, -0.1])
X = np.array([[3.0, 1.5, -2.0, 4.0, 0.5],
              [-1.0, 0.2, 1.0, -3.0, 2.0]])
NAMES = ["income", "debt", "age", "tenure", "savings"]
CLASSES = ["declined", "approved"]
#: the predicted classes (argmax of the logits: sample 0 -> 10.35 vs -3.55, sample 1 -> -0.85 vs -5.08)
PRED = [1, 0]
NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def logits() -> np.ndarray:
    return X @ W.T + B


def linear_explanation(target: list[int], method: str = "integrated_gradients", **extras) -> Explanation:
    attributions = W[target] * X
    scores = logits()[np.arange(len(X)), target]
    return Explanation(attributions=attributions.copy(), inputs=X.copy(), targets=np.array(target), scores=scores,
                       method=method, params={"n_steps": 16}, target_description="predicted class",
                       feature_names=list(NAMES), extras=dict(extras))


def fmt(v: float, signed: bool = False) -> float:
    """The value as the summary writes it (4 significant digits), parsed back."""
    return float(f"{v:+.4g}" if signed else f"{v:.4g}")


def naive_softmax(row: np.ndarray) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_engineer_states_the_top_features_in_order_with_signed_values_and_the_score() -> None:
    e = linear_explanation(PRED)
    for i in range(2):
        text = summarize(e, "engineer", top_k=3, class_names=CLASSES, index=i)
        a = W[e.targets[i]] * X[i]
        expected = sorted(range(5), key=lambda j: -abs(a[j]))[:3]
        listed = re.search(r"Top 3 features by \|attribution\|: (.*?)\.(?: |$)", text).group(1)
        pairs = re.findall(rf"(\w+) = ({NUM})", listed)
        assert [name for name, _ in pairs] == [NAMES[j] for j in expected]
        for (_, value), j in zip(pairs, expected, strict=True):
            assert value[0] in "+-" and float(value) == fmt(a[j], signed=True)
        score = float(re.search(rf"Model score of the target: ({NUM})", text).group(1))
        assert score == fmt(logits()[i, e.targets[i]])
        total = float(re.search(rf"Sum of attributions: ({NUM})", text).group(1))
        assert total == fmt(a.sum())
        assert f"class {e.targets[i]} (\u201c{CLASSES[e.targets[i]]}\u201d)" in text


def test_engineer_quotes_the_convergence_delta_of_each_sample() -> None:
    delta = np.array([1.234567e-3, -4.5e-7])
    e = linear_explanation(PRED, convergence_delta=delta)
    text = summarize(e, "engineer")
    found = [float(v) for v in re.findall(rf"Convergence delta \(.*?\): ({NUM})\.", text)]
    assert found == [fmt(delta[0]), fmt(delta[1])]
    assert text.startswith("Sample 0: ") and "\n\nSample 1: " in text


def test_domain_expert_names_toward_and_against_with_values_and_the_softmax_confidence() -> None:
    e = linear_explanation(PRED)
    z = logits()
    for i in range(2):
        text = summarize(e, "domain_expert", class_names=CLASSES, logits=z, index=i, top_k=2)
        t = int(e.targets[i])
        a = W[t] * X[i]
        probs = naive_softmax(z[i])
        predicted = int(np.argmax(probs))
        assert t == predicted  # the explained class is the predicted one here
        m = re.search(rf"predicts \u201c(\w+)\u201d with a confidence of ({NUM})%", text)
        assert m.group(1) == CLASSES[predicted]
        assert float(m.group(2)) == round(100 * probs[predicted], 1)
        toward_text = re.search(r"Pushed most toward \u201c\w+\u201d: (.*?)\.(?: Pushed| Of| How| It|$)", text).group(1)
        against_text = re.search(r"Pushed most against it: (.*?)\.(?: |$)", text).group(1)
        pattern = rf"(\w+) \(value ({NUM}), contribution ({NUM})\)"
        toward = re.findall(pattern, toward_text)
        against = re.findall(pattern, against_text)
        pos = [j for j in np.argsort(-a, kind="stable") if a[j] > 0][:2]
        neg = [j for j in np.argsort(a, kind="stable") if a[j] < 0][:2]
        assert [n for n, _, _ in toward] == [NAMES[j] for j in pos]
        assert [n for n, _, _ in against] == [NAMES[j] for j in neg]
        for (_, value, contribution), j in zip(toward + against, pos + neg, strict=True):
            assert float(value) == fmt(X[i, j])
            assert float(contribution) == fmt(a[j], signed=True)
            assert (float(contribution) > 0) == (j in pos)


def test_probabilities_give_the_same_confidence_as_logits_and_a_non_predicted_target_is_flagged() -> None:
    z = logits()
    probs = np.array([naive_softmax(r) for r in z])
    e = linear_explanation([0, 0])  # sample 0 is predicted "approved"
    with_logits = summarize(e, "domain_expert", class_names=CLASSES, logits=z, index=0)
    with_probs = summarize(e, "domain_expert", class_names=CLASSES, probabilities=probs, index=0)
    assert with_logits == with_probs
    assert f"confidence of {100 * probs[0, 1]:.1f}%" in with_logits
    assert f"about \u201cdeclined\u201d (probability {100 * probs[0, 0]:.1f}%), not the predicted class" in with_logits
    raw = summarize(e, "domain_expert", class_names=CLASSES, index=0)
    assert f"score for \u201cdeclined\u201d is {fmt(z[0, 0]):g}" in raw and "not a probability" in raw


def test_end_user_text_is_short_jargon_free_and_names_the_reasons_in_order() -> None:
    e = linear_explanation(PRED)
    text = summarize(e, "end_user", class_names=CLASSES, logits=logits(), index=0)
    a = W[1] * X[0]
    for word in ("attribution", "gradient", "Shapley", "softmax", "logit", "faithful", "contribution"):
        assert word.lower() not in text.lower()
    reasons = re.search(r"mainly because of: (.*?)\. ", text).group(1)
    pos = [j for j in np.argsort(-a, kind="stable") if a[j] > 0][:3]
    assert [n for n, _ in re.findall(rf"(\w+) \(value ({NUM})\)", reasons)] == [NAMES[j] for j in pos]
    assert text.startswith(f"The result is \u201capproved\u201d (the model is {100 * naive_softmax(logits()[0])[1]:.1f}% sure).")
    assert max(len(s) for s in text.split(". ")) < 200


def test_counterfactual_changes_are_stated_with_from_and_to_values() -> None:
    e = linear_explanation(PRED)
    cf = X.copy()
    cf[0, 1] = 0.25   # debt 1.5 -> 0.25
    cf[0, 4] = 3.0    # savings 0.5 -> 3
    text = summarize(e, "end_user", index=0, counterfactual=cf)
    # debt has the larger |attribution| (|W_1,debt x| = 1.65 vs 0.3 for savings): named first
    assert "could have been different if debt were 0.25 instead of 1.5 and savings were 3 instead of 0.5." in text
    expert = summarize(e, "domain_expert", index=0, counterfactual=cf)
    assert "setting debt from 1.5 to 0.25 and savings from 0.5 to 3." in expert


def _sanity(passed: bool) -> SanityReport:
    value = 0.1 if passed else 0.9
    result = RandomisationResult("cascading", "integrated_gradients", ["fc"],
                                 {"spearman_abs": np.array([[value, value]])})
    return SanityReport({"cascading": {"integrated_gradients": result}}, SanityRule(), seed=0, n_samples=2)


def test_reliability_states_the_faithfulness_rank_metric_means_sanity_and_agreement() -> None:
    ev = Evaluation(methods=["saliency", "integrated_gradients", "occlusion"], metrics=["deletion", "insertion"],
                    values=np.array([[[0.30, 0.34], [0.60, 0.62]], [[0.10, 0.12], [0.80, 0.90]],
                                     [[0.50, 0.52], [0.40, 0.44]]]),
                    properties={"deletion": "faithfulness", "insertion": "faithfulness"},
                    higher_is_better={"deletion": False, "insertion": True}, seed=0)
    e = linear_explanation(PRED)
    other = linear_explanation(PRED, method="saliency")
    other.attributions[0] = np.array([9.0, 0.0, 0.0, 8.0, 7.0])   # shares exactly 1 of the top 3 of sample 0
    text = summarize(e, "engineer", evaluation=ev, sanity=_sanity(True), others=[other], index=0)
    assert "Faithfulness rank 1 of 3 (deletion 0.11, lower is better; insertion 0.85, higher is better; means over " \
           "2 samples)." in text
    assert "Sanity checks: passed." in text
    # top 3 of sample 0 by |W_1 x|: tenure 8, debt 1.65, age 1.4; the other's: income, tenure, savings
    assert float(re.search(rf"feature agreement with 1 other method\(s\): ({NUM})", text).group(1)) == fmt(1 / 3)
    expert = summarize(e, "domain_expert", evaluation=ev, sanity=_sanity(False), others=[other], index=0)
    assert "Of the 3 methods evaluated, integrated_gradients is the most faithful to the model" in expert
    assert "FAILED the sanity checks" in expert and "partly agree" in expert and "(33.3% overlap)" in expert
    user = summarize(e, "end_user", evaluation=ev, sanity=_sanity(True), index=0)
    assert "How much to trust these reasons: good." in user
    assert "How much to trust these reasons: low." in summarize(e, "end_user", sanity=_sanity(False), index=0)
    assert "not checked" in summarize(e, "end_user", index=0)
    second = summarize(linear_explanation(PRED, method="occlusion"), "domain_expert", evaluation=ev, index=0)
    assert "occlusion is the least faithful" in second


def test_image_summary_names_the_region_holding_the_most_positive_attribution() -> None:
    maps = np.zeros((2, 3, 9, 12))
    maps[0, :, 0:3, 0:4] = 1.0       # upper-left third, all channels
    maps[0, 0, 7, 5] = 2.0           # bottom-centre: less mass (2 vs 36)
    maps[0, 1, 4, 10] = -5.0         # right part: all the negative mass
    maps[1, 0, 4, 5] = 3.0           # centre
    e = Explanation(attributions=maps, inputs=np.zeros_like(maps), targets=np.array([2, 2]),
                    scores=np.array([1.5, 0.5]), method="saliency", target_description="class 2")
    expert = summarize(e, "domain_expert", class_names={2: "cat"}, index=0)
    share = 36.0 / 38.0
    assert f"The upper-left part of the image pushed most toward \u201ccat\u201d ({100 * share:.1f}%" in expert
    assert "The right part pushed most against it (100.0% of the opposing evidence)." in expert
    assert "mattered most is the centre." in summarize(e, "end_user", index=1)
    engineer = summarize(e, "engineer", index=0)
    assert "Map 9 x 12 (channels summed)" in engineer and "peak at row 0, column 0" in engineer
    assert REGION_NAMES[0][0] == "upper-left part"


def test_text_summary_uses_the_tokens() -> None:
    e = Explanation(attributions=np.array([[0.1, -0.4, 0.9, 0.0]]), targets=np.array([1]), scores=np.array([2.0]),
                    method="lime", extras={"tokens": [["the", "plot", "<b>great</b>", "film"]]})
    text = summarize(e, "domain_expert", class_names=["neg", "pos"])
    assert "Pushed most toward \u201cpos\u201d: <b>great</b> (contribution +0.9) and the (contribution +0.1)." in text
    assert "Pushed most against it: plot (contribution -0.4)." in text


def test_explanation_summary_delegates_and_errors_are_clear() -> None:
    e = linear_explanation(PRED)
    assert e.summary("domain_expert", class_names=CLASSES, index=1) == summarize(
        e, "domain_expert", class_names=CLASSES, index=1)
    assert e.summary() == summarize(e, "engineer")
    with pytest.raises(ValidationError, match="audience must be one of"):
        e.summary("radiologist")
    with pytest.raises(ValidationError, match="index must be None or an int in"):
        summarize(e, index=5)
    with pytest.raises(ValidationError, match="logits must be a finite"):
        summarize(e, logits=np.zeros((3, 2)))
    with pytest.raises(ValidationError, match="not both"):
        summarize(e, logits=logits(), probabilities=np.full((2, 2), 0.5))
    with pytest.raises(ValidationError, match="top_k must be an int"):
        summarize(e, top_k=0)


def test_torch_explanation_from_a_real_method() -> None:
    import lumos

    model = torch.nn.Linear(5, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(W))
        model.bias.copy_(torch.from_numpy(B))
    x = torch.from_numpy(X)
    e = lumos.explain(model, x, method="integrated_gradients", n_steps=8, baseline=0.0)
    text = e.summary("engineer", index=0)
    delta = float(np.asarray(e.extras["convergence_delta"])[0])
    assert float(re.search(rf"Convergence delta \(.*?\): ({NUM})\.", text).group(1)) == fmt(delta)
    top = re.search(r"Top 3 features by \|attribution\|: (.*?)\. ", text).group(1)
    assert [n for n, _ in re.findall(rf"(\w+) = ({NUM})", top)] == ["x3", "x1", "x2"]  # 8, 1.65, 1.4
