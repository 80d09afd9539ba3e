"""The lumos error hierarchy.

Every error a user can cause names the owner (method or function), the argument, what is allowed and what
was given, e.g. ``ValidationError("IntegratedGradients: n_steps must be an int >= 1, got 0")``.
"""

from __future__ import annotations


class LumosError(Exception):
    """Base class of every error raised by lumos."""


class ValidationError(LumosError, ValueError):
    """An argument has the wrong type, shape or value (NaN, out of range, ...)."""


class UnknownParameterError(ValidationError, TypeError):
    """A method was given a hyper-parameter it does not have (e.g. a misspelt name)."""


class TargetError(ValidationError):
    """The ``target`` argument cannot be resolved against the model's output."""


class UnsupportedModelError(LumosError, TypeError):
    """The model cannot be explained by this method (e.g. not differentiable for a gradient method)."""


class ModelCallError(LumosError, RuntimeError):
    """Calling the model failed; the message carries the method, input shapes and the model's own error."""


class LumosWarning(UserWarning):
    """Warnings issued by lumos (e.g. a large completeness residual)."""


def describe_value(value: object) -> str:
    """A short description of ``value`` for error messages: type, shape and dtype where it has them."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
