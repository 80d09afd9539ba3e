"""The ``lumos demo`` job: explain digits with every gradient method, save a heatmap grid and a table."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lumos

from .digits import DigitsData, TrainingConfig, load_data, torch_threads, trained_model
from .figures import heatmap_grid
from .progress import overall_progress

#: hyper-parameters of the methods that have any, and which baseline they get
#: ("zeros": a black image; "background": 32 training images)
METHOD_SETTINGS: dict[str, tuple[dict[str, Any], str | None]] = {
    "integrated_gradients": ({"n_steps": 50}, "zeros"),
    "gradient_shap": ({"n_samples": 64}, "background"),
    "smoothgrad": ({"n_samples": 32, "noise_level": 0.15}, None),
    "vargrad": ({"n_samples": 32, "noise_level": 0.15}, None),
    "noise_tunnel": ({"base_method": "integrated_gradients", "base_params": {"n_steps": 16},
                      "n_samples": 16, "noise_level": 0.15}, "zeros"),
}
N_BACKGROUND = 32


@dataclass
class MethodResult:
    """One row of the demo's table."""

    method: str
    seconds: float | None = None
    n_evaluations: int | None = None
    residual: float | None = None
    relative_residual: float | None = None
    max_relative_residual: float | None = None
    residual_definition: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    skipped: str | None = None


@dataclass
class DemoResult:
    out_dir: Path
    png: Path
    summary: Path
    test_accuracy: float
    n_test: int
    cached: bool
    model_seconds: float
    total_seconds: float
    methods: list[MethodResult]
    notes: list[str]


def gradient_methods() -> list[dict[str, Any]]:
    """Registry rows of every gradient-family method."""
    return [info for info in lumos.method_info() if info["family"] == "gradient"]


def pick_images(data: DigitsData, n_images: int) -> np.ndarray:
    """Indices of the first test image of ``n_images`` classes spread over 0..9."""
    labels = data.y_test.numpy()
    classes = np.unique(np.linspace(0, 9, n_images).round().astype(int))
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in classes])


def completeness(e: lumos.Explanation) -> tuple[float | None, float | None, float | None, str]:
    """Mean |residual|, mean and max relative residual, and what the residual measures."""
    extras, scores = e.extras, np.asarray(e.scores, dtype=np.float64)

    def mean_max(values: np.ndarray) -> tuple[float, float]:
        values = np.abs(np.asarray(values, dtype=np.float64))
        return float(values.mean()), float(values.max())

    if "convergence_delta" in extras:
        delta = np.abs(np.asarray(extras["convergence_delta"], dtype=np.float64))
        if "base_value" in extras:
            reference = extras["base_value"]
            text = "|sum A - (f(x) - E f(x'))|, x' ~ training images: a Monte-Carlo estimate, exact only in expectation"
        else:
            reference = extras.get("baseline_scores")
            text = "|sum A - (f(x) - f(x'))|, x' = black image: the path integral's quadrature error"
        if reference is None:
            return float(delta.mean()), None, None, text
        gap = np.abs(scores - np.asarray(reference, dtype=np.float64))
        relative = delta / np.maximum(gap, np.finfo(np.float64).tiny)
        return float(delta.mean()), *mean_max(relative), text
    if "mean_convergence_delta" in extras:
        delta = np.abs(np.asarray(extras["mean_convergence_delta"], dtype=np.float64))
        relative = extras.get("mean_relative_convergence_delta")
        rel_mean, rel_max = mean_max(relative) if relative is not None else (None, None)
        return (float(delta.mean()), rel_mean, rel_max,
                f"|sum A - mean_j (f(x + e_j) - f(x'))|: smoothed {e.params.get('base_method', '')} sums to the "
                f"noisy copies' mean score gap")
    if e.method == "input_x_gradient":
        total = e.attribution_arrays()[0].reshape(len(e), -1).sum(1).astype(np.float64)
        gap = np.abs(total - scores)
        relative = gap / np.maximum(np.abs(scores), np.finfo(np.float64).tiny)
        return (float(gap.mean()), *mean_max(relative),
                "|sum A - f(x)|: no completeness axiom; for a ReLU net the gap is the local bias term")
    return None, None, None, "n/a: no completeness property"


