"""Gradient engine: batched gradients of the target score with respect to the inputs or to a layer's output.

Every gradient method runs through one of two entry points:

- :meth:`GradientEngine.at_inputs` - gradients at the inputs themselves (saliency, input x gradient,
  guided backprop), one row per sample;
- :meth:`GradientEngine.along` - gradients at arbitrary points built lazily chunk by chunk from a row
  index (integration paths, noisy copies, background samples); each row belongs to one sample
  (``sample_index``), whose target and extra forward arguments it uses. Results are reduced chunk by chunk
  by the caller (``consume``), so n_steps=200 at 224x224 never holds every path point at once.

With ``layer=`` the attribution space is the output of that layer: points replace the layer's output
during the forward pass (the model still runs on the row's own inputs), and gradients are taken with
respect to them. This is how token models are explained at their embedding layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UnsupportedModelError, ValidationError
from .backward_rules import BackwardRules
from .batching import chunk_size, iter_chunks, row_bytes
from .hooks import HookSet
from .inputs import InputBatch, select_rows
from .model import ModelAdapter
from .targets import Class, Target

Points = tuple[torch.Tensor, ...]


class GradientEngine:
    """Batched forward/backward passes for one ``explain`` call.

    Args:
        adapter: the wrapped model.
        batch: the validated inputs.
        forward_kwargs: extra model arguments (per-sample tensors are indexed per row).
        target: the target (resolved with :meth:`resolve_target` when it depends on the output).
        layer: ``None`` (attribute to the inputs) or a module / dotted name (attribute to its output).
        batch_size: most rows per model call (``None``: from the memory budget).
        progress: progress bar switch.
        override: a context manager factory active during gradient passes (a forward-pass override).
        backward_rules: rules rewriting the backward pass of graph nodes (e.g. guided ReLUs), see
            :mod:`lumos.core.backward_rules`.
        owner: method name for messages.
    """

    def __init__(self, adapter: ModelAdapter, batch: InputBatch, forward_kwargs: Mapping[str, Any],
                 target: Target, *, layer: nn.Module | str | None = None, batch_size: int | None = None,
                 progress: bool | None = None, override: Callable[[], Any] | None = None,
                 backward_rules: BackwardRules | None = None, owner: str = "lumos") -> None:
        self.adapter = adapter
        self.batch = batch
        self.forward_kwargs = dict(forward_kwargs)
        self.target = target
        self.batch_size = batch_size
        self.progress = progress
        self.override = override
        self.backward_rules = backward_rules
        self.owner = owner
        self.n_evaluations = 0
        self.layer_name: str | None = None
        self.layer: nn.Module | None = None
        if layer is not None:
            self.layer_name, self.layer = adapter.find_layer(layer)
        self._target_layers = {spec: adapter.find_layer(spec)[1] for spec in target.layers}

    # ------------------------------------------------------------------ forward passes
    def _forward(self, tensors: Points, sample_index: torch.Tensor, *,
                 layer_points: torch.Tensor | None = None, capture_layer: bool = False
                 ) -> tuple[torch.Tensor, dict[Any, torch.Tensor], torch.Tensor | None]:
        """One model call. Returns (output, captured target layers, the layer's output as a grad leaf)."""
        captured: dict[Any, torch.Tensor] = {}
        layer_leaf: list[torch.Tensor] = []
        kwargs = select_rows(self.forward_kwargs, sample_index, self.batch.n)
        with HookSet() as hooks:
            for spec, module in self._target_layers.items():
                hooks.forward(module, _capture_into(captured, spec))
            if self.layer is not None and (layer_points is not None or capture_layer):
                hooks.forward(self.layer, self._layer_hook(layer_points, layer_leaf))
            output = self.adapter(tensors, kwargs)
        self.n_evaluations += int(tensors[0].shape[0])
        return output, captured, (layer_leaf[0] if layer_leaf else None)

    def _layer_hook(self, points: torch.Tensor | None, store: list[torch.Tensor]) -> Callable[..., Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
            if store:
                raise ValidationError(
                    f"{self.owner}: layer {self.layer_name!r} runs more than once in one forward pass; "
                    f"attribute to a layer that is called once"
                )
            if not isinstance(output, torch.Tensor):
                raise ValidationError(
                    f"{self.owner}: layer {self.layer_name!r} returns {type(output).__name__}, not a tensor; "
                    f"choose a layer whose output is one tensor"
                )
            if points is not None:
                if points.shape != output.shape:
                    raise ValidationError(
                        f"{self.owner}: layer {self.layer_name!r} output has shape {tuple(output.shape)}, "
                        f"but the attribution points have shape {tuple(points.shape)}"
                    )
                leaf = points
            else:
                leaf = output.detach().requires_grad_(True)
            store.append(leaf)
            return leaf

        return hook

    def _score(self, output: torch.Tensor, sample_index: torch.Tensor,
               captured: Mapping[Any, torch.Tensor]) -> torch.Tensor:
        return self.target.score(output, sample_index, captured)

    def _grad(self, score: torch.Tensor, leaves: Points) -> Points:
        if torch.is_inference_mode_enabled():  # (no_grad is fine: gradient passes enable grad themselves)
            raise UnsupportedModelError(
                f"{self.owner}: gradients cannot be computed inside torch.inference_mode(); call explain() "
                f"outside that block"
            )
        if not score.requires_grad:
            raise UnsupportedModelError(
                f"{self.owner}: the model's output does not depend differentiably on the "
                f"{'layer ' + repr(self.layer_name) if self.layer is not None else 'inputs'} (no gradient "
                f"flows: the model may detach, round, or compute with numpy). Use a model-agnostic method "
                f"such as occlusion, or make the model differentiable."
            )
        total = score.sum()
        if self.backward_rules is not None:
            grads = self.backward_rules.grad(total, leaves, allow_unused=True)
        else:
            grads = torch.autograd.grad(total, leaves, allow_unused=True)
        if all(g is None for g in grads):
            raise UnsupportedModelError(
                f"{self.owner}: the model's output does not depend on the inputs being attributed"
            )
        return tuple(torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads, strict=True))

    # ------------------------------------------------------------------ chunking
    def _chunk(self, n_rows: int, *, backward: bool = True) -> int:
        if self.batch_size is not None:
            return chunk_size(n_rows, batch_size=self.batch_size, bytes_per_row=None)
        module = self.adapter.module
        if module is None or n_rows <= 1:
            return max(1, n_rows)
        key = ("grad", self.layer_name, tuple((tuple(t.shape[1:]), t.dtype) for t in self.batch.tensors))
        per_row = row_bytes(module, key, self._probe,
                            parameters=lambda: [*module.parameters(), *module.buffers()])
        return chunk_size(n_rows, batch_size=None, bytes_per_row=per_row, device=self.batch.tensors[0].device,
                          backward=backward)

    def rows_per_call(self, n_rows: int, *, backward: bool = True) -> int:
        """Rows per model call for ``n_rows`` rows: ``batch_size``, or what fits in the memory budget (the
        per-row cost is measured once per model and input shape, with a one-row probe; cache-sized on a CPU);
        ``backward=False`` for forward passes without gradients."""
        return self._chunk(n_rows, backward=backward)

    def _probe(self) -> None:
        """One row forward, with gradients on: what a gradient pass saves per row.

        Gradients are enabled explicitly: the first chunk size is often asked for under ``no_grad`` (by
        :meth:`evaluate`), and the measurement is cached for the gradient passes that follow.
        """
        index = torch.zeros(1, dtype=torch.long, device=self.batch.tensors[0].device)
        counted = self.n_evaluations
        with torch.enable_grad():
            if self.layer is not None:
                output, captured, leaf = self._forward(tuple(t[:1] for t in self.batch.tensors), index,
                                                       capture_layer=True)
            else:
                leaves = tuple(t[:1].detach().requires_grad_(t.is_floating_point()) for t in self.batch.tensors)
                output, captured, _ = self._forward(leaves, index)
        self.n_evaluations = counted  # the probe is bookkeeping, not an evaluation of the method
        del output, captured

    # ------------------------------------------------------------------ public entry points
    def evaluate(self, tensors: Points, sample_index: torch.Tensor | None = None, *,
                 resolve: bool = False, desc: str = "forward") -> tuple[torch.Tensor, torch.Tensor]:
        """Model output and target scores at ``tensors`` (input space), without gradients.

        With ``resolve=True`` the target is first fixed on this output (e.g. the predicted class for
        ``target=None``) and checked against it (class index in range, region shape).
        """
        n_rows = int(tensors[0].shape[0])
        if sample_index is None:
            sample_index = torch.arange(n_rows, device=tensors[0].device)
        chunks = []
        with torch.no_grad():
            for rows in iter_chunks(n_rows, self._chunk(n_rows, backward=False), desc=desc,
                                    progress=self.progress):
                output, captured, _ = self._forward(tuple(t[rows] for t in tensors), sample_index[rows])
                chunks.append((rows, output, captured))
            output = torch.cat([c[1] for c in chunks])
            if resolve:
                self.target = self.target.resolve(output, owner=self.owner)
            scores = torch.cat([self._score(out, sample_index[rows], cap) for rows, out, cap in chunks])
        return output, scores

    def score_matrix(self, tensors: Points, n_samples: int, *, desc: str = "background") -> torch.Tensor:
        """Scores of every row of ``tensors`` under each sample's target: shape (n_samples, rows).

        One forward pass per chunk; for rows not tied to a sample (a background set). Extra forward
        arguments must not be per-sample tensors here.
        """
        n_rows = int(tensors[0].shape[0])
        device = tensors[0].device
        columns = []
        with torch.no_grad():
            for rows in iter_chunks(n_rows, self._chunk(n_rows, backward=False), desc=desc,
                                    progress=self.progress):
                size = rows.stop - rows.start
                zeros = torch.zeros(size, dtype=torch.long, device=device)
                output, captured, _ = self._forward(tuple(t[rows] for t in tensors), zeros)
                columns.append(torch.stack([
                    self._score(output, torch.full((size,), s, dtype=torch.long, device=device), captured)
                    for s in range(n_samples)
                ]))
        return torch.cat(columns, dim=1)

    def resolve_target(self) -> torch.Tensor:
        """Forward the clean inputs, fix the target (e.g. predicted class) and return its scores."""
        return self.evaluate(self.batch.tensors, resolve=True)[1]

    def layer_values(self, tensors: Points, sample_index: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's output at ``tensors`` (input space), without gradients."""
        n_rows = int(tensors[0].shape[0])
        if sample_index is None:
            sample_index = torch.arange(n_rows, device=tensors[0].device)
        values = []
        with torch.no_grad():
            for rows in iter_chunks(n_rows, self._chunk(n_rows, backward=False), desc="layer",
                                    progress=self.progress):
                _, _, leaf = self._forward(tuple(t[rows] for t in tensors), sample_index[rows],
                                           capture_layer=True)
                values.append(leaf.detach())
        return torch.cat(values)

    def at_inputs(self, *, desc: str = "gradients") -> tuple[Points, Points, torch.Tensor]:
        """Gradients at the inputs (or at the layer's output for the inputs).

        Returns ``(values, gradients, scores)``: ``values`` are the inputs (or the layer's activations),
        ``gradients`` the gradient of each sample's target score with respect to them, ``scores`` the
        target score per sample (the target is resolved on the fly, e.g. argmax for ``target=None``).
        """
        n = self.batch.n
        values: list[list[torch.Tensor]] = []
        grads: list[list[torch.Tensor]] = []
        scores: list[torch.Tensor] = []
        row_indices: list[Any] = []
        row_target: type[Class] = Class
        device = self.batch.tensors[0].device
        for rows in iter_chunks(n, self._chunk(n), desc=desc, progress=self.progress):
            index = torch.arange(rows.start, rows.stop, device=device)
            with torch.enable_grad(), self._override():
                if self.layer is None:
                    leaves = tuple(t[rows].detach().requires_grad_(True) for t in self.batch.tensors)
                    output, captured, _ = self._forward(leaves, index)
                else:
                    output, captured, leaf = self._forward(tuple(t[rows] for t in self.batch.tensors), index,
                                                           capture_layer=True)
                    leaves = (leaf,)
                if self.target.per_row:
                    chunk_target = self.target.resolve(output.detach(), owner=self.owner)
                    score = chunk_target.score(output, index - rows.start, captured)
                    row_indices.append(chunk_target.indices())
                    row_target = type(chunk_target) if isinstance(chunk_target, Class) else Class
                else:
                    if rows.start == 0:
                        self.target = self.target.resolve(output.detach(), owner=self.owner, n_samples=n)
                    score = self._score(output, index, captured)
                chunk_grads = self._grad(score, leaves)
            values.append([leaf.detach() for leaf in leaves])
            grads.append(list(chunk_grads))
            scores.append(score.detach())
        if row_indices and all(ix is not None for ix in row_indices):
            self.target = row_target(np.concatenate(row_indices))
        if len(grads) == 1:  # one chunk: no copies
            return tuple(values[0]), tuple(grads[0]), scores[0]
        cat = lambda parts: tuple(torch.cat(p) for p in zip(*parts, strict=True))  # noqa: E731
        return cat(values), cat(grads), torch.cat(scores)

    def along(self, n_rows: int, sample_index: torch.Tensor,
              make_points: Callable[[slice], Points],
              consume: Callable[[slice, Points, Points], None], *, desc: str = "gradients") -> None:
        """Gradients at ``n_rows`` points generated chunk by chunk.

        ``make_points(rows)`` returns the points of rows ``rows`` (in attribution space: inputs, or the
        layer's output); ``consume(rows, gradients, points)`` reduces them. Row ``r`` belongs to sample
        ``sample_index[r]``.
        """
        for rows in iter_chunks(n_rows, self._chunk(n_rows), desc=desc, progress=self.progress):
            index = sample_index[rows]
            points = tuple(p.detach().requires_grad_(True) for p in make_points(rows))
            with torch.enable_grad(), self._override():
                if self.layer is None:
                    output, captured, _ = self._forward(points, index)
                else:
                    inputs = tuple(t.index_select(0, index) for t in self.batch.tensors)
                    output, captured, _ = self._forward(inputs, index, layer_points=points[0])
                score = self._score(output, index, captured)
                chunk_grads = self._grad(score, points)
            consume(rows, chunk_grads, tuple(p.detach() for p in points))

    def paired(self, n_rows: int, sample_index: torch.Tensor,
               make_pairs: Callable[[slice], tuple[Points, Points]],
               consume: Callable[[slice, PairedChunk], None], *,
               baseline_pass: Callable[[], Any], input_pass: Callable[[], Any], desc: str = "gradients") -> None:
        """Paired passes: per chunk, the baselines' forward pass, then the inputs' forward and backward pass.

        ``make_pairs(rows)`` returns (inputs, baselines) of rows ``rows`` in input space; row ``r`` belongs to
        sample ``sample_index[r]``. Both forward passes of a chunk run inside their context (``baseline_pass()``,
        then ``input_pass()``; propagation methods record reference values in the first and use them in the
        second), so chunking never separates an input from its baseline. The backward pass runs outside both.
        ``consume(rows, chunk)`` receives a :class:`PairedChunk`: the attribution-space values of both (inputs
        or the layer's output), the gradients at the inputs' values and both target scores.

        The target is resolved on the inputs' output (as in :meth:`at_inputs`); with a per-row target (the
        predicted class) rows must be one per sample (``sample_index`` = arange), else resolve it first with
        :meth:`resolve_target`. A pair costs about two rows of a gradient pass: chunks hold half as many rows.
        """
        device = self.batch.tensors[0].device
        if self.target.per_row and not torch.equal(sample_index, torch.arange(n_rows, device=sample_index.device)):
            raise RuntimeError("GradientEngine.paired: resolve a per-row target before pairing rows with samples")
        size = max(1, self._chunk(2 * n_rows) // 2) if self.batch_size is None else self._chunk(n_rows)
        row_indices: list[Any] = []
        row_target: type[Class] = Class
        for rows in iter_chunks(n_rows, size, desc=desc, progress=self.progress):
            index = sample_index[rows].to(device)
            inputs, baselines = make_pairs(rows)
            with torch.enable_grad():
                with baseline_pass():
                    ref_output, ref_captured, ref_leaves = self._leaf_forward(baselines, index)
                with input_pass():
                    output, captured, leaves = self._leaf_forward(inputs, index)
                if self.target.per_row:
                    chunk_target = self.target.resolve(output.detach(), owner=self.owner)
                    local = index - rows.start
                    score = chunk_target.score(output, local, captured)
                    ref_score = chunk_target.score(ref_output, local, ref_captured)
                    row_indices.append(chunk_target.indices())
                    row_target = type(chunk_target) if isinstance(chunk_target, Class) else Class
                else:
                    if rows.start == 0:
                        self.target = self.target.resolve(output.detach(), owner=self.owner, n_samples=self.batch.n)
                    score = self._score(output, index, captured)
                    ref_score = self._score(ref_output, index, ref_captured)
                grads = self._grad(score, leaves)
            consume(rows, PairedChunk(tuple(v.detach() for v in leaves), tuple(v.detach() for v in ref_leaves),
                                      grads, score.detach(), ref_score.detach()))
        if row_indices and all(ix is not None for ix in row_indices):
            self.target = row_target(np.concatenate(row_indices))

    def _leaf_forward(self, tensors: Points, index: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[Any, torch.Tensor], Points]:
        """Forward with gradient leaves: the (floating) inputs, or the layer's output."""
        if self.layer is None:
            leaves = tuple(t.detach().requires_grad_(t.is_floating_point()) for t in tensors)
            output, captured, _ = self._forward(leaves, index)
            return output, captured, leaves
        output, captured, leaf = self._forward(tensors, index, capture_layer=True)
        return output, captured, (leaf,)

    def _override(self) -> Any:
        return self.override() if self.override is not None else contextlib.nullcontext()


class PairedChunk:
    """What :meth:`GradientEngine.paired` hands to ``consume`` for one chunk of (input, baseline) pairs."""

    __slots__ = ("gradients", "reference_scores", "reference_values", "scores", "values")

    def __init__(self, values: Points, reference_values: Points, gradients: Points, scores: torch.Tensor,
                 reference_scores: torch.Tensor) -> None:
        self.values = values
        self.reference_values = reference_values
        self.gradients = gradients
        self.scores = scores
        self.reference_scores = reference_scores


def _capture_into(store: dict[Any, torch.Tensor], key: Any) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        store[key] = output

    return hook


def has_per_sample_kwargs(forward_kwargs: Mapping[str, Any], n: int) -> bool:
    """Whether any extra forward argument is a per-sample tensor (first dimension ``n``)."""
    return any(isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n for v in forward_kwargs.values())
