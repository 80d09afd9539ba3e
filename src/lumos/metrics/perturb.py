"""Shared machinery of the model-based metrics: features, orderings, references and batched scoring.

Every model-based metric scores the model's target on many perturbed copies of every sample (deletion
steps, random subsets, noisy copies). :func:`scoring` opens one :class:`Scorer` per metric call: the model
adapter in eval mode (the caller's mode, flags and grads restored afterwards, even on error), the inputs
on the model's device, and an :class:`~lumos.core.evaluation.EvaluationEngine` with the target resolved on
the clean inputs. :meth:`Scorer.rows` then scores ``n_samples x m`` perturbed rows that are built lazily,
chunk by chunk, by a function of ``(sample index, step index)`` tensors: no per-sample Python loop around
model calls, and never more rows in memory than one chunk.

Features: a metric perturbs *features*, groups of input elements (``feature_groups`` of :func:`features`):
tabular (N, d) inputs: each column; token embeddings (N, T, E): each token (all its embedding entries);
images (N, C, H, W): each pixel (all channels), or ``patch_size`` x ``patch_size`` patches. A feature's
attribution is the sum of its elements' attributions.

Token ids: the metrics that replace features by a reference (deletion, insertion, region perturbation,
comprehensiveness, sufficiency, faithfulness correlation, completeness residual) also take integer (N, T)
token ids, each token a feature, with a token id as ``baseline`` (e.g. ``[MASK]``'s), or per-sample ids of
the inputs' shape (keep ``[CLS]``/``[SEP]``/padding at their own ids there: they are then never changed).
Metrics that add noise or interpolate need floating-point inputs (embed the tokens first).

Multi-input models (``inputs`` a tuple): the scorer works on every input flattened and concatenated in
order, splits perturbed rows back into the model's inputs, takes each input's own features
(:meth:`Scorer.feature_map`) and references (a tuple of baselines, one per input), so the values equal those
of the single-input model on the concatenation.

Every metric returns a :class:`MetricResult`: one value per sample, plus the curve of each sample where the
metric has one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.evaluation import EvaluationEngine
from ..core.inputs import as_tensor, check_finite, prepare_forward_kwargs, prepare_inputs
from ..core.model import ModelAdapter
from ..core.seeding import torch_generator
from ..core.targets import Target, as_target
from ..errors import ValidationError, describe_value
from ..explanation import Explanation
from .arrays import attribution_parts

#: how the target score is read from the model output
SCORES = ("logit", "probability")
#: named references (``baseline=``) besides numbers and arrays
NAMED_BASELINES = ("mean", "blur", "uniform")


@dataclass
class MetricResult:
    """What every model-based metric returns.

    Attributes:
        name: the metric's name (a key of ``lumos.metrics.METRIC_INFO``).
        values: one value per sample, shape (n_samples,); NaN where undefined (e.g. a constant correlation).
        higher_is_better: how to read ``values``.
        curves: (n_samples, n_points) scores along the metric's curve, or ``None``.
        x: (n_points,) abscissa of the curves (fraction of features perturbed, or step), or ``None``.
        params: the metric's parameters (JSON-serialisable).
        n_evaluations: model rows evaluated (the floor of the metric's cost).
    """

    name: str
    values: np.ndarray
    higher_is_better: bool
    curves: np.ndarray | None = None
    x: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n_evaluations: int = 0

    def mean(self) -> float:
        """Mean over the samples where the value is defined (NaN ignored)."""
        finite = self.values[np.isfinite(self.values)]
        return float(finite.mean()) if finite.size else float("nan")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        curve = "" if self.curves is None else f", curves={self.curves.shape}"
        return (f"MetricResult({self.name!r}, mean={self.mean():.4g}, n={len(self)}, "
                f"higher_is_better={self.higher_is_better}{curve})")


# ---------------------------------------------------------------------------------------------- checks


def check_int(value: Any, *, name: str, owner: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (a ValidationError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive(value: Any, *, name: str, owner: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        what = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{owner}: {name} must be a finite number {what}, got {value!r}")
    return float(value)


def check_choice(value: Any, choices: tuple[str, ...], *, name: str, owner: str) -> str:
    if value not in choices:
        raise ValidationError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")
    return str(value)


# ---------------------------------------------------------------------------------------------- scoring


class ProbabilityTarget(Target):
    """The inner target read from ``softmax(output)`` (``score="probability"``)."""

    def __init__(self, inner: Target, owner: str) -> None:
        self.inner = inner
        self.owner = owner
        self.layers = inner.layers
        self.per_row = inner.per_row

    def resolve(self, output: torch.Tensor, *, owner: str, n_samples: int | None = None) -> Target:
        if output.ndim != 2 or output.shape[1] < 2:
            raise ValidationError(
                f"{self.owner}: score='probability' needs a (batch, classes) output with 2 or more classes, got "
                f"shape {tuple(output.shape)}; use score='logit' (e.g. for regressors or predict_proba models)"
            )
        return ProbabilityTarget(self.inner.resolve(output, owner=owner, n_samples=n_samples), self.owner)

    def score(self, output: torch.Tensor, sample_index: torch.Tensor, captured: Any) -> torch.Tensor:
        return self.inner.score(torch.softmax(output.to(torch.float64), dim=1), sample_index, captured)

    def indices(self) -> np.ndarray | None:
        return self.inner.indices()

    def describe(self) -> str:
        return f"probability of {self.inner.describe()}"


class Scorer:
    """The model's target score on perturbed copies of the inputs, for one metric call (see :func:`scoring`).

    Attributes:
        x: the inputs on the model's device, (n, *shape); ``flat``: the same as (n, n_elements). For a
            multi-input model, ``x`` is every input flattened and concatenated in order, (n, n_elements), and
            ``inputs`` holds the model's own tensors; perturbed rows are split back into them.
        fx: target scores of the clean inputs, float64 numpy (n,).
        engine: the evaluation engine (its ``n_evaluations`` counts the rows scored).
    """

    def __init__(self, adapter: ModelAdapter, x: torch.Tensor, engine: EvaluationEngine, fx: np.ndarray,
                 owner: str, inputs: tuple[torch.Tensor, ...] | None = None) -> None:
        self.adapter = adapter
        self.x = x
        self.flat = x.reshape(x.shape[0], -1)
        self.engine = engine
        self.fx = fx
        self.owner = owner
        self.inputs = (x,) if inputs is None else tuple(inputs)

    @property
    def n_inputs(self) -> int:
        """The number of model inputs (1 for a single-input model)."""
        return len(self.inputs)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """One sample's shape of each model input."""
        return [tuple(t.shape[1:]) for t in self.inputs]

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows (r, n_elements) as the model's inputs: one (r, *shape) tensor per input."""
        if self.n_inputs == 1:
            return (flat.reshape(flat.shape[0], *self.shape).to(self.x.dtype),)
        out, start = [], 0
        for t in self.inputs:
            size = math.prod(t.shape[1:])
            out.append(flat[:, start:start + size].reshape(flat.shape[0], *t.shape[1:]).to(t.dtype))
            start += size
        return tuple(out)

    def single(self, i: int) -> Scorer:
        """A view of input ``i`` alone (for per-input references), sharing the engine and clean scores."""
        return Scorer(self.adapter, self.inputs[i], self.engine, self.fx, self.owner)

    def feature_map(self, *, feature_groups: Any = None, patch_size: int | None = None,
                    owner: str | None = None) -> tuple[torch.Tensor, int]:
        """:func:`features` of one sample; for a multi-input model, each input's features in order (its own
        default by shape, ``patch_size`` on image inputs, or ``feature_groups[i]``: one array per input)."""
        owner = owner or self.owner
        if self.n_inputs == 1:
            return features(self.shape, feature_groups=feature_groups, patch_size=patch_size, owner=owner)
        if feature_groups is not None and (not isinstance(feature_groups, (tuple, list))
                                           or len(feature_groups) != self.n_inputs):
            raise ValidationError(f"{owner}: feature_groups of a model with {self.n_inputs} inputs must be a tuple "
                                  f"of {self.n_inputs} integer arrays (one sample's shape of each input), got "
                                  f"{describe_value(feature_groups)}")
        groups, total = [], 0
        for i, shape in enumerate(self.input_shapes):
            g, k = features(shape, feature_groups=None if feature_groups is None else feature_groups[i],
                            patch_size=patch_size if len(shape) == 3 else None, owner=owner)
            groups.append(g + total)
            total += k
        return torch.cat(groups), total

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def rows(self, m: int, make: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
             desc: str) -> np.ndarray:
        """Scores of ``n x m`` rows, shape (n, m): row (i, k) is ``make(i, k)`` for index tensors ``i, k``.

        ``make`` returns the model inputs of the rows, (len(i), *shape) or (len(i), n_elements); rows are
        built and scored chunk by chunk (memory-budgeted; ``batch_size`` caps the rows per call).
        """
        n_rows = self.n * m
        if n_rows == 0:
            return np.zeros((self.n, m))
        device = self.device

        def make_rows(rows: slice) -> tuple[torch.Tensor, ...]:
            r = torch.arange(rows.start, rows.stop, device=device)
            built = make(torch.div(r, m, rounding_mode="floor"), r % m)
            return self.split(built.reshape(built.shape[0], -1))

        def index(rows: slice) -> torch.Tensor:
            return torch.div(torch.arange(rows.start, rows.stop, device=device), m, rounding_mode="floor")

        scores = self.engine.scores(n_rows, make_rows, index, desc=desc)
        return scores.cpu().numpy().reshape(self.n, m)

    def score_inputs(self, x: torch.Tensor, *, desc: str) -> np.ndarray:
        """Scores of one full replacement of the inputs (one row per sample, e.g. the baselines), shape (n,)."""
        flat = x.reshape(x.shape[0], -1)
        return self.rows(1, lambda i, k: flat[i] if flat.shape[0] == self.n else flat[torch.zeros_like(i)],
                         desc=desc)[:, 0]


@contextlib.contextmanager
def scoring(model: Any, inputs: Any, target: Any, *, owner: str, score: str = "logit",
            batch_size: int | None = None, progress: bool | None = None,
            forward_kwargs: Any = None, token_ids: bool = False) -> Iterator[Scorer]:
    """Open a :class:`Scorer`: inputs checked and moved, model in eval mode, target resolved, ``f(x)`` scored.

    The model's train/eval mode, ``requires_grad`` flags and grads are restored when the block exits.
    Inputs: one tensor or array, batch first, or a tuple of them for a multi-input model (floating point, one
    dtype; the scorer works on their flattened concatenation, see :class:`Scorer`). ``token_ids=True``: the
    metric only replaces features by the reference, so integer inputs (token ids) are accepted (one input).
    """
    check_choice(score, SCORES, name="score", owner=owner)
    if batch_size is not None:
        check_int(batch_size, name="batch_size", owner=owner)
    adapter = ModelAdapter(model, owner=owner)
    batch = prepare_inputs(inputs, owner=owner, device=adapter.device, float_dtype=adapter.float_dtype)
    if len(batch.tensors) > 1:
        if not all(t.is_floating_point() for t in batch.tensors) or len({t.dtype for t in batch.tensors}) > 1:
            raise ValidationError(f"{owner}: the inputs of a multi-input model must be floating point of one dtype "
                                  f"(embed token ids first), got {batch.describe()}")
        x = torch.cat([t.reshape(batch.n, -1) for t in batch.tensors], 1)
    else:
        x = batch.tensors[0]
    integer = not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    if not x.is_floating_point() and not (token_ids and integer):
        hint = ("" if token_ids else "; deletion, insertion, region perturbation, comprehensiveness, sufficiency, "
                                     "faithfulness correlation and completeness residual take token ids")
        raise ValidationError(f"{owner}: inputs must be floating point (embed token ids first), got {x.dtype}{hint}")
    kwargs = prepare_forward_kwargs(forward_kwargs, n=batch.n, owner=owner, device=x.device,
                                    float_dtype=adapter.float_dtype)
    resolved = as_target(target, owner=owner)
    if score == "probability":
        resolved = ProbabilityTarget(resolved, owner)
    with adapter.eval_mode():
        engine = EvaluationEngine(adapter, kwargs, resolved, n_samples=batch.n, batch_size=batch_size,
                                  progress=progress, owner=owner)
        fx = engine.resolve(batch.tensors, desc=f"{owner}: clean inputs").to(torch.float64).cpu().numpy()
        yield Scorer(adapter, x, engine, fx, owner, inputs=batch.tensors)


def unpack(inputs: Any, attributions: Any, target: Any) -> tuple[Any, Any, Any]:
    """Inputs and target default to an Explanation's own (``inputs=None``, ``target=None``)."""
    if isinstance(attributions, Explanation):
        if inputs is None:
            inputs = attributions.inputs
        if target is None and attributions.targets is not None:
            target = np.asarray(attributions.targets)
    return inputs, attributions, target


def flat_attributions(attributions: Any, scorer: Scorer) -> torch.Tensor:
    """The attributions as float64 (n, n_elements) on the CPU, checked against the inputs' shape."""
    parts = attribution_parts(attributions, owner=scorer.owner)
    expected = [tuple(t.shape) for t in scorer.inputs]
    if [tuple(p.shape) for p in parts] != expected:
        shapes = [p.shape for p in parts]
        raise ValidationError(
            f"{scorer.owner}: attributions must have the inputs' shape "
            f"{expected[0] if len(expected) == 1 else tuple(expected)}, got {shapes[0] if len(shapes) == 1 else shapes}"
        )
    if len(parts) == 1:
        return torch.from_numpy(np.ascontiguousarray(parts[0].reshape(parts[0].shape[0], -1)))
    return torch.from_numpy(np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1))


