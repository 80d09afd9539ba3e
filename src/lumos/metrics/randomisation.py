"""Randomisation tests: does an explanation depend on what the model learned?

A method whose explanation survives destroying the model cannot explain the model (Adebayo, Gilmer, Muelly,
Goodfellow, Hardt & Kim 2018, "Sanity Checks for Saliency Maps", NeurIPS). Each test compares the explanation
``E(f, x)`` of the trained model with ``E(f', x)`` of a changed one by the measures of
:mod:`lumos.metrics.similarity`, per sample: similarity 1 = unchanged; LOWER is better.

- :func:`model_parameter_randomisation`: ``f'`` = ``f`` with layers re-initialised, ``"cascading"`` (from the
  output layer down, cumulatively: step k has the top k+1 layers randomised) or ``"independent"`` (one layer
  at a time, the others trained) (Adebayo et al. 2018, sec. 3.1).
- :func:`data_randomisation`: ``f'`` = the model trained by the user's ``train_fn`` on permuted labels
  (Adebayo et al. 2018, sec. 3.2).
- :func:`random_logit`: the same model, the explanation of each sample's class ``c`` against that of a random
  other class ``c' != c`` (Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP
  Attributions Fail", ICML).

How layers are randomised: the layers are the modules with parameters of their own, in the order a probe
forward pass (hooks in a :class:`~lumos.core.hooks.HookSet`) first calls them. A layer is re-initialised by its
own ``reset_parameters()`` (the layer's init scheme; BatchNorm returns to its identity initial state) run in
``torch.random.fork_rng`` with the seed ``derive_seed(seed, layer_index)``, so the global RNG is untouched and
a layer gets the same new weights in both modes; with ``init="normal"``, or for a layer without
``reset_parameters``, each own parameter is redrawn from ``N(0, std(original)^2)`` (std 1 where the original
values are all equal) from a seeded generator. Only a deep copy of the model is ever changed.

Targets: the randomised models explain the class the trained model was explained for (its predicted class
when ``target=None``), so only the model changes, not the question.

Maps: with ``keep_maps=k`` the maps of the first ``k`` samples are kept in ``RandomisationResult.maps``,
shape ``(1 + n_steps, k, ...)``: index 0 the trained model's map, then one per step; they are the magnitude
maps the default measure compares (``sum_c |a_c|`` for images (N, C, H, W) -> (H, W); ``|a|`` flattened
otherwise), float32. They cost ``(1 + n_steps) x k x H x W x 4`` bytes per method and test.

Cost: one batched ``explain`` call per (method, step); the floor is the same calls on the trained model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.hooks import HookSet
from ..core.inputs import prepare_forward_kwargs, prepare_inputs, select_rows
from ..core.model import ModelAdapter
from ..core.progress import progress_bar
from ..core.registry import get_method
from ..core.seeding import derive_seed, numpy_generator, resolve_seed, torch_generator
from ..errors import UnsupportedModelError, ValidationError, describe_value
from ..explanation import Explanation
from ..methods.base import Explainer
from .similarity import SIMILARITY_MEASURES, ExplanationMaps, MapComparer, check_measures, explanation_maps

MODES = ("cascading", "independent")
INITS = ("reset", "normal")
#: seed stream of the random-logit classes and of the label permutation (layers use streams 0, 1, ...)
_LOGIT_STREAM = 2**31 - 1
_LABEL_STREAM = 2**31 - 2
#: samples whose maps the tests keep by default (for the report's cascade figure)
DEFAULT_KEEP_MAPS = 2


@dataclass
class RandomisationResult:
    """The evidence of one randomisation test for one method.

    Attributes:
        test: ``"cascading"``, ``"independent"``, ``"data"`` or ``"random_logit"``.
        method: the method's name.
        steps: what was changed at each step: the layer randomised (cascading: cumulatively, output first),
            ``"random labels"`` or ``"random logit"``.
        similarity: ``{measure: array (n_steps, n_samples)}``; 1 = the explanation did not change.
        extras: per-test details (e.g. the random classes of the random-logit test).
        maps: ``None``, or the kept magnitude maps ``(1 + n_steps, k, ...)``: ``maps[0]`` of the trained model,
            ``maps[s + 1]`` after step ``s``, for the first ``k`` samples (see the module doc).
    """

    test: str
    method: str
    steps: list[str]
    similarity: dict[str, np.ndarray]
    extras: dict[str, Any] = field(default_factory=dict)
    maps: np.ndarray | None = None

    def mean(self, measure: str) -> np.ndarray:
        """Mean over samples at each step, shape (n_steps,)."""
        if measure not in self.similarity:
            raise ValidationError(f"RandomisationResult.mean: measure must be one of {sorted(self.similarity)}, "
                                  f"got {measure!r}")
        return np.nanmean(self.similarity[measure], axis=1)

    def final(self, measure: str) -> float:
        """Mean similarity at the last step (cascading: every layer randomised)."""
        return float(self.mean(measure)[-1])


# ---------------------------------------------------------------------------------------------- layers
def _module(model: Any, owner: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"{owner}: model must be a torch.nn.Module with parameters (its weights are "
                                    f"randomised), got {describe_value(model)}")
    return model


def parameter_layers(model: nn.Module, inputs: Any, *, forward_kwargs: Mapping[str, Any] | None = None,
                     owner: str = "parameter_layers") -> list[str]:
    """Names of the modules with parameters of their own, in the order a forward pass on ``inputs`` first
    calls them (modules the forward pass never calls are left out).

    Example::

        parameter_layers(model, x)     # ['0', '2', '6'] for conv - relu - conv - ... - linear
    """
    model = _module(model, owner)
    owners = [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    if not owners:
        raise UnsupportedModelError(f"{owner}: the model has no layers with parameters to randomise")
    order: list[str] = []

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name not in order:
                order.append(name)
        return hook

    with HookSet() as hooks:
        for name, m in owners:
            hooks.forward(m, record(name))
        _model_output(model, inputs, forward_kwargs, owner, rows=1)  # a one-row probe
    if not order:
        raise UnsupportedModelError(f"{owner}: the forward pass calls no layer with parameters "
                                    f"(layers with parameters: {[n for n, _ in owners]})")
    return order


def randomise_layer(module: nn.Module, *, seed: int, init: str = "reset") -> None:
    """Re-initialise ``module``'s own parameters in place, seeded, without touching the global RNG.

    ``init="reset"``: the layer's ``reset_parameters()`` under ``torch.random.fork_rng`` seeded with ``seed``
    (falls back to ``"normal"`` when the layer has none); ``init="normal"``: each own parameter redrawn from
    ``N(0, s^2)``, ``s`` the std of its original values (1 where they are all equal).
    """
    if init not in INITS:
        raise ValidationError(f"randomise_layer: init must be one of {list(INITS)}, got {init!r}")
    reset = getattr(module, "reset_parameters", None)
    if init == "reset" and callable(reset):
        devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            reset()
        return
    generator = torch_generator(seed)
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            std = float(p.detach().double().std()) if p.numel() > 1 else 0.0
            std = std if std > 0 and np.isfinite(std) else 1.0
            draw = torch.randn(p.shape, generator=generator, dtype=torch.float64) * std
            p.copy_(draw.to(device=p.device, dtype=p.dtype))


# ---------------------------------------------------------------------------------------------- methods
@dataclass
class MethodState:
    """One method under test: its explainer on the trained model, the reference explanation and comparer."""

    name: str
    explainer: Explainer
    reference: Explanation
    comparer: MapComparer
    target: Any


def resolve_methods(model: nn.Module, methods: Sequence[str | Explainer] | str | Explainer,
                    method_params: Mapping[str, Mapping[str, Any]] | None, *, owner: str) -> dict[str, Explainer]:
    """``{name: explainer bound to model}`` from registry names or Explainer instances (bound to ``model``)."""
    if isinstance(methods, (str, Explainer)):
        methods = [methods]
    if not isinstance(methods, Sequence) or not methods:
        raise ValidationError(f"{owner}: methods must be a non-empty list of registered method names or Explainer "
                              f"instances, got {describe_value(methods)}")
    params = dict(method_params or {})
    out: dict[str, Explainer] = {}
    for method in methods:
        if isinstance(method, str):
            try:
                cls = get_method(method)
            except ValidationError as exc:
                raise ValidationError(f"{owner}: {exc}") from None
            explainer = cls(model, progress=False, **dict(params.get(method, {})))
            name = method
        elif isinstance(method, Explainer):
            if method.model is not model:
                raise ValidationError(f"{owner}: the Explainer {type(method).__name__} explains another model; "
                                      f"build it on the model given to {owner}")
            explainer, name = method, method.name or type(method).__name__
        else:
            raise ValidationError(f"{owner}: each method must be a registered name or an Explainer instance, got "
                                  f"{describe_value(method)}")
        base, k = name, 2
        while name in out:
            name, k = f"{base}#{k}", k + 1
        out[name] = explainer
    unused = sorted(set(params) - {m for m in methods if isinstance(m, str)})
    if unused:
        raise ValidationError(f"{owner}: method_params names methods that are not tested: {unused}")
    return out


def rebind(explainer: Explainer, original: nn.Module, replacement: nn.Module) -> Explainer:
    """A copy of ``explainer`` that explains ``replacement`` instead of ``original``.

    Deep copy with every module, parameter and buffer of ``original`` mapped to the one of the same name in
    ``replacement`` (so ``layer=`` modules and wrapped explainers follow); the configuration is copied.
    """
    memo: dict[int, Any] = {id(original): replacement}
    modules = dict(replacement.named_modules())
    for name, module in original.named_modules():
        if name in modules:
            memo[id(module)] = modules[name]
    tensors = {**dict(replacement.named_parameters()), **dict(replacement.named_buffers())}
    for name, tensor in [*original.named_parameters(), *original.named_buffers()]:
        if name in tensors:
            memo[id(tensor)] = tensors[name]
    bound = copy.deepcopy(explainer, memo)
    bound.progress = False
    return bound


def prepare_states(model: nn.Module, inputs: Any, explainers: Mapping[str, Explainer], target: Any, *,
                   measures: tuple[str, ...], explain_args: Mapping[str, Any]) -> list[MethodState]:
    """Explain ``inputs`` with each method on the trained model (one call each) and set up the comparers."""
    states = []
    for name, explainer in explainers.items():
        reference = explainer.explain(inputs, target, **explain_args)
        fixed = target if reference.targets is None else np.asarray(reference.targets)
        comparer = MapComparer(explanation_maps(reference, owner=name), measures)
        states.append(MethodState(name, explainer, reference, comparer, fixed))
    return states


def _explain_maps(state: MethodState, explainer: Explainer, inputs: Any, explain_args: Mapping[str, Any],
                  target: Any = None) -> ExplanationMaps:
    explanation = explainer.explain(inputs, state.target if target is None else target, **explain_args)
    return explanation_maps(explanation, owner=state.name)


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {m: np.stack([r[m] for r in rows]) for m in rows[0]} if rows else {}


def check_keep_maps(keep_maps: Any, *, owner: str) -> int:
    """Validate ``keep_maps`` (how many samples' maps to keep): an int >= 0."""
    if isinstance(keep_maps, bool) or not isinstance(keep_maps, (int, np.integer)) or keep_maps < 0:
        raise ValidationError(f"{owner}: keep_maps must be an int >= 0 (the number of samples whose maps are kept), "
                              f"got {keep_maps!r}")
    return int(keep_maps)


def _kept(state: MethodState, changed: list[np.ndarray], keep_maps: int) -> np.ndarray | None:
    """The trained model's magnitude map and each changed one (``changed``) of the first ``keep_maps`` samples,
    stacked as float32 ``(1 + len(changed), k, ...)``; ``None`` when ``keep_maps == 0``."""
    if keep_maps == 0:
        return None
    return np.stack([state.comparer.reference.magnitude[:keep_maps],
                     *[m[:keep_maps] for m in changed]]).astype(np.float32)


# ---------------------------------------------------------------------------------------------- tests
def run_parameter_randomisation(model: nn.Module, inputs: Any, states: list[MethodState], *, mode: str,
                                seed: int, init: str, explain_args: Mapping[str, Any],
                                forward_kwargs: Mapping[str, Any] | None, progress: bool | None,
                                owner: str, keep_maps: int = 0) -> dict[str, RandomisationResult]:
    """The model-parameter randomisation test for prepared methods (see :func:`model_parameter_randomisation`)."""
    if mode not in MODES:
        raise ValidationError(f"{owner}: mode must be one of {list(MODES)}, got {mode!r}")
    if init not in INITS:
        raise ValidationError(f"{owner}: init must be one of {list(INITS)}, got {init!r}")
    layers = parameter_layers(model, inputs, forward_kwargs=forward_kwargs, owner=owner)
    seeds = {name: derive_seed(seed, i) for i, name in enumerate(layers)}
    top_down = list(reversed(layers))
    rows: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in states}
    kept: dict[str, list[np.ndarray]] = {s.name: [] for s in states}
    randomised = copy.deepcopy(model)
    bound = {s.name: rebind(s.explainer, model, randomised) for s in states}
    with progress_bar(len(top_down) * len(states), desc=f"{mode} randomisation", progress=progress,
                      unit="explanation") as bar:
        for name in top_down:
            layer = randomised.get_submodule(name)
            randomise_layer(layer, seed=seeds[name], init=init)
            for state in states:
                maps = _explain_maps(state, bound[state.name], inputs, explain_args)
                rows[state.name].append(state.comparer.compare(maps))
                if keep_maps:
                    kept[state.name].append(maps.magnitude[:keep_maps].astype(np.float32))
                bar.update(1)
            if mode == "independent":  # put the trained weights back before the next layer
                layer.load_state_dict(model.get_submodule(name).state_dict())
    return {s.name: RandomisationResult(mode, s.name, list(top_down), _stack(rows[s.name]),
                                        {"seed": seed, "init": init}, _kept(s, kept[s.name], keep_maps))
            for s in states}


