"""Facts read from an Explanation for one sample: the prediction, the features or image regions that matter.

The report's sections and the plain-language summaries state the same numbers, so both read them here.

- :func:`prediction_facts`: the explained class, its name, the model's score and, when the caller gave the
  model's probabilities or logits, the probability (``softmax(logits)[target]``) and the predicted class.
- :func:`feature_facts`: one value per named feature (tabular columns, text tokens, or flattened inputs),
  with the input values where known.
- :func:`region_facts`: for images, the 3 x 3 grid cell holding the most positive (and most negative)
  attribution of the channel-summed map, named in words ("the upper-left part of the image").

Numbers are formatted once, by :func:`number` (4 significant digits) and :func:`percent` (1 decimal), so a
test can parse them back and compare them with the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ValidationError
from ..explanation import Explanation

#: names of the 3 x 3 grid cells of an image, (row third, column third) -> words
REGION_NAMES = (
    ("upper-left part", "top part", "upper-right part"),
    ("left part", "centre", "right part"),
    ("lower-left part", "bottom part", "lower-right part"),
)


def number(value: float, signed: bool = False) -> str:
    """A number as the report writes it: 4 significant digits (``+`` sign when ``signed``)."""
    return f"{float(value):+.4g}" if signed else f"{float(value):.4g}"


def percent(fraction: float) -> str:
    """``0.8734 -> "87.3%"``."""
    return f"{100.0 * float(fraction):.1f}%"


def as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``exp(z - max z) / sum exp(z - max z)`` in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def class_probabilities(n: int, *, probabilities: Any = None, logits: Any = None, owner: str) -> np.ndarray | None:
    """``(n, classes)`` probabilities from the given probabilities or logits (softmax), or ``None``."""
    if probabilities is not None and logits is not None:
        raise ValidationError(f"{owner}: give probabilities= or logits=, not both")
    given, name = (probabilities, "probabilities") if probabilities is not None else (logits, "logits")
    if given is None:
        return None
    array = as_numpy(given).astype(np.float64)
    if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 2 or not np.isfinite(array).all():
        raise ValidationError(f"{owner}: {name} must be a finite (samples, classes) array with {n} rows and >= 2 "
                              f"classes, got shape {array.shape}")
    if name == "logits":
        return softmax(array)
    if array.min() < 0 or not np.allclose(array.sum(axis=1), 1.0, atol=1e-4):
        raise ValidationError(f"{owner}: probabilities must be >= 0 and sum to 1 per row; pass logits= for "
                              "unnormalised scores")
    return array


def class_name(index: int | None, class_names: Sequence[str] | Mapping[int, str] | None) -> str:
    """The user's name of class ``index`` (else ``"class 3"``)."""
    if index is None:
        return "the explained output"
    if class_names is not None:
        if isinstance(class_names, Mapping):
            if index in class_names:
                return str(class_names[index])
        elif 0 <= index < len(class_names):
            return str(class_names[index])
    return f"class {index}"


@dataclass
class PredictionFacts:
    """What the model said about one sample and which output the explanation explains."""

    target: int | None          # explained class index (None: a custom target)
    target_name: str
    score: float | None         # the model's score of the explained output
    probability: float | None   # P(target) when probabilities/logits were given
    predicted: int | None       # argmax class when probabilities/logits were given
    predicted_name: str | None
    confidence: float | None    # P(predicted)


def prediction_facts(explanation: Explanation, index: int, *, probabilities: np.ndarray | None = None,
                     class_names: Sequence[str] | Mapping[int, str] | None = None) -> PredictionFacts:
    """The prediction facts of sample ``index`` (``probabilities``: from :func:`class_probabilities`)."""
    targets = explanation.targets
    target = None if targets is None else int(np.asarray(targets).reshape(-1)[index])
    scores = explanation.scores
    score = None if scores is None else float(as_numpy(scores).reshape(-1)[index])
    probability = predicted = confidence = None
    if probabilities is not None:
        row = probabilities[index]
        predicted = int(np.argmax(row))
        confidence = float(row[predicted])
        probability = float(row[target]) if target is not None and 0 <= target < len(row) else None
    return PredictionFacts(target, class_name(target, class_names), score, probability, predicted,
                           None if predicted is None else class_name(predicted, class_names), confidence)


# ---------------------------------------------------------------------------------------------- kinds
def data_kind(explanation: Explanation) -> str:
    """``"text"`` (tokens in extras), ``"image"`` ((N, [C,] H, W)), ``"tabular"`` ((N, F)) or ``"other"``."""
    arrays = explanation.attribution_arrays()
    if len(arrays) == 1 and "tokens" in explanation.extras and arrays[0].ndim in (2, 3):
        return "text"
    if len(arrays) == 1 and arrays[0].ndim in (3, 4):
        return "image"
    if len(arrays) == 1 and arrays[0].ndim == 2:
        return "tabular"
    return "other"


