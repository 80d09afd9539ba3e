"""The ``lumos`` command.

    lumos --version
    lumos methods [--json]                          the registered methods (family, needs, paper)
    lumos explain MODEL DATA --method NAME [...]    one explanation, saved as .npz (lumos.load)
    lumos evaluate MODEL DATA --methods a,b [...]   explain with several methods and score them
    lumos report RESULT.npz [...] [--evaluation EV.npz] [--out report.html]
    lumos demo [--out DIR] [--seed N] [--minimal]   real photos, digits, credit data and text, explained

Exit codes: 0 success; 2 a bad argument or input file (the message names it and says what is wrong);
3 a model or method error (a lumos error: its message, no traceback unless ``--debug``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import lumos

from .arguments import float_list, image_size, name_list, non_negative_int, positive_int
from .loading import CliArgumentError

EXIT_USAGE = 2
EXIT_LUMOS = 3


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                        help="seed of every random draw (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="print only the path of what was written")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")


def _model_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="TorchScript .pt, exported .pt2, a state dict (.pt/.safetensors, with --class), an "
                             "XGBoost .json/.ubj booster, a .skops scikit-learn model, or a pickle (with --trust)")
    parser.add_argument("data", metavar="DATA",
                        help=".npy, .npz, .csv (numeric; header = feature names), .parquet, an image file or a "
                             "directory of images (scaled to [0, 1])")
    parser.add_argument("--class", dest="class_spec", metavar="MODULE:CLASS",
                        help="the architecture of a state dict (the module is imported from PYTHONPATH)")
    parser.add_argument("--init-json", metavar="JSON", help="constructor arguments of --class (JSON text or file)")
    parser.add_argument("--trust", action="store_true",
                        help="allow pickle-based model files (they can run arbitrary code: only files you trust)")
    parser.add_argument("--key", help="which array of an .npz file")
    parser.add_argument("--size", type=image_size, metavar="HxW", help="resize images to HxW")
    parser.add_argument("--mean", type=float_list, metavar="M[,M...]", help="normalise images: subtract per channel")
    parser.add_argument("--std", type=float_list, metavar="S[,S...]", help="normalise images: divide per channel")
    parser.add_argument("--target", metavar="T",
                        help="'predicted' (default), a class index, one index per sample (comma-separated) or "
                             "a .npy of indices")
    parser.add_argument("--baseline", metavar="B", help="a number, 'mean', or a data file (background set)")
    parser.add_argument("--layer", metavar="NAME", help="a module name, for CAM and layer attributions")
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="most rows per model call")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a method parameter (repeatable; VALUE parsed as JSON, else a string)")


def build_parser() -> argparse.ArgumentParser:
    """The ``lumos`` argument parser with its subcommands."""
    from .commands import run_evaluate, run_explain, run_report
    from .demo import add_demo_parser

    parser = argparse.ArgumentParser(
        prog="lumos", description="lumos: explain PyTorch models (attributions you can check).",
    )
    parser.add_argument("--version", action="version", version=f"lumos {lumos.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    methods = commands.add_parser("methods", help="list the registered explanation methods",
                                  description="List the registered explanation methods: family, needs, paper.")
    methods.add_argument("--json", action="store_true", help="print the registry as JSON")
    methods.set_defaults(handler=_methods)

    explain = commands.add_parser("explain", help="explain a model's predictions with one method",
                                  description="Explain MODEL on DATA with one method; save the Explanation "
                                              "(.npz, lumos.load) and print a summary.")
    _model_data(explain)
    explain.add_argument("--method", required=True, metavar="NAME", help="a registered method (lumos methods)")
    explain.add_argument("--out", default="explanation.npz", metavar="FILE.npz",
                         help="where to save the Explanation (default: explanation.npz)")
    explain.add_argument("--report", metavar="FILE.html", help="also write an HTML report")
    _common(explain)
    explain.set_defaults(handler=run_explain)

    evaluate = commands.add_parser("evaluate", help="explain with several methods and score them with metrics",
                                   description="Explain MODEL on DATA with every method and score each "
                                               "explanation with every metric (lumos.evaluate).")
    _model_data(evaluate)
    evaluate.add_argument("--methods", type=name_list, required=True, metavar="A,B",
                          help="comma-separated registered methods")
    evaluate.add_argument("--metrics", type=name_list, metavar="X,Y",
                          help="comma-separated metrics (default: deletion, insertion, faithfulness_correlation, "
                               "sparseness, complexity)")
    evaluate.add_argument("--metric-param", action="append", metavar="METRIC.NAME=VALUE",
                          help="a metric parameter (repeatable), e.g. deletion.n_steps=10")
    evaluate.add_argument("--out", default="evaluation.npz", metavar="FILE.npz",
                          help="where to save the Evaluation (default: evaluation.npz)")
    _common(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    report = commands.add_parser("report", help="write an HTML report of saved explanations",
                                 description="Write a self-contained HTML report of explanations saved by "
                                             "`lumos explain` (and an evaluation from `lumos evaluate`).")
    report.add_argument("results", nargs="+", metavar="RESULT.npz", help="saved explanations")
    report.add_argument("--evaluation", metavar="EV.npz", help="a saved evaluation")
    report.add_argument("--out", default="report.html", metavar="FILE.html", help="default: report.html")
    report.add_argument("--title", help="the report's title")
    report.add_argument("--class-names", type=name_list, metavar="A,B,...", help="names of the classes")
    report.add_argument("--audience", default="domain_expert", help="who reads it (default: domain_expert)")
    report.add_argument("--max-samples", type=positive_int, default=8, metavar="N", help="default: 8")
    _common(report)
    report.set_defaults(handler=run_report)

    add_demo_parser(commands)
    return parser


def _needs(info: dict) -> str:
    needs = [word for key, word in (("requires_gradients", "gradients"), ("needs_baseline", "baseline"),
                                    ("needs_spatial_layer", "conv layer"), ("stochastic", "seed")) if info[key]]
    if info.get("models", "any") != "any":
        needs.append(f"{info['models']} models")
    return ", ".join(needs) or "-"


def _methods(args: argparse.Namespace) -> int:
    rows = lumos.method_info()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("name", "family", "needs", "reference")]
    table += [(r["name"], r["family"], _needs(r), r["reference"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
        if k == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(row[3]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lumos`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.handler(args)
    except CliArgumentError as exc:
        if debug:
            raise
        sub = f" {args.command}" if getattr(args, "command", None) else ""
        print(f"lumos{sub}: error: argument {exc}", file=sys.stderr)
        return EXIT_USAGE
    except lumos.LumosError as exc:
        if debug:
            raise
        message = " ".join(str(exc).split())
        print(f"lumos: error: {message}", file=sys.stderr)
        return EXIT_LUMOS
    except KeyboardInterrupt:
        print("lumos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lumos methods | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
