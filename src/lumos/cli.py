"""The ``lumos`` command.

    lumos --version
    lumos methods [--json]                 the registered methods
    lumos demo [--out DIR] [--seed N]      train a small CNN on 8x8 digits and explain it (see lumos.demo)

Exit codes: 0 success, 1 a lumos error (one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import lumos


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lumos", description="lumos: explain PyTorch models (attributions you can check).",
    )
    parser.add_argument("--version", action="version", version=f"lumos {lumos.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    methods = commands.add_parser("methods", help="list the registered explanation methods",
                                  description="List the registered explanation methods.")
    methods.add_argument("--json", action="store_true", help="print the registry as JSON")
    methods.set_defaults(handler=_methods)

    demo = commands.add_parser(
        "demo", help="train a small CNN on 8x8 digits and explain it with every gradient method",
        description="Train a small CNN on scikit-learn's 8x8 digits (cached after the first run in "
                    "$LUMOS_CACHE_DIR or ~/.cache/lumos), explain test images with every gradient method, "
                    "write heatmaps.png, one <method>.npz per method and summary.json, and print a table "
                    "of time and completeness residual per method.",
    )
    demo.add_argument("--out", default="lumos-demo", metavar="DIR",
                      help="output directory (default: lumos-demo)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                      help="seed of the data split, the training and the stochastic methods (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="print only the path of the heatmap PNG")
    demo.add_argument("--progress", action="store_true", help="show the methods' progress bars")
    demo.set_defaults(handler=_demo)
    return parser


def _needs(info: dict) -> str:
    needs = [word for key, word in (("requires_gradients", "gradients"), ("needs_baseline", "baseline"),
                                    ("stochastic", "seed")) if info[key]]
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


def _demo(args: argparse.Namespace) -> int:
    from .demo import format_table, run_demo

    log = None if args.quiet else print
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lumos`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except lumos.LumosError as exc:
        message = " ".join(str(exc).split())
        print(f"lumos: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lumos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `lumos methods | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
