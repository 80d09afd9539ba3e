"""``sanity_check``: which explanation methods depend on the model? Pass/fail per method, with the evidence.

Runs the randomisation tests of :mod:`lumos.metrics.randomisation` (model-parameter randomisation, cascading
and independent, Adebayo et al. 2018; random logit, Sixt et al. 2020; data randomisation when a ``train_fn``
is given) on one batch of inputs and judges each method by one documented rule (:class:`SanityRule`).

The rule (default): a test is passed when the similarity ``measure`` (Spearman rank correlation of ``|a|``)
between the trained model's explanation and the changed one, averaged over samples, stays below
``threshold = 0.5`` at EVERY step (``statistic="max"``): in the cascading test the explanation must already
change when only the output layer is randomised, and stay changed as more layers are. A method passes when
it passes every decisive test run: ``cascading``, ``random_logit`` and ``data`` (``independent`` is evidence
only: randomising one early layer need not change a faithful explanation much). Why ``max`` and not the last
cascade step: on the project's digits CNN guided backprop keeps a Spearman of ~0.7 after the output layer is
randomised (saliency and Grad-CAM <= 0.25), but falls to 0.25-0.5 once the first convolution is randomised
too, since its map then follows the new low-level filters; a last-step rule would pass it (Adebayo et al.
2018 show the same invariance to the top layers). Use ``statistic="last"`` for the Adebayo-style
"every layer randomised" reading. Samples whose explanations are constant before and after (e.g. empty
Grad-CAM maps) are left out of the mean (see :mod:`lumos.metrics.similarity`); a test with no comparable
sample is not passed.

The maps of the first ``keep_maps`` samples (default 2) before and after every change are kept
(``report.results[test][method].maps``, see :mod:`lumos.metrics.randomisation`) for the report's cascade figure
(:class:`lumos.plots.SanityCascadeDisplay`). Saved with :meth:`SanityReport.save` as one ``.npz`` of arrays
(similarities, maps) plus JSON metadata (no pickle) and read with :func:`load_sanity_report`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..core.npz_store import read_npz, write_npz
from ..errors import ValidationError
from ..explanation import library_versions
from ..methods.base import Explainer
from .randomisation import (
    DEFAULT_KEEP_MAPS,
    RandomisationResult,
    check_keep_maps,
    prepare_run,
    run_data_randomisation,
    run_parameter_randomisation,
    run_random_logit,
)
from .similarity import SIMILARITY_MEASURES, check_measures

TESTS = ("cascading", "independent", "random_logit", "data")
STATISTICS = ("max", "last", "mean")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SanityRule:
    """How a test's evidence becomes pass/fail: ``statistic`` over the steps of the per-step mean (over samples)
    of ``measure`` must be below ``threshold``; a method must pass every test in ``decisive`` that was run."""

    measure: str = "spearman_abs"
    threshold: float = 0.5
    statistic: str = "max"
    decisive: tuple[str, ...] = ("cascading", "random_logit", "data")

    def check(self, owner: str, measures: Sequence[str]) -> SanityRule:
        if self.measure not in measures:
            raise ValidationError(f"{owner}: measure must be one of the computed measures {list(measures)}, got "
                                  f"{self.measure!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not -1.0 <= self.threshold <= 1.0:
            raise ValidationError(f"{owner}: threshold must be a number in [-1, 1], got {self.threshold!r}")
        if self.statistic not in STATISTICS:
            raise ValidationError(f"{owner}: statistic must be one of {list(STATISTICS)}, got {self.statistic!r}")
        return self

    def value(self, result: RandomisationResult) -> float:
        """The statistic the rule compares with the threshold (NaN when no sample is comparable)."""
        if self.measure not in result.similarity:
            return float("nan")
        values = result.similarity[self.measure]
        per_step = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in values])
        if np.isnan(per_step).all():
            return float("nan")
        if self.statistic == "last":
            return float(per_step[-1])
        return float(np.nanmax(per_step) if self.statistic == "max" else np.nanmean(per_step))

    def passes(self, result: RandomisationResult) -> bool:
        value = self.value(result)
        return bool(np.isfinite(value) and value < self.threshold)


@dataclass
class TestVerdict:
    """One test of one method: the rule's statistic, pass/fail, and the full evidence."""

    value: float
    passed: bool
    decisive: bool
    result: RandomisationResult