@dataclass
class FeatureFacts:
    """One value per feature of one sample, with names and (where known) the input values."""

    names: list[str]
    values: np.ndarray                 # attributions (F,)
    inputs: np.ndarray | None          # the sample's feature values (F,) or None

    def ranked(self, by: str) -> list[int]:
        """Feature indices: ``"abs"`` by |value| desc; ``"toward"`` positive values desc; ``"against"``
        negative values by magnitude desc (ties by position)."""
        v = self.values
        if by == "abs":
            return [int(j) for j in np.argsort(-np.abs(v), kind="stable")]
        if by == "toward":
            return [int(j) for j in np.argsort(-v, kind="stable") if v[j] > 0]
        return [int(j) for j in np.argsort(v, kind="stable") if v[j] < 0]


def _tokens_of(explanation: Explanation, index: int) -> list[str] | None:
    tokens = explanation.extras.get("tokens")
    if tokens is None:
        return None
    row = tokens[index] if len(tokens) and not isinstance(tokens[0], str) else tokens
    return [str(t) for t in row]


def feature_facts(explanation: Explanation, index: int, *, feature_names: Sequence[str] | None = None
                  ) -> FeatureFacts:
    """Per-feature values of sample ``index``: tabular columns, text tokens, or flattened inputs."""
    kind = data_kind(explanation)
    arrays = explanation.attribution_arrays()
    if kind == "text":
        values = np.asarray(arrays[0][index], dtype=np.float64)
        values = values.sum(axis=-1) if values.ndim == 2 else values
        tokens = _tokens_of(explanation, index) or [f"token {j}" for j in range(len(values))]
        n = min(len(tokens), len(values))
        return FeatureFacts(tokens[:n], values[:n], None)
    values = np.concatenate([np.asarray(a[index], dtype=np.float64).reshape(-1) for a in arrays])
    names = feature_names if feature_names is not None else explanation.feature_names
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(values):
            raise ValidationError(f"lumos.report: feature_names has {len(names)} names for {len(values)} features")
    elif kind == "tabular":
        names = [f"x{j}" for j in range(len(values))]
    else:
        names = []
        for k, a in enumerate(arrays):
            prefix = f"input {k} " if len(arrays) > 1 else ""
            names += [f"{prefix}{tuple(int(i) for i in np.unravel_index(j, a.shape[1:]))}"
                      for j in range(int(np.prod(a.shape[1:])))]
    inputs = None
    if kind == "tabular" and explanation.inputs is not None and not isinstance(explanation.inputs, tuple):
        try:
            x = as_numpy(explanation.inputs)
            if x.shape == arrays[0].shape and np.issubdtype(x.dtype, np.number):
                inputs = x[index].astype(np.float64)
        except (TypeError, ValueError):
            inputs = None
    return FeatureFacts(names, values, inputs)


# ---------------------------------------------------------------------------------------------- images
def pooled_map(explanation: Explanation, index: int) -> np.ndarray:
    """The (H, W) map of sample ``index``: channels summed (signed)."""
    a = np.asarray(explanation.attribution_arrays()[0][index], dtype=np.float64)
    return a.sum(axis=0) if a.ndim == 3 else a


def grid_cells(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column third (0, 1, 2) of every pixel, by the pixel's centre: ``floor(3 (r + 0.5) / H)``."""
    h, w = shape
    rows = np.floor(3 * (np.arange(h) + 0.5) / h).astype(int)
    cols = np.floor(3 * (np.arange(w) + 0.5) / w).astype(int)
    return rows, cols


@dataclass
class RegionFacts:
    """Where an image's attribution lies: the grid cell with most positive (negative) mass and its share."""

    toward: str | None        # e.g. "upper-left part" (None: no positive attribution)
    toward_share: float       # share of all positive attribution inside that cell
    against: str | None
    against_share: float
    peak: tuple[int, int]     # (row, col) of the largest value of the map
    shape: tuple[int, int]


def region_facts(explanation: Explanation, index: int) -> RegionFacts:
    """Name the 3 x 3 cells holding the most positive and the most negative attribution of the pooled map."""
    m = pooled_map(explanation, index)
    rows, cols = grid_cells(m.shape)
    cell = rows[:, None] * 3 + cols[None, :]

    def strongest(mass: np.ndarray) -> tuple[str | None, float]:
        totals = np.bincount(cell.ravel(), weights=mass.ravel(), minlength=9)
        if totals.sum() <= 0:
            return None, 0.0
        best = int(np.argmax(totals))
        return REGION_NAMES[best // 3][best % 3], float(totals[best] / totals.sum())

    toward, toward_share = strongest(np.clip(m, 0, None))
    against, against_share = strongest(np.clip(-m, 0, None))
    peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(m)), m.shape))
    return RegionFacts(toward, toward_share, against, against_share, peak, tuple(m.shape))
