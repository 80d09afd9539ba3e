"""Metric benchmark (issue 5): each metric against its floor and side by side with Quantus on the small CNN.

The floor of a metric is the model evaluations it needs as plain full-batch torch calls, built beforehand:
one forward without gradients of all its rows for the perturbation metrics (rows = ``n_evaluations``), one
``autograd.grad`` of all explained rows for the metrics that re-explain (robustness: the clean and perturbed
copies; randomisation: the trained model and each randomised copy). Quantus (when importable; it is not a
dependency, see ``incumbents.txt``) runs the same metric on the same model, inputs, targets and attributions,
with lumos' Saliency as its ``explain_func``; the cases and value comparisons are in ``metric_cases.py``.
lumos, its floor and Quantus are timed interleaved (one call of each per round; medians).

Usage (from the repository root)::

    .venv/bin/python benchmarks/metrics.py --markdown benchmarks/RESULTS_metrics.md
    .venv/bin/python benchmarks/metrics.py --only road,pixel --repeats 3 --no-quantus
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import metric_cases  # noqa: E402

TARGET = 1.2


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median time of each call over ``repeats`` interleaved rounds, after one warm-up each."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            gc.collect()
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--only", default=None, help="comma-separated substrings of the metric names to run")
    parser.add_argument("--no-quantus", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 keeps ratios meaningful on a loaded machine")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: time.process_time (this process' CPU time, all threads: "
                             "robust to other processes on a loaded machine when used with --threads 1)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    quantus = None if args.no_quantus else metric_cases.import_quantus()
    workload = metric_cases.Workload()
    selected = [c for c in metric_cases.cases(workload, quantus)
                if args.only is None or any(k.strip().lower() in c.name.lower() for k in args.only.split(","))]
    load_start = os.getloadavg()
    rows = []
    for case in selected:
        lumos_result = case.lumos()
        quantus_result = case.quantus() if case.quantus else None
        comparison = case.compare(lumos_result, quantus_result) if case.quantus and case.compare else "-"
        calls = {"lumos": case.lumos}
        if case.floor is not None:
            calls["floor"] = case.floor
        if case.quantus is not None:
            calls["quantus"] = case.quantus
        t = interleaved(calls, args.repeats, time.process_time if args.clock == "cpu" else time.perf_counter)
        n_rows = case.rows(lumos_result) if case.rows else None
        row = (case.name, t["lumos"], n_rows, t.get("floor"), case.floor_what, t.get("quantus"), comparison)
        rows.append(row)
        print(f"  {case.name:58s} lumos {_ms(t['lumos']):>10s}  floor {_ms(t.get('floor')):>10s} "
              f"({_ratio(t['lumos'], t.get('floor'))})  quantus {_ms(t.get('quantus')):>10s} "
              f"lumos/quantus {_ratio(t['lumos'], t.get('quantus'))}  {comparison}", flush=True)
    text = markdown(rows, load_start, quantus, args.clock)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


def markdown(rows: list[tuple[Any, ...]], load_start: tuple[float, ...], quantus: Any, clock: str) -> str:
    import torch

    threads = torch.get_num_threads()
    versions = f"torch {torch.__version__} ({threads} thread{'' if threads == 1 else 's'})" + ("" if quantus is None else f", Quantus {quantus.__version__}")
    lines = ["# lumos metric benchmark", "", "`python benchmarks/metrics.py`", "",
             f"- {versions}; load average at start {' / '.join(f'{v:.2f}' for v in load_start)}, at end "
             f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
             f"- small CNN (32x32x3), {metric_cases.N} images, signed saliency attributions; floor = the metric's "
             "model evaluations as plain full-batch torch calls (forward: one no-grad forward of all rows; grad: "
             "one autograd.grad of all explained rows, per model for randomisation); Quantus gets the same model, "
             "inputs, targets, attributions and lumos' Saliency as explain_func. Medians of interleaved rounds "
             f"({'CPU time of the process' if clock == 'cpu' else 'wall time'}). "
             f"Target: lumos <= {TARGET}x its floor and never slower than Quantus.", "",
             "| metric | lumos | rows | floor | lumos/floor | quantus | quantus/floor | lumos/quantus | values |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, seconds, n_rows, floor_s, floor_what, quantus_s, comparison in rows:
        ratio = _ratio(seconds, floor_s)
        mark = "" if floor_s is None else (" ok" if seconds / floor_s <= TARGET else " MISS")
        floor_text = "-" if floor_s is None else f"{_ms(floor_s)} ({floor_what})"
        lines.append(f"| {name} | {_ms(seconds)} | {n_rows if n_rows is not None else '-'} | {floor_text} | "
                     f"{ratio}{mark} | {_ms(quantus_s)} | {_ratio(quantus_s, floor_s)} | "
                     f"{_ratio(seconds, quantus_s)} | {comparison} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