def run_random_logit(model: nn.Module, inputs: Any, states: list[MethodState], *, seed: int,
                     explain_args: Mapping[str, Any], forward_kwargs: Mapping[str, Any] | None,
                     progress: bool | None, owner: str, keep_maps: int = 0) -> dict[str, RandomisationResult]:
    """The random-logit test for prepared methods (see :func:`random_logit`)."""
    # the number of classes from a one-row probe; all rows only when a method's predicted classes are needed
    output = _model_output(model, inputs, forward_kwargs, owner, rows=1)
    n_classes = int(output.shape[1]) if output.ndim == 2 else 1
    if n_classes < 2:
        raise ValidationError(f"{owner}: the random-logit test needs a model with >= 2 outputs (classes), got output "
                              f"shape {tuple(output.shape)}")
    rng = numpy_generator(derive_seed(seed, _LOGIT_STREAM))
    out = {}
    with progress_bar(len(states), desc="random-logit test", progress=progress, unit="explanation") as bar:
        for state in states:
            if state.reference.targets is not None:
                classes = np.asarray(state.reference.targets, dtype=np.int64)
            elif state.target is None:  # a method that does not report its target: the predicted class
                classes = _model_output(model, inputs, forward_kwargs, owner).argmax(dim=1).cpu().numpy()
            else:
                raise ValidationError(f"{owner}: the random-logit test needs class targets (None, an int or one "
                                      f"int per sample); {state.name} explained {state.reference.target_description!r}")
            other = (classes + rng.integers(1, n_classes, size=classes.shape)) % n_classes
            maps = _explain_maps(state, state.explainer, inputs, explain_args, target=other)
            similarity = {m: v[None] for m, v in state.comparer.compare(maps).items()}
            out[state.name] = RandomisationResult("random_logit", state.name, ["random logit"], similarity,
                                                  {"seed": seed, "random_classes": other},
                                                  _kept(state, [maps.magnitude], keep_maps))
            bar.update(1)
    return out


