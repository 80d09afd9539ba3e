"""The sections of the report, one function each: ``(context) -> Section``.

Each section states what it shows in words and in numbers; figures are lumos.plots displays drawn to inline
PNGs (:func:`lumos.report.html.figure`). Sections without their input (no evaluation, one method only, ...)
say so instead of being left out silently, except the evaluation and sanity sections, which only appear
when their result was given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..explanation import Explanation
from ..metrics import Evaluation, SanityReport, SanityRule, agreement_matrix
from ..plots import (
    AgreementMatrixDisplay,
    BarDisplay,
    ComparisonGridDisplay,
    CurveDisplay,
    MetricTableDisplay,
    SanityCascadeDisplay,
    TextDisplay,
    WaterfallDisplay,
)
from ..plots.tabular import base_value_of
from .facts import data_kind, feature_facts, number, percent, prediction_facts
from .html import RawHTML, Section, esc, figure, paragraph, table
from .summary import IMAGE_AGREEMENT_SHARE, summarize


@dataclass
class ReportContext:
    """Everything the sections read: the labelled explanations and the optional results."""

    items: list[tuple[str, Explanation]]
    evaluation: Evaluation | None = None
    sanity: SanityReport | None = None
    probabilities: np.ndarray | None = None
    class_names: Sequence[str] | Mapping[int, str] | None = None
    feature_names: Sequence[str] | None = None
    audience: str = "domain_expert"
    indices: list[int] = field(default_factory=list)
    top_k: int = 3

    @property
    def first(self) -> Explanation:
        return self.items[0][1]


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


# ---------------------------------------------------------------------------------------------- prediction
def prediction_section(ctx: ReportContext) -> Section:
    e = ctx.first
    has_probs = ctx.probabilities is not None
    header = ["sample", "explained class", "how the class was chosen", "model score of that class"]
    if has_probs:
        header += ["predicted class", "confidence", "probability of the explained class"]
    rows = []
    for i in ctx.indices:
        p = prediction_facts(e, i, probabilities=ctx.probabilities, class_names=ctx.class_names)
        target = "custom output" if p.target is None else f"{p.target_name} ({p.target})"
        row: list[Any] = [i, target, e.target_description or "not recorded",
                          "n/a" if p.score is None else p.score]
        if has_probs:
            row += [f"{p.predicted_name} ({p.predicted})", percent(p.confidence),
                    "n/a" if p.probability is None else percent(p.probability)]
        rows.append(row)
    note = ("Confidence = the probability the model gives its predicted class (the probabilities or the softmax "
            "of the logits passed to the report)." if has_probs else
            "Only the model's raw score of the explained class is known (pass probabilities= or logits= to the "
            "report for confidences); a raw score is not a probability.")
    targets = {label: None if x.targets is None else np.asarray(x.targets).tolist() for label, x in ctx.items}
    differ = len({_json(t) for t in targets.values()}) > 1
    extra = paragraph("The methods explain different classes for some samples: "
                      + "; ".join(f"{k}: {v}" for k, v in targets.items()), "note") if differ else ""
    shown = f"{len(ctx.indices)} of {len(e)} samples shown."
    return Section("prediction", "Prediction", table(header, rows) + paragraph(note, "note")
                   + paragraph(shown, "note") + extra)


# ---------------------------------------------------------------------------------------------- explanations
def explanations_section(ctx: ReportContext) -> Section:
    parts = []
    images = {label: e for label, e in ctx.items if data_kind(e) == "image" and len(e) == len(ctx.first)}
    if images:
        grid = ComparisonGridDisplay.from_explanations(images, indices=ctx.indices).plot()
        parts.append(figure(grid, "attribution maps: one row per method, one column per sample",
                            "Rows: methods; columns: samples (first row: the inputs). Signed maps: red = evidence "
                            "for the explained class, blue = against; non-negative maps (e.g. Grad-CAM): bright = "
                            "important. Each map on its own colour scale."))
    for label, e in ctx.items:
        kind = data_kind(e)
        if kind == "image" and label in images:
            continue
        parts.append(f"<h3>{esc(label)}</h3>")
        for i in ctx.indices:
            if kind == "text":
                facts = feature_facts(e, i)
                parts.append(TextDisplay(facts.names, facts.values, title=f"sample {i}").to_html())
            elif kind == "tabular":
                facts = feature_facts(e, i, feature_names=ctx.feature_names)
                common = {"feature_names": facts.names, "feature_values": facts.inputs, "k": 10,
                          "title": f"{label} - sample {i}"}
                if "base_value" in e.extras:
                    display = WaterfallDisplay(facts.values, base_value_of(e, i, None, "lumos.report"), **common)
                else:
                    display = BarDisplay(facts.values, **common)
                parts.append(figure(display.plot(), f"{label}: attributions of sample {i}"))
            else:
                facts = feature_facts(e, i, feature_names=ctx.feature_names)
                top = facts.ranked("abs")[:10]
                parts.append(f"<h4>sample {i}</h4>" + table(["feature", "attribution"],
                                                            [[facts.names[j], float(facts.values[j])] for j in top]))
    intro = paragraph("Each method's attributions: how much each input feature (pixel, column, word) pushed the "
                      "model's score of the explained class up (positive, red) or down (negative, blue).")
    return Section("explanations", "Explanations", intro + "".join(parts))


# ---------------------------------------------------------------------------------------------- evaluation
def most_faithful_sentence(evaluation: Evaluation) -> str | None:
    """``"Most faithful for this model: X (deletion 0.1, insertion 0.5)."`` or None without such metrics."""
    if "faithfulness" not in evaluation.properties.values():
        return None
    best = evaluation.ranking("faithfulness")[0]
    i = evaluation.methods.index(best)
    values = [f"{m} {number(evaluation.mean[i, j])}" for j, m in enumerate(evaluation.metrics)
              if evaluation.properties[m] == "faithfulness"]
    return f"Most faithful for this model: {best} ({', '.join(values)})."


def evaluation_section(ctx: ReportContext) -> Section:
    ev = ctx.evaluation
    arrows = {m: "higher is better" if ev.higher_is_better[m] else "lower is better" for m in ev.metrics}
    parts = [figure(MetricTableDisplay(ev.mean, ev.methods, ev.metrics, higher_is_better=ev.higher_is_better,
                                       title="mean over samples").plot(),
                    "metric table: methods by metrics", "Darker green = better for that metric.")]
    header = ["method", *[f"{m} ({ev.properties[m]}, {arrows[m]})" for m in ev.metrics]]
    rows = [[method, *[RawHTML(f"{number(ev.mean[i, j])} &plusmn; {number(ev.std[i, j])} "
                               f"<span class=\"note\">(n={int(ev.count[i, j])})</span>")
                       for j in range(len(ev.metrics))]] for i, method in enumerate(ev.methods)]
    parts.append(table(header, rows))
    parts.append(paragraph(f"Mean \u00b1 standard deviation over the {ev.n_samples} evaluated samples "
                           "(n = samples where the metric is defined).", "note"))
    sentence = most_faithful_sentence(ev)
    if sentence:
        parts.append(paragraph(sentence))
    for prop in sorted(set(ev.properties.values())):
        order = ev.ranking(prop)
        parts.append(paragraph(f"Ranking on {prop} (best first): {', '.join(order)}."))
    for method_metric in ("deletion", "insertion"):
        curves = {m: ev.curves[(m, method_metric)][1] for m in ev.methods if (m, method_metric) in ev.curves}
        if curves:
            x = next(ev.curves[(m, method_metric)][0] for m in ev.methods if (m, method_metric) in ev.curves)
            parts.append(figure(CurveDisplay(curves, x, kind=method_metric).plot(), f"{method_metric} curves"))
    return Section("evaluation", "Evaluation", "".join(parts))


# ---------------------------------------------------------------------------------------------- sanity
def sanity_section(ctx: ReportContext) -> Section:
    report = ctx.sanity
    rule = report.rule
    passed = [m for m, ok in report.passed.items() if ok]
    failed = [m for m, ok in report.passed.items() if not ok]
    parts = [paragraph(f"Passed the sanity checks: {', '.join(passed) or 'none'}. "
                       f"Failed: {', '.join(failed) or 'none'}.")]
    tests = list(report.results)
    rows = []
    for method in report.methods:
        verdict = report[method]
        row: list[Any] = [method, verdict.passed]
        for test in tests:
            v = verdict.tests.get(test)
            row.append("-" if v is None else RawHTML(
                f"{number(v.value)} <span class=\"{'pass' if v.passed else 'fail'}\">"
                f"{'pass' if v.passed else 'FAIL'}</span>{'' if v.decisive else ' (evidence only)'}"))
        rows.append(row)
    parts.append(table(["method", "verdict", *[f"{t} ({rule.statistic} {rule.measure})" for t in tests]], rows))
    parts.append(paragraph(
        f"Rule: a test is passed when the {rule.statistic} over its steps of the mean {rule.measure} similarity "
        f"between the explanation of the trained model and of the changed model is below {rule.threshold}; a "
        f"method passes when it passes every decisive test ({', '.join(t for t in rule.decisive if t in tests)}). "
        "Low similarity = the explanation depends on what the model learned.", "note"))
    parts += [paragraph(text) for text in sign_only_notes(report)]
    cascade = report.results.get("cascading", {})
    if cascade:
        steps = next(iter(cascade.values())).steps
        curves = {m: r.mean(rule.measure) for m, r in cascade.items()
                  if rule.measure in r.similarity and len(r.steps) == len(steps)}
        if curves and len(steps) >= 2:
            display = CurveDisplay(curves, np.arange(1, len(steps) + 1, dtype=float), kind=None,
                                   title="cascading randomisation", xlabel="layers randomised (output first)",
                                   ylabel=f"{rule.measure} similarity to the original")
            display.plot(band=False).ax_.set_xticks(range(1, len(steps) + 1))
            parts.append(figure(display, "sanity check: similarity as layers are randomised",
                                "Mean similarity to the original explanation after each step (the legend's AUC is "
                                "the area under each line)."))
        rows = [[k + 1, step, *[float(curves[m][k]) if m in curves else "-" for m in cascade]]
                for k, step in enumerate(steps)]
        parts.append(table(["step", "layers randomised up to", *cascade], rows))
        parts.append(cascade_figure(cascade, rule.measure, ctx.indices))
    return Section("sanity", "Sanity checks", "".join(parts))


def sign_only_notes(report: SanityReport) -> list[str]:
    """One sentence per method that fails the default rule on the magnitude of its map (``spearman_abs``) while
    the signs of its map do change (the max over the cascade of the mean signed Spearman is below the threshold)."""
    rule = report.rule
    notes = []
    for method, result in report.results.get("cascading", {}).items():
        if rule.measure != "spearman_abs" or "spearman" not in result.similarity or report[method].passed:
            continue
        signed = SanityRule("spearman", rule.threshold, rule.statistic).value(result)
        if np.isfinite(signed) and signed < rule.threshold:
            notes.append(f"{method}: the magnitudes of its map stay similar as layers are randomised ({rule.statistic} "
                         f"spearman_abs {number(rule.value(result))}) while its signs change ({rule.statistic} signed "
                         f"Spearman {number(signed)}): what stays is set by the input and the layers not yet "
                         "randomised (e.g. where the object is), so read its magnitudes with care; its signs depend "
                         "on the model.")
    return notes


def cascade_figure(cascade: Mapping[str, Any], measure: str, indices: Sequence[int]) -> str:
    """The maps of one sample as layers are randomised (the maps the sanity check kept), or ``""`` when none
    were kept or they are not 2-D images."""
    kept = [r.maps for r in cascade.values() if r.maps is not None]
    if not kept or np.asarray(kept[0]).ndim != 4:
        return ""
    n_kept = min(np.asarray(m).shape[1] for m in kept)
    index = next((i for i in indices if i < n_kept), 0)
    scored = all(measure in r.similarity for r in cascade.values())
    display = SanityCascadeDisplay.from_results(
        cascade, index=index, measure=measure if scored else None,
        title=f"sample {index}: |attribution| maps as layers are randomised (output layer first)")
    n_steps = len(next(iter(cascade.values())).steps)
    shown = "every step" if len(display.columns) == n_steps + 1 else f"{len(display.columns) - 1} of the {n_steps} steps"
    scores = f" under each map its {measure} similarity to the original." if scored else ""
    return figure(display.plot(), "sanity check: the maps as layers are randomised",
                  f"Rows: methods; columns: the trained model, then the model with the layers from the output down to "
                  f"the named one randomised ({shown}); each map (sum of |attribution| over channels) on its own "
                  f"colour scale;{scores} A method that explains the model loses its picture from left to right; one "
                  "that does not keeps it.")


# ---------------------------------------------------------------------------------------------- agreement
def agreement_section(ctx: ReportContext) -> Section:
    shapes = {}
    for label, e in ctx.items:
        shapes.setdefault(tuple(a.shape for a in e.attribution_arrays()), []).append(label)
    labels = max(shapes.values(), key=len) if shapes else []
    if len(labels) < 2:
        return Section("agreement", "Agreement between methods",
                       paragraph("Agreement needs at least two explanations of the same inputs."))
    chosen = {label: e for label, e in ctx.items if label in labels}
    n_features = int(sum(np.prod(a.shape[1:]) for a in ctx.first.attribution_arrays()))
    image = data_kind(next(iter(chosen.values()))) == "image"
    k = max(1, round(IMAGE_AGREEMENT_SHARE * n_features)) if image else ctx.top_k
    k = min(k, n_features)
    names, matrix = agreement_matrix(chosen, metric="feature_agreement", k=k)
    pairs = [(float(matrix[i, j]), names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))
             if np.isfinite(matrix[i, j])]
    parts = [paragraph(f"Feature agreement (Krishna et al. 2022): the share of the top {k} features (by |attribution|) "
                       "two methods have in common, averaged over all samples; 1 = the same top features.")]
    if pairs:
        hi, lo = max(pairs), min(pairs)
        parts.append(paragraph(f"Most agreeing pair: {hi[1]} and {hi[2]} ({number(hi[0])}). Least agreeing pair: "
                               f"{lo[1]} and {lo[2]} ({number(lo[0])})."))
    parts.append(figure(AgreementMatrixDisplay(names, matrix, metric=f"feature agreement, top {k}").plot(),
                        "agreement matrix between methods"))
    parts.append(table(["", *names], [[n, *[float(v) for v in row]] for n, row in zip(names, matrix, strict=True)]))
    return Section("agreement", "Agreement between methods", "".join(parts))


# ---------------------------------------------------------------------------------------------- summary
def primary_label(ctx: ReportContext) -> tuple[str, str]:
    """The method the summary is about (the most faithful when evaluated, else the first) and why."""
    labels = [label for label, _ in ctx.items]
    ev = ctx.evaluation
    if ev is not None and "faithfulness" in ev.properties.values():
        for label in ev.ranking("faithfulness"):
            if label in labels:
                return label, "the most faithful of the evaluated methods"
    return labels[0], "the first method given"


def summary_section(ctx: ReportContext) -> Section:
    label, why = primary_label(ctx)
    e = dict(ctx.items)[label]
    others = [x for lab, x in ctx.items if lab != label]
    parts = [paragraph(f"Written for: {ctx.audience.replace('_', ' ')}. About {label} ({why}).", "note")]
    for i in ctx.indices:
        text = summarize(e, ctx.audience, ctx.evaluation, ctx.top_k, ctx.class_names, ctx.feature_names, index=i,
                         name=label, sanity=ctx.sanity, others=others, probabilities=ctx.probabilities)
        parts.append(f"<h3>Sample {i}</h3>" + "".join(paragraph(p) for p in text.split("\n\n")))
    return Section("summary", "Summary", '<div class="summary">' + "".join(parts) + "</div>")


# ---------------------------------------------------------------------------------------------- reproducibility
def reproducibility_section(ctx: ReportContext, build_info: Mapping[str, Any]) -> Section:
    rows = []
    for label, e in ctx.items:
        layer = e.layer or e.extras.get("layer")
        rows.append([label, e.method, RawHTML(f"<code>{esc(_json(e.params))}</code>"),
                     "none" if e.seed is None else str(e.seed), layer or "input", e.target_description or "-",
                     RawHTML(f"<code>{esc(_json(e.versions))}</code>")])
    parts = [paragraph("Each explanation was produced by the method and parameters below; stochastic methods also "
                       "record their seed. Re-running them with these values and versions reproduces the numbers."),
             table(["label", "method", "parameters", "seed", "layer", "target", "versions"], rows)]
    results = []
    if ctx.evaluation is not None:
        ev = ctx.evaluation
        results.append(["evaluation", str(ev.seed), RawHTML(f"<code>{esc(_json({'metrics': ev.metrics, **ev.params}))}"
                                                           "</code>"), RawHTML(f"<code>{esc(_json(ev.versions))}</code>")])
    if ctx.sanity is not None:
        sc = ctx.sanity
        params = {"rule": {"measure": sc.rule.measure, "threshold": sc.rule.threshold,
                           "statistic": sc.rule.statistic, "decisive": list(sc.rule.decisive)},
                  "n_samples": sc.n_samples, **sc.params}
        results.append(["sanity check", str(sc.seed), RawHTML(f"<code>{esc(_json(params))}</code>"),
                        RawHTML(f"<code>{esc(_json(sc.versions))}</code>")])
    if results:
        parts.append(table(["result", "seed", "parameters", "versions"], results))
    parts.append(table(["report", "value"], [[k, str(v)] for k, v in build_info.items()]))
    return Section("reproducibility", "Reproducibility", "".join(parts))