@dataclass
class MethodSanity:
    """The sanity verdict of one method: ``passed`` and the evidence of every test."""

    method: str
    passed: bool
    tests: dict[str, TestVerdict]


@dataclass
class SanityReport:
    """Result of :func:`sanity_check`: ``results[test][method]`` holds the similarity per step and sample.

    ``report["saliency"].passed``, ``report.passed`` (``{method: bool}``), ``report.to_pandas()`` (one row
    per method, test, step and measure), ``report.summary()`` (a text table), ``report.save(path)``.
    """

    results: dict[str, dict[str, RandomisationResult]]
    rule: SanityRule
    seed: int
    n_samples: int
    params: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)

    @property
    def methods(self) -> list[str]:
        names: list[str] = []
        for by_method in self.results.values():
            names.extend(m for m in by_method if m not in names)
        return names

    def __getitem__(self, method: str) -> MethodSanity:
        if method not in self.methods:
            raise ValidationError(f"SanityReport: method must be one of {self.methods}, got {method!r}")
        tests = {}
        for test, by_method in self.results.items():
            if method in by_method:
                result = by_method[method]
                tests[test] = TestVerdict(self.rule.value(result), self.rule.passes(result),
                                          test in self.rule.decisive, result)
        decisive = [v.passed for v in tests.values() if v.decisive]
        return MethodSanity(method, bool(decisive) and all(decisive), tests)

    @property
    def passed(self) -> dict[str, bool]:
        return {m: self[m].passed for m in self.methods}

    def table(self) -> list[dict[str, Any]]:
        """One row per method: pass/fail, the rule's statistic per test, and the cascade's last step per measure."""
        rows = []
        for method in self.methods:
            verdict = self[method]
            row: dict[str, Any] = {"method": method, "passed": verdict.passed}
            cascade = verdict.tests.get("cascading")
            if cascade is not None:
                for measure in cascade.result.similarity:
                    row[f"cascade_last_{measure}"] = cascade.result.final(measure)
            for test, v in verdict.tests.items():
                row[f"{test}_{self.rule.statistic}"] = v.value
                row[f"{test}_passed"] = v.passed
            rows.append(row)
        return rows

    def to_pandas(self, *, per_sample: bool = False):  # noqa: ANN201 - pandas is optional
        """Long table: method, test, step, layer, measure and the mean similarity (or one row per sample)."""
        import pandas as pd

        rows = []
        for test, by_method in self.results.items():
            for method, result in by_method.items():
                for measure, values in result.similarity.items():
                    for step, label in enumerate(result.steps):
                        if per_sample:
                            rows.extend({"method": method, "test": test, "step": step, "layer": label,
                                         "measure": measure, "sample": i, "similarity": float(v)}
                                        for i, v in enumerate(values[step]))
                        else:
                            row = values[step]
                            mean = float(np.nanmean(row)) if np.isfinite(row).any() else float("nan")
                            rows.append({"method": method, "test": test, "step": step, "layer": label,
                                         "measure": measure, "similarity": mean})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """A plain-text table: per method, the rule's statistic per test and the verdict."""
        tests = [t for t in TESTS if t in self.results]
        rule = self.rule
        head = ["method", *[f"{t} ({rule.statistic})" for t in tests], "passed"]
        body = []
        for method in self.methods:
            verdict = self[method]
            cells = [method]
            for t in tests:
                v = verdict.tests.get(t)
                cells.append("-" if v is None else f"{v.value:.2f}{'' if v.passed else ' !'}")
            cells.append("yes" if verdict.passed else "NO")
            body.append(cells)
        widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
        lines.append(f"rule: {rule.statistic} over steps of the mean {rule.measure} < {rule.threshold} in every "
                     f"decisive test ({', '.join(t for t in rule.decisive if t in self.results)}); "
                     f"'!' = similarity too high (explanation did not change); seed {self.seed}, "
                     f"{self.n_samples} samples")
        return "\n".join(lines)

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{m}={'pass' if p else 'FAIL'}" for m, p in self.passed.items())
        return f"SanityReport({verdicts}; tests={list(self.results)}, rule={self.rule.measure} < {self.rule.threshold})"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the report to ``path`` (``.npz``): similarity arrays plus JSON metadata, no pickle."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays: dict[str, np.ndarray] = {}
        entries = []
        for i, result in enumerate(r for by_method in self.results.values() for r in by_method.values()):
            extras_meta = {}
            for key, value in result.extras.items():
                if isinstance(value, np.ndarray):
                    arrays[f"r{i}__extra__{key}"] = value
                else:
                    extras_meta[key] = value
            for measure, values in result.similarity.items():
                arrays[f"r{i}__{measure}"] = np.asarray(values, dtype=np.float64)
            if result.maps is not None:
                arrays[f"r{i}__maps"] = np.asarray(result.maps)
            entries.append({"test": result.test, "method": result.method, "steps": result.steps,
                            "measures": list(result.similarity), "extras": extras_meta})
        meta = {"format_version": FORMAT_VERSION, "kind": "sanity_report", "rule": asdict(self.rule),
                "seed": self.seed, "n_samples": self.n_samples, "params": self.params, "versions": self.versions,
                "results": entries}
        return write_npz(path, arrays, meta, owner="SanityReport.save")