def run_data_randomisation(model: nn.Module, inputs: Any, states: list[MethodState], *,
                           train_fn: Callable[[Any], nn.Module], labels: Any, seed: int,
                           explain_args: Mapping[str, Any], progress: bool | None,
                           owner: str, keep_maps: int = 0) -> dict[str, RandomisationResult]:
    """The data-randomisation test for prepared methods (see :func:`data_randomisation`)."""
    if not callable(train_fn):
        raise ValidationError(f"{owner}: train_fn must be a callable labels -> trained model, got "
                              f"{describe_value(train_fn)}")
    permuted = permute_labels(labels, seed=derive_seed(seed, _LABEL_STREAM), owner=owner)
    trained = train_fn(permuted)
    if not isinstance(trained, nn.Module):
        raise ValidationError(f"{owner}: train_fn must return an nn.Module, got {describe_value(trained)}")
    out = {}
    with progress_bar(len(states), desc="data randomisation", progress=progress, unit="explanation") as bar:
        for state in states:
            maps = _explain_maps(state, rebind(state.explainer, model, trained), inputs, explain_args)
            similarity = {m: v[None] for m, v in state.comparer.compare(maps).items()}
            out[state.name] = RandomisationResult("data", state.name, ["random labels"], similarity, {"seed": seed},
                                                  _kept(state, [maps.magnitude], keep_maps))
            bar.update(1)
    return out


