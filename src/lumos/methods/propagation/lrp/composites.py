"""LRP composites: which rule applies to which layer.

A :class:`Composite` chooses the rule of every executed linear operation (linear layer, convolution,
unmerged batch norm) from, in this order: the layer's name (``"classifier.3"``), the composite's rule for
the first layer (the layer nearest the input: z^B or flat), the layer's type (``nn.Conv2d``; a functional
``F.conv2d`` call counts as an ``nn.Conv2d``), then its default rule.

Named composites (Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview"; Kohlbrenner et
al. 2020, "Towards Best Practice in Explaining Neural Network Decisions with LRP", IJCNN):

- ``"epsilon"``: Epsilon everywhere;
- ``"epsilon_plus"``: Epsilon on dense layers, ZPlus on convolutions;
- ``"epsilon_plus_flat"``: as ``epsilon_plus``, Flat on the first layer;
- ``"epsilon_gamma_box"``: Epsilon on dense layers, Gamma(0.25) on convolutions, ZBox(low, high) on the
  first layer (needs ``low`` and ``high``);
- ``"epsilon_alpha2_beta1"``: Epsilon on dense layers, AlphaBeta(2, 1) on convolutions.

Example::

    Composite({nn.Conv2d: Gamma(0.25), "classifier.3": Epsilon(1e-6)}, default=Epsilon())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ....errors import ValidationError
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, ZBox, ZPlus

COMPOSITE_NAMES = ("epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")

_CONV_TYPES = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def proxy_type(kind: str, n_dims: int) -> type[nn.Module]:
    """The module type a functional operation stands for (``F.conv2d`` -> ``nn.Conv2d``)."""
    if kind == "conv":
        return _CONV_TYPES.get(n_dims, nn.Conv2d)
    if kind == "affine":
        return _BatchNorm
    return nn.Linear


class Composite:
    """Rules by layer name, first layer, layer type and default.

    Args:
        layer_rules: ``{module type or dotted name: rule}``; names beat types; among types the first
            matching entry wins.
        default: rule of every linear operation no entry matches.
        first: rule of the first layer(s) (the linear operations nearest the inputs), or ``None``.
        name: shown in ``describe()`` and recorded in the explanation.
    """

    def __init__(self, layer_rules: Mapping[Any, Rule] | None = None, *, default: Rule | None = None,
                 first: Rule | None = None, name: str = "custom") -> None:
        self.by_name: dict[str, Rule] = {}
        self.by_type: list[tuple[type, Rule]] = []
        for key, rule in (layer_rules or {}).items():
            _check_rule(key, rule)
            if isinstance(key, str):
                self.by_name[key] = rule
            elif isinstance(key, type) and issubclass(key, nn.Module):
                self.by_type.append((key, rule))
            else:
                raise ValidationError(
                    f"LRP: composite keys must be nn.Module types (nn.Conv2d) or dotted layer names "
                    f"('features.0'), got {key!r}"
                )
        self.default = default if default is not None else Epsilon()
        _check_rule("default", self.default)
        if first is not None:
            _check_rule("first", first)
        self.first = first
        self.name = name

    def check_names(self, model: nn.Module | None) -> None:
        """Every layer name of the mapping is a submodule of ``model``."""
        if not self.by_name:
            return
        names = {n for n, _ in model.named_modules()} if model is not None else set()
        missing = [n for n in self.by_name if n not in names]
        if missing:
            shown = ", ".join(sorted(n for n in names if n)[:30])
            raise ValidationError(f"LRP: composite names layer(s) {missing} not in the model; available: {shown}")

    def rule_for(self, name: str | None, module: nn.Module | None, kind: str, n_dims: int, first: bool) -> Rule:
        """The rule of one executed linear operation (``module`` is ``None`` for a functional call)."""
        if name is not None and name in self.by_name:
            return self.by_name[name]
        if first and self.first is not None:
            return self.first
        for key, rule in self.by_type:
            if (isinstance(module, key) if module is not None else issubclass(proxy_type(kind, n_dims), key)):
                return rule
        return self.default

    def describe(self) -> str:
        parts = [f"{k}: {r.describe()}" for k, r in self.by_name.items()]
        parts += [f"{k.__name__}: {r.describe()}" for k, r in self.by_type]
        if self.first is not None:
            parts.append(f"first layer: {self.first.describe()}")
        parts.append(f"default: {self.default.describe()}")
        return f"{self.name} ({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"Composite({self.describe()})"


def _check_rule(key: Any, rule: Any) -> None:
    if not isinstance(rule, Rule):
        raise ValidationError(f"LRP: the rule for {key!r} must be an LRP rule (Epsilon(), ZPlus(), ...), got {rule!r}")
    if isinstance(rule, Pass):
        raise ValidationError(f"LRP: Pass() is the rule of elementwise activations, not of a layer ({key!r})")


def named_composite(name: str, *, epsilon: float, low: Any = None, high: Any = None) -> Composite:
    """One of :data:`COMPOSITE_NAMES` (``low``/``high`` bound the input domain for ``epsilon_gamma_box``)."""
    dense = Epsilon(epsilon)
    if name == "epsilon":
        return Composite(default=dense, name=name)
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    if name in ("epsilon_plus", "epsilon_plus_flat"):
        first = Flat() if name == "epsilon_plus_flat" else None
        return Composite(dict.fromkeys(conv_types, ZPlus()), default=dense, first=first, name=name)
    if name == "epsilon_gamma_box":
        if low is None or high is None:
            raise ValidationError(
                "LRP: composite='epsilon_gamma_box' needs the input domain's bounds: low= and high= "
                f"(numbers or per-channel tensors), got low={low!r}, high={high!r}"
            )
        return Composite(dict.fromkeys(conv_types, Gamma(0.25)), default=dense, first=ZBox(low, high), name=name)
    if name == "epsilon_alpha2_beta1":
        return Composite(dict.fromkeys(conv_types, AlphaBeta(2.0, 1.0)), default=dense, name=name)
    raise ValidationError(
        f"LRP: composite must be one of {list(COMPOSITE_NAMES)}, a Composite, or a mapping "
        f"{{layer type or name: rule}}, got {name!r}"
    )


def as_composite(composite: Any, *, epsilon: float, low: Any = None, high: Any = None) -> Composite:
    """Normalise the ``composite=`` argument of :class:`LRP`."""
    if composite is None:
        return named_composite("epsilon", epsilon=epsilon)
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str):
        return named_composite(composite, epsilon=epsilon, low=low, high=high)
    if isinstance(composite, Mapping):
        return Composite(composite, default=Epsilon(epsilon), name="custom")
    raise ValidationError(
        f"LRP: composite must be one of {list(COMPOSITE_NAMES)}, a Composite, or a mapping "
        f"{{layer type or name: rule}}, got {composite!r}"
    )
