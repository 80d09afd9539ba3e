"""Model adapter: one interface over an ``nn.Module``, a function on tensors, or a model on numpy arrays.

- picks the score tensor out of tuple/dict/Hugging Face ``ModelOutput`` results (``output=`` selector);
- runs the model in eval mode and restores, on exit and even when the call raised, the caller's train/eval
  mode, ``requires_grad`` flags and ``.grad`` of every parameter;
- computes on whatever device the model lives on;
- turns errors from inside the model into a :class:`~lumos.errors.ModelCallError` that names the method and
  the input shapes;
- calls models on numpy arrays (scikit-learn, XGBoost, LightGBM, any ``predict`` function): tensors are
  converted to numpy arrays on the CPU before the call and the result back to a tensor on the inputs' device.

How a numpy model is recognised (no guessing by trial calls):

1. an explicit :class:`NumpyModel` wrapper: ``NumpyModel(fn)`` for any callable on numpy arrays;
2. an estimator object that is not an ``nn.Module``, is not callable and has ``predict_proba`` or
   ``predict`` (``predict_proba`` is used when present: class probabilities are the scores);
3. a bound method named ``predict``, ``predict_proba``, ``predict_log_proba`` or ``decision_function`` of an
   object that is not an ``nn.Module`` (``clf.predict_proba``, ``booster.predict``).

Everything else callable is treated as a function on tensors. Numpy models are not differentiable
(:attr:`ModelAdapter.differentiable` is ``False``): explain them with the model-agnostic methods
(``kernel_shap``, ``permutation_shap``, ``exact_shap``, ``feature_ablation``, ``occlusion``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LumosError, ModelCallError, UnsupportedModelError, ValidationError, describe_value

OutputSelector = int | str | Callable[[Any], torch.Tensor] | None

#: names of bound methods recognised as numpy predict functions
NUMPY_METHOD_NAMES = ("predict", "predict_proba", "predict_log_proba", "decision_function")


class NumpyModel:
    """Marks ``fn`` as a model on numpy arrays: lumos calls it with numpy arrays and converts its result.

    ``fn(*arrays) -> array`` of one row (or one value) per sample. Use it for plain functions on numpy
    arrays; estimators and their ``predict``/``predict_proba`` methods are recognised without it.

    Example::

        KernelSHAP(NumpyModel(lambda a: np.tanh(a).sum(1))).explain(x, baseline=background)
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise UnsupportedModelError(f"NumpyModel: fn must be callable, got {describe_value(fn)}")
        self.fn = fn

    def __call__(self, *arrays: np.ndarray, **kwargs: Any) -> Any:
        return self.fn(*arrays, **kwargs)

    def __repr__(self) -> str:
        return f"NumpyModel({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"


def numpy_callable(model: Any) -> Callable[..., Any] | None:
    """The function to call on numpy arrays when ``model`` is a numpy model (see the module doc), else ``None``."""
    if isinstance(model, NumpyModel):
        return model.fn
    if isinstance(model, nn.Module):
        return None
    owner = getattr(model, "__self__", None)
    if owner is not None and not isinstance(owner, nn.Module) and getattr(model, "__name__", "") in NUMPY_METHOD_NAMES:
        return model
    if not callable(model):
        for name in ("predict_proba", "predict"):
            method = getattr(model, name, None)
            if callable(method):
                return method
    return None


@contextlib.contextmanager
def parameters_requiring_grad(module: nn.Module | None, requires_grad: bool) -> Iterator[None]:
    """Every floating parameter of ``module`` has ``requires_grad=requires_grad`` inside the block; the flags
    that were changed are restored afterwards, even on error.

    ``False``: operations on parameters alone become constants (DeepLIFT reads "depends on the input" from
    ``requires_grad``) and no weight-gradient graph is built (LRP). ``True``: gradients reach intermediate
    values of a frozen model fed integer ids (attention maps); they are taken with ``torch.autograd.grad``,
    so no ``.grad`` is written.
    """
    changed = [] if module is None else [p for p in module.parameters()
                                         if p.requires_grad != requires_grad and p.is_floating_point()]
    try:
        for p in changed:
            p.requires_grad_(requires_grad)
        yield
    finally:
        for p in changed:
            p.requires_grad_(not requires_grad)


