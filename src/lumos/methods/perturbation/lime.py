"""LIME (Ribeiro, Singh & Guestrin 2016): a weighted linear surrogate fitted around each explained sample."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from ...core.evaluation import EvaluationEngine
from ...core.registry import register
from ...core.seeding import torch_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import PerturbationExplainer
from .fills import FILLS, make_fill
from .masking import CoalitionMasker, prepare_reference, prepare_sample_groups
from .segments import SEGMENTATIONS, segment_images
from .surrogate import SELECTIONS, fit_surrogate

MODES = ("auto", "tabular", "image", "groups")
SAMPLINGS = ("bernoulli", "size")


@register
class LIME(PerturbationExplainer):
    """LIME: ``g = argmin_g sum_k pi(z_k) (f(x_k) - g(z_k))^2 + alpha ||beta||^2`` with a linear ``g(z) = b + beta.z``.

    Each sample gets ``n_samples`` perturbations ``x_k`` with interpretable representations ``z_k``; the first
    is the sample itself. ``pi(z) = sqrt(exp(-D(z)^2 / width^2)) = exp(-D^2 / (2 width^2))`` (the lime
    package's kernel). The surrogate is the weighted ridge of :mod:`.surrogate` (``alpha=1`` like lime's
    default), optionally on the top ``n_features`` chosen by ``feature_selection``. Attributions are the
    coefficients ``beta``, with the input's shape: every element of a segment / group / token gets its group's
    coefficient (``extras["group_values"]`` holds one per group). ``extras``: ``intercept``, ``score``
    (weighted R^2, the local fidelity), ``local_prediction`` (``g`` at the instance), ``kernel_width``,
    ``mode``, ``n_evaluations`` (``n_samples`` model rows per sample, the instance's taken from ``f(x)``).

    Modes (``mode="auto"`` picks: ``feature_groups=`` given or integer inputs (token ids) -> ``"groups"``; one
    ``(N, C, H, W)`` input -> ``"image"``; otherwise ``"tabular"``):

    - ``"tabular"`` (needs ``baseline=`` a training/background set of >= 2 rows; every element a feature):
      ``discretize=True``: quartile bins per feature from the background; ``z_j ~ Bernoulli(1/2)``;
      ``z_j = 1`` draws the value from the background values in the sample's bin, ``z_j = 0`` from those
      outside it (empirical within-bin draws; lime fits a truncated normal per bin); a feature whose bin
      holds the whole background keeps ``z_j = 1`` (coefficient 0), one whose bin holds no background
      value keeps ``x_j``. ``D`` = Euclidean distance of ``z`` to the all-ones vector. ``discretize=False``:
      ``x_k = x + sigma * eps_k`` with ``eps ~ N(0, I)`` and ``sigma`` the background's standard deviation
      (ddof 0; lime's ``sample_around_instance=True``); ``z = eps`` (so ``beta_j`` is the effect of one
      standard deviation of feature j), ``D = ||eps||``. Default width ``0.75 sqrt(d)``.
    - ``"image"``: features are superpixels of each image (``segmentation=``, see :mod:`.segments`; or a user
      map through ``feature_groups=``, one map or one per image); hidden segments take the ``fill``.
    - ``"groups"``: features are ``feature_groups`` (one map, one per sample, or index lists; negative ids
      are never perturbed, e.g. padding) or every element; hidden ones take the ``fill`` (for token ids:
      ``baseline=`` the mask-token id, see :mod:`.text`).

    In the coalition modes ``z ~ Bernoulli(1/2)`` per feature (``sampling="bernoulli"``, lime's image scheme)
    or, ``sampling="size"`` (lime's text scheme), the number of hidden features uniform in ``1..d`` then a
    uniform subset; ``D`` = cosine distance of ``z`` to all-ones (``1 - sqrt(|z| / d)``); width 0.25 (lime's
    0.25 for images, 25 on distances x 100 for text). All perturbed rows of all samples go through batched
    model calls; all random draws come from the seed, before any model call.

    Ribeiro, Singh & Guestrin (2016), "'Why Should I Trust You?' Explaining the Predictions of Any
    Classifier", KDD.

    Args:
        n_samples: perturbations per sample, the sample itself included (default 1000, lime's default).
        mode: ``"auto"``, ``"tabular"``, ``"image"`` or ``"groups"`` (see above).
        kernel_width: ``None`` = ``0.75 sqrt(d)`` (tabular) or ``0.25`` (cosine distance).
        alpha: ridge penalty of the final surrogate (``0`` = weighted least squares).
        feature_selection: ``"auto"``, ``"none"``, ``"forward_selection"``, ``"highest_weights"``,
            ``"lasso_path"`` (see :mod:`.surrogate`); n_features: keep the top k (``None``: all).
        discretize: tabular only, quartile bins (True) or Gaussian perturbations (False).
        segmentation: ``"slic"``, ``"quickshift"``, ``"felzenszwalb"``, ``"grid"`` or a callable;
            segmentation_params: keyword arguments of the algorithm (e.g. ``{"n_segments": 100}``).
        fill: ``"baseline"``, ``"mean"`` or ``"blur"`` (see :mod:`.fills`); blur_sigma: the blur's sigma.
        sampling: ``"bernoulli"`` or ``"size"``.

    Example::

        LIME(clf.predict_proba, seed=0).explain(x_test[:5], target=1, baseline=x_train)
        LIME(cnn, segmentation="quickshift", fill="blur", seed=0).explain(images, target=labels)
    """

    name: ClassVar[str] = "lime"
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Ribeiro, Singh & Guestrin 2016, arXiv:1602.04938"
    data_arguments: ClassVar[tuple[str, ...]] = ("feature_groups",)

    def __init__(self, model: Any, *, n_samples: int = 1000, mode: str = "auto", kernel_width: float | None = None,
                 alpha: float = 1.0, feature_selection: str = "auto", n_features: int | None = None,
                 discretize: bool = True, segmentation: Any = "slic", segmentation_params: dict[str, Any] | None = None,
                 fill: str = "baseline", blur_sigma: float | None = None, sampling: str = "bernoulli",
                 **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        _check_int(n_samples, "n_samples", 2)
        if n_features is not None:
            _check_int(n_features, "n_features", 1)
        choices = {"mode": (mode, MODES), "feature_selection": (feature_selection, SELECTIONS),
                   "fill": (fill, FILLS), "sampling": (sampling, SAMPLINGS)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValidationError(f"LIME: {key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        for key, value, low in (("kernel_width", kernel_width, 0.0), ("alpha", alpha, None),
                                ("blur_sigma", blur_sigma, 0.0)):
            if value is None and key != "alpha":
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (low is None and value < 0) or (low is not None and value <= low):
                bound = ">= 0" if low is None else "> 0"
                raise ValidationError(f"LIME: {key} must be a finite number {bound}, got {value!r}")
        if not isinstance(discretize, bool):
            raise ValidationError(f"LIME: discretize must be True or False, got {discretize!r}")
        if not callable(segmentation) and segmentation not in SEGMENTATIONS:
            raise ValidationError(f"LIME: segmentation must be one of {', '.join(map(repr, SEGMENTATIONS))} or a "
                                  f"callable image -> labels, got {segmentation!r}")
        if segmentation_params is not None and not isinstance(segmentation_params, dict):
            raise ValidationError(f"LIME: segmentation_params must be a dict, got {segmentation_params!r}")
        self.n_samples, self.mode, self.kernel_width, self.alpha = int(n_samples), mode, kernel_width, float(alpha)
        self.feature_selection, self.n_features, self.discretize = feature_selection, n_features, discretize
        self.segmentation, self.segmentation_params = segmentation, dict(segmentation_params or {})
        self.fill, self.blur_sigma, self.sampling = fill, blur_sigma, sampling

    def get_params(self) -> dict[str, Any]:
        segmentation = self.segmentation if isinstance(self.segmentation, str) else repr(self.segmentation)
        return {"n_samples": self.n_samples, "mode": self.mode, "kernel_width": self.kernel_width,
                "alpha": self.alpha, "feature_selection": self.feature_selection, "n_features": self.n_features,
                "discretize": self.discretize, "segmentation": segmentation,
                "segmentation_params": self.segmentation_params, "fill": self.fill, "blur_sigma": self.blur_sigma,
                "sampling": self.sampling}

    # ------------------------------------------------------------------ main
    def _attribute(self, context: ExplainContext) -> Attribution:
        batch = context.batch
        engine = EvaluationEngine(context.adapter, context.forward_kwargs, context.target, n_samples=batch.n,
                                  batch_size=self.batch_size, progress=self.progress, owner="LIME")
        engine.defer(batch.tensors)  # f(x) is evaluated with the first chunk of perturbations
        generator = torch_generator(context.seed)
        mode = self._mode(context)
        if mode == "tabular":
            z, values, valid, instance, distance, spread, extras = self._tabular(context, engine, generator)
        else:
            z, values, valid, instance, distance, spread, extras = self._coalitions(context, engine, generator, mode)
        scores = engine.clean_scores()
        y = torch.cat([scores.to(torch.float64).cpu()[:, None], values.cpu()], 1)
        width = self.kernel_width or (0.75 * math.sqrt(valid.shape[1]) if mode == "tabular" else 0.25)
        weights = distance.to(torch.float64).square().mul_(-1 / (2 * width**2)).exp_()
        model = fit_surrogate(z, y, weights, valid, alpha=self.alpha, feature_selection=self.feature_selection,
                              n_features=self.n_features, instance=instance)
        extras.update({"intercept": model.intercept, "score": model.score, "local_prediction": model.local_prediction,
                       "selected": model.selected, "kernel_width": float(width), "mode": mode,
                       "n_evaluations": engine.n_evaluations})
        if mode != "tabular":
            extras["group_values"] = model.coef
        return Attribution(spread(model.coef), scores, extras, engine.target)

    def _mode(self, context: ExplainContext) -> str:
        batch = context.batch
        mode = self.mode
        if mode == "auto":
            if context.data_args.get("feature_groups") is not None or not batch.is_floating:
                mode = "groups"
            elif len(batch.tensors) == 1 and batch.tensors[0].ndim == 4:
                mode = "image"
            else:
                mode = "tabular"
        if mode == "image" and (len(batch.tensors) != 1 or batch.tensors[0].ndim != 4):
            raise ValidationError(f"LIME: mode='image' needs one input of images (N, C, H, W), got {batch.describe()}")
        if mode == "tabular":
            if not batch.is_floating:
                raise ValidationError(f"LIME: mode='tabular' needs floating-point inputs, got {batch.describe()}; "
                                      f"token ids are explained with mode='groups' and baseline=<mask-token id>")
            if self.fill != "baseline":
                raise ValidationError(f"LIME: fill={self.fill!r} applies to the image and groups modes; tabular "
                                      f"perturbations come from the background data (fill='baseline')")
            if context.data_args.get("feature_groups") is not None:
                raise ValidationError("LIME: feature_groups= needs mode='groups' or 'image' (or 'auto'), "
                                      "got mode='tabular'")
        return mode

    # ------------------------------------------------------------------ tabular
    def _tabular(self, context: ExplainContext, engine: EvaluationEngine, generator: torch.Generator) -> tuple:
        batch = context.batch
        reference = prepare_reference(context.baseline, batch, owner="LIME")
        if reference.n_rows < 2:
            raise ValidationError(
                f"LIME: tabular inputs need baseline=<training data>, a background set of at least 2 rows (for the "
                f"features' quartiles / standard deviations), got a single row ({reference.estimand}); to mask "
                f"features against one baseline row use mode='groups'"
            )
        x = torch.cat([t.reshape(batch.n, -1) for t in batch.tensors], 1)
        background = torch.cat(list(reference.rows), 1).to(torch.float64).cpu()
        n, d, m = batch.n, int(x.shape[1]), self.n_samples - 1
        xc = x.to(torch.float64).cpu()
        if self.discretize:
            rows, keep, valid = _discretized(xc, background, m, generator, self.sampling, dtype=x.dtype)
            instance = torch.ones(d, dtype=torch.float64)
            distance = (d - keep.sum(2, dtype=torch.float64)).sqrt()
            full = torch.cat([torch.ones(n, 1, d, dtype=torch.bool), keep], 1)  # the surrogate reads it as 0/1
        else:
            std = background.std(0, unbiased=False)
            eps = torch.randn(n, m, d, generator=generator, dtype=torch.float64) * (std > 0)
            rows = xc[:, None, :] + eps * std
            valid = (std > 0).expand(n, d).clone()
            instance = torch.zeros(d, dtype=torch.float64)
            distance = eps.pow(2).sum(2).sqrt()
            full = torch.cat([torch.zeros(n, 1, d, dtype=torch.float64), eps], 1)
        distance = torch.cat([torch.zeros(n, 1, dtype=torch.float64), distance], 1)
        rows = rows.to(device=x.device, dtype=x.dtype)
        shapes = [tuple(t.shape[1:]) for t in batch.tensors]
        offsets = np.cumsum([0, *[math.prod(s) for s in shapes]]).tolist()

        flat_rows = rows.reshape(n * m, d)  # (sample, perturbation) order: a chunk is a view

        def make_rows(block: slice) -> tuple[torch.Tensor, ...]:
            flat = flat_rows[block]
            if len(shapes) == 1:
                return (flat.reshape(-1, *shapes[0]),)
            return tuple(flat[:, offsets[i]:offsets[i + 1]].reshape(-1, *s) for i, s in enumerate(shapes))

        values = engine.scores(n * m, make_rows, lambda block: torch.arange(block.start, block.stop,
                                                                            device=x.device) // m,
                               desc="lime").reshape(n, m)

        def spread(coef: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(coef[:, offsets[i]:offsets[i + 1]].reshape(n, *s).to(device=t.device, dtype=t.dtype)
                         for i, (s, t) in enumerate(zip(shapes, batch.tensors, strict=True)))

        extras: dict[str, Any] = {"estimand": f"tabular, {'quartile bins' if self.discretize else 'gaussian'} "
                                              f"perturbations from a {reference.n_rows}-row background"}
        return full, values, valid, instance, distance, spread, extras

    # ------------------------------------------------------------------ images, groups, tokens
    def _coalitions(self, context: ExplainContext, engine: EvaluationEngine, generator: torch.Generator,
                    mode: str) -> tuple:
        batch = context.batch
        spec = context.data_args.get("feature_groups")
        extras: dict[str, Any] = {}
        if mode == "image" and spec is None:
            images = batch.tensors[0]
            labels = segment_images(images.detach().cpu().to(torch.float64).numpy(), self.segmentation, owner="LIME",
                                    **self.segmentation_params)
            extras["segments"] = labels
            spec = np.broadcast_to(labels[:, None], images.shape).copy()
        groups = prepare_sample_groups(spec, batch, owner="LIME")
        fill = make_fill(self.fill, context.baseline, batch, owner="LIME", sigma=self.blur_sigma)
        n, d, m = batch.n, groups.max_groups, self.n_samples - 1
        valid = groups.valid().cpu()
        keep = _coalitions(valid, m, generator, self.sampling)
        fill.draw(m, generator)
        masker = CoalitionMasker(batch, groups, fill, engine)
        values = masker.values(keep, desc="lime")
        z = torch.cat([torch.ones(n, 1, d, dtype=torch.bool), keep], 1)
        kept = (z & valid[:, None, :]).sum(2).to(torch.float64)
        sizes = valid.sum(1, keepdim=True).to(torch.float64)
        distance = 1 - (kept / sizes).sqrt()
        extras.update({"fill": fill.description, "n_groups": groups.n_groups, "groups": groups.labels})
        return z.to(torch.float64), values, valid, torch.ones(d, dtype=torch.float64), distance, masker.spread, extras


def _check_int(value: Any, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValidationError(f"LIME: {name} must be an int >= {low}, got {value!r}")


def _coalitions(valid: torch.Tensor, m: int, generator: torch.Generator, sampling: str) -> torch.Tensor:
    """``(n, m, d)`` bool: kept features of each perturbation (invalid columns kept)."""
    n, d = valid.shape
    if sampling == "bernoulli":
        keep = torch.rand(n, m, d, generator=generator) < 0.5
    else:  # lime's text scheme: the number hidden is uniform in 1..d_i, then a uniform subset
        sizes = valid.sum(1)
        hidden = (torch.rand(n, m, generator=generator) * sizes[:, None]).floor().long() + 1
        keys = torch.rand(n, m, d, generator=generator).masked_fill(~valid[:, None, :], 2.0)
        ranks = keys.argsort(2).argsort(2)
        keep = ranks >= hidden[:, :, None]
    return keep | ~valid[:, None, :]


def _discretized(x: torch.Tensor, background: torch.Tensor, m: int, generator: torch.Generator,
                 sampling: str, dtype: torch.dtype = torch.float64
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``(n, m, d)`` (in ``dtype``), kept features ``keep`` (n, m, d) bool and valid ``(n, d)`` of
    quartile-bin LIME.

    A kept feature takes a background value drawn uniformly from the sample's quartile bin, a hidden one a
    value drawn uniformly from outside it (lime's discretised sampling). One uniform ``u`` per entry: with
    Bernoulli sampling it decides the coalition (``u < 1/2``: kept) and, rescaled to ``[0, 1)``, the row.
    """
    b = background.shape[0]
    n, d = x.shape
    ordered = background.sort(0).values
    edges = torch.quantile(background, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0).T  # (d, 3)
    bins_bg = (ordered[:, :, None] > edges[None]).sum(2)  # (b, d), non-decreasing down each column
    bins_x = (x[:, :, None] > edges[None]).sum(2)  # (n, d)
    lo = (bins_bg[None] < bins_x[:, None]).sum(1)  # (n, d): first sorted index in the sample's bin
    count = (bins_bg[None] == bins_x[:, None]).sum(1)
    valid = count < b
    # index arithmetic in floating point (integers exact below 2^24 in float32), one conversion at the end.
    # Sorted-background index of a draw: t uniform on [0, span) from ``start``, cyclically: a kept feature
    # draws from the bin [lo, lo + count), a hidden one from the rows after the bin and then before it
    # (start lo + count, span b - count, modulo b): exactly the rows outside the bin.
    real = torch.float32 if b * d < 2**23 else torch.float64
    valid_r = valid.to(real)[:, None, :]
    if sampling == "bernoulli":
        u = torch.rand(n, m, d, generator=generator, dtype=real).mul_(2)
        hidden = u.floor()  # 1 where the uniform was >= 1/2
        u.sub_(hidden)  # uniform on [0, 1) again, independent of hidden
        hidden.mul_(valid_r)  # invalid columns stay kept
    else:
        hidden = (~_coalitions(valid, m, generator, sampling)).to(real)
        u = torch.rand(n, m, d, generator=generator, dtype=real)
    count_r, lo_r = count.to(real)[:, None, :], lo.to(real)[:, None, :]
    span = torch.addcmul(count_r, hidden, (b - 2 * count).to(real)[:, None, :])  # count or b - count
    t = torch.minimum(u.mul_(span).floor_(), span.sub_(1), out=u).clamp_min_(0)  # (u * span < span up to rounding)
    index = t.add_(torch.addcmul(lo_r, hidden, count_r)).fmod_(b)  # start + t, modulo b
    index.add_(torch.arange(d, dtype=real).mul_(b))  # into the feature-major sorted background
    keep = hidden == 0
    table = ordered.T.contiguous().reshape(-1).to(dtype)  # the values, drawn straight into the model's dtype
    drawn = table.index_select(0, index.view(-1).to(torch.int32 if table.numel() < 2**31 else torch.int64))
    drawn = drawn.view(n, m, d)
    empty = (count == 0)[:, None, :] & keep
    if bool(empty.any()):
        drawn = torch.where(empty, x.to(dtype)[:, None, :].expand(n, m, d), drawn)
    rows = drawn
    return rows, keep, valid