def _prepare_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise lumos.ValidationError(f"demo: --out must be a directory, but {out_dir} is a file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise lumos.ValidationError(f"demo: cannot create the output directory {out_dir}: {exc}") from exc
    return out_dir


def explain_all(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, background: torch.Tensor, *,
                seed: int, progress: bool, out_dir: Path, log: Callable[[str], None],
                on_step: Callable[[str], None] | None = None) -> tuple[list[MethodResult], list[tuple[str, np.ndarray]]]:
    """Explain ``x`` (target ``y``) with every gradient method; save each Explanation as ``<method>.npz``.
    ``on_step(name)`` is called before each method."""
    results: list[MethodResult] = []
    maps: list[tuple[str, np.ndarray]] = []
    for info in gradient_methods():
        name = info["name"]
        if on_step is not None:
            on_step(name)
        params, baseline_kind = METHOD_SETTINGS.get(name, ({}, "background" if info["needs_baseline"] else None))
        params = dict(params)
        if info["stochastic"]:
            params["seed"] = seed
        baseline = {"zeros": 0.0, "background": background, None: None}[baseline_kind]
        start = time.perf_counter()
        try:
            e = lumos.explain(model, x, method=name, target=y, baseline=baseline, progress=progress, **params)
        except lumos.LumosError as exc:  # a new method the demo does not know how to configure
            log(f"  {name}: skipped ({exc})")
            results.append(MethodResult(name, skipped=str(exc), params=params))
            continue
        seconds = time.perf_counter() - start
        residual, relative, max_relative, definition = completeness(e)
        path = e.save(out_dir / f"{name}.npz")
        n_evaluations = e.extras.get("n_evaluations")
        results.append(MethodResult(
            name, seconds, None if n_evaluations is None else int(n_evaluations), _finite(residual),
            _finite(relative), _finite(max_relative), definition, e.params, path.name,
        ))
        label = name if "base_method" not in e.params else f"{name}\n({e.params['base_method']})"
        maps.append((label, e.attribution_arrays()[0][:, 0]))
    return results, maps


def run_demo(out_dir: str | Path = "lumos-demo", *, seed: int = 0, n_images: int = 6, progress: bool = False,
             use_cache: bool = True, log: Callable[[str], None] | None = None,
             overall_bar: bool | None = None) -> DemoResult:
    """Train (or load) the digits CNN, explain ``n_images`` test digits with every gradient method and write
    ``heatmaps.png``, one ``<method>.npz`` per method and ``summary.json`` to ``out_dir``.

    ``progress``: the methods' own bars; ``overall_bar``: one bar over the steps (``None``: follows
    ``LUMOS_PROGRESS``, else shown on a terminal while ``log`` is given; see :mod:`lumos.demo.progress`)."""
    with overall_progress(("digits",), show=overall_bar, logging=log is not None, unit="part") as bar:
        bar.begin("digits", "model")
        bar.steps(len(gradient_methods()) + 2)  # the model, each method, the figure
        result = _run_demo(Path(out_dir), seed, n_images, progress, use_cache,
                           bar.wrap_log(log or (lambda _message: None)), bar.step)
        bar.end()
    return result


def _run_demo(out_dir: Path, seed: int, n_images: int, progress: bool, use_cache: bool, log: Callable[[str], None],
              on_step: Callable[[str], None]) -> DemoResult:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise lumos.ValidationError(f"demo: seed must be an int >= 0, got {seed!r}")
    if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= 10:
        raise lumos.ValidationError(f"demo: n_images must be an int from 1 to 10, got {n_images!r}")
    started = time.perf_counter()
    out_dir = _prepare_out_dir(out_dir)
    config = TrainingConfig(seed=seed)
    with torch_threads(1):
        data = load_data(config)
        trained = trained_model(data, config, use_cache=use_cache, log=log)
        model = trained.model
        for note in trained.notes:
            log(f"note: {note}")
        if trained.cached:
            log(f"model: small CNN on 8x8 digits, cached: loaded from {trained.cache_path}")
        else:
            where = f", saved to {trained.cache_path}" if trained.cache_path else ""
            log(f"model: small CNN on 8x8 digits, trained in {trained.seconds:.1f} s{where}")
        log(f"test accuracy: {trained.test_accuracy:.1%} on {len(data.y_test)} held-out images")

        index = pick_images(data, n_images)
        x, y = data.x_test[index], data.y_test[index]
        with torch.no_grad():
            probabilities = torch.softmax(model(x), dim=1)
        predicted = probabilities.argmax(1)
        background = data.x_train[:N_BACKGROUND]
        log(f"explaining {len(index)} test images (target: their true label) with every gradient method ...")
        results, maps = explain_all(model, x, y, background, seed=seed, progress=progress, out_dir=out_dir,
                                    log=log, on_step=on_step)
    on_step("figure")

    titles = [f"label {int(t)}\npred {int(p)} ({float(probabilities[k, p]):.0%})"
              for k, (t, p) in enumerate(zip(y, predicted, strict=True))]
    png = heatmap_grid(
        x[:, 0].numpy(), titles, maps, out_dir / "heatmaps.png",
        suptitle="lumos demo: attributions for the true label (red: toward it, blue: against; "
                 "each cell scaled to its own max |A|)",
    )
    total = time.perf_counter() - started
    result = DemoResult(out_dir, png, out_dir / "summary.json", trained.test_accuracy, len(data.y_test),
                        trained.cached, trained.seconds, total, results, trained.notes)
    _write_summary(result, index, y, predicted)
    return result


def _write_summary(result: DemoResult, index: np.ndarray, y: torch.Tensor, predicted: torch.Tensor) -> None:
    summary = {
        "lumos_version": lumos.__version__,
        "test_accuracy": result.test_accuracy,
        "n_test": result.n_test,
        "model_cached": result.cached,
        "model_seconds": result.model_seconds,
        "total_seconds": result.total_seconds,
        "images": {"test_index": index.tolist(), "labels": y.tolist(), "predictions": predicted.tolist()},
        "heatmaps": result.png.name,
        "methods": [asdict(r) for r in result.methods],
    }
    result.summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _finite(value: float | None) -> float | None:
    """``None`` for a missing or non-finite number (summary.json is strict JSON)."""
    return value if value is not None and math.isfinite(value) else None


def _number(value: float | None, spec: str) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return format(value, spec)


def format_table(result: DemoResult) -> str:
    """The demo's table: method, time, model evaluations and completeness residual, with footnotes that
    say what each residual measures."""
    header = f"{'method':<22s}  {'time (s)':>8s}  {'model evals':>11s}  {'residual':>9s}  {'relative':>9s}"
    lines = [header, "-" * len(header)]
    notes: list[str] = []
    for r in result.methods:
        if r.skipped is not None:
            lines.append(f"{r.method:<22s}  {'skipped':>8s}  {r.skipped}")
            continue
        evals = str(r.n_evaluations) if r.n_evaluations is not None else "n/a"
        line = (f"{r.method:<22s}  {_number(r.seconds, '8.3f'):>8s}  {evals:>11s}  "
                f"{_number(r.residual, '9.2e'):>9s}  {_number(r.relative_residual, '9.2e'):>9s}")
        if r.residual is not None:
            if r.residual_definition not in notes:
                notes.append(r.residual_definition)
            line += f"  [{notes.index(r.residual_definition) + 1}]"
        lines.append(line)
    lines.append("residual: completeness gap in logits, mean over the images; n/a: no completeness property")
    lines.append("relative: residual / |the score difference the attributions should add up to|")
    lines += [f"[{k}] {note}" for k, note in enumerate(notes, start=1)]
    return "\n".join(lines)
