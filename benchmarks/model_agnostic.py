"""Model-agnostic benchmark (issue 4): lumos' perturbation and Shapley methods on a breast-cancer MLP.

Three measurements, printed and written as markdown (``--markdown``):

1. **Time against the floor** (target <= 1.2x at default settings): every model-agnostic method on
   scikit-learn's breast-cancer data (30 features) and a scikit-learn ``MLPClassifier(64, 64)`` behind a
   ``StandardScaler`` (a numpy ``predict_proba``, the way these methods are used), kmeans-10 background with
   weights. The floor is ONE ``predict_proba`` call on as many rows as the method evaluated
   (``extras["n_evaluations"]``), built beforehand: the model's own cost.
2. **KernelSHAP against ``shap.KernelExplainer``** at the same number of coalition samples: time per
   explained sample (target: lumos at least 10x faster), and the error against a high-precision reference
   as the number of model evaluations grows (target: the same error with at least 4x fewer evaluations).
   The reference is lumos' KernelSHAP with 2^17 coalitions (an exact regression for its coalitions); its
   own error is estimated by comparing it with PermutationSHAP at 1,000 antithetic permutations.
3. **Other incumbents where installed**: ``lime``'s tabular explainer against lumos' LIME at equal
   ``num_samples`` (target: 5x faster), ``shap.TreeExplainer`` against lumos' TreeSHAP on a 100-tree
   forest (target: equal to 1e-6, no slower than 1.5x). Skipped when either side is missing.

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
N_BACKGROUND = 10  # kmeans clusters


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
    return {"model": model, "x_train": x_train, "x": x_test[:N_EXPLAIN], "background": kmeans.cluster_centers_,
            "weights": weights / weights.sum()}


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# ---------------------------------------------------------------------------------------------- 1. floor
def method_calls(d: dict[str, Any]) -> dict[str, tuple[str, Callable[[], Any]]]:
    """lumos' model-agnostic methods at default settings: name -> (settings, call)."""
    model, x, background, weights = d["model"].predict_proba, d["x"], d["background"], d["weights"]
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


