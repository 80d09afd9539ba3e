"""``lumos explain``, ``lumos evaluate`` and ``lumos report``: load safely, call the public API, save."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lumos

from .arguments import parse_baseline, parse_params, parse_target
from .loading import CliArgumentError, LoadedData, LoadedModel, load_data, load_model


def say(args: argparse.Namespace, text: str) -> None:
    """Print unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def progress(args: argparse.Namespace) -> bool | None:
    return False if getattr(args, "quiet", False) else None


def _load_inputs(args: argparse.Namespace) -> tuple[LoadedModel, LoadedData]:
    data = load_data(args.data, key=args.key, size=args.size, mean=args.mean, std=args.std)
    model = load_model(args.model, class_spec=args.class_spec, init_json=args.init_json, trust=args.trust)
    for note in model.notes:
        say(args, f"note: {note}")
    say(args, f"model: {args.model} ({model.kind}); data: {args.data} -> {tuple(data.inputs.shape)}")
    return model, data


def _check_method(name: str) -> None:
    if name not in lumos.method_names():
        raise CliArgumentError("--method", f"unknown method {name!r}; `lumos methods` lists the "
                                           f"{len(lumos.method_names())} registered methods")


def _output_path(text: str, argument: str, suffix: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise CliArgumentError(argument, f"{path} is a directory; give a file name ending in {suffix}")
    if path.suffix.lower() != suffix:
        raise CliArgumentError(argument, f"expected a file name ending in {suffix}, got {text!r}")
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True)
        except OSError as exc:
            raise CliArgumentError(argument, f"cannot create the folder {path.parent}: {exc}") from exc
    return path


def _summary(e: lumos.Explanation) -> list[str]:
    lines = [f"method {e.method}; target {e.target_description}; attributions {tuple(e.attributions.shape)}"]
    flat = np.asarray(e.attribution_arrays()[0], dtype=np.float64).reshape(len(e), -1)
    for i in range(min(len(e), 8)):
        row = flat[i]
        target = "" if e.targets is None else f" target {np.asarray(e.targets).reshape(-1)[i]}"
        score = "" if e.scores is None else f" score {float(np.asarray(e.scores).reshape(-1)[i]):.4g}"
        lines.append(f"  sample {i}:{target}{score}  sum {row.sum():+.4g}  max |a| {np.abs(row).max():.4g}")
    if flat.shape[1] <= 64 and e.feature_names is not None:
        for i, top in enumerate(e.top_features(3)[:8]):
            lines.append(f"  sample {i} top features: " + ", ".join(f"{n} ({v:+.3g})" for n, v in top))
    return lines