def permute_labels(labels: Any, *, seed: int, owner: str = "permute_labels") -> Any:
    """``labels`` (tensor, array or list) in a seeded random order, same type and device."""
    if isinstance(labels, torch.Tensor):
        order = torch.randperm(labels.shape[0], generator=torch_generator(seed)).to(labels.device)
        return labels[order]
    array = np.asarray(labels)
    if array.ndim < 1 or array.shape[0] < 2:
        raise ValidationError(f"{owner}: labels must hold at least two training labels, got {describe_value(labels)}")
    permuted = array[numpy_generator(seed).permutation(array.shape[0])]
    return permuted.tolist() if isinstance(labels, list) else permuted


def _model_output(model: nn.Module, inputs: Any, forward_kwargs: Mapping[str, Any] | None,
                  owner: str, rows: int | None = None) -> torch.Tensor:
    """The model's output on ``inputs`` (only the first ``rows`` samples when given), without gradients."""
    adapter = ModelAdapter(model, owner=owner)
    batch = prepare_inputs(inputs, owner=owner, device=adapter.device, float_dtype=adapter.float_dtype)
    kwargs = prepare_forward_kwargs(forward_kwargs, n=batch.n, owner=owner, device=batch.tensors[0].device,
                                    float_dtype=adapter.float_dtype)
    tensors = batch.tensors
    if rows is not None and rows < batch.n:
        tensors = tuple(t[:rows] for t in tensors)
        kwargs = select_rows(kwargs, torch.arange(rows), batch.n)
    with adapter.eval_mode(), torch.no_grad():
        return adapter(tensors, kwargs)


