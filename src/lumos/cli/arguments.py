"""Parsing of the ``lumos`` command's value arguments: ``--param k=v``, ``--target``, ``--baseline``, lists."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .loading import CliArgumentError, load_data


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    """argparse type: comma-separated floats, e.g. ``0.485,0.456,0.406``."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def image_size(text: str) -> tuple[int, int]:
    """argparse type: ``HxW`` (or one number for a square)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive ints (e.g. 224x224), got {text!r}")
    return values[0], values[1]


def name_list(text: str) -> list[str]:
    """argparse type: comma-separated names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def parse_value(text: str) -> Any:
    """A parameter value: JSON when it parses (``8``, ``0.5``, ``true``, ``[1, 2]``, ``"x"``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: Sequence[str] | None, argument: str = "--param") -> dict[str, Any]:
    """``["n_steps=16", "layer=features.3"]`` -> ``{"n_steps": 16, "layer": "features.3"}``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliArgumentError(argument, f"expected NAME=VALUE (e.g. n_steps=16), got {item!r}")
        if key in params:
            raise CliArgumentError(argument, f"{key!r} is given twice")
        params[key] = parse_value(value)
    return params


def parse_target(text: str | None, n_samples: int) -> Any:
    """``None``/``predicted`` -> the predicted class; ``3`` -> class 3 for every sample; ``1,2,3`` -> one per
    sample; a ``.npy`` file of class indices."""
    if text is None or text.strip().lower() in ("", "predicted", "pred"):
        return None
    if text.endswith(".npy"):
        import numpy as np

        path = Path(text)
        if not path.is_file():
            raise CliArgumentError("--target", f"no such file: {path}")
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or len(values) != n_samples:
            raise CliArgumentError("--target", f"{path}: expected {n_samples} integer class indices, got "
                                               f"{values.dtype} of shape {values.shape}")
        return torch.as_tensor(values)
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise CliArgumentError("--target", f"expected 'predicted', a class index, {n_samples} comma-separated "
                                           f"indices or a .npy file of indices, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) != n_samples:
        raise CliArgumentError("--target", f"gave {len(values)} classes for {n_samples} samples")
    return torch.tensor(values)


def parse_baseline(text: str | None, inputs: torch.Tensor) -> Any:
    """``None`` -> the method's default; a number; ``mean`` -> the data mean; or a data file (a background set)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    if text == "mean":
        return inputs.mean(0, keepdim=True)
    if not Path(text).exists():
        raise CliArgumentError("--baseline", f"expected a number, 'mean' or a data file, got {text!r} (no such file)")
    baseline = load_data(text).inputs
    if tuple(baseline.shape[1:]) != tuple(inputs.shape[1:]):
        raise CliArgumentError("--baseline", f"{text}: samples of shape {tuple(baseline.shape[1:])} do not match "
                                             f"the data's {tuple(inputs.shape[1:])}")
    return baseline
