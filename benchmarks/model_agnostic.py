"""Model-agnostic benchmark (issue 4): lumos' perturbation and Shapley methods on breast-cancer MLPs.

Three measurements, printed and written as markdown (``--markdown``):

1. **Time against the floor** (target <= 1.2x at default settings), on scikit-learn's breast-cancer data
   (30 features, 10 explained rows, kmeans-10 background with weights) and three models of it:

   - ``sklearn``: a ``StandardScaler`` + ``MLPClassifier(64, 64)`` pipeline's ``predict_proba`` (numpy);
     scikit-learn's per-call validation makes each row comparatively slow, which hides bookkeeping;
   - ``torch_numpy``: a small PyTorch MLP (30-64-64-2 with the scaling as a fixed first layer, softmax
     output) wrapped as a numpy ``predict`` function (``lumos.NumpyModel``): a much cheaper forward, so the
     explainer's own bookkeeping shows;
   - ``torch_module``: the same MLP passed as an ``nn.Module`` (float32 inputs).

   The floor is the model's own cost on as many rows as the method evaluated (``extras["n_evaluations"]``),
   built beforehand: the faster of ONE call on all rows and calls on cache-sized chunks of 4,096 or 16,384
   rows (one call on 200k rows is 2-2.5x slower per row than 16k-row calls for the small MLP: its fresh
   activations are page-faulted in on every call), so chunking cannot make a method look cheaper than the
   model.
2. **KernelSHAP against ``shap.KernelExplainer``** at the same number of coalition samples: time per
   explained sample (target: lumos at least 10x faster) on the ``sklearn`` and ``torch_numpy`` models, and
   the error against a high-precision reference as the number of model evaluations grows (``sklearn``;
   target: the same error with at least 4x fewer evaluations). The reference is lumos' KernelSHAP with 2^17
   coalitions (an exact regression for its coalitions); its own error is estimated by comparing it with
   PermutationSHAP at 1,000 antithetic permutations.
3. **Other incumbents where installed**: ``lime``'s tabular explainer against lumos' LIME at equal
   ``num_samples`` on both numpy models (target: 5x faster), ``shap.TreeExplainer`` against lumos' TreeSHAP
   on a 100-tree forest (target: equal to 1e-6, no slower than 1.5x). Skipped when either side is missing.

Usage (from the repository root)::

    .venv/bin/python benchmarks/model_agnostic.py --markdown benchmarks/RESULTS_model_agnostic.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import lumos

N_EXPLAIN = 10  # samples explained per call
#: the clock of every measurement: ``time.perf_counter`` (wall, default) or ``time.process_time`` (CPU time of
#: this process, all threads: robust on a machine shared with other work; use it with ``--threads 1``)
clock = time.perf_counter
N_BACKGROUND = 10  # kmeans clusters
#: time each call of the floor table after a full garbage collection (all calls start alike, caches cold: the
#: interpreter walks every object); ``--warm`` times them back to back instead (both the method and the bare
#: model call get faster, the model call more: its floors of 1-2 ms drop to 0.4-0.5 ms)
COLD = True


def data_and_model() -> dict[str, Any]:
    """Breast-cancer data split, a fitted scaler + MLP pipeline and a weighted kmeans-10 background."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of a quick fit
        model = make_pipeline(StandardScaler(), MLPClassifier((64, 64), max_iter=300, random_state=0))
        model.fit(x_train, y_train)
    kmeans = KMeans(N_BACKGROUND, n_init=4, random_state=0).fit(x_train)
    weights = np.bincount(kmeans.labels_, minlength=N_BACKGROUND).astype(np.float64)
    return {"model": model, "x_train": x_train, "y_train": y_train, "x": x_test[:N_EXPLAIN],
            "background": kmeans.cluster_centers_, "weights": weights / weights.sum()}


