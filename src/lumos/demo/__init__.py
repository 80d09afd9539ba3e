"""``lumos demo``: a small CNN on scikit-learn's 8x8 digits, explained with every gradient method.

    from lumos.demo import run_demo
    result = run_demo("lumos-demo", seed=0)   # heatmaps.png, <method>.npz, summary.json

Uses only the public lumos API.
"""

from .run import DemoResult, MethodResult, format_table, run_demo

__all__ = ["DemoResult", "MethodResult", "format_table", "run_demo"]