# ---------------------------------------------------------------------------------------------- features


def features(shape: tuple[int, ...], *, feature_groups: Any = None, patch_size: int | None = None,
             owner: str) -> tuple[torch.Tensor, int]:
    """The feature of every element of one sample: ``(groups (n_elements,) long, n_features)``.

    Default by shape (one sample's): (d,) each column; (T, E) each token; (C, H, W) each pixel, or square
    patches of side ``patch_size``; other shapes each element. ``feature_groups``: an integer array with
    one sample's shape (any labels, e.g. superpixel ids) overrides the default.
    """
    n_elements = int(math.prod(shape))
    if feature_groups is not None:
        array = np.asarray(feature_groups.detach().cpu() if isinstance(feature_groups, torch.Tensor)
                           else feature_groups)
        if tuple(array.shape) != tuple(shape) or not np.issubdtype(array.dtype, np.integer):
            raise ValidationError(f"{owner}: feature_groups must be an integer array of one sample's shape "
                                  f"{tuple(shape)}, got {describe_value(feature_groups)}")
        unique, inverse = np.unique(array.reshape(-1), return_inverse=True)
        return torch.from_numpy(inverse.astype(np.int64)), len(unique)
    if patch_size is not None:
        patch_size = check_int(patch_size, name="patch_size", owner=owner)
        if len(shape) != 3:
            raise ValidationError(f"{owner}: patch_size needs image inputs (N, C, H, W), got one sample of shape "
                                  f"{tuple(shape)}")
    if len(shape) == 3:
        c, h, w = shape
        p = patch_size or 1
        rows = torch.arange(h) // p
        cols = torch.arange(w) // p
        pixel = rows[:, None] * math.ceil(w / p) + cols[None, :]
        return pixel.reshape(1, -1).expand(c, -1).reshape(-1).contiguous(), math.ceil(h / p) * math.ceil(w / p)
    if len(shape) == 2:
        t, e = shape
        return torch.arange(t).repeat_interleave(e), t
    return torch.arange(n_elements), n_elements


