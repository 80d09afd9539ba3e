"""The one base class of every lumos method: :class:`Explainer`.

``__init__`` stores configuration only (no computation, no hooks, no change to the model);
:meth:`Explainer.explain` is the same for every method: validate and normalise inputs, target and
baseline, enter the model's eval-mode guard, call the method's :meth:`Explainer._attribute`, check the
result and wrap it into an :class:`~lumos.explanation.Explanation`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..core.batching import check_batch_size
from ..core.gradients import GradientEngine
from ..core.inputs import InputBatch, all_finite, prepare_forward_kwargs, prepare_inputs
from ..core.model import ModelAdapter, OutputSelector
from ..core.seeding import resolve_seed
from ..core.targets import Target, as_target
from ..errors import (
    LumosWarning,
    UnknownParameterError,
    UnsupportedModelError,
    ValidationError,
    describe_value,
)
from ..explanation import Explanation, as_numpy, stack_names


@dataclass
class Attribution:
    """What a method's ``_attribute`` returns: attributions (one tensor per input, or the layer's output),
    the target score per sample, and diagnostics."""

    attributions: tuple[torch.Tensor, ...]
    scores: torch.Tensor | None
    extras: dict[str, Any] = field(default_factory=dict)
    #: the target as resolved by the method (e.g. predicted class fixed); default: the context's target
    target: Target | None = None
    #: where the attributions live when the method decides it (CAM maps): ``True`` the inputs' space (shape
    #: checked against the inputs) even with ``layer=``; ``False`` the space of the layer ``layer_name`` (e.g. a
    #: map at the layer's resolution); ``None`` as the ``layer=`` argument says
    input_space: bool | None = None
    #: name of the layer the method used when it chose one itself (recorded in ``Explanation.layer`` when the
    #: attributions are in its space)
    layer_name: str | None = None


@dataclass
class ExplainContext:
    """Everything a method needs for one ``explain`` call."""

    adapter: ModelAdapter
    batch: InputBatch
    target: Target
    forward_kwargs: dict[str, Any]
    baseline: Any
    seed: int | None
    data_args: dict[str, Any]


class Explainer:
    """Base class of all methods.

    Class attributes describe the method for the registry, CLI, report and contract tests.

    Args:
        model: an ``nn.Module`` or a callable on tensors.
        layer: attribute to this layer's output (module or dotted name) instead of the inputs, where the
            method supports it.
        output: which part of a tuple/dict/ModelOutput result holds the scores (see ``ModelAdapter``).
        batch_size: most samples per model call; ``None`` chooses it from the memory budget. Results do
            not depend on it.
        seed: seed of a stochastic method; ``None`` draws one and records it in the Explanation.
        progress: show progress bars (``None``: on a terminal, unless ``LUMOS_PROGRESS=0``).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    requires_gradients: ClassVar[bool] = False
    supports_layer: ClassVar[bool] = False
    needs_baseline: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    #: the method explains through a spatial (or token) layer of the model: CNNs and ViTs, not MLPs
    needs_spatial_layer: ClassVar[bool] = False
    #: which models the method explains: ``"any"`` (torch modules, functions, numpy models as its gradient
    #: needs allow) or ``"trees"`` (fitted tree ensembles only)
    models: ClassVar[str] = "any"
    #: extra keyword arguments ``explain`` accepts besides the common ones (e.g. ``feature_groups``)
    data_arguments: ClassVar[tuple[str, ...]] = ()
    #: the method differentiates with respect to the inputs (or ``layer=``), so integer token ids need ``layer=``;
    #: ``False`` for methods whose gradients are taken inside the model (e.g. at attention maps)
    gradients_at_inputs: ClassVar[bool] = True
    reference: ClassVar[str] = ""

    def __init__(self, model: Any, *, layer: nn.Module | str | None = None, output: OutputSelector = None,
                 batch_size: int | None = None, seed: int | None = None, progress: bool | None = None,
                 **unknown: Any) -> None:
        owner = type(self).__name__
        if unknown:
            raise UnknownParameterError(
                f"{owner}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                f"valid parameters: {', '.join(type(self).parameter_names())}"
            )
        self.model = model
        self.adapter = ModelAdapter(model, output=output, owner=owner)
        if layer is not None and not self.supports_layer:
            raise ValidationError(f"{owner}: this method does not support layer=, got layer={layer!r}")
        if layer is not None and not isinstance(layer, (nn.Module, str)):
            raise ValidationError(f"{owner}: layer must be an nn.Module or a dotted module name, got {layer!r}")
        self.layer = layer
        self.output = output
        self.batch_size = check_batch_size(batch_size, owner=owner)
        if seed is not None:
            resolve_seed(seed, owner=owner)
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ configuration
    @classmethod
    def parameter_names(cls) -> list[str]:
        """Names of every keyword parameter of the method's ``__init__`` (its own and the base's)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for param in inspect.signature(init).parameters.values():
                if param.kind is inspect.Parameter.KEYWORD_ONLY:
                    names.add(param.name)
        return sorted(names)

    def get_params(self) -> dict[str, Any]:
        """The method's hyper-parameters, JSON-serialisable (recorded in every Explanation)."""
        return {}

    def _owner(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ the one entry point
    def explain(self, inputs: Any, target: Any = None, *, baseline: Any = None,
                forward_kwargs: Mapping[str, Any] | None = None,
                feature_names: Sequence[str] | None = None, **data_args: Any) -> Explanation:
        """Explain the model's ``target`` score for ``inputs``.

        Args:
            inputs: a tensor/array (batch first) or a tuple of them for a multi-input model.
            target: ``None`` (predicted class), an int, one int per sample, a callable ``output -> (batch,)``
                score, or a ``lumos.targets`` helper.
            baseline: the reference input of methods that need one (see each method).
            forward_kwargs: extra, non-attributed model arguments (e.g. an attention mask); tensors whose
                first dimension is the batch are split along with the samples.
            feature_names: names of the features of tabular inputs (for ``to_pandas``/``top_features``).

        Returns:
            An :class:`~lumos.explanation.Explanation` whose ``attributions`` mirror ``inputs``.
        """
        owner = self._owner()
        adapter = self.adapter
        if self.requires_gradients and not adapter.differentiable:
            raise UnsupportedModelError(
                f"{owner}: {describe_value(self.model)} is a numpy model (no gradients); use a model-agnostic "
                f"method instead: kernel_shap, permutation_shap, exact_shap, feature_ablation or occlusion"
            )
        device = adapter.device
        batch = prepare_inputs(inputs, owner=owner, device=device, float_dtype=adapter.float_dtype)
        if self.requires_gradients and self.gradients_at_inputs and self.layer is None and not batch.is_floating:
            raise ValidationError(
                f"{owner}: gradients need floating-point inputs, got {batch.describe()}. For token ids, "
                f"attribute to the embedding layer instead: {owner}(model, layer='embeddings')"
            )
        kwargs = prepare_forward_kwargs(forward_kwargs, n=batch.n, owner=owner, device=batch.tensors[0].device,
                                        float_dtype=adapter.float_dtype)
        resolved_target = as_target(target, owner=owner)
        seed = resolve_seed(self.seed, owner=owner) if self.stochastic else None
        context = ExplainContext(adapter, batch, resolved_target, kwargs, baseline, seed, dict(data_args))
        self._check_data_args(context)
        names = stack_names(feature_names, int(sum(np.prod(x.shape[1:]) for x in batch.tensors)), owner=owner)
        with adapter.eval_mode():
            result = self._attribute(context)
        return self._wrap(context, result, names)

    def _check_data_args(self, context: ExplainContext) -> None:
        unknown = sorted(set(context.data_args) - set(self.data_arguments))
        if unknown:
            accepted = ", ".join(["baseline", *self.data_arguments, "forward_kwargs", "feature_names"])
            raise ValidationError(
                f"{self._owner()}.explain: unexpected argument(s) {unknown}; accepted: {accepted}"
            )

    def _attribute(self, context: ExplainContext) -> Attribution:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for subclasses
    def _engine(self, context: ExplainContext, **kwargs: Any) -> GradientEngine:
        return GradientEngine(
            context.adapter, context.batch, context.forward_kwargs, context.target, layer=self.layer,
            batch_size=self.batch_size, progress=self.progress, owner=self._owner(), **kwargs,
        )

    def _wrap(self, context: ExplainContext, result: Attribution,
              names: list[str] | None) -> Explanation:
        batch = context.batch
        attributions = result.attributions
        input_space = self.layer is None if result.input_space is None else result.input_space
        if input_space:
            for i, (a, x) in enumerate(zip(attributions, batch.tensors, strict=True)):
                if tuple(a.shape) != tuple(x.shape):
                    raise RuntimeError(  # an internal error, not a user error
                        f"{self._owner()}: attributions[{i}] have shape {tuple(a.shape)}, inputs {tuple(x.shape)}"
                    )
            user_attr = batch.to_user(attributions)
        else:
            a = attributions[0].detach()
            user_attr = a.cpu().numpy() if batch.is_numpy else a.to(batch.devices[0])
        if not all(all_finite(a) for a in attributions):
            warnings.warn(f"{self._owner()}: some attributions are NaN or infinite", LumosWarning, stacklevel=3)
        target = result.target if result.target is not None else context.target
        indices = target.indices()
        if indices is not None and len(indices) == 1 and batch.n > 1:
            indices = np.repeat(indices, batch.n)
        extras = {k: (as_numpy(v) if isinstance(v, torch.Tensor) else v)
                  for k, v in result.extras.items()}
        return Explanation(
            attributions=user_attr,
            inputs=batch.to_user(batch.tensors),
            targets=None if indices is None else np.asarray(indices),
            scores=None if result.scores is None else as_numpy(result.scores),
            method=self.name,
            params=self.get_params(),
            target_description=target.describe(),
            seed=context.seed,
            layer=None if input_space else (result.layer_name or _layer_name(context.adapter, self.layer)),
            feature_names=names,
            extras=extras,
        )


def _layer_name(adapter: ModelAdapter, layer: nn.Module | str | None) -> str | None:
    if layer is None:
        return None
    return adapter.find_layer(layer)[0]

