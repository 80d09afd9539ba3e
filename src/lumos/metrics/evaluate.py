"""``evaluate``: explain with several methods and score every explanation with several metrics, in one call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.progress import progress_bar
from ..core.registry import get_method
from ..core.seeding import derive_seed, resolve_seed
from ..errors import ValidationError, describe_value
from ..explanation import Explanation
from . import faithfulness as _faith
from . import faithfulness_sampled as _sampled
from . import road as _road
from . import robustness as _robust
from .complexity import complexity, effective_complexity, sparseness
from .evaluation_result import Evaluation
from .perturb import MetricResult

#: metric name -> (function, kind): "model" (model, inputs, attributions), "free" (attributions only),
#: "explainer" (model, inputs, explainer: re-explains perturbed inputs)
METRICS: dict[str, tuple[Callable[..., Any], str]] = {
    "deletion": (_faith.deletion, "model"),
    "insertion": (_faith.insertion, "model"),
    "region_perturbation_morf": (functools.partial(_faith.region_perturbation, order="morf"), "model"),
    "region_perturbation_lerf": (functools.partial(_faith.region_perturbation, order="lerf"), "model"),
    "faithfulness_correlation": (_sampled.faithfulness_correlation, "model"),
    "infidelity": (_sampled.infidelity, "model"),
    "sufficiency": (_faith.sufficiency, "model"),
    "comprehensiveness": (_faith.comprehensiveness, "model"),
    "completeness_residual": (_sampled.completeness_residual, "model"),
    "road_morf": (functools.partial(_road.road, order="morf"), "model"),
    "road_lerf": (functools.partial(_road.road, order="lerf"), "model"),
    "max_sensitivity": (_robust.max_sensitivity, "explainer"),
    "avg_sensitivity": (_robust.avg_sensitivity, "explainer"),
    "local_lipschitz_estimate": (_robust.local_lipschitz_estimate, "explainer"),
    "sparseness": (sparseness, "free"),
    "complexity": (complexity, "free"),
    "effective_complexity": (effective_complexity, "free"),
}
#: a fast default set: two curves, one correlation, two model-free complexity measures (no re-explaining)
DEFAULT_METRICS = ("deletion", "insertion", "faithfulness_correlation", "sparseness", "complexity")


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return name in inspect.signature(target).parameters


def _method_specs(methods: Any, method_params: Mapping[str, Any], model: Any) -> list[tuple[str, Any]]:
    """(name, Explainer instance) per method; common ``method_params`` go to the methods that accept them."""
    if isinstance(methods, str):
        methods = [methods]
    items = list(methods.items()) if isinstance(methods, Mapping) else [(m, {}) for m in methods]
    classes = []
    for name, own in items:
        if not isinstance(name, str):
            raise ValidationError(f"evaluate: methods must be registered method names, got {describe_value(name)}")
        classes.append((name, get_method(name), dict(own or {})))
    used = set()
    specs = []
    for name, cls, own in classes:
        accepted = set(cls.parameter_names())
        common = {k: v for k, v in method_params.items() if k in accepted}
        used.update(common)
        specs.append((name, cls, {**common, **own}))
    unused = sorted(set(method_params) - used)
    if unused:
        raise ValidationError(f"evaluate: parameter(s) {unused} are accepted by none of the methods "
                              f"{[n for n, _, _ in classes]}")
    return specs


def evaluate(model: Any, inputs: Any = None, *, methods: Any = None, explanations: Sequence[Explanation] | None = None,
             metrics: Sequence[str] | None = None, target: Any = None, baseline: Any = None, seed: int | None = None,
             progress: bool | None = None, batch_size: int | None = None,
             metric_params: Mapping[str, Mapping[str, Any]] | None = None, **method_params: Any) -> Evaluation:
    """Explain ``inputs`` with every method (or take the given explanations) and score each with every metric.

    Args:
        model: an ``nn.Module``, a function on tensors, or a numpy model (scikit-learn & co.).
        inputs: one tensor/array, batch first (``None``: the first explanation's inputs).
        methods: registered method names (a list), or a dict name -> that method's parameters.
        explanations: Explanations already computed on ``inputs`` (instead of, or besides, ``methods``).
        metrics: metric names (keys of :data:`METRICS`); default :data:`DEFAULT_METRICS`. Robustness metrics
            re-run the explainer on perturbed inputs: ask for them explicitly.
        target: as in ``explain``; explanations keep their own targets.
        baseline: passed to every method's ``explain``, and to the metrics when it is a number or a string.
        seed: every random draw (stochastic methods, random subsets, noise) derives from it; ``None`` draws
            one, recorded in the result.
        progress: progress bars; batch_size: most rows per model call, everywhere.
        metric_params: per-metric parameters, e.g. ``{"deletion": {"n_steps": 10, "score": "probability"}}``.
        method_params: common method parameters (``n_steps=32``), given to the methods that accept them.

    Returns:
        An :class:`~lumos.metrics.evaluation_result.Evaluation`.

    Example::

        ev = lumos.evaluate(model, x, methods=["saliency", "integrated_gradients"], target=y, seed=0)
        ev.ranking("faithfulness"); ev.to_pandas()
    """
    from . import METRIC_INFO  # the package's table (imported here: the package imports this module)

    seed = resolve_seed(seed, owner="evaluate")
    metric_params = {k: dict(v) for k, v in (metric_params or {}).items()}
    names = list(DEFAULT_METRICS if metrics is None else ([metrics] if isinstance(metrics, str) else metrics))
    unknown = [m for m in [*names, *metric_params] if m not in METRICS]
    if unknown:
        raise ValidationError(f"evaluate: unknown metric(s) {unknown}; available: {', '.join(sorted(METRICS))}")
    if not names or len(set(names)) != len(names):
        raise ValidationError(f"evaluate: metrics must be a non-empty list of distinct names, got {names!r}")
    if methods is None and not explanations:
        raise ValidationError("evaluate: give methods=[names] or explanations=[Explanation, ...]")
    if explanations is not None and not all(isinstance(e, Explanation) for e in explanations):
        raise ValidationError("evaluate: explanations must be lumos Explanations")
    if inputs is None:
        if not explanations or explanations[0].inputs is None:
            raise ValidationError("evaluate: inputs are required (or explanations that carry their inputs)")
        inputs = explanations[0].inputs

    specs = _method_specs(methods, method_params, model) if methods is not None else []
    entries: list[tuple[str, Any, Explanation | None]] = []  # (label, explainer or None, explanation)
    for index, (name, cls, params) in enumerate(specs):
        if cls.stochastic and "seed" not in params:
            params["seed"] = derive_seed(seed, index)
        if batch_size is not None and "batch_size" not in params:
            params["batch_size"] = batch_size
        params.setdefault("progress", progress)
        entries.append((name, cls(model, **params), None))
    for explanation in explanations or []:
        entries.append((explanation.method or f"explanation_{len(entries)}", None, explanation))
    labels = _unique([label for label, _, _ in entries])

    n_tasks = len(entries) * (1 + len(names))
    values = None
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    used_params: dict[str, dict[str, Any]] = {}
    with progress_bar(n_tasks, desc="evaluate", progress=progress, unit="task") as bar:
        for i, (_, explainer, explanation) in enumerate(entries):
            if explanation is None:
                explanation = explainer.explain(inputs, target, baseline=baseline)
            bar.update(1)
            for j, metric in enumerate(names):
                result = _run_metric(metric, model, inputs, explanation, explainer, target=target, baseline=baseline,
                                     seed=derive_seed(seed, 1000 + j), batch_size=batch_size, progress=progress,
                                     params=metric_params.get(metric, {}))
                row = np.asarray(result.values if isinstance(result, MetricResult) else result, dtype=np.float64)
                if values is None:
                    values = np.full((len(entries), len(names), row.shape[0]), np.nan)
                values[i, j] = row
                if isinstance(result, MetricResult):
                    used_params[metric] = result.params
                    if result.curves is not None:
                        curves[(labels[i], metric)] = (np.asarray(result.x), np.asarray(result.curves))
                bar.update(1)
    info = {m: METRIC_INFO[m] for m in names}
    return Evaluation(methods=labels, metrics=names, values=values,
                      properties={m: info[m].property for m in names},
                      higher_is_better={m: bool(info[m].higher_is_better) for m in names}, curves=curves,
                      params={"metric_params": _jsonable(used_params), "baseline": _jsonable(baseline),
                              "method_params": _jsonable(method_params)}, seed=seed)


def _run_metric(metric: str, model: Any, inputs: Any, explanation: Explanation, explainer: Any, *, target: Any,
                baseline: Any, seed: int, batch_size: int | None, progress: bool | None,
                params: dict[str, Any]) -> Any:
    fn, kind = METRICS[metric]
    if kind == "free":
        return fn(explanation, **params)
    kwargs: dict[str, Any] = {}
    for name, value in (("seed", seed), ("batch_size", batch_size), ("progress", progress)):
        if _accepts(fn, name):
            kwargs[name] = value
    if isinstance(baseline, (int, float, str)) and not isinstance(baseline, bool) and _accepts(fn, "baseline"):
        kwargs["baseline"] = baseline
    kwargs.update(params)
    if kind == "explainer":
        if explainer is None:
            try:
                explainer = get_method(explanation.method)(model, **explanation.params)
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise ValidationError(
                    f"evaluate: metric {metric!r} re-runs the explainer, and the explainer of explanation "
                    f"{explanation.method!r} cannot be rebuilt from its params ({exc}); pass methods=[...] instead"
                ) from exc
        kwargs["baseline"] = params.get("baseline", baseline)  # the explainer's own baseline
        return fn(model, inputs, explainer, target=explanation.targets if target is None else target, **kwargs)
    return fn(model, inputs, explanation, target=target, **kwargs)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return describe_value(value)
