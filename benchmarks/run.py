"""lumos benchmark runner: time, model evaluations, floor and the incumbent's ratio of every lumos method.

For each workload (model + input batch) and method it prints

- ``time``: median wall time of ``explain`` over ``--repeats`` rounds (more for quick calls), after one
  warm-up call;
- ``rows``: model rows evaluated (``explanation.extras["n_evaluations"]``);
- ``floor``: the median time of ONE batched forward + backward (``torch.autograd.grad`` of the summed target
  scores w.r.t. the input) of the method's nominal number of rows (batch x n_steps / n_samples) through the
  same model, in a single call: the model's own cost for the method's work, without any method overhead
  (chunked execution can beat it on a CPU, see README.md);
  For methods that only evaluate the model (ScoreCAM, AblationCAM) the floor is the same number of rows as
  batched forward passes without gradients;
- ``time/floor`` against the method's target (issue 2: <= 1.15x for the gradient family; issue 3: 1.3x for
  DeepLIFT, LRP and Grad-CAM, 1.2x for ScoreCAM / AblationCAM), all at default settings;
- the incumbent's equivalent (captum, zennit or pytorch-grad-cam, see ``specs.py``) timed on the same inputs
  in the same process when it is importable, its ratio to the floor and ``lumos/incumbent``.

It also measures, in a fresh subprocess each, the peak resident memory of integrated gradients on the
ResNet-18-like model at 224x224 under the default memory budget (``n_steps=200`` at batch 1, and
``n_steps=50`` at batch 4).

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py                       # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick               # one round, no memory check
    .venv/bin/python benchmarks/run.py --workload small_cnn --methods saliency,integrated_gradients
    .venv/bin/python benchmarks/run.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `python benchmarks/run.py` and `python -m benchmarks.run` both work
    sys.path.insert(0, str(HERE))

import lumos  # noqa: E402
import models  # noqa: E402  (benchmarks/models.py, found through the path set above)
from specs import MethodSpec, all_specs, import_incumbents  # noqa: E402

#: incumbents' time/floor measured on this machine kind (2-core CPU), quoted in the issues
INCUMBENT_REFERENCE = {
    ("small_cnn", "integrated_gradients"): 1.8,
    ("resnet18", "integrated_gradients"): 2.0,
    # issue 3 (workload not stated): captum DeepLift 2.4x, zennit LRP 3.1x, pytorch-grad-cam GradCAM 1.2x and
    # ScoreCAM 0.9x; quoted next to both workloads
    **{(w, m): r for w in ("small_cnn", "resnet18")
       for m, r in (("deeplift", 2.4), ("lrp", 3.1), ("grad_cam", 1.2), ("score_cam", 0.9))},
}

#: the memory checks, as (n_steps, batch): the issue's IG n_steps=200 at batch 1, and the timing workload's
#: IG call (n_steps=50, batch 4), which has the same 200 rows but more than one sample
MEMORY_CONFIGS = "200x1,50x4"
#: quick calls get extra rounds: as many as fit in ROUND_BUDGET_S (judged by the warm-up round), at most
#: MAX_ROUNDS, never fewer than --repeats (a millisecond call jitters by 10-20% on a small VM)
ROUND_BUDGET_S = 10.0
MAX_ROUNDS = 60
#: a floor is re-measured with every method that needs it, unless it takes longer than this (then reused)
REUSE_FLOOR_S = 1.0


# ---------------------------------------------------------------------------------------------- workloads
@dataclass
class Workload:
    """A model and the batch it is explained on."""

    name: str
    make_model: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    batch: int
    n_classes: int
    n_background: int
    repeats: int
    description: str

    def data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, one target class per sample, and a background set; seeded, same on every run."""
        generator = torch.Generator().manual_seed(1234)
        x = torch.randn((self.batch, *self.input_shape), generator=generator)
        y = torch.randint(self.n_classes, (self.batch,), generator=generator)
        background = torch.randn((self.n_background, *self.input_shape), generator=generator)
        return x, y, background


