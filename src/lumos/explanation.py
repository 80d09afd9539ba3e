"""Explanation: the one result type of every lumos method.

Axis convention: ``attributions`` has the structure, shape and array type of the inputs (or, with
``layer=``, of that layer's output): a tensor in, a tensor out on the same device; a numpy array in, a numpy
array out; a tuple of inputs, a tuple of attributions. Axis 0 is always the sample. Images keep the model's
layout, e.g. (batch, channels, height, width).

Saved with :meth:`Explanation.save` as one ``.npz`` file of arrays plus JSON metadata, loaded with
:func:`load` without unpickling anything.
"""

from __future__ import annotations

import functools
import importlib
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .core.npz_store import read_npz, write_npz
from .errors import ValidationError

FORMAT_VERSION = 1


def as_numpy(value: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array; bfloat16, which numpy lacks, as float32 (exact)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def library_versions() -> dict[str, str]:
    """Versions of lumos and the libraries that produced a result (for reproducibility)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    return tuple({
        "lumos": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }.items())


@dataclass
class Explanation:
    """Attributions of one method for a batch of samples, with everything needed to reproduce them.

    Attributes:
        attributions: same structure, shape and array type as ``inputs`` (or the layer's output).
        inputs: the explained inputs (detached copies, same type as given).
        targets: class/output index per sample where the target has one, else ``None``.
        scores: the model's score for each sample's target, shape (batch,).
        method: registered method name, e.g. ``"integrated_gradients"``.
        params: the method's hyper-parameters (JSON-serialisable).
        target_description: how the target was chosen, e.g. ``"predicted class"``.
        seed: the seed of a stochastic method (drawn and recorded when none was given).
        layer: name of the layer attributed to, ``None`` for the inputs.
        feature_names: optional names of the features of 2-d (tabular) inputs.
        extras: diagnostics: ``convergence_delta``, ``n_evaluations``, standard errors, ...
        versions: library versions that produced the result.
    """

    attributions: Any
    inputs: Any = None
    targets: np.ndarray | None = None
    scores: np.ndarray | None = None
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    target_description: str = ""
    seed: int | None = None
    layer: str | None = None
    feature_names: list[str] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)

    # ------------------------------------------------------------------ views
    @property
    def is_tuple(self) -> bool:
        return isinstance(self.attributions, tuple)

    def attribution_arrays(self) -> list[np.ndarray]:
        """The attributions as a list of numpy arrays (one per input)."""
        items = self.attributions if self.is_tuple else (self.attributions,)
        return [as_numpy(a) for a in items]

    def __len__(self) -> int:
        return int(self.attribution_arrays()[0].shape[0])

    def _flat(self) -> np.ndarray:
        return np.concatenate([a.reshape(a.shape[0], -1) for a in self.attribution_arrays()], axis=1)

    def _names(self, n_features: int) -> list[str]:
        if self.feature_names is not None:
            if len(self.feature_names) != n_features:
                raise ValidationError(
                    f"Explanation: feature_names has {len(self.feature_names)} names for {n_features} features"
                )
            return list(self.feature_names)
        if len(self.attribution_arrays()) == 1 and self.attribution_arrays()[0].ndim > 2:
            shape = self.attribution_arrays()[0].shape[1:]
            return [str(tuple(int(i) for i in np.unravel_index(k, shape))) for k in range(n_features)]
        return [f"x{k}" for k in range(n_features)]

    def top_features(self, k: int = 5, *, by: str = "abs") -> list[list[tuple[str, float]]]:
        """The ``k`` most important features of each sample as ``(name, attribution)`` pairs.

        ``by="abs"`` ranks by magnitude, ``"positive"`` by value (pushing toward the target), ``"negative"``
        by negated value (pushing against it). Features of images are named by their index tuple.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValidationError(f"Explanation.top_features: k must be an int >= 1, got {k!r}")
        keys = {"abs": np.abs, "positive": lambda a: a, "negative": lambda a: -a}
        if by not in keys:
            raise ValidationError(f"Explanation.top_features: by must be one of {sorted(keys)}, got {by!r}")
        flat = self._flat()
        names = self._names(flat.shape[1])
        order = np.argsort(-keys[by](flat), axis=1, kind="stable")[:, :k]
        return [[(names[j], float(flat[i, j])) for j in order[i]] for i in range(flat.shape[0])]

    def to_pandas(self):  # noqa: ANN201 - pandas is an optional dependency
        """A DataFrame of attributions, one row per sample and one column per feature (tabular inputs)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Explanation.to_pandas needs pandas: pip install pandas") from exc
        arrays = self.attribution_arrays()
        if len(arrays) != 1 or arrays[0].ndim != 2:
            shapes = [a.shape for a in arrays]
            raise ValidationError(
                f"Explanation.to_pandas: needs one 2-d (samples, features) attribution array, got shapes {shapes}"
            )
        frame = pd.DataFrame(arrays[0], columns=self._names(arrays[0].shape[1]))
        frame.index.name = "sample"
        return frame

    def summary(self, audience: str = "engineer", *, evaluation: Any = None, top_k: int = 3,
                class_names: Sequence[str] | None = None, **kwargs: Any) -> str:
        """A plain-language summary for ``"engineer"``, ``"domain_expert"`` or ``"end_user"`` (templated text).

        Delegates to :func:`lumos.report.summarize` (see it for ``index``, ``sanity``, ``others``,
        ``probabilities``/``logits``, ``feature_names`` and ``counterfactual`` in ``kwargs``).

        Example::

            print(e.summary("end_user", class_names=["declined", "approved"], logits=model(x)))
        """
        # lumos.report sits above this module: import it at call time, by name, so that the layering
        # (explanation never depends on report when imported) holds and import-linter sees no upward import
        summarize = importlib.import_module("lumos.report.summary").summarize
        return summarize(self, audience, evaluation, top_k, class_names, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the explanation to ``path`` (``.npz``): arrays plus JSON metadata, no pickle."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {}
        for i, a in enumerate(self.attribution_arrays()):
            arrays[f"attributions_{i}"] = a
        inputs = self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)
        if self.inputs is not None:
            for i, x in enumerate(inputs):
                arrays[f"inputs_{i}"] = as_numpy(x)
        if self.targets is not None:
            arrays["targets"] = np.asarray(self.targets)
        if self.scores is not None:
            arrays["scores"] = as_numpy(self.scores)
        extras_meta: dict[str, Any] = {}
        for key, value in self.extras.items():
            if isinstance(value, (np.ndarray, torch.Tensor)):
                arrays[f"extra__{key}"] = as_numpy(value)
            else:
                extras_meta[key] = value
        meta = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "params": self.params,
            "target_description": self.target_description,
            "seed": self.seed,
            "layer": self.layer,
            "feature_names": self.feature_names,
            "extras": extras_meta,
            "versions": self.versions,
            "is_tuple": self.is_tuple,
            "inputs_is_tuple": isinstance(self.inputs, tuple),
            "array_type": "torch" if isinstance(self._first(), torch.Tensor) else "numpy",
        }
        return write_npz(path, arrays, meta, owner="Explanation.save")

    def _first(self) -> Any:
        return self.attributions[0] if self.is_tuple else self.attributions

    def __repr__(self) -> str:
        shapes = [tuple(a.shape) for a in self.attribution_arrays()]
        shape_text = shapes[0] if len(shapes) == 1 else shapes
        return (
            f"Explanation(method={self.method!r}, attributions={shape_text}, target={self.target_description!r}, "
            f"extras={sorted(self.extras)})"
        )


def load(path: str | Path) -> Explanation:
    """Read an explanation written by :meth:`Explanation.save` (no pickle is ever loaded)."""
    meta, arrays = read_npz(path, owner="lumos.load", what="lumos explanation")

    as_torch = meta.get("array_type") == "torch"
    convert = (lambda a: torch.from_numpy(a)) if as_torch else (lambda a: a)

    def gather(prefix: str, is_tuple: bool) -> Any:
        items = [convert(arrays[f"{prefix}_{i}"]) for i in range(len(arrays)) if f"{prefix}_{i}" in arrays]
        if not items:
            return None
        return tuple(items) if is_tuple else items[0]

    extras = dict(meta.get("extras", {}))
    for name, value in arrays.items():
        if name.startswith("extra__"):
            extras[name[len("extra__"):]] = value
    return Explanation(
        attributions=gather("attributions", meta["is_tuple"]),
        inputs=gather("inputs", meta.get("inputs_is_tuple", False)),
        targets=arrays.get("targets"),
        scores=arrays.get("scores"),
        method=meta["method"],
        params=meta["params"],
        target_description=meta.get("target_description", ""),
        seed=meta.get("seed"),
        layer=meta.get("layer"),
        feature_names=meta.get("feature_names"),
        extras=extras,
        versions=meta.get("versions", {}),
    )


def stack_names(names: Sequence[str] | None, n_features: int, *, owner: str) -> list[str] | None:
    """Validate user-given feature names against the number of features."""
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != n_features:
        raise ValidationError(f"{owner}: feature_names has {len(names)} names for {n_features} features")
    return names