def method_kwargs(args: argparse.Namespace, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The method's constructor arguments from the flags: ``--param``, ``--layer``, ``--seed``, ``--batch-size``."""
    cls = lumos.methods.get_method(name)
    accepted = set(cls.parameter_names())
    kwargs = dict(extra)
    if args.layer is not None:
        kwargs["layer"] = args.layer
    if getattr(args, "batch_size", None) is not None and "batch_size" in accepted:
        kwargs["batch_size"] = args.batch_size
    if cls.stochastic and "seed" in accepted:
        kwargs.setdefault("seed", args.seed)
    if "progress" in accepted:
        kwargs.setdefault("progress", progress(args))
    return kwargs


def run_explain(args: argparse.Namespace) -> int:
    """``lumos explain MODEL DATA --method NAME ...``: one Explanation, saved as .npz, summarised."""
    _check_method(args.method)
    params = parse_params(args.param)
    out = _output_path(args.out, "--out", ".npz")
    report = _output_path(args.report, "--report", ".html") if args.report else None
    model, data = _load_inputs(args)
    target = parse_target(args.target, len(data.inputs))
    baseline = parse_baseline(args.baseline, data.inputs)
    kwargs = method_kwargs(args, args.method, params)
    start = time.perf_counter()
    e = lumos.explain(model.for_method(args.method), data.inputs, method=args.method, target=target,
                      baseline=baseline, feature_names=data.feature_names, **kwargs)
    seconds = time.perf_counter() - start
    path = e.save(out)
    for line in _summary(e):
        say(args, line)
    say(args, f"time {seconds:.2f} s")
    if report is not None:
        write_report(args, [e], None, report)
    print(path)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``lumos evaluate MODEL DATA --methods a,b --metrics x,y``: the Evaluation, saved as .npz, printed."""
    for name in args.methods:
        _check_method(name)
    out = _output_path(args.out, "--out", ".npz")
    params = parse_params(args.param)
    model, data = _load_inputs(args)
    target = parse_target(args.target, len(data.inputs))
    baseline = parse_baseline(args.baseline, data.inputs)
    methods = {name: {k: v for k, v in method_kwargs(args, name, {}).items() if k not in ("seed", "progress")}
               for name in args.methods}
    if any(name == "tree_shap" for name in args.methods) and model.tree_model is not None:
        raise CliArgumentError("--methods", "evaluate runs every method on one model; explain the booster with "
                                            "`lumos explain --method tree_shap` instead")
    metric_params = {}
    for item in args.metric_param or []:
        metric, sep, rest = item.partition(".")
        if not sep:
            raise CliArgumentError("--metric-param", f"expected METRIC.NAME=VALUE, got {item!r}")
        metric_params.setdefault(metric, {}).update(parse_params([rest], "--metric-param"))
    ev = lumos.evaluate(model.model, data.inputs, methods=methods, metrics=args.metrics, target=target,
                        baseline=baseline, seed=args.seed, progress=progress(args), batch_size=args.batch_size,
                        metric_params=metric_params or None, **params)
    path = ev.save(out)
    say(args, repr(ev))
    print(path)
    return 0


def _report_module() -> Any:
    try:
        from lumos import report  # noqa: PLC0415 - optional, built separately
    except ImportError as exc:
        raise CliArgumentError("report", f"lumos.report is not available in this installation ({exc})") from exc
    return report


def write_report(args: argparse.Namespace, explanations: list[lumos.Explanation], evaluation: Any,
                 path: Path, **options: Any) -> Path:
    """``lumos.report.build(...)`` and say where the page is."""
    report = _report_module()
    written = report.build(explanations, evaluation, path=path, **options)
    say(args, f"report: {written}")
    return Path(written)


def run_report(args: argparse.Namespace) -> int:
    """``lumos report RESULT.npz [...] [--evaluation EV.npz] [--out report.html]``."""
    out = _output_path(args.out, "--out", ".html")
    explanations = []
    for text in args.results:
        path = Path(text)
        if not path.is_file():
            raise CliArgumentError("RESULT", f"no such file: {path}")
        try:
            if path.suffix.lower() != ".npz":
                raise ValueError(f"expected an .npz file, got {path.suffix or 'no suffix'}")
            explanations.append(lumos.load(path))
        except Exception as exc:  # any unreadable file is the argument's fault
            raise CliArgumentError("RESULT", f"{path} is not a lumos explanation (.npz from `lumos explain` or "
                                             f"Explanation.save): {exc}") from exc
    evaluation = None
    if args.evaluation:
        if not Path(args.evaluation).is_file():
            raise CliArgumentError("--evaluation", f"no such file: {args.evaluation}")
        try:
            evaluation = lumos.load_evaluation(args.evaluation)
        except Exception as exc:  # any unreadable file is the argument's fault
            raise CliArgumentError("--evaluation", f"{args.evaluation} is not a lumos evaluation: {exc}") from exc
    options: dict[str, Any] = {"audience": args.audience, "max_samples": args.max_samples}
    if args.title:
        options["title"] = args.title
    if args.class_names:
        options["class_names"] = args.class_names
    with torch.no_grad():
        path = write_report(args, explanations, evaluation, out, **options)
    if getattr(args, "quiet", False):
        print(path)
    return 0