WORKLOADS: dict[str, Workload] = {
    "small_cnn": Workload("small_cnn", models.small_cnn, (3, 32, 32), batch=16, n_classes=10,
                          n_background=16, repeats=7, description="small CNN, 32x32x3, batch 16"),
    "resnet18": Workload("resnet18", models.resnet18, (3, 224, 224), batch=4, n_classes=1000,
                         n_background=8, repeats=2, description="ResNet-18-like, 224x224x3, batch 4"),
}


# ---------------------------------------------------------------------------------------------- timing
def time_interleaved(calls: dict[str, Callable[[], Any]], repeats: int, *, extra_rounds: bool = True
                     ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Wall times of each call over at least ``repeats`` rounds, after one warm-up call of each.

    The calls are interleaved (one of each per round) so that a change in machine load during the run hits
    lumos, captum and the floor alike instead of skewing their ratios. With ``extra_rounds``, quick calls
    get as many rounds as fit in :data:`ROUND_BUDGET_S` (up to :data:`MAX_ROUNDS`): their timings jitter
    by tens of percent and extra rounds cost little. Returns the times and the last result of each call.
    """
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for name, fn in calls.items():
        results[name] = fn()  # warm-up: allocator, oneDNN primitives, lumos' memory probe
    round_s = max(time.perf_counter() - start, 1e-6)
    if extra_rounds:
        repeats = max(repeats, min(MAX_ROUNDS, int(ROUND_BUDGET_S / round_s)))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            results.pop(name, None)
            gc.collect()
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return times, results


def floor_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The floor: one forward + backward of every row of ``x`` in a single call.

    ``torch.autograd.grad`` of the sum of each row's target score with respect to the input.
    """
    leaf = x.detach().requires_grad_(True)
    scores = model(leaf).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(scores, leaf)
    return grad


def floor_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The forward-only floor: every row of ``x`` through the model in one call, without gradients."""
    with torch.no_grad():
        return model(x).gather(1, y[:, None])


def floor_inputs(x: torch.Tensor, y: torch.Tensor, rows_per_sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The floor's rows: ``x`` itself, or ``rows_per_sample`` DISTINCT rows per sample with its target.

    Distinct rows (seeded noise around each sample), not ``repeat_interleave`` copies: a batch of identical
    images makes data-dependent CPU kernels such as max pooling up to 2x faster (branch prediction), which
    would bias the floor low by 5-10% on the small CNN. Path points and noisy copies are distinct too.
    """
    if rows_per_sample == 1:
        return x, y
    generator = torch.Generator().manual_seed(4321)
    noise = torch.randn((x.shape[0] * rows_per_sample, *x.shape[1:]), generator=generator, dtype=x.dtype)
    return x.repeat_interleave(rows_per_sample, dim=0) + noise, y.repeat_interleave(rows_per_sample, dim=0)


def _quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with warnings silenced (captum warns that the inputs do not require gradients)."""

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return run


@dataclass
class Row:
    """One line of the results table."""

    workload: str
    method: str
    settings: str
    time_s: float
    rows: int
    floor_rows: int
    floor_s: float
    target: float
    floor_kind: str = "grad"
    incumbent: str | None = None
    incumbent_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.time_s / self.floor_s

    @property
    def incumbent_ratio(self) -> float | None:
        return None if self.incumbent_s is None else self.incumbent_s / self.floor_s

    @property
    def vs_incumbent(self) -> float | None:
        return None if self.incumbent_s is None else self.time_s / self.incumbent_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "method": self.method, "settings": self.settings, "time_s": self.time_s,
            "rows": self.rows, "floor_rows": self.floor_rows, "floor_kind": self.floor_kind,
            "floor_s": self.floor_s, "ratio": self.ratio, "target": self.target, "incumbent": self.incumbent,
            "incumbent_s": self.incumbent_s, "incumbent_ratio": self.incumbent_ratio,
            "lumos_vs_incumbent": self.vs_incumbent, "rounds": len(self.extra.get("lumos_times") or []),
            **self.extra,
        }


def run_workload(workload: Workload, methods: Sequence[MethodSpec], *, repeats: int, use_incumbents: bool,
                 log: Callable[[str], None], extra_rounds: bool = True) -> list[Row]:
    """Time every method on one workload, interleaved with its floor and the incumbent's equivalent.

    A floor is re-measured with every method, interleaved with it, except a floor slower than
    :data:`REUSE_FLOOR_S`, which is measured with the first method that needs its rows and reused by the
    next ones (the ResNet floors take tens of seconds; every model is built from the same seed).
    """
    x, y, background = workload.data()
    floors: dict[tuple[str, int], list[float]] = {}
    rows: list[Row] = []
    for spec in methods:
        if workload.name not in spec.workloads:
            continue
        # a fresh (identically seeded) model per method: lumos caches its memory probe per model object, so
        # sharing one model would make a method's chunking depend on which methods ran before it
        model = workload.make_model()
        n_floor = spec.floor_rows(workload.name, workload.batch, model)
        key = (spec.floor_kind, n_floor)
        calls: dict[str, Callable[[], Any]] = {}
        if key not in floors or statistics.median(floors[key]) < REUSE_FLOOR_S:
            xf, yf = floor_inputs(x, y, max(1, n_floor // workload.batch))
            floor_fn = floor_forward if spec.floor_kind == "forward" else floor_pass
            calls["floor"] = lambda model=model, xf=xf, yf=yf, floor_fn=floor_fn: floor_fn(model, xf, yf)
        calls["lumos"] = lambda model=model, spec=spec: spec.lumos(model, x, y, background)
        incumbent_error = None
        if use_incumbents and spec.incumbent is not None:
            incumbent = _quiet(lambda model=model, spec=spec: spec.incumbent(model, x, y, background))
            try:
                incumbent()  # a first call: an incumbent that fails on this model is reported, not timed
                calls["incumbent"] = incumbent
            except Exception as error:  # noqa: BLE001 - the incumbent's own failure is a result
                incumbent_error = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
                log(f"  {spec.name:22s} {spec.incumbent_library} failed: {incumbent_error}")
        try:
            times, results = time_interleaved(calls, repeats, extra_rounds=extra_rounds)
        except Exception as error:  # noqa: BLE001 - report and go on with the next method
            log(f"  {spec.name:22s} FAILED: {type(error).__name__}: {str(error)[:300]}")
            continue
        if "floor" in times:
            floors[key] = times["floor"]
        n_eval = int(results["lumos"].extras["n_evaluations"])
        del results, calls
        row = Row(workload.name, spec.name, spec.settings, statistics.median(times["lumos"]), n_eval, n_floor,
                  statistics.median(floors[key]), spec.target, spec.floor_kind,
                  spec.incumbent_library if "incumbent" in times else None,
                  statistics.median(times["incumbent"]) if "incumbent" in times else None,
                  extra={"lumos_times": times["lumos"], "floor_times": floors[key],
                         "incumbent_times": times.get("incumbent"), "incumbent_error": incumbent_error,
                         "incumbent_library": spec.incumbent_library})
        rows.append(row)
        log(f"  {spec.name:22s} {row.time_s:9.4f} s  rows {n_eval:5d}  floor ({n_floor} rows, {spec.floor_kind}) "
            f"{row.floor_s:9.4f} s  {row.ratio:5.2f}x" + ("" if row.incumbent_s is None else
            f"  {row.incumbent} {row.incumbent_s:9.4f} s ({row.incumbent_ratio:.2f}x floor)"))
        gc.collect()
    return rows


# ---------------------------------------------------------------------------------------------- memory
def _peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux, bytes on macOS). On Linux the same high-water
    mark is read from ``VmHWM`` in ``/proc/self/status`` instead: ru_maxrss of a freshly started child
    carries over the RSS of the parent that spawned it (several GiB after the timing runs), which would
    hide the child's own peak; VmHWM belongs to the child's own address space.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def memory_child(library: str, n_steps: int, batch: int) -> dict[str, Any]:
    """Run in a fresh subprocess: peak RSS increase of one IG call over the state after model load."""
    model = models.resnet18()
    x = torch.randn((batch, 3, 224, 224), generator=torch.Generator().manual_seed(1234))
    y = torch.arange(batch)
    gc.collect()
    before = _peak_rss_bytes()
    before_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if library == "lumos":
        explanation = lumos.methods.IntegratedGradients(model, n_steps=n_steps, progress=False).explain(
            x, target=y, baseline=0.0)
        n_eval = int(explanation.extras["n_evaluations"])
    else:
        import_incumbents()["captum"].attr.IntegratedGradients(model).attribute(x, baselines=0.0, target=y, n_steps=n_steps,
                                                         method="gausslegendre")
        n_eval = batch * n_steps
    elapsed = time.perf_counter() - start
    return {
        "library": library, "n_steps": n_steps, "batch": batch, "rows": n_eval, "time_s": elapsed,
        "rss_after_load": before, "peak_increase": _peak_rss_bytes() - before,
        "ru_maxrss_increase": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_maxrss)
        * (1 if sys.platform == "darwin" else 1024),
        "budget": lumos.config.memory_budget(),
    }


def measure_memory(library: str, n_steps: int, batch: int, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Start :func:`memory_child` in a subprocess (a clean ru_maxrss) and return what it reports."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", library,
               "--memory-steps", str(n_steps), "--memory-batch", str(batch)]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        log(f"  memory check ({library}) failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  {library} IG n_steps={n_steps} batch {batch}: peak RSS +{result['peak_increase'] / 2**30:.2f} GiB "
        f"(budget {result['budget'] / 2**30:.2f} GiB), {result['time_s']:.1f} s")
    return result


# ---------------------------------------------------------------------------------------------- report
def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def environment() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, {platform.system()}",
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        **{library: getattr(module, "__version__", "installed") if module is not None else "not installed"
           for library, module in import_incumbents().items()},
        "lumos": lumos.__version__,
        "python": platform.python_version(),
        "memory budget": f"{lumos.config.memory_budget() / 2**30:.2f} GiB",
        "load average at start (1/5/15 min)": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def markdown(rows: Sequence[Row], memory: Sequence[dict[str, Any]], env: dict[str, str],
             command: str) -> str:
    """The results as a markdown document (header, timing table, memory table)."""
    lines = ["# lumos benchmark results", "", f"`{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += [
        "",
        f"Median over `rounds` timed calls after one warm-up call (floor, lumos and the incumbent interleaved, "
        f"one of each per round; quick calls get as many rounds as fit in {ROUND_BUDGET_S:g} s, up to "
        f"{MAX_ROUNDS}). floor = one forward + backward (`grad`) or one forward without gradients (`forward`) "
        f"of `floor rows` distinct rows in one call. Each method's target ratio is in the `target` column.",
        "",
        "| workload | method | settings | rounds | lumos time | rows | floor rows | floor | time/floor | target | "
        "incumbent | incumbent time | incumbent/floor | lumos/incumbent |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|:---:|---|---:|---:|---:|",
    ]
    for r in rows:
        ok = ("ok" if r.ratio <= r.target else "MISS") + f" ({r.target}x)"
        reference = INCUMBENT_REFERENCE.get((r.workload, r.method))
        incumbent_ratio = _fmt_x(r.incumbent_ratio) + (f" (ref {reference}x)" if reference else "")
        head = (f"| {r.workload} | {r.method} | {r.settings} | {len(r.extra['lumos_times'])} | {_fmt_s(r.time_s)} | "
                f"{r.rows} | {r.floor_rows} | {_fmt_s(r.floor_s)} ({r.floor_kind}) | {_fmt_x(r.ratio)} | {ok} | ")
        error = r.extra.get("incumbent_error")
        if error:  # the incumbent failed on this model: say so instead of timing it
            tail = f"{r.extra['incumbent_library']} | failed: {error.replace('|', '/')} | - | - |"
        else:
            tail = (f"{r.incumbent or '-'} | {_fmt_s(r.incumbent_s)} | {incumbent_ratio} | "
                    f"{_fmt_x(r.vs_incumbent)} |")
        lines.append(head + tail)
    if memory:
        lines += [
            "",
            "## Peak memory",
            "",
            "Integrated gradients on the ResNet-18-like model at 224x224x3 (baseline 0), in a fresh subprocess: "
            "increase of the peak resident set size over the state after loading the model and inputs (VmHWM "
            "from /proc/self/status, and ru_maxrss as a cross-check; peak/budget uses VmHWM), compared with the "
            "configured memory budget (`lumos.config.memory_budget()`).",
            "",
            "| library | n_steps | batch | rows | time | peak RSS increase (VmHWM) | ru_maxrss increase | "
            "memory budget | peak/budget |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in memory:
            lines.append(
                f"| {m['library']} | {m['n_steps']} | {m['batch']} | {m['rows']} | {_fmt_s(m['time_s'])} | "
                f"{m['peak_increase'] / 2**30:.2f} GiB | {m['ru_maxrss_increase'] / 2**30:.2f} GiB | "
                f"{m['budget'] / 2**30:.2f} GiB | "
                f"{m['peak_increase'] / m['budget']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--methods", default="all",
                        help="comma-separated subset of the method names in specs.py (default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per measurement after the warm-up (default: 7 small_cnn, 2 resnet18)")
    parser.add_argument("--quick", action="store_true",
                        help="one timed call per measurement and no memory check (a smoke run)")
    parser.add_argument("--no-incumbents", "--no-captum", dest="no_incumbents", action="store_true",
                        help="skip the incumbent libraries (captum, zennit, pytorch-grad-cam)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory check")
    parser.add_argument("--memory-configs", default=MEMORY_CONFIGS,
                        help="peak-memory checks as comma-separated N_STEPSxBATCH (default: %(default)s)")
    parser.add_argument("--memory-captum", action="store_true",
                        help="also measure captum's peak memory for the same calls (unbatched: ~23 MiB per row)")
    parser.add_argument("--memory-steps", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--memory-batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--markdown", type=Path, default=None, help="write the results table to this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results to this file")
    parser.add_argument("--memory-child", choices=["lumos", "captum"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        args.memory_configs = [tuple(int(v) for v in item.lower().split("x")) for item in
                               args.memory_configs.split(",") if item.strip()]
        if any(len(c) != 2 or min(c) < 1 for c in args.memory_configs):
            raise ValueError
    except ValueError:
        parser.error(f"--memory-configs must look like 200x1,50x4, got {args.memory_configs!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table; optionally write markdown / JSON."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_steps, args.memory_batch)))
        return 0

    def log(message: str) -> None:
        print(message, flush=True)

    if "torchvision" in sys.modules:  # lumos must not depend on torchvision, even indirectly
        log("warning: torchvision was imported by lumos or the benchmark models")
    specs = all_specs({w.name: w.n_background for w in WORKLOADS.values()})
    if args.methods == "all":
        chosen = list(specs.values())
    else:
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
        unknown = [n for n in names if n not in specs]
        if unknown:
            log(f"unknown method(s) {unknown}; choose from {list(specs)}")
            return 2
        chosen = [specs[n] for n in names]
    use_incumbents = not args.no_incumbents
    missing = [library for library, module in import_incumbents().items() if module is None]
    if missing and use_incumbents:
        log(f"not importable: {', '.join(missing)} (their columns stay empty; see benchmarks/README.md)")
    workloads = list(WORKLOADS.values()) if args.workload == "all" else [WORKLOADS[args.workload]]

    env = environment()
    log(" | ".join(f"{k}: {v}" for k, v in env.items()))
    start = time.perf_counter()
    memory: list[dict[str, Any]] = []
    if not args.quick and not args.no_memory:
        log("peak memory: IntegratedGradients, ResNet-18-like 224x224, default budget, fresh subprocess")
        have_captum = import_incumbents()["captum"] is not None
        libraries = ["lumos"] + (["captum"] if args.memory_captum and have_captum else [])
        for n_steps, batch in args.memory_configs:
            for library in libraries:
                result = measure_memory(library, n_steps, batch, log)
                if result is not None:
                    memory.append(result)
    rows: list[Row] = []
    for workload in workloads:
        repeats = 1 if args.quick else (args.repeats or workload.repeats)
        log(f"{workload.name}: {workload.description}, {repeats} repeat(s) after a warm-up")
        rows += run_workload(workload, chosen, repeats=repeats, use_incumbents=use_incumbents, log=log,
                             extra_rounds=not args.quick)

    env["load average at end (1/5/15 min)"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    env["total benchmark time"] = f"{time.perf_counter() - start:.0f} s"
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, memory, env, command.strip())
    log("")
    log(text)
    if args.markdown is not None:
        args.markdown.write_text(text)
        log(f"wrote {args.markdown}")
    if args.json is not None:
        args.json.write_text(json.dumps({"environment": env, "rows": [r.as_dict() for r in rows],
                                         "memory": memory}, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
