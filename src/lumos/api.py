"""The one-line shortcut: ``lumos.explain(model, x, method="integrated_gradients", target=3, n_steps=32)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .core.registry import get_method
from .explanation import Explanation
from .methods.base import Explainer

#: keyword arguments of ``explain()`` (data), as opposed to the method's configuration
_DATA_ARGS = ("baseline", "forward_kwargs", "feature_names")


def explain(model: Any, inputs: Any, method: str = "integrated_gradients", target: Any = None, *,
            baseline: Any = None, forward_kwargs: Mapping[str, Any] | None = None,
            feature_names: Sequence[str] | None = None, **params: Any) -> Explanation:
    """Explain ``model`` at ``inputs`` with the registered ``method``.

    ``params`` configure the method (e.g. ``n_steps``, ``layer``, ``batch_size``, ``seed``); ``baseline``,
    ``forward_kwargs``, ``feature_names`` and the method's own data arguments (``cls.data_arguments``, e.g.
    ``feature_groups``) are passed to its ``explain``.

    Example::

        e = lumos.explain(model, x, method="integrated_gradients", target=3, n_steps=50)
        e.attributions.shape == x.shape
    """
    cls: type[Explainer] = get_method(method)
    data = {key: params.pop(key) for key in cls.data_arguments if key in params}  # e.g. feature_groups
    explainer = cls(model, **params)
    return explainer.explain(inputs, target, baseline=baseline, forward_kwargs=forward_kwargs,
                             feature_names=feature_names, **data)