def pool(flat: torch.Tensor, groups: torch.Tensor, n_features: int) -> torch.Tensor:
    """Per-feature sums of element values: (n, n_elements) -> (n, n_features)."""
    out = torch.zeros(flat.shape[0], n_features, dtype=flat.dtype, device=flat.device)
    return out.index_add_(1, groups.to(flat.device), flat)


def ranks(pooled: torch.Tensor, *, descending: bool = True) -> torch.Tensor:
    """Rank of every feature in each sample's order (0 = first), by value; ties keep feature order."""
    key = -pooled if descending else pooled
    order = torch.sort(key, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pooled.shape[1]).expand_as(order).contiguous())
    return rank


def step_counts(n_features: int, n_steps: int) -> np.ndarray:
    """Features perturbed after step k = 0..n_steps: ``floor(k * n_features / n_steps)``."""
    return (np.arange(n_steps + 1) * n_features) // n_steps


def masked(x_flat: torch.Tensor, reference: torch.Tensor, i: torch.Tensor, removed: torch.Tensor,
           groups: torch.Tensor) -> torch.Tensor:
    """Rows of samples ``i`` whose removed features (``removed``: (rows, n_features) bool) take the reference."""
    ref = reference[i] if reference.shape[0] > 1 else reference
    return torch.where(removed[:, groups], ref, x_flat[i])