def load_sanity_report(path: str | Path) -> SanityReport:
    """Read a report written by :meth:`SanityReport.save` (no pickle is ever loaded)."""
    meta, arrays = read_npz(path, owner="load_sanity_report")
    if meta.get("kind") != "sanity_report":
        raise ValidationError(f"load_sanity_report: {path} holds no sanity report (kind {meta.get('kind')!r})")
    results: dict[str, dict[str, RandomisationResult]] = {}
    for i, entry in enumerate(meta["results"]):
        similarity = {m: arrays[f"r{i}__{m}"] for m in entry["measures"]}
        extras = dict(entry["extras"])
        prefix = f"r{i}__extra__"
        extras.update({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        results.setdefault(entry["test"], {})[entry["method"]] = RandomisationResult(
            entry["test"], entry["method"], list(entry["steps"]), similarity, extras, arrays.get(f"r{i}__maps"))
    rule = meta["rule"]
    return SanityReport(results, SanityRule(rule["measure"], rule["threshold"], rule["statistic"],
                                            tuple(rule["decisive"])),
                        meta["seed"], meta["n_samples"], meta.get("params", {}), meta.get("versions", {}))


def sanity_check(model: nn.Module, inputs: Any, methods: Sequence[str | Explainer] | str, target: Any = None, *,
                 tests: Sequence[str] = ("cascading", "independent", "random_logit"),
                 train_fn: Callable[[Any], nn.Module] | None = None, labels: Any = None,
                 measures: Sequence[str] = SIMILARITY_MEASURES, rule: SanityRule | None = None,
                 threshold: float | None = None, seed: int | None = None, init: str = "reset",
                 method_params: Mapping[str, Mapping[str, Any]] | None = None, baseline: Any = None,
                 forward_kwargs: Mapping[str, Any] | None = None, progress: bool | None = None,
                 keep_maps: int = DEFAULT_KEEP_MAPS) -> SanityReport:
    """Run the randomisation tests on ``methods`` and say which explanations depend on the model.

    Each method's explanation of ``inputs`` on the trained model is compared (Spearman of ``|a|`` and of
    ``a``, SSIM, HOG similarity; lower = changed more) with its explanation after: randomising the layers from
    the output down (``"cascading"``) or one at a time (``"independent"``), Adebayo et al. 2018; explaining a
    random other class (``"random_logit"``), Sixt et al. 2020; retraining on permuted labels (``"data"``, run
    when ``train_fn`` is given). Pass/fail follows ``rule`` (see the module doc and :class:`SanityRule`).

    Args:
        model: the trained ``nn.Module`` (never modified; deep copies are randomised).
        inputs: the samples (one batched explain call per method and step).
        methods: registry names or Explainer instances built on ``model``.
        target: as in ``Explainer.explain``; every changed model explains the same classes.
        tests: which of ``"cascading"``, ``"independent"``, ``"random_logit"``, ``"data"`` to run.
        train_fn, labels: ``train_fn(permuted labels) -> model`` and the training labels (data randomisation).
        measures: similarity measures to compute (SSIM and HOG only for image attributions (N, C, H, W)).
        rule: the pass/fail rule (default ``SanityRule()``); ``threshold`` overrides its threshold.
        seed: seed of every random choice (``None`` draws one; recorded in the report).
        init: ``"reset"`` (each layer's own ``reset_parameters``) or ``"normal"`` re-initialisation.
        method_params: ``{name: {parameter: value}}`` for methods given by name, e.g. a Grad-CAM layer.
        baseline, forward_kwargs: passed to every explain call.
        progress: progress bars (``None``: on a terminal).
        keep_maps: keep the maps of the first ``keep_maps`` samples before and after every change
            (``report.results[test][method].maps``, drawn by the report's cascade figure; 0 keeps none).

    Example::

        report = sanity_check(model, x[:16], ["saliency", "grad_cam", "guided_backprop"], seed=0)
        print(report.summary())
        report["guided_backprop"].passed                 # False: it barely depends on the top layers
    """
    owner = "sanity_check"
    tests = (tests,) if isinstance(tests, str) else tuple(tests)
    if train_fn is not None and "data" not in tests:
        tests = (*tests, "data")
    if not tests or any(t not in TESTS for t in tests) or len(set(tests)) != len(tests):
        raise ValidationError(f"{owner}: tests must be distinct names from {list(TESTS)}, got {tests!r}")
    if "data" in tests and (train_fn is None or labels is None):
        raise ValidationError(f"{owner}: the data-randomisation test needs train_fn (labels -> model) and labels")
    rule = rule if rule is not None else SanityRule()
    if not isinstance(rule, SanityRule):
        raise ValidationError(f"{owner}: rule must be a SanityRule, got {rule!r}")
    if threshold is not None:
        rule = SanityRule(rule.measure, threshold, rule.statistic, rule.decisive)
    rule.check(owner, check_measures(measures, owner=owner))
    keep_maps = check_keep_maps(keep_maps, owner=owner)
    setup = prepare_run(model, inputs, methods, target, measures=measures, seed=seed, method_params=method_params,
                        baseline=baseline, forward_kwargs=forward_kwargs, owner=owner)
    common = {"explain_args": setup.explain_args, "progress": progress, "owner": owner, "keep_maps": keep_maps}
    results: dict[str, dict[str, RandomisationResult]] = {}
    for test in tests:
        if test in ("cascading", "independent"):
            results[test] = run_parameter_randomisation(setup.model, inputs, setup.states, mode=test, seed=setup.seed,
                                                        init=init, forward_kwargs=forward_kwargs, **common)
        elif test == "random_logit":
            results[test] = run_random_logit(setup.model, inputs, setup.states, seed=setup.seed,
                                             forward_kwargs=forward_kwargs, **common)
        else:
            results[test] = run_data_randomisation(setup.model, inputs, setup.states, train_fn=train_fn,
                                                   labels=labels, seed=setup.seed, **common)
    params = {"tests": list(tests), "measures": list(setup.states[0].comparer.measures), "init": init,
              "keep_maps": keep_maps,
              "methods": [s.name for s in setup.states],
              "method_params": _jsonable(method_params or {}),
              "method_config": {s.name: _jsonable(s.explainer.get_params()) for s in setup.states},
              "targets": {s.name: s.reference.target_description for s in setup.states}}
    return SanityReport(results, rule, setup.seed, len(setup.states[0].reference), params)


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold replaced by its repr."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)
