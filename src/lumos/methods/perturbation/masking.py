"""Masking: model inputs in which some features of a sample are kept and the others replaced.

Replaced features take their values from a reference (``baseline=`` of ``explain``):

- ``None`` or a number: one constant row -> *baseline* Shapley values / ablation against that value;
- one row (shape of one sample) -> *baseline* values against that row;
- a background data set ``(n_background, *sample_shape)`` -> *interventional (marginal)* values:
  ``v(S) = E_b f(x_S, b_notS)``, the average over the background rows (optionally weighted,
  ``background_weights=``), base value ``E_b f(b)``.

Players are single features (every element of every input), or *feature groups* (``feature_groups=``):
an integer array of group ids with one sample's shape (a tuple of arrays for several inputs; any labels,
e.g. superpixel ids), or a list of index lists over the flattened features (features not listed are
groups of their own, appended in order). Every element of a group gets the group's value.

The masked rows of every coalition for every background row are built by one broadcast ``torch.where``
per chunk (``coalitions (U, d)`` x ``background (B, d)`` -> ``(U * B, d)`` rows); rows are ordered
(sample, coalition, background row) so that the background average is a reshape and a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...core.evaluation import EvaluationEngine
from ...core.inputs import InputBatch, as_tensor, check_finite
from ...errors import ValidationError, describe_value

#: largest number of (sample, coalition, background) rows whose scores are held at once
_MAX_SCORE_ROWS = 1 << 24


@dataclass
class Reference:
    """The replacement values: ``rows`` (one ``(B, n_elements_i)`` tensor per input), their weights, the estimand."""

    rows: tuple[torch.Tensor, ...]
    weights: torch.Tensor | None
    estimand: str

    @property
    def n_rows(self) -> int:
        return int(self.rows[0].shape[0])


def prepare_reference(baseline: Any, batch: InputBatch, *, owner: str, weights: Any = None) -> Reference:
    """Parse ``baseline`` (None, a number, one row, or a background set; a tuple of them per input)."""
    tensors = batch.tensors
    items = baseline if isinstance(baseline, tuple) else (baseline,) * len(tensors)
    if isinstance(baseline, tuple) and len(baseline) != len(tensors):
        raise ValidationError(f"{owner}: baseline is a tuple of {len(baseline)} items for {len(tensors)} inputs")
    if len(tensors) > 1 and not isinstance(baseline, tuple) and baseline is not None \
            and not isinstance(baseline, (int, float)):
        raise ValidationError(
            f"{owner}: the model has {len(tensors)} inputs; give baseline as a number or a tuple with one "
            f"baseline/background per input, got {describe_value(baseline)}"
        )
    rows, kinds = [], []
    for i, (item, x) in enumerate(zip(items, tensors, strict=True)):
        name = "baseline" if len(tensors) == 1 else f"baseline[{i}]"
        shape = tuple(x.shape[1:])
        if item is None or (isinstance(item, (int, float, np.number)) and not isinstance(item, bool)):
            value = 0 if item is None else item
            row = torch.full((1, *shape), value, dtype=x.dtype, device=x.device)
            kinds.append("zeros" if item is None else f"constant {value}")
        else:
            if isinstance(item, (list, Sequence)) and not isinstance(item, str):
                item = np.asarray(item)
            tensor = as_tensor(item, name=name, owner=owner, device=x.device, float_dtype=x.dtype).to(x.dtype)
            check_finite(tensor, name=name, owner=owner)
            if tuple(tensor.shape) == shape:
                row, kind = tensor.unsqueeze(0), "row"
            elif tensor.ndim == len(shape) + 1 and tuple(tensor.shape[1:]) == shape and tensor.shape[0] > 0:
                row, kind = tensor, "background"
            else:
                dims = ", ".join(map(str, shape))
                raise ValidationError(
                    f"{owner}: {name} must be a number, one row of shape ({dims}{',' if len(shape) == 1 else ''}) "
                    f"or a background data set of shape (n_background, {dims}) with the inputs' columns, "
                    f"got {describe_value(item)}"
                )
            kinds.append(kind)
        rows.append(row.reshape(row.shape[0], -1))
    sizes = {int(r.shape[0]) for r in rows}
    if len(sizes - {1}) > 1:
        raise ValidationError(f"{owner}: the background sets of the inputs have different numbers of rows: {sorted(sizes)}")
    n_rows = max(sizes)
    rows = [r.expand(n_rows, -1) if r.shape[0] != n_rows else r for r in rows]
    w = _weights(weights, n_rows, owner=owner)
    if n_rows > 1:
        estimand = f"interventional (marginal) over {n_rows} background rows" + (" (weighted)" if w is not None else "")
    else:
        estimand = "baseline" if all(k == "row" or k == "background" for k in kinds) else f"baseline ({kinds[0]})"
        if kinds[0] == "zeros":
            estimand += "; pass baseline=<background data> for interventional (marginal) values"
    return Reference(tuple(r.contiguous() for r in rows), w, estimand)


def _weights(weights: Any, n_rows: int, *, owner: str) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights,
                                   dtype=np.float64))
    if w.shape != (n_rows,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValidationError(
            f"{owner}: background_weights must be {n_rows} finite non-negative numbers (one per background row) "
            f"with a positive sum, got {describe_value(weights)}"
        )
    return w / w.sum()


@dataclass
class FeatureGroups:
    """Players: ``element_group`` maps every flattened element (all inputs concatenated) to its group."""

    element_group: torch.Tensor | None  # (n_elements,) long, None = every element is its own player
    n_groups: int
    labels: list[Any]  # a label per group (the user's id, or the list of member indices)

    @property
    def identity(self) -> bool:
        return self.element_group is None


def prepare_groups(spec: Any, batch: InputBatch, *, owner: str) -> FeatureGroups:
    """Parse ``feature_groups`` (None, group-id arrays with one sample's shape, or a list of index lists)."""
    sizes = [int(math.prod(t.shape[1:])) for t in batch.tensors]
    total = sum(sizes)
    device = batch.tensors[0].device
    if spec is None:
        return FeatureGroups(None, total, list(range(total)))
    if isinstance(spec, list) and all(isinstance(g, (list, tuple, range, np.ndarray)) for g in spec):
        group = np.full(total, -1, dtype=np.int64)
        for index, members in enumerate(spec):
            members = np.asarray(list(members))
            if members.size == 0 or not np.issubdtype(members.dtype, np.integer):
                raise ValidationError(f"{owner}: feature_groups[{index}] must be a non-empty list of ints, got {members!r}")
            if members.min() < 0 or members.max() >= total:
                raise ValidationError(
                    f"{owner}: feature_groups[{index}] has index {int(members.max())}; features are 0..{total - 1}"
                )
            if (group[members] >= 0).any():
                raise ValidationError(f"{owner}: feature_groups overlap: feature(s) "
                                      f"{sorted(int(m) for m in members[group[members] >= 0])} are in two groups")
            group[members] = index
        labels: list[Any] = [list(map(int, g)) for g in spec]
        alone = np.flatnonzero(group < 0)
        group[alone] = len(spec) + np.arange(len(alone))
        labels += [[int(a)] for a in alone]
        return FeatureGroups(torch.as_tensor(group, device=device), len(labels), labels)
    parts = spec if isinstance(spec, tuple) else (spec,)
    if len(parts) != len(batch.tensors):
        raise ValidationError(f"{owner}: feature_groups has {len(parts)} arrays for {len(batch.tensors)} inputs")
    ids = []
    for i, (part, x) in enumerate(zip(parts, batch.tensors, strict=True)):
        array = np.asarray(part.detach().cpu() if isinstance(part, torch.Tensor) else part)
        if tuple(array.shape) != tuple(x.shape[1:]) or not np.issubdtype(array.dtype, np.integer):
            raise ValidationError(
                f"{owner}: feature_groups{'' if len(parts) == 1 else f'[{i}]'} must be an integer array of group "
                f"ids with one sample's shape {tuple(x.shape[1:])}, or a list of index lists; got "
                f"{describe_value(part)}"
            )
        ids.append(array.reshape(-1))
    unique, inverse = np.unique(np.concatenate(ids), return_inverse=True)
    return FeatureGroups(torch.as_tensor(inverse.astype(np.int64), device=device), len(unique),
                         [v.item() for v in unique])


class Masker:
    """Evaluates ``v(S)`` for coalitions ``S`` of players, for every explained sample at once.

    Args:
        batch: the explained inputs.
        reference: the replacement rows (:func:`prepare_reference`).
        groups: the players (:func:`prepare_groups`).
        engine: the evaluation engine (target already resolved).
    """

    def __init__(self, batch: InputBatch, reference: Reference, groups: FeatureGroups,
                 engine: EvaluationEngine) -> None:
        self.batch = batch
        self.shapes = [tuple(t.shape[1:]) for t in batch.tensors]
        self.flat = [t.reshape(t.shape[0], -1) for t in batch.tensors]
        self.sizes = [int(f.shape[1]) for f in self.flat]
        self.offsets = np.cumsum([0, *self.sizes]).tolist()
        self.reference = reference
        self.groups = groups
        self.engine = engine
        self.device = batch.tensors[0].device

    @property
    def n_players(self) -> int:
        return self.groups.n_groups

    @property
    def n_elements(self) -> int:
        return self.offsets[-1]

    def values(self, keep: torch.Tensor | np.ndarray, *, elements: bool = False, desc: str = "coalitions") -> torch.Tensor:
        """``v(S)`` of each coalition for each sample, shape ``(n, m)`` float64.

        ``keep`` is ``(m, n_players)`` (or ``(m, n_elements)`` with ``elements=True``, e.g. occlusion windows);
        ``True`` keeps the sample's value. The same coalitions are used for every sample.
        """
        keep = torch.as_tensor(keep, device=self.device, dtype=torch.bool)
        if not elements and not self.groups.identity:
            keep = keep.index_select(1, self.groups.element_group)
        n, m, b = self.batch.n, int(keep.shape[0]), self.reference.n_rows
        if m == 0:
            return torch.zeros(n, 0, dtype=torch.float64, device=self.device)
        per_block = max(1, _MAX_SCORE_ROWS // (m * b))
        out = []
        for start in range(0, n, per_block):  # sample blocks bound the memory of the score vector
            samples = range(start, min(n, start + per_block))
            scores = self._scores(keep, samples, desc)
            scores = scores.reshape(len(samples), m, b)
            w = self.reference.weights
            out.append(scores.mean(2) if w is None else scores @ w.to(scores.device))
        return torch.cat(out)

    def _scores(self, keep: torch.Tensor, samples: range, desc: str) -> torch.Tensor:
        m, b = int(keep.shape[0]), self.reference.n_rows
        first = samples.start
        n_rows = len(samples) * m * b
        background = self.reference.rows

        def make_rows(rows: slice) -> tuple[torch.Tensor, ...]:
            u0, u1 = rows.start // b, -(-rows.stop // b)
            units = torch.arange(u0, u1, device=self.device)
            sample = units // m + first
            kept = keep.index_select(0, units % m)
            lo, hi = rows.start - u0 * b, rows.stop - u0 * b
            out = []
            for i, (x, bg, shape) in enumerate(zip(self.flat, background, self.shapes, strict=True)):
                part = kept[:, self.offsets[i]:self.offsets[i + 1]]
                built = torch.where(part[:, None, :], x.index_select(0, sample)[:, None, :], bg[None, :, :])
                out.append(built.reshape(-1, *shape)[lo:hi])
            return tuple(out)

        def sample_index(rows: slice) -> torch.Tensor:
            return torch.arange(rows.start, rows.stop, device=self.device) // (m * b) + first

        return self.engine.scores(n_rows, make_rows, sample_index, desc=desc)

    # ------------------------------------------------------------------ results
    def spread(self, player_values: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        """Per-player values ``(n, d)`` -> one tensor per input with the input's shape (each element of a group
        gets the group's value)."""
        values = player_values
        if not self.groups.identity:
            values = values.index_select(1, self.groups.element_group.to(values.device))
        out = []
        for i, (x, shape) in enumerate(zip(self.batch.tensors, self.shapes, strict=True)):
            part = values[:, self.offsets[i]:self.offsets[i + 1]].reshape(values.shape[0], *shape)
            target_dtype = dtype or (x.dtype if x.is_floating_point() else torch.float64)
            out.append(part.to(device=x.device, dtype=target_dtype))
        return tuple(out)

    def flat_elements(self, player_values: torch.Tensor) -> torch.Tensor:
        """Per-player values spread to elements, as ``(n, *shape)`` for one input or ``(n, n_elements)``."""
        parts = self.spread(player_values, dtype=player_values.dtype)
        return parts[0] if len(parts) == 1 else torch.cat([p.reshape(p.shape[0], -1) for p in parts], 1)


# ---------------------------------------------------------------------------------- per-sample coalitions
@dataclass
class SampleGroups:
    """Players of each sample: ``element_group[i, e]`` is the player (``0 .. n_groups[i] - 1``) of flattened
    element ``e`` of sample ``i``, or ``-1`` for an element that is never masked (e.g. padding, special tokens)."""

    element_group: torch.Tensor  # (n, n_elements) long
    n_groups: torch.Tensor  # (n,) long
    labels: list[list[Any]]  # the user's group ids of each sample, in player order

    @property
    def max_groups(self) -> int:
        return int(self.n_groups.max()) if self.n_groups.numel() else 0

    def valid(self) -> torch.Tensor:
        """``(n, max_groups)`` bool: which player columns exist for each sample."""
        columns = torch.arange(self.max_groups, device=self.n_groups.device)
        return columns[None, :] < self.n_groups[:, None]


def prepare_sample_groups(spec: Any, batch: InputBatch, *, owner: str) -> SampleGroups:
    """Parse ``feature_groups`` allowing one map per sample.

    Accepted: ``None`` (every element its own player), anything :func:`prepare_groups` accepts (one map with a
    sample's shape, or index lists: the same players for every sample), or integer arrays of shape
    ``(n, *sample_shape)`` (a tuple of them per input; one map per sample, e.g. a superpixel map per image).
    Negative ids mark elements that are never masked. Player order: ascending ids of each sample.
    """
    n = batch.n
    device = batch.tensors[0].device
    parts = spec if isinstance(spec, tuple) else (spec,)
    per_sample = spec is not None and len(parts) == len(batch.tensors) and all(
        hasattr(p, "shape") and tuple(p.shape) == (n, *x.shape[1:]) for p, x in zip(parts, batch.tensors, strict=True))
    if not per_sample:
        shared = prepare_groups(spec, batch, owner=owner)
        total = sum(int(math.prod(t.shape[1:])) for t in batch.tensors)
        ids = np.arange(total) if shared.identity else shared.element_group.cpu().numpy()
        ids = np.broadcast_to(ids, (n, total))
    else:
        arrays = []
        for i, part in enumerate(parts):
            array = np.asarray(part.detach().cpu() if isinstance(part, torch.Tensor) else part)
            if not np.issubdtype(array.dtype, np.integer):
                raise ValidationError(f"{owner}: feature_groups{'' if len(parts) == 1 else f'[{i}]'} must hold integer "
                                      f"group ids, got {describe_value(part)}")
            arrays.append(array.reshape(n, -1))
        ids = np.concatenate(arrays, 1)
    group = np.full(ids.shape, -1, dtype=np.int64)
    counts, labels = [], []
    for i in range(n):
        row = ids[i]
        keep = row >= 0
        unique, inverse = np.unique(row[keep], return_inverse=True)
        group[i, keep] = inverse.reshape(-1)
        counts.append(len(unique))
        labels.append([v.item() for v in unique])
    if min(counts) == 0:
        raise ValidationError(f"{owner}: feature_groups leave sample {counts.index(0)} without any feature to perturb "
                              f"(all its group ids are negative)")
    return SampleGroups(torch.as_tensor(group, device=device), torch.as_tensor(counts, device=device), labels)


class CoalitionMasker:
    """Model scores of per-sample coalitions: ``keep[i, k, j]`` keeps player ``j`` of sample ``i`` in perturbation
    ``k``; hidden elements take the fill's values (:mod:`.fills`). One model row per (sample, perturbation),
    ordered (sample, perturbation), built chunk by chunk with one ``torch.where``.

    Example::

        masker = CoalitionMasker(batch, prepare_sample_groups(segments, batch, owner="LIME"), fill, engine)
        values = masker.values(keep)   # (n, m) float64
    """

    def __init__(self, batch: InputBatch, groups: SampleGroups, fill: Any, engine: EvaluationEngine) -> None:
        self.batch = batch
        self.shapes = [tuple(t.shape[1:]) for t in batch.tensors]
        self.flat = [t.reshape(t.shape[0], -1) for t in batch.tensors]
        self.offsets = np.cumsum([0, *[int(f.shape[1]) for f in self.flat]]).tolist()
        self.groups = groups
        self.fill = fill
        self.engine = engine
        self.device = batch.tensors[0].device
        d = groups.max_groups
        self._columns = torch.where(groups.element_group < 0, d, groups.element_group)  # -1 -> the "always" column

    def values(self, keep: torch.Tensor, *, desc: str = "perturbations") -> torch.Tensor:
        """Target score of every perturbation of every sample, ``(n, m)`` float64; ``keep`` is ``(n, m, d)`` bool."""
        n, m = int(keep.shape[0]), int(keep.shape[1])
        if m == 0:
            return torch.zeros(n, 0, dtype=torch.float64, device=self.device)
        keep = torch.cat([keep.to(self.device, torch.bool),
                          torch.ones(n, m, 1, dtype=torch.bool, device=self.device)], 2)

        def make_rows(rows: slice) -> tuple[torch.Tensor, ...]:
            index = torch.arange(rows.start, rows.stop, device=self.device)
            sample, k = index // m, index % m
            kept = keep[sample, k].gather(1, self._columns.index_select(0, sample))  # (r, n_elements)
            fills = self.fill.rows(sample, k)
            out = []
            for i, (x, shape) in enumerate(zip(self.flat, self.shapes, strict=True)):
                part = kept[:, self.offsets[i]:self.offsets[i + 1]]
                out.append(torch.where(part, x.index_select(0, sample), fills[i].to(x.dtype)).reshape(-1, *shape))
            return tuple(out)

        def sample_index(rows: slice) -> torch.Tensor:
            return torch.arange(rows.start, rows.stop, device=self.device) // m

        return self.engine.scores(n * m, make_rows, sample_index, desc=desc).reshape(n, m)

    def spread(self, player_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-player values ``(n, d)`` -> one tensor per input with the input's shape (every element of a group
        gets the group's value; never-masked elements get 0)."""
        padded = torch.cat([player_values, torch.zeros_like(player_values[:, :1])], 1)
        values = padded.gather(1, self._columns.to(padded.device))
        out = []
        for i, (x, shape) in enumerate(zip(self.batch.tensors, self.shapes, strict=True)):
            part = values[:, self.offsets[i]:self.offsets[i + 1]].reshape(values.shape[0], *shape)
            out.append(part.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float64))
        return tuple(out)