# ---------------------------------------------------------------------------------------------- references


def reference(baseline: Any, scorer: Scorer, *, seed: int | None = None, blur_sigma: float = 5.0) -> torch.Tensor:
    """The replacement values as (1 or n, n_elements) on the inputs' device.

    ``baseline``: a number (default 0: ``None``); ``"mean"`` (each sample's mean, per channel for images);
    ``"blur"`` (images: each sample Gaussian-blurred with ``blur_sigma``, the insertion start of Petsiuk et
    al. 2018); ``"uniform"`` (uniform noise in each sample's value range, seeded; Samek et al. 2017); one
    sample's shape; or the inputs' full shape (one reference per sample).
    """
    x, owner = scorer.x, scorer.owner
    n, shape = scorer.n, scorer.shape
    if scorer.n_inputs > 1:
        return _multi_reference(baseline, scorer, seed=seed, blur_sigma=blur_sigma)
    if not x.is_floating_point():
        return _token_reference(baseline, scorer)
    if baseline is None or (isinstance(baseline, (int, float, np.number)) and not isinstance(baseline, bool)):
        value = 0.0 if baseline is None else float(baseline)
        if not math.isfinite(value):
            raise ValidationError(f"{owner}: baseline must be finite, got {baseline!r}")
        return torch.full((1, scorer.flat.shape[1]), value, dtype=x.dtype, device=x.device)
    if isinstance(baseline, str):
        check_choice(baseline, NAMED_BASELINES, name="baseline", owner=owner)
        if baseline == "mean":
            axes = tuple(range(2, x.ndim)) if x.ndim == 4 else tuple(range(1, x.ndim))
            return x.mean(dim=axes, keepdim=True).expand_as(x).reshape(n, -1)
        if baseline == "uniform":
            generator = torch_generator(0 if seed is None else seed)
            noise = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device, x.dtype)
            low = scorer.flat.min(dim=1).values.reshape(n, *([1] * len(shape)))
            high = scorer.flat.max(dim=1).values.reshape(n, *([1] * len(shape)))
            return (low + noise * (high - low)).reshape(n, -1)
        if x.ndim != 4:
            raise ValidationError(f"{owner}: baseline='blur' needs image inputs (N, C, H, W), got {tuple(x.shape)}")
        return gaussian_blur(x, blur_sigma).reshape(n, -1)
    tensor = as_tensor(baseline if not isinstance(baseline, list) else np.asarray(baseline), name="baseline",
                       owner=owner, device=x.device, float_dtype=x.dtype).to(x.dtype)
    check_finite(tensor, name="baseline", owner=owner)
    if tuple(tensor.shape) == shape:
        return tensor.reshape(1, -1)
    if tuple(tensor.shape) == tuple(x.shape):
        return tensor.reshape(n, -1)
    raise ValidationError(
        f"{owner}: baseline must be a number, one of {list(NAMED_BASELINES)}, an array of one sample's shape "
        f"{shape} or of the inputs' shape {tuple(x.shape)}, got {describe_value(baseline)}"
    )


