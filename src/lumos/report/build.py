"""``build``: write the self-contained HTML report of several explanations of the same inputs."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from ..explanation import Explanation, library_versions
from ..metrics import Evaluation, SanityReport
from .facts import class_probabilities
from .html import page
from .sections import (
    ReportContext,
    agreement_section,
    evaluation_section,
    explanations_section,
    prediction_section,
    reproducibility_section,
    sanity_section,
    summary_section,
)
from .summary import AUDIENCES

OWNER = "lumos.report.build"


def _labelled(explanations: Any) -> list[tuple[str, Explanation]]:
    """``[(label, explanation)]`` from a dict or a list (labelled by method; repeats get ``_2``, ``_3``)."""
    if isinstance(explanations, Explanation):
        explanations = [explanations]
    if isinstance(explanations, Mapping):
        items = [(str(k), v) for k, v in explanations.items()]
    elif isinstance(explanations, Sequence) and not isinstance(explanations, str):
        items, seen = [], {}
        for e in explanations:
            base = getattr(e, "method", "") or "explanation"
            seen[base] = seen.get(base, 0) + 1
            items.append((base if seen[base] == 1 else f"{base}_{seen[base]}", e))
    else:
        raise ValidationError(f"{OWNER}: explanations must be a list of Explanations or a {{name: Explanation}} "
                              f"dict, got {type(explanations).__name__}")
    if not items:
        raise ValidationError(f"{OWNER}: explanations is empty; give at least one Explanation")
    for label, e in items:
        if not isinstance(e, Explanation):
            raise ValidationError(f"{OWNER}: explanations[{label!r}] must be a lumos Explanation, got "
                                  f"{type(e).__name__}")
    n = {len(e) for _, e in items}
    if len(n) != 1:
        raise ValidationError(f"{OWNER}: the explanations must be of the same samples, got sample counts "
                              f"{sorted(n)}")
    return items


def build(explanations: Sequence[Explanation] | Mapping[str, Explanation], evaluation: Evaluation | None = None, *,
          sanity: SanityReport | None = None, path: str | Path = "report.html", title: str | None = None,
          model_name: str | None = None, class_names: Sequence[str] | Mapping[int, str] | None = None,
          feature_names: Sequence[str] | None = None, audience: str = "domain_expert", max_samples: int = 8,
          top_k: int = 3, probabilities: Any = None, logits: Any = None) -> Path:
    """Write ONE self-contained HTML report (inline images and CSS, no script, no network) and return its path.

    Sections: Prediction (explained class, score, and the confidence when ``probabilities`` or ``logits`` are
    given: ``softmax(logits)``), Explanations (a methods x samples grid for images, bar or waterfall charts for
    tabular data, highlighted tokens for text), Evaluation (when given: metric table and values, ranking per
    property, the most faithful method), Sanity checks (when given: pass/fail per method with the evidence),
    Agreement between methods (feature agreement matrix, most and least agreeing pair), Summary (plain
    language for ``audience``, about the most faithful method), Reproducibility (method, parameters, seed,
    layer, target and versions of every result). All user strings are HTML-escaped.

    Args:
        explanations: Explanations of the same inputs by different methods: a list (labelled by method) or
            a ``{label: Explanation}`` dict; labels must match the method names in ``evaluation``/``sanity``.
        evaluation: a :class:`~lumos.metrics.Evaluation` of these methods (``lumos.evaluate``).
        sanity: a :class:`~lumos.metrics.SanityReport` (``lumos.sanity_check``).
        path: the HTML file to write (parents created).
        title, model_name: texts of the header.
        class_names: names of the classes (list or ``{index: name}``); feature_names: names of tabular features.
        audience: ``"engineer"``, ``"domain_expert"`` or ``"end_user"`` (the summary's words).
        max_samples: at most this many samples are shown (the first ones).
        top_k: features named per direction in the summary, and the k of the tabular agreement.
        probabilities, logits: the model's ``(samples, classes)`` output on the explained inputs.

    Example::

        lumos.report.build([e_ig, e_saliency], evaluation=ev, path="report.html", logits=model(x))
    """
    items = _labelled(explanations)
    if evaluation is not None and not isinstance(evaluation, Evaluation):
        raise ValidationError(f"{OWNER}: evaluation must be a lumos Evaluation or None, got "
                              f"{type(evaluation).__name__}")
    if sanity is not None and not isinstance(sanity, SanityReport):
        raise ValidationError(f"{OWNER}: sanity must be a lumos SanityReport or None, got {type(sanity).__name__}")
    if audience not in AUDIENCES:
        raise ValidationError(f"{OWNER}: audience must be one of {list(AUDIENCES)}, got {audience!r}")
    for name, value in (("max_samples", max_samples), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(f"{OWNER}: {name} must be an int >= 1, got {value!r}")
    n = len(items[0][1])
    ctx = ReportContext(items=items, evaluation=evaluation, sanity=sanity,
                        probabilities=class_probabilities(n, probabilities=probabilities, logits=logits, owner=OWNER),
                        class_names=class_names, feature_names=feature_names, audience=audience,
                        indices=list(range(min(n, max_samples))), top_k=top_k)
    versions = library_versions()
    now = _dt.datetime.now().astimezone()
    info = {"generated": now.isoformat(timespec="seconds"), **{f"{k} version": v for k, v in versions.items()},
            "samples shown": f"{len(ctx.indices)} of {n}", "audience": audience}
    sections = [prediction_section(ctx), explanations_section(ctx)]
    if evaluation is not None:
        sections.append(evaluation_section(ctx))
    if sanity is not None:
        sections.append(sanity_section(ctx))
    sections += [agreement_section(ctx), summary_section(ctx), reproducibility_section(ctx, info)]
    title = title or "lumos explanation report"
    subtitle = (f"{'Model: ' + model_name + ' - ' if model_name else ''}generated {now:%Y-%m-%d %H:%M} with lumos "
                f"{versions['lumos']}, torch {versions['torch']}; methods: {', '.join(lab for lab, _ in items)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, subtitle, sections), encoding="utf-8")
    return path
