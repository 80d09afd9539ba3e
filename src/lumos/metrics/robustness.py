"""Robustness of explanations to small input changes: max-sensitivity, average sensitivity (Yeh et al. 2019)
and the local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018).

Each metric draws ``n_samples`` perturbed copies ``x' = x + u`` of every sample, ``u`` uniform in the
L-infinity ball of radius ``radius`` (seeded, CPU generator), and re-explains the clean sample and all its
copies in ONE batched ``explain`` call (rows ordered sample by sample, the clean row first; the target is
resolved on the clean row and kept for its copies, so a predicted class does not switch under the noise).

``explainer``: an :class:`~lumos.methods.base.Explainer` instance, or a registered method name with its
parameters in ``explainer_params``; ``explain_kwargs`` go to ``explain`` (e.g. ``feature_groups``).

Multi-input models (``inputs`` a tuple): every input gets its own noise (drawn in input order) and the
explanation's parts are flattened and concatenated per sample; norms run over all inputs together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..core.registry import get_method
from ..core.seeding import torch_generator
from ..core.targets import Expanded, as_target
from ..errors import ValidationError, describe_value
from .arrays import per_sample
from .perturb import MetricResult, check_choice, check_int, check_positive, scoring

NORMS = ("l2", "linf")


def resolve_explainer(explainer: Any, model: Any, params: Mapping[str, Any] | None, *, owner: str) -> Any:
    """An Explainer instance: ``explainer`` itself, or ``get_method(explainer)(model, **params)``."""
    if isinstance(explainer, str):
        return get_method(explainer)(model, **dict(params or {}))
    if hasattr(explainer, "explain") and callable(explainer.explain):
        if params:
            raise ValidationError(f"{owner}: explainer_params only apply to a method name, got an Explainer instance")
        return explainer
    raise ValidationError(f"{owner}: explainer must be an lumos Explainer or a registered method name, got "
                          f"{describe_value(explainer)}")


def perturbed_attributions(model: Any, inputs: Any, explainer: Any, *, target: Any, radius: float,
                           n_samples: int, seed: int | None, baseline: Any, explainer_params: Any,
                           explain_kwargs: Any, owner: str) -> tuple[torch.Tensor, np.ndarray]:
    """The explained rows, flattened (and concatenated over the inputs of a multi-input model) as float64 on
    the CPU, (n * (1 + m), n_elements), sample by sample, and the flat float64 attributions (n, 1 + m, d'):
    index 0 the clean sample, 1..m its copies. Each input gets its own noise, drawn in input order."""
    radius = check_positive(radius, name="radius", owner=owner)
    m = check_int(n_samples, name="n_samples", owner=owner)
    instance = resolve_explainer(explainer, model, explainer_params, owner=owner)
    items = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not items:
        raise ValidationError(f"{owner}: inputs must hold at least one tensor or array, got an empty tuple")
    is_numpy = all(isinstance(item, np.ndarray) for item in items)
    xs = []
    for i, item in enumerate(items):
        x = torch.from_numpy(np.asarray(item)) if isinstance(item, np.ndarray) else item
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
            name = f"inputs[{i}]" if len(items) > 1 else "inputs"
            raise ValidationError(f"{owner}: {name} must be a floating tensor or array with a batch axis, got "
                                  f"{describe_value(item)}")
        xs.append(x.detach())
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in xs):
        raise ValidationError(f"{owner}: all inputs must share the batch size, got {[tuple(x.shape) for x in xs]}")
    generator = torch_generator(0 if seed is None else seed)
    stacked = []
    for x in xs:
        noise = (torch.rand((n, m, *x.shape[1:]), generator=generator, dtype=torch.float64) * 2 - 1) * radius
        rows = torch.cat([x.unsqueeze(1), x.unsqueeze(1) + noise.to(x.device, x.dtype)], dim=1)
        stacked.append(rows.reshape(n * (1 + m), *x.shape[1:]))
    if target is None:  # the predicted class of the clean sample, kept for its copies (one forward of n rows)
        with scoring(model, inputs, None, owner=owner, progress=False) as scorer:
            indices = scorer.engine.target.indices()
        target = None if indices is None else np.broadcast_to(np.asarray(indices), (n,)).copy()
    if isinstance(target, (np.ndarray, list, tuple)) or (isinstance(target, torch.Tensor) and target.numel() > 1):
        target = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target)
    given = [s.numpy() if is_numpy else s for s in stacked]
    explanation = instance.explain(tuple(given) if len(items) > 1 else given[0],
                                   Expanded(as_target(target, owner=owner), 1 + m),
                                   baseline=baseline, **dict(explain_kwargs or {}))
    attributions = per_sample(explanation, owner=owner).reshape(n, 1 + m, -1)
    flat = torch.cat([s.detach().to("cpu", torch.float64).reshape(n * (1 + m), -1) for s in stacked], 1)
    return flat, attributions


def _norm(values: np.ndarray, norm: str) -> np.ndarray:
    return np.abs(values).max(axis=-1) if norm == "linf" else np.sqrt((values * values).sum(axis=-1))


def _sensitivity(name: str, reduce: Any, model: Any, inputs: Any, explainer: Any, *, target: Any, radius: float,
                 n_samples: int, norm: str, normalize: bool, seed: int | None, baseline: Any,
                 explainer_params: Any, explain_kwargs: Any) -> MetricResult:
    check_choice(norm, NORMS, name="norm", owner=name)
    _, a = perturbed_attributions(model, inputs, explainer, target=target, radius=radius, n_samples=n_samples,
                                  seed=seed, baseline=baseline, explainer_params=explainer_params,
                                  explain_kwargs=explain_kwargs, owner=name)
    change = _norm(a[:, 1:] - a[:, :1], norm)
    if normalize:
        scale = _norm(a[:, 0], norm)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            change = np.where(scale > 0, change / scale, np.where(change == 0, 0.0, np.inf))
    return MetricResult(name, reduce(change, axis=1), False, None, None,
                        {"radius": float(radius), "n_samples": int(n_samples), "norm": norm,
                         "normalize": normalize, "seed": seed}, 0)


def max_sensitivity(model: Any, inputs: Any, explainer: Any, *, target: Any = None, radius: float = 0.02,
                    n_samples: int = 10, norm: str = "l2", normalize: bool = True, seed: int | None = None,
                    baseline: Any = None, explainer_params: Mapping[str, Any] | None = None,
                    explain_kwargs: Mapping[str, Any] | None = None) -> MetricResult:
    """Max-sensitivity: the largest relative change of the explanation within an L-inf ball; lower is better.

    ``SENS_max = max_{||x' - x||_inf <= r} ||a(x') - a(x)|| / ||a(x)||``, estimated by the maximum over
    ``n_samples`` uniform draws in the ball. Yeh et al. (2019), "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS, def. 3.1, which does not divide by ``||a(x)||``: ``normalize=False`` gives the
    paper's quantity (the normalised form makes methods of different scales comparable).

    Example::

        max_sensitivity(model, x, "saliency", radius=0.05, n_samples=20, seed=0).values
    """
    return _sensitivity("max_sensitivity", np.max, model, inputs, explainer, target=target, radius=radius,
                        n_samples=n_samples, norm=norm, normalize=normalize, seed=seed, baseline=baseline,
                        explainer_params=explainer_params, explain_kwargs=explain_kwargs)


def avg_sensitivity(model: Any, inputs: Any, explainer: Any, *, target: Any = None, radius: float = 0.02,
                    n_samples: int = 10, norm: str = "l2", normalize: bool = True, seed: int | None = None,
                    baseline: Any = None, explainer_params: Mapping[str, Any] | None = None,
                    explain_kwargs: Mapping[str, Any] | None = None) -> MetricResult:
    """Average sensitivity: the mean relative change of the explanation within an L-inf ball; lower is better.

    ``SENS_avg = E_{x' ~ U(B_r(x))} ||a(x') - a(x)|| / ||a(x)||`` over ``n_samples`` draws. Yeh et al. (2019),
    NeurIPS, sec. 3 (without the normalisation: ``normalize=False``).

    Example::

        avg_sensitivity(model, x, IntegratedGradients(model), radius=0.02, seed=0).values
    """
    return _sensitivity("avg_sensitivity", np.mean, model, inputs, explainer, target=target, radius=radius,
                        n_samples=n_samples, norm=norm, normalize=normalize, seed=seed, baseline=baseline,
                        explainer_params=explainer_params, explain_kwargs=explain_kwargs)


def local_lipschitz_estimate(model: Any, inputs: Any, explainer: Any, *, target: Any = None, radius: float = 0.02,
                             n_samples: int = 10, seed: int | None = None, baseline: Any = None,
                             explainer_params: Mapping[str, Any] | None = None,
                             explain_kwargs: Mapping[str, Any] | None = None) -> MetricResult:
    """Local Lipschitz estimate: the largest ratio of explanation change to input change; lower is better.

    ``L(x) = max_{x' in B_r(x)} ||a(x) - a(x')||_2 / ||x - x'||_2``, maximised over ``n_samples`` uniform
    draws in the L-inf ball of radius r (the paper maximises by Bayesian optimisation or gradients; random
    search gives a lower bound of the same quantity). Alvarez-Melis & Jaakkola (2018), "On the Robustness of
    Interpretability Methods", ICML WHI workshop, eq. 1 (and "Towards Robust Interpretability with
    Self-Explaining Neural Networks", NeurIPS 2018).

    Example::

        local_lipschitz_estimate(model, x, "integrated_gradients", radius=0.1, seed=0).values
    """
    owner = "local_lipschitz_estimate"
    stacked, a = perturbed_attributions(model, inputs, explainer, target=target, radius=radius,
                                        n_samples=n_samples, seed=seed, baseline=baseline,
                                        explainer_params=explainer_params, explain_kwargs=explain_kwargs, owner=owner)
    x = stacked.numpy().reshape(a.shape[0], a.shape[1], -1)
    distance = _norm(x[:, 1:] - x[:, :1], "l2")
    change = _norm(a[:, 1:] - a[:, :1], "l2")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(distance > 0, change / distance, 0.0)
    return MetricResult(owner, ratio.max(axis=1), False, None, None,
                        {"radius": float(radius), "n_samples": int(n_samples), "seed": seed}, 0)