def _multi_reference(baseline: Any, scorer: Scorer, *, seed: int | None, blur_sigma: float) -> torch.Tensor:
    """The reference of a multi-input model: each input's own (a number or a named baseline applies to every
    input; a tuple gives one baseline per input), concatenated like ``scorer.x``."""
    if isinstance(baseline, (tuple, list)):
        if len(baseline) != scorer.n_inputs:
            raise ValidationError(f"{scorer.owner}: baseline of a model with {scorer.n_inputs} inputs must be a "
                                  f"number, one of {list(NAMED_BASELINES)}, or a tuple of {scorer.n_inputs} "
                                  f"baselines (one per input), got {len(baseline)}")
        each = list(baseline)
    elif baseline is None or isinstance(baseline, (str, int, float, np.number)):
        each = [baseline] * scorer.n_inputs
    else:
        raise ValidationError(f"{scorer.owner}: baseline of a model with {scorer.n_inputs} inputs must be a number, "
                              f"one of {list(NAMED_BASELINES)}, or a tuple with one baseline per input, got "
                              f"{describe_value(baseline)}")
    base = 0 if seed is None else seed
    parts = []
    for i, value in enumerate(each):
        try:
            parts.append(reference(value, scorer.single(i), seed=base + i, blur_sigma=blur_sigma))
        except ValidationError as error:
            raise ValidationError(f"{error} (baseline of inputs[{i}])") from None
    rows = max(p.shape[0] for p in parts)
    return torch.cat([p.expand(rows, -1) for p in parts], 1)