def run_floor(d: dict[str, Any], repeats: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each method and its floor timed interleaved (one of each per round), medians over ``repeats`` rounds."""
    rows = []
    for name, (settings, call) in method_calls(d).items():
        explanation = call()  # warm-up; tells the number of rows evaluated
        n_eval = int(explanation.extras["n_evaluations"])
        inputs = floor_rows(d, n_eval)
        d["model"].predict_proba(inputs)
        ours, floors = [], []
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            call()
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            d["model"].predict_proba(inputs)
            floors.append(time.perf_counter() - start)
        seconds, floor = statistics.median(ours), statistics.median(floors)
        rows.append({"method": name, "settings": settings, "time_s": seconds, "rows": n_eval, "floor_s": floor,
                     "ratio": seconds / floor})
        log(f"  {name:18s} {seconds * 1e3:9.1f} ms  rows {n_eval:8d}  floor {floor * 1e3:8.1f} ms  "
            f"{seconds / floor:5.2f}x")
    return rows


# ---------------------------------------------------------------------------------------------- 2. kernel SHAP
def shap_kernel(d: dict[str, Any], n_samples: int, seed: int) -> np.ndarray:
    """shap.KernelExplainer's values for class 1 with the same weighted background, (N_EXPLAIN, 30)."""
    import shap

    data = shap.utils._legacy.DenseData(d["background"], [str(i) for i in range(30)], None, d["weights"])
    explainer = shap.KernelExplainer(lambda a: d["model"].predict_proba(a)[:, 1], data)
    np.random.seed(seed)  # shap samples coalitions from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(explainer.shap_values(d["x"], nsamples=n_samples, silent=True))


def lumos_kernel(d: dict[str, Any], n_samples: int, seed: int) -> Any:
    return lumos.KernelSHAP(d["model"].predict_proba, n_samples=n_samples, seed=seed, progress=False).explain(
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
def run_lime(d: dict[str, Any], repeats: int, log: Callable[[str], None]) -> dict[str, Any] | None:
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
        return [explainer.explain_instance(row, d["model"].predict_proba, labels=(1,), num_samples=n,
                                           num_features=30) for row in d["x"]]

    lime_cls = lumos.methods.get_method("lime")

    def ours() -> Any:
        return lime_cls(d["model"].predict_proba, n_samples=n, seed=0, progress=False).explain(
            d["x"], target=1, baseline=d["x_train"])

    lime_s, _ = median_time(incumbent, max(1, repeats // 2))
    ours_s, e = median_time(ours, repeats)
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
def markdown(env: dict[str, str], floor: list[dict[str, Any]], kernel: dict[str, Any] | None,
             lime_row: dict[str, Any] | None, trees: dict[str, Any] | None, command: str) -> str:
    lines = ["# lumos model-agnostic benchmark", "", f"`{command}`", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "## Time against the floor (target <= 1.2x)", "",
              f"scikit-learn breast cancer (30 features), `StandardScaler` + `MLPClassifier(64, 64)` "
              f"`predict_proba`, {N_EXPLAIN} samples, kmeans-{N_BACKGROUND} background (weighted). floor = one "
              f"`predict_proba` call on `rows` distinct rows built beforehand.", "",
              "| method | settings | time | rows | floor | time/floor | target |", "|---|---|---:|---:|---:|---:|:---:|"]
    for r in floor:
        lines.append(f"| {r['method']} | {r['settings']} | {r['time_s'] * 1e3:.1f} ms | {r['rows']} | "
                     f"{r['floor_s'] * 1e3:.1f} ms | {r['ratio']:.2f}x | {'ok' if r['ratio'] <= 1.2 else 'MISS'} |")
    if kernel:
        lines += ["", "## KernelSHAP against shap.KernelExplainer", "",
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
    if lime_row:
        lines += ["", "## LIME tabular against the lime package (target: 5x faster)", "",
                  f"{lime_row['n_samples']} samples per explanation, {N_EXPLAIN} rows: lumos "
                  f"{lime_row['lumos_s']:.3f} s, lime {lime_row['lime_s']:.3f} s: **{lime_row['speedup']:.1f}x**."]
    if trees:
        lines += ["", "## TreeSHAP against shap.TreeExplainer (target: equal to 1e-6, <= 1.5x its time)", "",
                  f"RandomForestRegressor(100 trees, max_depth 8) on diabetes, 100 rows: lumos "
                  f"{trees['lumos_s'] * 1e3:.1f} ms, shap {trees['shap_s'] * 1e3:.1f} ms (**{trees['ratio']:.2f}x**); "
                  f"max |difference| {trees['max_abs_difference']:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budgets", default="64,128,256,512,1024,2048,4096",
                        help="KernelSHAP coalition budgets for the error curve")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per budget for the error curve")
    parser.add_argument("--skip-kernel", action="store_true")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    env = {"date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
           "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "lumos": lumos.__version__,
           "load average at start": " / ".join(f"{v:.2f}" for v in os.getloadavg())}
    for library in ("sklearn", "shap", "lime"):
        try:
            env[library] = __import__(library).__version__
        except (ImportError, AttributeError):
            env[library] = "not installed"
    d = data_and_model()
    log("1. time against the floor")
    floor = run_floor(d, args.repeats, log)
    kernel = None
    if not args.skip_kernel and env["shap"] != "not installed":
        log("2. KernelSHAP against shap.KernelExplainer")
        kernel = run_kernel(d, [int(b) for b in args.budgets.split(",")], args.seeds, log)
    log("3. LIME and TreeSHAP against their incumbents")
    lime_row = run_lime(d, args.repeats, log)
    trees = run_trees(args.repeats, log)
    env["load average at end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    text = markdown(env, floor, kernel, lime_row, trees, "python benchmarks/model_agnostic.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    log(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