def torch_mlp(d: dict[str, Any]) -> Any:
    """A small PyTorch MLP (30-64-64-2, softmax output) fitted to the same labels; the pipeline's scaling is
    its fixed first layer, so it takes the raw features like the scikit-learn model."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(0)
    scaler = d["model"][0]
    scale = nn.Linear(30, 30)
    with torch.no_grad():
        scale.weight.copy_(torch.diag(torch.as_tensor(1 / scaler.scale_, dtype=torch.float32)))
        scale.bias.copy_(torch.as_tensor(-scaler.mean_ / scaler.scale_, dtype=torch.float32))
    layers = [nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)]
    with torch.no_grad():
        for layer in layers[::2]:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2 / layer.in_features) ** 0.5)
            layer.bias.zero_()
    net = nn.Sequential(scale, *layers, nn.Softmax(1))
    x = torch.as_tensor(d["x_train"], dtype=torch.float32)
    y = torch.as_tensor(d["y_train"])
    optimiser = torch.optim.Adam([p for layer in layers[::2] for p in layer.parameters()], lr=1e-2)
    for _ in range(200):  # full-batch training, deterministic
        optimiser.zero_grad()
        nn.functional.nll_loss(torch.log(net(x) + 1e-9), y).backward()
        optimiser.step()
    net.eval().requires_grad_(False)
    return net


def workloads(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> {"model" (what lumos explains), "predict" (numpy function for shap/lime, or None), "prepare"
    (numpy rows -> the model's input, built before the floor is timed), "call" (the model on prepared rows),
    "description"}."""
    import torch

    net = torch_mlp(d)

    def predict(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(a).float()).numpy()

    def forward(t: Any) -> Any:
        with torch.no_grad():
            return net(t)

    return {
        "sklearn": {"model": d["model"].predict_proba, "predict": d["model"].predict_proba, "prepare": lambda a: a,
                    "call": d["model"].predict_proba,
                    "description": "scikit-learn `StandardScaler` + `MLPClassifier(64, 64)` `predict_proba`"},
        "torch_numpy": {"model": lumos.NumpyModel(predict), "predict": predict, "prepare": lambda a: a,
                        "call": predict,
                        "description": "PyTorch MLP 30-64-64-2 (softmax) as a numpy function, `lumos.NumpyModel`"},
        "torch_module": {"model": net, "predict": None,
                         "prepare": lambda a: torch.as_tensor(a, dtype=torch.float32), "call": forward,
                         "description": "the same PyTorch MLP as an `nn.Module` (float32)"},
    }


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = clock()
        result = fn()
        times.append(clock() - start)
    return statistics.median(times), result


# ---------------------------------------------------------------------------------------------- 1. floor
def method_calls(d: dict[str, Any], model: Any) -> dict[str, tuple[str, Callable[[], Any]]]:
    """lumos' model-agnostic methods at default settings on ``model``: name -> (settings, call)."""
    x, background, weights = d["x"], d["background"], d["weights"]
    kw = {"progress": False}
    calls: dict[str, tuple[str, Callable[[], Any]]] = {
        "kernel_shap": ("n_samples='auto' (2d + 2048 coalitions)", lambda: lumos.KernelSHAP(model, seed=0, **kw).explain(
            x, target=1, baseline=background, background_weights=weights)),
        "permutation_shap": ("n_permutations=16, antithetic", lambda: lumos.PermutationSHAP(model, seed=0, **kw).explain(
            x, target=1, baseline=background, background_weights=weights)),
        "feature_ablation": ("one feature at a time", lambda: lumos.FeatureAblation(model, **kw).explain(
            x, target=1, baseline=background, background_weights=weights)),
        "occlusion": ("window 1", lambda: lumos.Occlusion(model, **kw).explain(
            x, target=1, baseline=background, background_weights=weights)),
    }
    names = lumos.method_names()
    if "lime" in names:
        calls["lime"] = ("defaults", lambda: lumos.methods.get_method("lime")(model, seed=0, **kw).explain(
            x, target=1, baseline=d["x_train"]))
    if "rise" in names:
        calls["rise"] = ("defaults", lambda: lumos.methods.get_method("rise")(model, seed=0, **kw).explain(
            x, target=1, baseline=background.mean(0)))
    return calls


