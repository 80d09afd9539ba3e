"""Metric benchmark (issue 5): each model-based metric against its floor on the small CNN.

The floor of a metric is ONE batched forward pass (no gradients) of as many rows as the metric evaluated
(``MetricResult.n_evaluations``), built beforehand: the model's own cost. Robustness metrics re-run the
explainer; their floor is the same explain call on all perturbed copies at once, timed directly. Quantus is
not installed by the project (it pulls PyPI's torchvision); the comparison column stays empty without it.

Usage (from the repository root)::

    .venv/bin/python benchmarks/metrics.py --markdown benchmarks/RESULTS_metrics.md
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import lumos  # noqa: E402
import models  # noqa: E402
from lumos import metrics  # noqa: E402

TARGET = 1.2


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall time of each call over ``repeats`` interleaved rounds, after one warm-up each."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    model = models.small_cnn()
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn((16, 3, 32, 32), generator=generator)
    y = torch.randint(10, (16,), generator=generator)
    explanation = lumos.Saliency(model, progress=False).explain(x, target=y)
    a = explanation.attributions
    common = {"target": y, "baseline": 0.0, "seed": 0, "progress": False}
    cases: dict[str, Callable[[], Any]] = {
        "deletion (20 steps)": lambda: metrics.deletion(model, x, a, **common),
        "insertion (20 steps)": lambda: metrics.insertion(model, x, a, **common),
        "faithfulness_correlation (100 runs)": lambda: metrics.faithfulness_correlation(model, x, a, **common),
        "infidelity (50 perturbations)": lambda: metrics.infidelity(model, x, a, **common),
        "region_perturbation (MoRF)": lambda: metrics.region_perturbation(model, x, a, **common),
    }
    rows = []
    for name, call in cases.items():
        result = call()
        n_rows = int(result.n_evaluations)
        floor_rows = x.repeat_interleave(max(1, n_rows // x.shape[0]), dim=0)[:n_rows]
        floor_rows = floor_rows + 0.01 * torch.randn(floor_rows.shape, generator=torch.Generator().manual_seed(1))

        def floor(rows: torch.Tensor = floor_rows) -> Any:
            with torch.no_grad():
                return model(rows)

        t = interleaved({"metric": call, "floor": floor}, args.repeats)
        rows.append((name, t["metric"], n_rows, t["floor"]))
        print(f"  {name:38s} {t['metric'] * 1e3:8.1f} ms  rows {n_rows:6d}  floor {t['floor'] * 1e3:8.1f} ms  "
              f"{t['metric'] / t['floor']:.2f}x", flush=True)
    # robustness: the floor is the explainer on all perturbed copies in one call
    explainer = lumos.Saliency(model, progress=False)
    n_samples = 10
    copies = x.repeat_interleave(n_samples, dim=0)
    targets = y.repeat_interleave(n_samples)
    t = interleaved({
        "metric": lambda: metrics.max_sensitivity(model, x, explainer, target=y, n_samples=n_samples, seed=0),
        "floor": lambda: explainer.explain(copies + 0.01, target=targets),
    }, args.repeats)
    rows.append((f"max_sensitivity ({n_samples} samples)", t["metric"], int(copies.shape[0]), t["floor"]))
    print(f"  max_sensitivity: {t['metric'] * 1e3:.1f} ms, floor {t['floor'] * 1e3:.1f} ms, "
          f"{t['metric'] / t['floor']:.2f}x", flush=True)
    lines = ["# lumos metric benchmark", "", "`python benchmarks/metrics.py`", "",
             f"- load average at end: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
             "- small CNN (32x32x3), 16 images, saliency attributions, baseline 0; floor = one batched forward of the "
             "metric's rows without gradients (robustness: one saliency call on all perturbed copies); "
             f"target <= {TARGET}x; Quantus not installed (no comparison).", "",
             "| metric | time | rows | floor | time/floor | target |", "|---|---:|---:|---:|---:|:---:|"]
    for name, seconds, n_rows, floor_s in rows:
        ratio = seconds / floor_s
        lines.append(f"| {name} | {seconds * 1e3:.1f} ms | {n_rows} | {floor_s * 1e3:.1f} ms | {ratio:.2f}x | "
                     f"{'ok' if ratio <= TARGET else 'MISS'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
