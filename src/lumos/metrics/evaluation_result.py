"""Evaluation: the result of :func:`lumos.metrics.evaluate`, values of every method x metric x sample.

Holds the per-sample values (NaN where a metric is undefined for a sample), their aggregates (mean, std and
n over the samples where defined), the curves of curve metrics (deletion, insertion, region perturbation,
ROAD, ERASER bins), and a ranking of the methods per property. Saved with :meth:`Evaluation.save` as one
``.npz`` of arrays plus JSON metadata, loaded with :func:`load_evaluation` without unpickling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.npz_store import read_npz, write_npz
from ..errors import ValidationError
from ..explanation import library_versions

FORMAT_VERSION = 1


@dataclass
class Evaluation:
    """Metric values of several explanation methods on the same samples.

    Attributes:
        methods: method names (rows), e.g. ``["saliency", "integrated_gradients"]``.
        metrics: metric names (columns), keys of ``lumos.metrics.METRIC_INFO``.
        values: (n_methods, n_metrics, n_samples) float64, NaN where undefined.
        properties: metric -> property measured (``"faithfulness"``, ``"robustness"``, ``"complexity"`` ...).
        higher_is_better: metric -> whether larger values are better.
        curves: ``(method, metric)`` -> ``(x (n_points,), curves (n_samples, n_points))`` for curve metrics.
        params: the arguments of the evaluation (JSON-serialisable), including per-metric parameters.
        seed: the seed every random draw derives from.
        versions: library versions that produced the result.
    """

    methods: list[str]
    metrics: list[str]
    values: np.ndarray
    properties: dict[str, str]
    higher_is_better: dict[str, bool]
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=library_versions)

    # ------------------------------------------------------------------ views
    @property
    def n_samples(self) -> int:
        return int(self.values.shape[2])

    def _index(self, method: str, metric: str) -> tuple[int, int]:
        if method not in self.methods:
            raise ValidationError(f"Evaluation: method must be one of {self.methods}, got {method!r}")
        if metric not in self.metrics:
            raise ValidationError(f"Evaluation: metric must be one of {self.metrics}, got {metric!r}")
        return self.methods.index(method), self.metrics.index(metric)

    def value(self, method: str, metric: str) -> np.ndarray:
        """The per-sample values of one method and metric, shape (n_samples,)."""
        i, j = self._index(method, metric)
        return self.values[i, j]

    def curve(self, method: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, curves)`` of a curve metric for one method."""
        self._index(method, metric)
        if (method, metric) not in self.curves:
            raise ValidationError(f"Evaluation: metric {metric!r} has no curve; curves: "
                                  f"{sorted({m for _, m in self.curves})}")
        return self.curves[(method, metric)]

    @property
    def mean(self) -> np.ndarray:
        """(n_methods, n_metrics) mean over the samples where the value is defined (NaN if none)."""
        counts = self.count
        total = np.where(np.isfinite(self.values), self.values, 0.0).sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)

    @property
    def std(self) -> np.ndarray:
        """(n_methods, n_metrics) standard deviation (ddof=0) over the defined samples."""
        finite = np.isfinite(self.values)
        centred = np.where(finite, self.values - self.mean[:, :, None], 0.0)
        counts = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, np.sqrt((centred ** 2).sum(axis=2) / np.maximum(counts, 1)), np.nan)

    @property
    def count(self) -> np.ndarray:
        """(n_methods, n_metrics) number of samples where the value is defined."""
        return np.isfinite(self.values).sum(axis=2)

    def ranking(self, property: str) -> list[str]:  # noqa: A002 - the word the API uses
        """Methods ordered best first on ``property`` (e.g. ``"faithfulness"``).

        Each metric of the property ranks the methods by their mean value (its ``higher_is_better``; ties
        share the average rank; a method without a defined value ranks last); methods are ordered by their
        mean rank over those metrics (the order of ``methods`` breaks ties). With one metric this is simply
        the order of its means.
        """
        metrics = [m for m in self.metrics if self.properties.get(m) == property]
        if not metrics:
            available = sorted({self.properties[m] for m in self.metrics})
            raise ValidationError(f"Evaluation.ranking: property must be one of {available}, got {property!r}")
        mean = self.mean
        total = np.zeros(len(self.methods))
        for metric in metrics:
            column = mean[:, self.metrics.index(metric)]
            key = np.where(np.isfinite(column), -column if self.higher_is_better[metric] else column, np.inf)
            total += _average_ranks(key)
        order = np.argsort(total / len(metrics), kind="stable")
        return [self.methods[i] for i in order]

    def to_pandas(self):  # noqa: ANN201 - pandas is an optional dependency
        """A long DataFrame: one row per (method, metric, sample) with columns ``method, metric, property,
        higher_is_better, sample, value``."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Evaluation.to_pandas needs pandas: pip install pandas") from exc
        n_methods, n_metrics, n = self.values.shape
        method = np.repeat(np.array(self.methods, dtype=object), n_metrics * n)
        metric = np.tile(np.repeat(np.array(self.metrics, dtype=object), n), n_methods)
        return pd.DataFrame({
            "method": method,
            "metric": metric,
            "property": [self.properties[m] for m in metric],
            "higher_is_better": [self.higher_is_better[m] for m in metric],
            "sample": np.tile(np.arange(n), n_methods * n_metrics),
            "value": self.values.reshape(-1),
        })

    def summary(self):  # noqa: ANN201 - pandas is an optional dependency
        """A DataFrame of aggregates: one row per (method, metric) with ``mean, std, n``."""
        import pandas as pd

        rows = [{"method": method, "metric": metric, "property": self.properties[metric],
                 "higher_is_better": self.higher_is_better[metric], "mean": self.mean[i, j],
                 "std": self.std[i, j], "n": int(self.count[i, j])}
                for i, method in enumerate(self.methods) for j, metric in enumerate(self.metrics)]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        width = max([len(m) for m in self.methods] + [6])
        header = " " * width + "  " + "  ".join(f"{m[:16]:>16}" for m in self.metrics)
        arrows = " " * width + "  " + "  ".join(f"{'(higher better)' if self.higher_is_better[m] else '(lower better)':>16}"
                                                for m in self.metrics)
        lines = [f"Evaluation({len(self.methods)} methods x {len(self.metrics)} metrics x {self.n_samples} samples, "
                 f"seed={self.seed})", header, arrows]
        for i, method in enumerate(self.methods):
            cells = "  ".join(f"{self.mean[i, j]:>16.4g}" for j in range(len(self.metrics)))
            lines.append(f"{method:<{width}}  {cells}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the evaluation to ``path`` (``.npz``): arrays plus JSON metadata, no pickle."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {"values": np.asarray(self.values, dtype=np.float64)}
        keys = []
        for index, ((method, metric), (x, curves)) in enumerate(self.curves.items()):
            arrays[f"curve_x_{index}"] = np.asarray(x)
            arrays[f"curve_{index}"] = np.asarray(curves)
            keys.append([method, metric])
        meta = {"format_version": FORMAT_VERSION, "kind": "evaluation", "methods": self.methods,
                "metrics": self.metrics, "properties": self.properties, "higher_is_better": self.higher_is_better,
                "curves": keys, "params": self.params, "seed": self.seed, "versions": self.versions}
        return write_npz(path, arrays, meta, owner="Evaluation.save")


def load_evaluation(path: str | Path) -> Evaluation:
    """Read an evaluation written by :meth:`Evaluation.save` (no pickle is ever loaded)."""
    meta, data = read_npz(path, owner="lumos.metrics.load_evaluation")
    if meta.get("kind") != "evaluation":
        raise ValidationError(f"lumos.metrics.load_evaluation: {path} is not an Evaluation (an Explanation? "
                              f"use lumos.load)")
    curves = {(method, metric): (data[f"curve_x_{i}"], data[f"curve_{i}"])
              for i, (method, metric) in enumerate(meta["curves"])}
    values = data["values"]
    return Evaluation(methods=meta["methods"], metrics=meta["metrics"], values=values,
                      properties=meta["properties"], higher_is_better=meta["higher_is_better"], curves=curves,
                      params=meta["params"], seed=meta["seed"], versions=meta.get("versions", {}))


def _average_ranks(key: np.ndarray) -> np.ndarray:
    """Ranks 1..k of ``key`` ascending, ties sharing their average rank."""
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(key))
    ranks[order] = np.arange(1, len(key) + 1)
    for value in np.unique(key):
        tied = key == value
        ranks[tied] = ranks[tied].mean()
    return ranks
