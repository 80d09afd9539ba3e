"""Method registry: every explainer class is registered under a snake_case name with its metadata."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: register ``cls`` under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__name__} needs a class attribute `name` to be registered")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise TypeError(f"method name {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def get_method(name: str) -> type:
    """The explainer class registered as ``name``."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    known = ", ".join(sorted(_REGISTRY))
    raise ValidationError(f"method must be one of: {known}; got {name!r}")


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def method_info() -> list[dict[str, Any]]:
    """Metadata of every registered method (for the CLI, the report and the README table)."""
    rows = []
    for name in sorted(_REGISTRY):
        cls = _REGISTRY[name]
        rows.append({
            "name": name,
            "class": cls.__name__,
            "family": cls.family,
            "requires_gradients": cls.requires_gradients,
            "supports_layer": cls.supports_layer,
            "needs_baseline": cls.needs_baseline,
            "stochastic": cls.stochastic,
            "needs_spatial_layer": getattr(cls, "needs_spatial_layer", False),
            "models": getattr(cls, "models", "any"),
            "reference": cls.reference,
        })
    return rows