# ---------------------------------------------------------------------------------------------- public API
@dataclass
class PreparedRun:
    model: nn.Module
    states: list[MethodState]
    seed: int
    explain_args: dict[str, Any]


def prepare_run(model: Any, inputs: Any, methods: Any, target: Any, *, measures: Any, seed: Any,
           method_params: Any, baseline: Any, forward_kwargs: Any, owner: str) -> PreparedRun:
    model = _module(model, owner)
    seed = resolve_seed(seed, owner=owner)
    measures = check_measures(measures, owner=owner)
    explainers = resolve_methods(model, methods, method_params, owner=owner)
    explain_args = {"baseline": baseline, "forward_kwargs": forward_kwargs}
    states = prepare_states(model, inputs, explainers, target, measures=measures, explain_args=explain_args)
    return PreparedRun(model, states, seed, explain_args)


def model_parameter_randomisation(model: nn.Module, inputs: Any, methods: Sequence[str | Explainer] | str,
                                  target: Any = None, *, mode: str = "cascading",
                                  measures: Sequence[str] = SIMILARITY_MEASURES, seed: int = 0, init: str = "reset",
                                  method_params: Mapping[str, Mapping[str, Any]] | None = None,
                                  baseline: Any = None, forward_kwargs: Mapping[str, Any] | None = None,
                                  progress: bool | None = None,
                                  keep_maps: int = DEFAULT_KEEP_MAPS) -> dict[str, RandomisationResult]:
    """Model-parameter randomisation test (Adebayo et al. 2018): similarity of each method's explanation of the
    trained model to its explanation after re-initialising layers, per layer step and sample.

    ``s_k(x) = sim(E(f, x), E(f_k, x))`` with ``f_k`` = ``f`` with the top k+1 layers randomised
    (``mode="cascading"``, output layer first) or only the k-th layer from the top (``"independent"``).
    LOWER is better: a method that explains the model must change when the model is destroyed; a method that
    ignores the model stays at 1.

    Args:
        model: the trained ``nn.Module`` (never modified: a deep copy is randomised).
        inputs: the samples to explain (one batched explain call per method and step).
        methods: registry names (``"saliency"``) or Explainer instances built on ``model``.
        target: as in ``Explainer.explain``; the randomised models explain the same classes.
        mode: ``"cascading"`` or ``"independent"``.
        measures: names from :data:`~lumos.metrics.similarity.SIMILARITY_MEASURES`.
        seed: seed of the re-initialisation (layer ``i`` uses ``derive_seed(seed, i)``).
        init: ``"reset"`` (each layer's ``reset_parameters``) or ``"normal"`` (see the module doc).
        method_params: ``{name: {parameter: value}}`` for methods given by name.
        baseline, forward_kwargs: passed to every explain call.
        progress: progress bar (``None``: on a terminal).
        keep_maps: keep the maps of the first ``keep_maps`` samples (``result.maps``; 0 keeps none).

    Returns:
        ``{method name: RandomisationResult}`` with ``steps`` the layers from the output down.

    Example::

        res = model_parameter_randomisation(model, x, ["saliency", "guided_backprop"], seed=0)
        res["saliency"].mean("spearman_abs")      # one value per layer step
    """
    owner = "model_parameter_randomisation"
    keep_maps = check_keep_maps(keep_maps, owner=owner)
    setup = prepare_run(model, inputs, methods, target, measures=measures, seed=seed, method_params=method_params,
                   baseline=baseline, forward_kwargs=forward_kwargs, owner=owner)
    return run_parameter_randomisation(setup.model, inputs, setup.states, mode=mode, seed=setup.seed, init=init,
                                       explain_args=setup.explain_args, forward_kwargs=forward_kwargs,
                                       progress=progress, owner=owner, keep_maps=keep_maps)


