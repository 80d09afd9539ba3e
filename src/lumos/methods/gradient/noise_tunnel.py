"""Noise tunnel: SmoothGrad / SmoothGrad^2 / VarGrad averaging over ANY registered method."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...core.registry import get_method, method_names, register
from ...core.seeding import derive_seed, torch_generator
from ...core.targets import Expanded
from ...errors import ValidationError
from ..base import Attribution, ExplainContext, Explainer

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def _repeat_per_sample(value: Any, n: int, factor: int) -> Any:
    """Repeat per-sample tensors (first dimension ``n``) ``factor`` times; leave the rest alone."""
    if isinstance(value, list):
        return [_repeat_per_sample(v, n, factor) for v in value]
    if isinstance(value, tuple):
        return tuple(_repeat_per_sample(v, n, factor) for v in value)
    if isinstance(value, dict):
        return {k: _repeat_per_sample(v, n, factor) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
        return value.repeat_interleave(factor, dim=0)
    if isinstance(value, np.ndarray) and value.ndim > 0 and value.shape[0] == n:
        return np.repeat(value, factor, axis=0)
    return value


def _repeat_baseline(value: Any, inputs: tuple[torch.Tensor, ...], factor: int) -> Any:
    """Repeat per-sample baselines ``factor`` times; leave baselines shared by all samples alone.

    A baseline is per-sample when it has exactly its input's batch shape (batch, *shape); a number, one
    sample's shape or a background set of another size is shared (a background set with exactly ``batch``
    rows is repeated too, which keeps its distribution). Tuples hold one baseline per input; lists several.
    """
    if isinstance(value, list):
        return [_repeat_baseline(v, inputs, factor) for v in value]
    if isinstance(value, tuple):
        return tuple(_repeat_baseline(v, (x,), factor) for v, x in zip(value, inputs, strict=False))
    if isinstance(value, (torch.Tensor, np.ndarray)) and len(inputs) == 1:
        if tuple(value.shape) == tuple(inputs[0].shape):
            if isinstance(value, torch.Tensor):
                return value.repeat_interleave(factor, dim=0)
            return np.repeat(value, factor, axis=0)
    return value


@register
class NoiseTunnel(Explainer):
    """Average any method's attributions over noisy copies of the input.

    For ``m`` copies ``x + e_j``, ``e_j ~ N(0, sigma^2)`` with ``sigma = noise_level * (max(x) - min(x))``
    per sample:

    - ``smoothgrad``: ``mean_j A(x + e_j)`` (Smilkov et al. 2017, arXiv:1706.03825);
    - ``smoothgrad_sq``: ``mean_j A(x + e_j)^2`` (Hooker et al. 2019);
    - ``vargrad``: ``var_j A(x + e_j)`` (Adebayo et al. 2018, arXiv:1810.03307).

    The target is resolved on the clean input (the predicted class of ``x``, not of each noisy copy), and
    all ``batch * n_samples`` copies go through the wrapped method's batching in one call. Per-sample
    baselines (shape (batch, *shape)) follow their sample's copies; a stochastic base method draws from a seed
    derived from ``seed``, independent of the noise.

    Args:
        base_method: the method to smooth: a registered name or an Explainer class.
        n_samples: noisy copies per sample.
        noise_level: noise standard deviation as a fraction of each sample's value range.
        kind: ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"``.
        base_params: hyper-parameters of the wrapped method.

    Example::

        NoiseTunnel(model, base_method="integrated_gradients", n_samples=10, seed=0,
                    base_params={"n_steps": 16})
    """

    name: ClassVar[str] = "noise_tunnel"
    family: ClassVar[str] = "gradient"
    requires_gradients: ClassVar[bool] = False
    supports_layer: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Smilkov et al. 2017, arXiv:1706.03825; Adebayo et al. 2018, arXiv:1810.03307"
    default_method: ClassVar[str | None] = None
    default_kind: ClassVar[str] = "smoothgrad"

    def __init__(self, model: Any, *, base_method: str | type | None = None, n_samples: int = 25,
                 noise_level: float = 0.15, kind: str | None = None,
                 base_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        owner = type(self).__name__
        method = base_method if base_method is not None else self.default_method
        if method is None:
            raise ValidationError(f"{owner}: base_method is required (a registered name such as 'saliency')")
        if isinstance(method, str) and method not in method_names():
            raise ValidationError(
                f"{owner}: base_method must be one of: {', '.join(method_names())}; got {method!r}"
            )
        cls = get_method(method) if isinstance(method, str) else method
        if not (isinstance(cls, type) and issubclass(cls, Explainer)) or issubclass(cls, NoiseTunnel):
            raise ValidationError(
                f"{owner}: base_method must be a registered method name or Explainer class (not a noise "
                f"tunnel), got {method!r}"
            )
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValidationError(f"{owner}: n_samples must be an int >= 1, got {n_samples!r}")
        if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not noise_level >= 0:
            raise ValidationError(f"{owner}: noise_level must be a number >= 0, got {noise_level!r}")
        kind = kind if kind is not None else self.default_kind
        if kind not in KINDS:
            raise ValidationError(f"{owner}: kind must be one of {list(KINDS)}, got {kind!r}")
        self.method_class = cls
        self.n_samples = int(n_samples)
        self.noise_level = float(noise_level)
        self.kind = kind
        self.base_params = dict(base_params or {})
        self.inner = cls(model, layer=self.layer, output=self.output, batch_size=self.batch_size,
                         progress=self.progress, **self.base_params)
        self.requires_gradients = cls.requires_gradients

    def get_params(self) -> dict[str, Any]:
        return {
            "base_method": self.method_class.name,
            "n_samples": self.n_samples,
            "noise_level": self.noise_level,
            "kind": self.kind,
            "base_params": self.base_params,
        }

    def _attribute(self, context: ExplainContext) -> Attribution:
        owner = self._owner()
        batch = context.batch
        if not batch.is_floating:
            raise ValidationError(f"{owner}: noise needs floating-point inputs, got {batch.describe()}")
        n, m = batch.n, self.n_samples
        engine = self._engine(context)
        scores = engine.resolve_target()
        generator = torch_generator(context.seed)
        noisy = []
        for x in batch.tensors:
            flat = x.reshape(n, -1)
            sigma = self.noise_level * (flat.max(1).values - flat.min(1).values)
            noise = torch.randn((n, m, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
            sigma = sigma.reshape(n, 1, *([1] * (x.ndim - 1)))
            noisy.append((x.unsqueeze(1) + sigma * noise).reshape(n * m, *x.shape[1:]))
        inner_batch = type(batch)(tuple(noisy), batch.is_tuple, batch.is_numpy, batch.devices)
        inner_context = ExplainContext(
            adapter=context.adapter,
            batch=inner_batch,
            target=Expanded(engine.target, m),
            forward_kwargs=_repeat_per_sample(context.forward_kwargs, n, m),
            baseline=_repeat_baseline(context.baseline, batch.tensors, m),
            seed=derive_seed(context.seed, 1),  # a stochastic base method: draws independent of the noise
            data_args={},
        )
        inner = self.inner._attribute(inner_context)
        attributions = []
        for a in inner.attributions:
            a = a.reshape(n, m, *a.shape[1:])
            if self.kind == "smoothgrad":
                attributions.append(a.mean(1))
            elif self.kind == "smoothgrad_sq":
                attributions.append((a * a).mean(1))
            else:
                attributions.append(a.var(1, unbiased=False))
        extras: dict[str, Any] = {"n_evaluations": engine.n_evaluations + inner.extras.get("n_evaluations", 0)}
        for key, value in inner.extras.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n * m:
                extras[f"mean_{key}"] = value.reshape(n, m, *value.shape[1:]).mean(1)
        return Attribution(tuple(attributions), scores, extras, engine.target)


@register
class SmoothGrad(NoiseTunnel):
    """SmoothGrad: the gradient averaged over noisy copies of the input.

    ``SG(x) = mean_j dF_c(x + e_j)/dx``, ``e_j ~ N(0, (noise_level * (max x - min x))^2)``.

    Smilkov et al. (2017), "SmoothGrad: removing noise by adding noise", arXiv:1706.03825.

    Example::

        SmoothGrad(model, n_samples=25, noise_level=0.15, seed=0).explain(x, target=3)
    """

    name: ClassVar[str] = "smoothgrad"
    requires_gradients: ClassVar[bool] = True
    reference: ClassVar[str] = "Smilkov et al. 2017, arXiv:1706.03825"
    default_method: ClassVar[str | None] = "saliency"
    default_kind = "smoothgrad"


@register
class VarGrad(NoiseTunnel):
    """VarGrad: the variance of the gradient over noisy copies of the input.

    ``VG(x) = var_j dF_c(x + e_j)/dx``.

    Adebayo et al. (2018), "Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter
    Values", ICLR workshop, arXiv:1810.03307.
    """

    name: ClassVar[str] = "vargrad"
    requires_gradients: ClassVar[bool] = True
    reference: ClassVar[str] = "Adebayo et al. 2018, arXiv:1810.03307"
    default_method: ClassVar[str | None] = "saliency"
    default_kind = "vargrad"