def _token_reference(baseline: Any, scorer: Scorer) -> torch.Tensor:
    """The replacement token ids for integer inputs: one id, one sample's ids or one row of ids per sample."""
    x, owner, shape = scorer.x, scorer.owner, scorer.shape
    expected = (f"a token id (an int, e.g. the [MASK] or [PAD] id), or integer ids of one sample's shape {shape} "
                f"or of the inputs' shape {tuple(x.shape)}")
    if isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool):
        return torch.full((1, scorer.flat.shape[1]), int(baseline), dtype=x.dtype, device=x.device)
    array = baseline.detach().cpu().numpy() if isinstance(baseline, torch.Tensor) else baseline
    if isinstance(array, (list, tuple)):
        array = np.asarray(array)
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
        raise ValidationError(f"{owner}: the inputs are token ids ({x.dtype}), so baseline must be {expected}; "
                              f"got {describe_value(baseline)}")
    tensor = torch.as_tensor(array).to(x.device, x.dtype)
    if tuple(tensor.shape) == shape:
        return tensor.reshape(1, -1)
    if tuple(tensor.shape) == tuple(x.shape):
        return tensor.reshape(scorer.n, -1)
    raise ValidationError(f"{owner}: baseline must be {expected}, got {describe_value(baseline)}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of (N, C, H, W) blurred by a Gaussian of std ``sigma`` (kernel 2*ceil(2 sigma)+1, reflect)."""
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.device, x.dtype)
    c = x.shape[1]
    pad_h, pad_w = min(radius, x.shape[2] - 1), min(radius, x.shape[3] - 1)
    out = x
    if pad_w > 0:
        k = kernel[radius - pad_w: radius + pad_w + 1]
        k = k / k.sum()
        out = torch.nn.functional.pad(out, (pad_w, pad_w, 0, 0), mode="reflect")
        out = torch.nn.functional.conv2d(out, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    if pad_h > 0:
        k = kernel[radius - pad_h: radius + pad_h + 1]
        k = k / k.sum()
        out = torch.nn.functional.pad(out, (0, 0, pad_h, pad_h), mode="reflect")
        out = torch.nn.functional.conv2d(out, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out