def random_logit(model: nn.Module, inputs: Any, methods: Sequence[str | Explainer] | str, target: Any = None, *,
                 measures: Sequence[str] = SIMILARITY_MEASURES, seed: int = 0,
                 method_params: Mapping[str, Mapping[str, Any]] | None = None, baseline: Any = None,
                 forward_kwargs: Mapping[str, Any] | None = None, progress: bool | None = None,
                 keep_maps: int = DEFAULT_KEEP_MAPS) -> dict[str, RandomisationResult]:
    """Random-logit test (Sixt, Granz & Landgraf 2020): similarity of the explanation of each sample's class
    ``c`` (``target``, default the predicted class) and of a random other class ``c' != c`` (seeded).

    ``s(x) = sim(E_c(f, x), E_c'(f, x))``; LOWER is better: a class-insensitive method explains every class
    alike. Arguments as in :func:`model_parameter_randomisation`.

    Example::

        random_logit(model, x, ["saliency"], seed=0)["saliency"].final("spearman_abs")
    """
    owner = "random_logit"
    keep_maps = check_keep_maps(keep_maps, owner=owner)
    setup = prepare_run(model, inputs, methods, target, measures=measures, seed=seed, method_params=method_params,
                   baseline=baseline, forward_kwargs=forward_kwargs, owner=owner)
    return run_random_logit(setup.model, inputs, setup.states, seed=setup.seed, explain_args=setup.explain_args,
                            forward_kwargs=forward_kwargs, progress=progress, owner=owner, keep_maps=keep_maps)


def data_randomisation(model: nn.Module, inputs: Any, methods: Sequence[str | Explainer] | str, *,
                       train_fn: Callable[[Any], nn.Module], labels: Any, target: Any = None,
                       measures: Sequence[str] = SIMILARITY_MEASURES, seed: int = 0,
                       method_params: Mapping[str, Mapping[str, Any]] | None = None, baseline: Any = None,
                       forward_kwargs: Mapping[str, Any] | None = None, progress: bool | None = None,
                       keep_maps: int = DEFAULT_KEEP_MAPS) -> dict[str, RandomisationResult]:
    """Data-randomisation test (Adebayo et al. 2018, sec. 3.2): similarity of each method's explanation of the
    trained model and of a model trained on randomly permuted labels.

    ``train_fn(permuted_labels) -> model`` is called once; ``labels`` are the training labels (tensor, array or
    list), permuted with a generator seeded from ``seed``. ``s(x) = sim(E(f, x), E(f_random, x))``; LOWER is
    better. Other arguments as in :func:`model_parameter_randomisation`.

    Example::

        data_randomisation(model, x, ["saliency"], train_fn=lambda y: fit(x_train, y), labels=y_train)
    """
    owner = "data_randomisation"
    keep_maps = check_keep_maps(keep_maps, owner=owner)
    setup = prepare_run(model, inputs, methods, target, measures=measures, seed=seed, method_params=method_params,
                   baseline=baseline, forward_kwargs=forward_kwargs, owner=owner)
    return run_data_randomisation(setup.model, inputs, setup.states, train_fn=train_fn, labels=labels,
                                  seed=setup.seed, explain_args=setup.explain_args, progress=progress, owner=owner,
                                  keep_maps=keep_maps)


def iter_results(results: Mapping[str, Mapping[str, RandomisationResult]]) -> Iterator[RandomisationResult]:
    """Every result of ``{test: {method: result}}``."""
    for by_method in results.values():
        yield from by_method.values()
