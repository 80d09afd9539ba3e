"""Plain-language summaries of an explanation, for three audiences, from templates (no language model).

- ``"engineer"``: method and parameters, the explained output and its score, the top features with signed
  attributions (or the image region and the peak pixel), the completeness residual (``convergence_delta``)
  when the method reports one, and the evaluation, sanity and agreement numbers.
- ``"domain_expert"``: the decision and its confidence, what pushed it most toward and against, and how
  reliable the explanation is (faithfulness rank, sanity checks, agreement between methods) in plain words.
- ``"end_user"``: short sentences without jargon: the outcome, the main reasons, what would change it (when a
  counterfactual is given), and how far the reasons can be trusted.

Every number is written by :func:`lumos.report.facts.number` (4 significant digits) or
:func:`~lumos.report.facts.percent`, from the data: a test can parse each one back.

Example::

    from lumos.report import summarize
    print(summarize(e, "domain_expert", evaluation=ev, class_names=["declined", "approved"], logits=z))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from ..metrics import Evaluation, SanityReport, feature_agreement
from .facts import (
    FeatureFacts,
    PredictionFacts,
    as_numpy,
    class_probabilities,
    data_kind,
    feature_facts,
    number,
    percent,
    prediction_facts,
    region_facts,
)

AUDIENCES = ("engineer", "domain_expert", "end_user")
#: share of an image's pixels compared by the agreement between methods (top 10%)
IMAGE_AGREEMENT_SHARE = 0.1


# ---------------------------------------------------------------------------------------------- reliability
@dataclass
class Reliability:
    """How far one explanation can be trusted: faithfulness rank, sanity verdict, agreement with others."""

    rank: int | None = None                    # faithfulness rank (1 = most faithful)
    n_ranked: int = 0
    metrics: tuple[tuple[str, float, bool], ...] = ()   # (metric, mean, higher_is_better) of faithfulness
    n_samples: int = 0
    sanity: bool | None = None
    agreement: float | None = None             # mean feature agreement with the other methods (this sample)
    n_others: int = 0
    k: int = 0

    @property
    def known(self) -> bool:
        return self.rank is not None or self.sanity is not None or self.agreement is not None


def reliability(explanation: Explanation, name: str, index: int, *, evaluation: Evaluation | None,
                sanity: SanityReport | None, others: Sequence[Explanation], top_k: int) -> Reliability:
    """Collect the reliability facts of explanation ``name`` (its label in the evaluation and sanity report)."""
    facts = Reliability()
    if evaluation is not None and name in evaluation.methods \
            and "faithfulness" in evaluation.properties.values():
        order = evaluation.ranking("faithfulness")
        facts.rank, facts.n_ranked = order.index(name) + 1, len(order)
        i = evaluation.methods.index(name)
        facts.metrics = tuple((m, float(evaluation.mean[i, j]), bool(evaluation.higher_is_better[m]))
                              for j, m in enumerate(evaluation.metrics)
                              if evaluation.properties[m] == "faithfulness" and np.isfinite(evaluation.mean[i, j]))
        facts.n_samples = evaluation.n_samples
    if sanity is not None and name in sanity.methods:
        facts.sanity = bool(sanity.passed[name])
    mine = _row(explanation, index)
    if mine is not None:
        k = top_k if data_kind(explanation) != "image" else max(1, round(IMAGE_AGREEMENT_SHARE * mine.shape[1]))
        k = min(k, mine.shape[1])
        values = []
        for other in others:
            theirs = _row(other, index)
            if theirs is not None and theirs.shape == mine.shape:
                values.append(float(feature_agreement(mine, theirs, k=k)[0]))
        if values:
            facts.agreement, facts.n_others, facts.k = float(np.mean(values)), len(values), k
    return facts


def _row(explanation: Explanation, index: int) -> np.ndarray | None:
    """Sample ``index`` flattened to (1, F), or None where it holds non-finite values or the index is out."""
    arrays = explanation.attribution_arrays()
    if index >= arrays[0].shape[0]:
        return None
    row = np.concatenate([np.asarray(a[index], dtype=np.float64).reshape(-1) for a in arrays])[None]
    return row if np.isfinite(row).all() else None


# ---------------------------------------------------------------------------------------------- text pieces
def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _quote(text: str) -> str:
    return f"\u201c{text}\u201d"


def _feature(facts: FeatureFacts, j: int, *, with_value: bool, with_input: bool) -> str:
    text = facts.names[j]
    parts = []
    if with_input and facts.inputs is not None:
        parts.append(f"value {number(facts.inputs[j])}")
    if with_value:
        parts.append(f"contribution {number(facts.values[j], signed=True)}")
    return f"{text} ({', '.join(parts)})" if parts else text


def _metric_words(metrics: Sequence[tuple[str, float, bool]]) -> str:
    return "; ".join(f"{m} {number(v)}, {'higher' if hib else 'lower'} is better" for m, v, hib in metrics)


def _decision(p: PredictionFacts) -> str:
    if p.confidence is not None:
        text = f"The model predicts {_quote(p.predicted_name)} with a confidence of {percent(p.confidence)}."
        if p.target is not None and p.target != p.predicted:
            text += (f" This explanation is about {_quote(p.target_name)} (probability "
                     f"{percent(p.probability)}), not the predicted class.")
        return text
    if p.score is not None:
        return (f"The model's score for {_quote(p.target_name)} is {number(p.score)} (a raw model output, not a "
                "probability).")
    return f"The explanation is about {_quote(p.target_name)}."


def _counterfactual_changes(facts: FeatureFacts, counterfactual: np.ndarray | None, top_k: int
                            ) -> list[tuple[str, float, float]]:
    """(name, from, to) of the features the counterfactual changes, most important first (by |attribution|)."""
    if counterfactual is None or facts.inputs is None or counterfactual.shape != facts.inputs.shape:
        return []
    changed = [j for j in facts.ranked("abs") if not np.isclose(counterfactual[j], facts.inputs[j])]
    return [(facts.names[j], float(facts.inputs[j]), float(counterfactual[j])) for j in changed[:top_k]]


# ---------------------------------------------------------------------------------------------- templates
def _engineer(e: Explanation, label: str, p: PredictionFacts, r: Reliability, index: int, top_k: int,
              feature_names: Sequence[str] | None) -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in sorted(e.params.items()))
    target = f"class {p.target} ({_quote(p.target_name)})" if p.target is not None else "a custom output"
    lines = [f"{label} ({params or 'default parameters'}) explains {target}; target: "
             f"{e.target_description or 'not recorded'}."]
    if p.score is not None:
        prob = "" if p.probability is None else f"; P(target) = {percent(p.probability)} (softmax)"
        lines.append(f"Model score of the target: {number(p.score)}{prob}.")
    if data_kind(e) == "image":
        reg = region_facts(e, index)
        where = "no positive attribution" if reg.toward is None else (
            f"most positive attribution in the {reg.toward} ({percent(reg.toward_share)} of the positive mass)")
        lines.append(f"Map {reg.shape[0]} x {reg.shape[1]} (channels summed): {where}; peak at row {reg.peak[0]}, "
                     f"column {reg.peak[1]}.")
    else:
        facts = feature_facts(e, index, feature_names=feature_names)
        top = facts.ranked("abs")[:top_k]
        lines.append(f"Top {len(top)} features by |attribution|: "
                     + ", ".join(f"{facts.names[j]} = {number(facts.values[j], signed=True)}" for j in top) + ".")
    total = float(sum(np.asarray(a[index], dtype=np.float64).sum() for a in e.attribution_arrays()))
    lines.append(f"Sum of attributions: {number(total)}.")
    if "convergence_delta" in e.extras:
        delta = as_numpy(e.extras["convergence_delta"]).reshape(-1)
        value = float(delta[index] if delta.size > 1 else delta[0])
        lines.append(f"Convergence delta (sum of attributions - (f(x) - f(baseline))): {number(value)}.")
    if r.rank is not None:
        lines.append(f"Faithfulness rank {r.rank} of {r.n_ranked} ({_metric_words(r.metrics)}; means over "
                     f"{r.n_samples} samples).")
    if r.sanity is not None:
        lines.append(f"Sanity checks: {'passed' if r.sanity else 'FAILED'}.")
    if r.agreement is not None:
        lines.append(f"Top-{r.k} feature agreement with {r.n_others} other method(s): {number(r.agreement)}.")
    return lines


def _reliability_words(label: str, r: Reliability) -> list[str]:
    if not r.known:
        return ["How reliable this explanation is has not been measured (no evaluation, sanity check or second "
                "method was given)."]
    lines = []
    if r.rank is not None:
        place = ("the most faithful" if r.rank == 1 else "the least faithful" if r.rank == r.n_ranked
                 else f"the {_ordinal(r.rank)} most faithful")
        lines.append(f"Of the {r.n_ranked} methods evaluated, {label} is {place} to the model "
                     f"({_metric_words(r.metrics)}).")
    if r.sanity is not None:
        lines.append("It passed the sanity checks: its explanation changes when the model's learned weights are "
                     "randomised." if r.sanity else "It FAILED the sanity checks: its explanation barely changes "
                     "when the model's learned weights are randomised, so it may show the input more than the "
                     "model's reasoning.")
    if r.agreement is not None:
        degree = "largely agree" if r.agreement >= 2 / 3 else "partly agree" if r.agreement >= 1 / 3 \
            else "mostly disagree"
        lines.append(f"The other {r.n_others} method(s) {degree} on the {r.k} most important features "
                     f"({percent(r.agreement)} overlap).")
    return lines


def _domain_expert(e: Explanation, label: str, p: PredictionFacts, r: Reliability, index: int, top_k: int,
                   feature_names: Sequence[str] | None, counterfactual: np.ndarray | None) -> list[str]:
    lines = [_decision(p)]
    name = _quote(p.target_name)
    if data_kind(e) == "image":
        reg = region_facts(e, index)
        lines.append(f"The {reg.toward} of the image pushed most toward {name} ({percent(reg.toward_share)} of "
                     "the supporting evidence)." if reg.toward else f"No part of the image pushed toward {name}.")
        if reg.against:
            lines.append(f"The {reg.against} pushed most against it ({percent(reg.against_share)} of the opposing "
                         "evidence).")
    else:
        facts = feature_facts(e, index, feature_names=feature_names)
        toward, against = facts.ranked("toward")[:top_k], facts.ranked("against")[:top_k]
        word = "features" if data_kind(e) != "text" else "words"
        lines.append(f"Pushed most toward {name}: "
                     + _join([_feature(facts, j, with_value=True, with_input=True) for j in toward]) + "."
                     if toward else f"No {word[:-1]} pushed toward {name}.")
        if against:
            lines.append("Pushed most against it: "
                         + _join([_feature(facts, j, with_value=True, with_input=True) for j in against]) + ".")
        changes = _counterfactual_changes(facts, counterfactual, top_k)
        if changes:
            lines.append("A counterfactual changes the decision by setting "
                         + _join([f"{n} from {number(a)} to {number(b)}" for n, a, b in changes]) + ".")
    return lines + _reliability_words(label, r)


def _end_user(e: Explanation, p: PredictionFacts, r: Reliability, index: int, top_k: int,
              feature_names: Sequence[str] | None, counterfactual: np.ndarray | None) -> list[str]:
    outcome = p.predicted_name if p.confidence is not None and p.target == p.predicted else p.target_name
    sure = f" (the model is {percent(p.confidence)} sure)" if p.confidence is not None and \
        p.target == p.predicted else ""
    lines = [f"The result is {_quote(outcome)}{sure}."]
    if data_kind(e) == "image":
        reg = region_facts(e, index)
        lines.append(f"The part of the picture that mattered most is the {reg.toward}." if reg.toward
                     else "No part of the picture stood out.")
    else:
        facts = feature_facts(e, index, feature_names=feature_names)
        toward, against = facts.ranked("toward")[:top_k], facts.ranked("against")[:top_k]
        show = {"with_value": False, "with_input": True}
        lines.append(f"This is mainly because of: {_join([_feature(facts, j, **show) for j in toward])}."
                     if toward else "No single point stood out as a reason.")
        if against:
            lines.append(f"What counted against it: {_join([_feature(facts, j, **show) for j in against])}.")
        changes = _counterfactual_changes(facts, counterfactual, top_k)
        if changes:
            lines.append("The result could have been different if "
                         + _join([f"{n} were {number(b)} instead of {number(a)}" for n, a, b in changes]) + ".")
    if r.sanity is False:
        lines.append("How much to trust these reasons: low. This explanation did not pass our checks.")
    elif r.rank == 1:
        lines.append("How much to trust these reasons: good. Of the methods we compared, this one follows the "
                     "model most closely.")
    elif r.rank is not None:
        lines.append("How much to trust these reasons: moderate. Other explanation methods follow the model "
                     "more closely.")
    elif r.agreement is not None:
        lines.append("How much to trust these reasons: fair. Other explanation methods give largely the same "
                     "reasons." if r.agreement >= 2 / 3 else "How much to trust these reasons: moderate. Other "
                     "explanation methods give partly different reasons.")
    elif r.sanity:
        lines.append("How much to trust these reasons: fair. This explanation passed our basic checks.")
    else:
        lines.append("How much to trust these reasons: not checked.")
    return lines


# ---------------------------------------------------------------------------------------------- entry point
def summarize(explanation: Explanation, audience: str = "engineer", evaluation: Evaluation | None = None,
              top_k: int = 3, class_names: Sequence[str] | Mapping[int, str] | None = None,
              feature_names: Sequence[str] | None = None, *, index: int | None = None, name: str | None = None,
              sanity: SanityReport | None = None, others: Sequence[Explanation] | None = None,
              probabilities: Any = None, logits: Any = None, counterfactual: Any = None) -> str:
    """A plain-language summary of ``explanation`` for ``audience`` (templated text, no language model).

    Args:
        explanation: any lumos Explanation (tabular, image, text, other).
        audience: ``"engineer"``, ``"domain_expert"`` or ``"end_user"``.
        evaluation: an :class:`~lumos.metrics.Evaluation` holding this method (faithfulness rank and values).
        top_k: how many features are named toward and against.
        class_names: names of the classes (list, or ``{index: name}``); feature_names: names of the features.
        index: the sample to summarise; ``None``: every sample, one paragraph each (headed ``Sample i:``).
        name: the explanation's label in ``evaluation`` and ``sanity`` (default ``explanation.method``).
        sanity: a :class:`~lumos.metrics.SanityReport` holding this method (pass/fail).
        others: explanations of the same samples by other methods (agreement on the top features).
        probabilities, logits: the model's ``(samples, classes)`` output: the confidence is
            ``probabilities[i, predicted]`` or ``softmax(logits)[i, predicted]``; without them the raw score
            is reported.
        counterfactual: tabular inputs ``(samples, features)`` (or one row) that change the decision; default
            ``explanation.extras["counterfactual"]`` when present.

    Returns:
        The summary text (plain text, sentences separated by spaces, paragraphs by blank lines).

    Example::

        summarize(e, "end_user", class_names=["declined", "approved"], logits=model(x))
    """
    owner = "lumos.report.summarize"
    if not isinstance(explanation, Explanation):
        raise ValidationError(f"{owner}: explanation must be a lumos Explanation, got {type(explanation).__name__}")
    if audience not in AUDIENCES:
        raise ValidationError(f"{owner}: audience must be one of {list(AUDIENCES)}, got {audience!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValidationError(f"{owner}: top_k must be an int >= 1, got {top_k!r}")
    if evaluation is not None and not isinstance(evaluation, Evaluation):
        raise ValidationError(f"{owner}: evaluation must be a lumos Evaluation or None, got "
                              f"{type(evaluation).__name__}")
    if sanity is not None and not isinstance(sanity, SanityReport):
        raise ValidationError(f"{owner}: sanity must be a lumos SanityReport or None, got {type(sanity).__name__}")
    n = len(explanation)
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n):
        raise ValidationError(f"{owner}: index must be None or an int in [0, {n}), got {index!r}")
    probs = class_probabilities(n, probabilities=probabilities, logits=logits, owner=owner)
    cf = counterfactual if counterfactual is not None else explanation.extras.get("counterfactual")
    cf = None if cf is None else as_numpy(cf).astype(np.float64)
    if cf is not None and cf.ndim == 1:
        cf = cf[None]
    label = name or explanation.method or "this method"
    others = [o for o in (others or []) if o is not explanation]
    paragraphs = []
    for i in range(n) if index is None else [index]:
        p = prediction_facts(explanation, i, probabilities=probs, class_names=class_names)
        r = reliability(explanation, label, i, evaluation=evaluation, sanity=sanity, others=others, top_k=top_k)
        row_cf = None if cf is None or len(cf) != n else cf[i]
        if audience == "engineer":
            lines = _engineer(explanation, label, p, r, i, top_k, feature_names)
        elif audience == "domain_expert":
            lines = _domain_expert(explanation, label, p, r, i, top_k, feature_names, row_cf)
        else:
            lines = _end_user(explanation, p, r, i, top_k, feature_names, row_cf)
        text = " ".join(lines)
        paragraphs.append(text if index is not None or n == 1 else f"Sample {i}: {text}")
    return "\n\n".join(paragraphs)