def floor_rows(d: dict[str, Any], n_rows: int) -> np.ndarray:
    """``n_rows`` distinct rows built beforehand: training rows cycled, with small seeded noise."""
    rng = np.random.default_rng(0)
    base = d["x_train"][np.arange(n_rows) % len(d["x_train"])]
    return base + 0.01 * rng.standard_normal(base.shape) * d["x_train"].std(0)


FLOOR_CHUNKS = (None, 4096, 16384)  # one call on all rows, or calls on chunks of this many rows


def run_floor(d: dict[str, Any], workload: dict[str, Any], repeats: int,
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each method and its floor timed interleaved (one of each per round), medians over ``repeats`` rounds;
    the floor is the fastest of the chunkings in ``FLOOR_CHUNKS``."""
    rows = []
    model_call = workload["call"]
    for name, (settings, call) in method_calls(d, workload["model"]).items():
        explanation = call()  # warm-up; tells the number of rows evaluated
        n_eval = int(explanation.extras["n_evaluations"])
        inputs = workload["prepare"](floor_rows(d, n_eval))

        def floor_call(chunk: int | None, inputs: Any = inputs, n_eval: int = n_eval) -> None:
            if chunk is None or chunk >= n_eval:
                model_call(inputs)
                return
            for start in range(0, n_eval, chunk):
                model_call(inputs[start:start + chunk])

        for chunk in FLOOR_CHUNKS:
            floor_call(chunk)
        ours: list[float] = []
        floors: dict[int | None, list[float]] = {chunk: [] for chunk in FLOOR_CHUNKS}
        gc.collect()
        for _ in range(repeats):  # each after a full collection, or back to back with --warm
            if COLD:
                gc.collect()
            start = clock()
            call()
            ours.append(clock() - start)
            for chunk in FLOOR_CHUNKS:
                if COLD:
                    gc.collect()
                start = clock()
                floor_call(chunk)
                floors[chunk].append(clock() - start)
        seconds = statistics.median(ours)
        medians = {chunk: statistics.median(times) for chunk, times in floors.items()}
        best = min(medians, key=lambda c: medians[c])
        floor = medians[best]
        rows.append({"method": name, "settings": settings, "time_s": seconds, "rows": n_eval, "floor_s": floor,
                     "floor_chunk": "one call" if best is None or best >= n_eval else f"{best}-row calls",
                     "one_call_s": medians[None], "ratio": seconds / floor})
        log(f"  {name:18s} {seconds * 1e3:9.2f} ms  rows {n_eval:8d}  floor {floor * 1e3:8.2f} ms "
            f"({rows[-1]['floor_chunk']})  {seconds / floor:5.2f}x")
    return rows


# ---------------------------------------------------------------------------------------------- 2. kernel SHAP
def shap_kernel(d: dict[str, Any], n_samples: int, seed: int, predict: Callable[[np.ndarray], Any] | None = None
                ) -> np.ndarray:
    """shap.KernelExplainer's values for class 1 with the same weighted background, (N_EXPLAIN, 30)."""
    import shap

    predict = predict or d["model"].predict_proba
    data = shap.utils._legacy.DenseData(d["background"], [str(i) for i in range(30)], None, d["weights"])
    explainer = shap.KernelExplainer(lambda a: predict(a)[:, 1], data)
    np.random.seed(seed)  # shap samples coalitions from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(explainer.shap_values(d["x"], nsamples=n_samples, silent=True))


def lumos_kernel(d: dict[str, Any], n_samples: int, seed: int, model: Any = None) -> Any:
    return lumos.KernelSHAP(model or d["model"].predict_proba, n_samples=n_samples, seed=seed, progress=False).explain(
        d["x"], target=1, baseline=d["background"], background_weights=d["weights"])


def run_kernel(d: dict[str, Any], budgets: list[int], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Speed at equal coalition budgets and the error-versus-evaluations curves of both libraries."""
    log("  reference: lumos KernelSHAP with 2^17 coalitions; cross-check: PermutationSHAP, 1000 permutations")
    reference = np.asarray(lumos_kernel(d, 2**17, 12345).attributions)
    check = np.asarray(lumos.PermutationSHAP(d["model"].predict_proba, n_permutations=1000, seed=7,
                                             progress=False).explain(d["x"], target=1, baseline=d["background"],
                                                                     background_weights=d["weights"]).attributions)
    reference_error = float(np.sqrt(np.mean((check - reference) ** 2)))
    log(f"  reference vs permutation cross-check: RMSE {reference_error:.2e}")
    curve = []
    for n in budgets:
        lumos_errors, shap_errors, lumos_evals = [], [], []
        for seed in range(repeats):
            e = lumos_kernel(d, n, seed)
            lumos_errors.append(float(np.sqrt(np.mean((np.asarray(e.attributions) - reference) ** 2))))
            lumos_evals.append(int(e.extras["n_evaluations"]))
            shap_errors.append(float(np.sqrt(np.mean((shap_kernel(d, n, seed) - reference) ** 2))))
        lumos_time, _ = median_time(lambda n=n: lumos_kernel(d, n, 0), 2)
        shap_time, _ = median_time(lambda n=n: shap_kernel(d, n, 0), 1)
        point = {"n_samples": n, "lumos_rmse": statistics.mean(lumos_errors), "shap_rmse": statistics.mean(shap_errors),
                 "lumos_evaluations": statistics.mean(lumos_evals) / N_EXPLAIN,
                 "shap_evaluations": (n * N_BACKGROUND), "lumos_s_per_sample": lumos_time / N_EXPLAIN,
                 "shap_s_per_sample": shap_time / N_EXPLAIN}
        curve.append(point)
        log(f"  n_samples {n:6d}: RMSE lumos {point['lumos_rmse']:.2e} shap {point['shap_rmse']:.2e} | "
            f"{point['lumos_s_per_sample'] * 1e3:8.1f} ms vs {point['shap_s_per_sample'] * 1e3:8.1f} ms per sample "
            f"({point['shap_s_per_sample'] / point['lumos_s_per_sample']:.1f}x)")
    return {"reference_error": reference_error, "curve": curve, "savings": evaluation_savings(curve)}


def run_kernel_speed(d: dict[str, Any], workload: dict[str, Any], budgets: list[int], repeats: int,
                     log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time per explained sample of lumos' KernelSHAP and shap's KernelExplainer at equal coalition budgets,
    interleaved rounds, medians."""
    out = []
    for n in budgets:
        ours, theirs = [], []
        lumos_kernel(d, n, 0, workload["model"])
        shap_kernel(d, n, 0, workload["predict"])
        for _ in range(repeats):
            gc.collect()
            start = clock()
            lumos_kernel(d, n, 0, workload["model"])
            ours.append(clock() - start)
            start = clock()
            shap_kernel(d, n, 0, workload["predict"])
            theirs.append(clock() - start)
        a, b = statistics.median(ours) / N_EXPLAIN, statistics.median(theirs) / N_EXPLAIN
        out.append({"n_samples": n, "lumos_s_per_sample": a, "shap_s_per_sample": b})
        log(f"  n_samples {n:6d}: {a * 1e3:8.2f} ms vs {b * 1e3:8.2f} ms per sample ({b / a:.1f}x)")
    return out


def evaluation_savings(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each of shap's budgets: the evaluations lumos needs for the same error (log-log interpolation)."""
    log_evals = np.log([p["lumos_evaluations"] for p in curve])
    log_err = np.log([p["lumos_rmse"] for p in curve])
    out = []
    for p in curve:
        target = np.log(p["shap_rmse"])
        if target >= log_err[0]:  # lumos' smallest budget already reaches it
            needed = float(np.exp(log_evals[0]))
            bound = "<="
        elif target < log_err[-1]:
            out.append({"shap_n_samples": p["n_samples"], "shap_evaluations": p["shap_evaluations"],
                        "lumos_evaluations": None, "ratio": None, "bound": "beyond the curve"})
            continue
        else:
            order = np.argsort(log_err)
            needed = float(np.exp(np.interp(target, log_err[order], log_evals[order])))
            bound = "~"
        out.append({"shap_n_samples": p["n_samples"], "shap_evaluations": p["shap_evaluations"],
                    "lumos_evaluations": needed, "ratio": p["shap_evaluations"] / needed, "bound": bound})
    return out


# ---------------------------------------------------------------------------------------------- 3. lime, trees
def run_lime(d: dict[str, Any], workload: dict[str, Any], repeats: int,
             log: Callable[[str], None]) -> dict[str, Any] | None:
    if "lime" not in lumos.method_names():
        log("  lumos LIME not registered: skipped")
        return None
    try:
        from lime.lime_tabular import LimeTabularExplainer
    except ImportError:
        log("  the lime package is not installed: skipped")
        return None
    n = 5000
    explainer = LimeTabularExplainer(d["x_train"], discretize_continuous=True, random_state=0)

    def incumbent() -> Any:
        return [explainer.explain_instance(row, workload["predict"], labels=(1,), num_samples=n,
                                           num_features=30) for row in d["x"]]

    lime_cls = lumos.methods.get_method("lime")

    def ours() -> Any:
        return lime_cls(workload["model"], n_samples=n, seed=0, progress=False).explain(
            d["x"], target=1, baseline=d["x_train"])

    incumbent()
    ours()
    lime_times, our_times = [], []
    for _ in range(max(1, repeats // 2)):  # interleaved rounds
        gc.collect()
        start = clock()
        incumbent()
        lime_times.append(clock() - start)
        start = clock()
        e = ours()
        our_times.append(clock() - start)
    lime_s, ours_s = statistics.median(lime_times), statistics.median(our_times)
    log(f"  LIME tabular, {n} samples x {N_EXPLAIN} rows: lumos {ours_s:.3f} s, lime {lime_s:.3f} s "
        f"({lime_s / ours_s:.1f}x)")
    return {"n_samples": n, "lumos_s": ours_s, "lime_s": lime_s, "speedup": lime_s / ours_s,
            "lumos_rows": int(e.extras["n_evaluations"])}


def run_trees(repeats: int, log: Callable[[str], None]) -> dict[str, Any] | None:
    if "tree_shap" not in lumos.method_names():
        log("  lumos TreeSHAP not registered: skipped")
        return None
    try:
        import shap
    except ImportError:
        log("  shap is not installed: skipped")
        return None
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    x, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=100, max_depth=8, random_state=0, n_jobs=1).fit(x, y)
    rows = x[:100]
    tree_cls = lumos.methods.get_method("tree_shap")
    shap_s, reference = median_time(lambda: shap.TreeExplainer(forest).shap_values(rows), repeats)
    ours_s, e = median_time(lambda: tree_cls(forest, progress=False).explain(rows), repeats)
    difference = float(np.max(np.abs(np.asarray(e.attributions) - reference)))
    log(f"  TreeSHAP, 100 trees (depth 8), 100 rows: lumos {ours_s * 1e3:.1f} ms, shap {shap_s * 1e3:.1f} ms "
        f"({ours_s / shap_s:.2f}x), max |difference| {difference:.1e}")
    return {"lumos_s": ours_s, "shap_s": shap_s, "ratio": ours_s / shap_s, "max_abs_difference": difference}


# ---------------------------------------------------------------------------------------------- report
def markdown(env: dict[str, str], floors: dict[str, list[dict[str, Any]]], descriptions: dict[str, str],
             kernel: dict[str, Any] | None, kernel_speed: dict[str, list[dict[str, Any]]],
             limes: dict[str, dict[str, Any]], trees: dict[str, Any] | None, command: str) -> str:
    lines = ["# lumos model-agnostic benchmark", "", f"`{command}`", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "## Time against the floor (target <= 1.2x)", "",
              f"scikit-learn breast cancer (30 features), {N_EXPLAIN} samples, kmeans-{N_BACKGROUND} background "
              f"(weighted). floor = the model alone on `rows` distinct rows built beforehand: the fastest of one call "
              f"on all rows and calls on {' or '.join(str(c) for c in FLOOR_CHUNKS if c)}-row chunks. Medians of "
              f"interleaved rounds (clock: see above), "
              f"{'each call after a full garbage collection' if COLD else 'calls back to back (--warm)'}."]
    for name, rows in floors.items():
        lines += ["", f"### {name}: {descriptions[name]}", "",
                  "| method | settings | time | rows | floor | floor from | one call | time/floor | target |",
                  "|---|---|---:|---:|---:|---|---:|---:|:---:|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['settings']} | {r['time_s'] * 1e3:.2f} ms | {r['rows']} | "
                         f"{r['floor_s'] * 1e3:.2f} ms | {r['floor_chunk']} | {r['one_call_s'] * 1e3:.2f} ms | "
                         f"{r['ratio']:.2f}x | {'ok' if r['ratio'] <= 1.2 else 'MISS'} |")
    if kernel_speed:
        lines += ["", "## KernelSHAP speed against shap.KernelExplainer (target: 10x faster)", "",
                  "Equal coalition budgets, time per explained sample (medians of interleaved rounds).", "",
                  "| model | n_samples | lumos ms/sample | shap ms/sample | speed-up |", "|---|---:|---:|---:|---:|"]
        for name, points in kernel_speed.items():
            for p in points:
                lines.append(f"| {name} | {p['n_samples']} | {p['lumos_s_per_sample'] * 1e3:.2f} | "
                             f"{p['shap_s_per_sample'] * 1e3:.2f} | "
                             f"{p['shap_s_per_sample'] / p['lumos_s_per_sample']:.1f}x |")
    if kernel:
        lines += ["", "## KernelSHAP error against shap.KernelExplainer (sklearn model)", "",
                  f"Reference: lumos KernelSHAP with 2^17 coalitions (RMSE against PermutationSHAP with 1,000 "
                  f"antithetic permutations: {kernel['reference_error']:.2e}). RMSE over the {N_EXPLAIN} samples x 30 "
                  f"features, mean over seeds. Evaluations = model rows per explained sample.", "",
                  "| n_samples | lumos RMSE | shap RMSE | lumos evaluations | shap evaluations | lumos ms/sample | "
                  "shap ms/sample | speed-up |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in kernel["curve"]:
            lines.append(f"| {p['n_samples']} | {p['lumos_rmse']:.2e} | {p['shap_rmse']:.2e} | "
                         f"{p['lumos_evaluations']:.0f} | {p['shap_evaluations']} | {p['lumos_s_per_sample'] * 1e3:.1f} | "
                         f"{p['shap_s_per_sample'] * 1e3:.1f} | {p['shap_s_per_sample'] / p['lumos_s_per_sample']:.1f}x |")
        lines += ["", "Evaluations lumos needs for shap's error (target: at least 4x fewer):", "",
                  "| shap n_samples | shap evaluations | lumos evaluations for the same RMSE | shap / lumos |",
                  "|---:|---:|---:|---:|"]
        for s in kernel["savings"]:
            needed = "-" if s["lumos_evaluations"] is None else f"{s['bound']} {s['lumos_evaluations']:.0f}"
            ratio = "-" if s["ratio"] is None else f"{s['ratio']:.1f}x"
            lines.append(f"| {s['shap_n_samples']} | {s['shap_evaluations']} | {needed} | {ratio} |")
    if limes:
        lines += ["", "## LIME tabular against the lime package (target: 5x faster)", ""]
        for name, row in limes.items():
            lines.append(f"- {name}: {row['n_samples']} samples per explanation, {N_EXPLAIN} rows: lumos "
                         f"{row['lumos_s']:.3f} s, lime {row['lime_s']:.3f} s: **{row['speedup']:.1f}x**.")
    if trees:
        lines += ["", "## TreeSHAP against shap.TreeExplainer (target: equal to 1e-6, <= 1.5x its time)", "",
                  f"RandomForestRegressor(100 trees, max_depth 8) on diabetes, 100 rows: lumos "
                  f"{trees['lumos_s'] * 1e3:.1f} ms, shap {trees['shap_s'] * 1e3:.1f} ms (**{trees['ratio']:.2f}x**); "
                  f"max |difference| {trees['max_abs_difference']:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default=",".join(("sklearn", "torch_numpy", "torch_module")),
                        help="models for the floor table: sklearn, torch_numpy, torch_module")
    parser.add_argument("--budgets", default="64,128,256,512,1024,2048,4096",
                        help="KernelSHAP coalition budgets for the error curve")
    parser.add_argument("--speed-budgets", default="256,2048", help="KernelSHAP budgets for the speed table")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per budget for the error curve")
    parser.add_argument("--skip-kernel", action="store_true", help="skip the (slow) KernelSHAP error curve")
    parser.add_argument("--skip-trees", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this process' CPU time (for a shared machine, with --threads 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and BLAS) threads; default: torch's")
    parser.add_argument("--warm", action="store_true",
                        help="floor table: calls back to back instead of each after a full garbage collection")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    global clock, COLD
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    COLD = not args.warm
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(message, flush=True)

    env = {"date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
           "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "lumos": lumos.__version__,
           "torch threads": str(__import__("torch").get_num_threads()),
           "clock": "CPU time of the process (time.process_time)" if args.clock == "cpu" else "wall time",
           "load average at start": " / ".join(f"{v:.2f}" for v in os.getloadavg())}
    from importlib import metadata

    for library, distribution in (("sklearn", "scikit-learn"), ("shap", "shap"), ("lime", "lime")):
        try:
            env[library] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            env[library] = "not installed"
    d = data_and_model()
    models = workloads(d)
    chosen = [w for w in args.workloads.split(",") if w]
    floors = {}
    for name in chosen:
        log(f"1. time against the floor: {name}")
        floors[name] = run_floor(d, models[name], args.repeats, log)
    kernel, kernel_speed = None, {}
    if env["shap"] != "not installed":
        for name in chosen:
            if models[name]["predict"] is not None:
                log(f"2. KernelSHAP speed against shap.KernelExplainer: {name}")
                kernel_speed[name] = run_kernel_speed(d, models[name], [int(b) for b in args.speed_budgets.split(",")],
                                                      max(1, args.repeats // 2), log)
        if not args.skip_kernel:
            log("2. KernelSHAP error against shap.KernelExplainer (sklearn)")
            kernel = run_kernel(d, [int(b) for b in args.budgets.split(",")], args.seeds, log)
    log("3. LIME and TreeSHAP against their incumbents")
    limes = {}
    for name in chosen:
        if models[name]["predict"] is not None:
            row = run_lime(d, models[name], args.repeats, log)
            if row:
                limes[name] = row
    trees = None if args.skip_trees else run_trees(args.repeats, log)
    env["load average at end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    text = markdown(env, floors, {k: v["description"] for k, v in models.items()}, kernel, kernel_speed, limes,
                    trees, "python benchmarks/model_agnostic.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    log(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