class ModelAdapter:
    """Wraps ``model`` for lumos methods.

    Args:
        model: an ``nn.Module`` or a callable taking tensors.
        output: which part of the model's result holds the scores: ``None`` (a tensor; the first element of a
            tuple; the ``logits`` entry of a dict/ModelOutput), an int (tuple position), a str (dict key or
            attribute), or a callable ``result -> tensor``.
        owner: name used in error messages.
    """

    def __init__(self, model: Any, *, output: OutputSelector = None, owner: str = "lumos") -> None:
        self._numpy_fn = numpy_callable(model)
        if not callable(model) and self._numpy_fn is None:
            raise UnsupportedModelError(
                f"{owner}: model must be a torch.nn.Module, a callable, or an estimator with predict_proba/predict, "
                f"got {describe_value(model)}"
            )
        if output is not None and not isinstance(output, (int, str)) and not callable(output):
            raise ValidationError(
                f"{owner}: output must be None, an int, a str or a callable, got {describe_value(output)}"
            )
        self.model = model
        self.output = output
        self.owner = owner

    # ------------------------------------------------------------------ properties
    @property
    def module(self) -> nn.Module | None:
        return self.model if isinstance(self.model, nn.Module) else None

    @property
    def is_numpy(self) -> bool:
        """Whether the model is called on numpy arrays (see the module doc for how this is decided)."""
        return self._numpy_fn is not None

    @property
    def differentiable(self) -> bool:
        """Whether gradients can flow through the model (``False`` for numpy models)."""
        return self._numpy_fn is None

    @property
    def device(self) -> torch.device | None:
        """The device of the model's first parameter or buffer (``None`` for a plain function)."""
        module = self.module
        if module is None:
            return None
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
        return None

    @property
    def float_dtype(self) -> torch.dtype | None:
        """The floating dtype of the model's parameters (``None`` for a function: inputs keep theirs).

        Floating inputs are cast to it, so a float64 array explains a float32 model.
        """
        module = self.module
        if module is not None:
            for tensor in module.parameters():
                if tensor.is_floating_point():
                    return tensor.dtype
        return None

    # ------------------------------------------------------------------ state
    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside the block; mode, ``requires_grad`` and ``.grad`` restored after, even on error."""
        module = self.module
        if module is None:
            yield
            return
        modules = list(module.modules())
        training = {id(m) for m in modules if m.training}
        params = [(p, p.requires_grad, p.grad) for p in module.parameters()]
        try:
            if training:
                module.eval()
            yield
        finally:
            for m in modules:  # also undoes a mode change made by the model itself
                was_training = id(m) in training
                if m.training != was_training:
                    m.training = was_training
            for p, requires_grad, grad in params:
                if p.requires_grad != requires_grad:
                    p.requires_grad_(requires_grad)
                if p.grad is not grad:
                    p.grad = grad

    # ------------------------------------------------------------------ layers
    def find_layer(self, layer: nn.Module | str) -> tuple[str, nn.Module]:
        """Resolve ``layer`` (a module or a dotted name such as ``"features.3"``) to ``(name, module)``."""
        module = self.module
        if module is None:
            raise UnsupportedModelError(
                f"{self.owner}: layer= needs a torch.nn.Module model, got a {type(self.model).__name__}"
            )
        if isinstance(layer, str):
            try:
                return layer, module.get_submodule(layer)
            except AttributeError:
                names = [name for name, _ in module.named_modules() if name]
                shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
                raise ValidationError(
                    f"{self.owner}: layer {layer!r} is not a submodule of the model; available: {shown}"
                ) from None
        if isinstance(layer, nn.Module):
            for name, candidate in module.named_modules():
                if candidate is layer:
                    return name or "<model>", candidate
            raise ValidationError(
                f"{self.owner}: layer {type(layer).__name__} is not a submodule of the model being explained"
            )
        raise ValidationError(
            f"{self.owner}: layer must be an nn.Module or a dotted module name, got {describe_value(layer)}"
        )

    # ------------------------------------------------------------------ calling
    def select_output(self, result: Any) -> torch.Tensor:
        """Pick the score tensor out of the model's raw result (see ``output=``)."""
        selector = self.output
        value = result
        if callable(selector) and not isinstance(selector, (int, str)):
            value = selector(result)
        elif isinstance(selector, int):
            try:
                value = result[selector]
            except (IndexError, KeyError, TypeError) as exc:
                raise ValidationError(
                    f"{self.owner}: output={selector} cannot index the model's result {describe_value(result)}"
                ) from exc
        elif isinstance(selector, str):
            if isinstance(result, Mapping) and selector in result:
                value = result[selector]
            elif hasattr(result, selector):
                value = getattr(result, selector)
            else:
                keys = list(result.keys()) if isinstance(result, Mapping) else []
                raise ValidationError(
                    f"{self.owner}: output={selector!r} is not in the model's result (keys: {keys})"
                )
        elif isinstance(result, Mapping):
            if "logits" in result:
                value = result["logits"]
            else:
                tensors = [k for k, v in result.items() if isinstance(v, torch.Tensor)]
                if len(tensors) != 1:
                    raise ValidationError(
                        f"{self.owner}: the model returns a dict with keys {list(result.keys())}; "
                        f"say which holds the scores with output='key'"
                    )
                value = result[tensors[0]]
        elif isinstance(result, (tuple, list)):
            value = result[0] if result else result
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise ValidationError(
                f"{self.owner}: the model's output must be a tensor (or contain one, see output=), "
                f"got {describe_value(value)}"
            )
        return value

    def __call__(self, inputs: tuple[torch.Tensor, ...], kwargs: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Call the model on ``inputs`` and return the selected output tensor."""
        try:
            if self._numpy_fn is not None:
                result = self._call_numpy(inputs, kwargs)
            else:
                result = self.model(*inputs, **(kwargs or {}))
        except LumosError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with context below
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
            raise ModelCallError(
                f"{self.owner}: calling the model on inputs of shape {shapes} failed: "
                f"{type(exc).__name__}: {exc}. Check that the inputs have the shape and dtype the model expects."
            ) from exc
        output = self.select_output(result)
        if self._numpy_fn is not None and inputs and output.device != inputs[0].device:
            output = output.to(inputs[0].device)
        if output.ndim == 0:
            raise ValidationError(
                f"{self.owner}: the model returned a 0-d tensor; it must return one row per sample"
            )
        if inputs and output.shape[0] != inputs[0].shape[0]:
            raise ValidationError(
                f"{self.owner}: the model returned {output.shape[0]} rows for {inputs[0].shape[0]} samples; "
                f"the first output dimension must be the batch"
            )
        return output

    def _call_numpy(self, inputs: tuple[torch.Tensor, ...], kwargs: Mapping[str, Any] | None) -> Any:
        """Call a numpy model: tensors to numpy arrays (CPU), a numeric result to a floating array."""
        arrays = [t.detach().cpu().numpy() for t in inputs]
        extra = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in (kwargs or {}).items()}
        result = self._numpy_fn(*arrays, **extra)
        if isinstance(result, torch.Tensor):
            return result
        try:
            array = np.asarray(result)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"{self.owner}: the numpy model must return an array with one row per sample, "
                f"got {describe_value(result)}"
            ) from exc
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValidationError(
                f"{self.owner}: the numpy model must return numbers (one row per sample), got an array of dtype "
                f"{array.dtype}; for a classifier's labels use predict_proba"
            )
        if not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        return np.ascontiguousarray(array)
