"""Evaluation engine: target scores of many model inputs, without gradients, in memory-budgeted chunks.

Model-agnostic methods (Shapley values, occlusion, ablation, later LIME and RISE) only need the model's
target score at many perturbed rows. Each row belongs to one explained sample (``sample_index``), whose
target and extra forward arguments it uses. Rows are built lazily chunk by chunk by the caller
(``make_rows(slice) -> tensors``), so a million masked rows never exist at once; only their scores (one
float per row) are kept.

Chunk size: ``batch_size`` when given, else from the memory budget (:mod:`lumos.core.config`): the
activations one row needs are measured once per model and input shape by a probe forward of one row and
cached (:func:`lumos.core.batching.row_bytes`); a forward pass without gradients keeps far less than that
alive, so the estimate is safe. Numpy models and plain functions (no parameters to probe) are sized from the
input row bytes: on a CPU, calls of about 8 MiB of input (at least 1,024 rows), within the budget.

Example::

    engine = EvaluationEngine(adapter, {}, target, n_samples=x.shape[0], owner="KernelSHAP")
    fx = engine.resolve((x,))                       # f(x), fixes target=None to the predicted class
    scores = engine.scores(n_rows, make_rows, sample_index)

or, one model call fewer: ``engine.defer((x,))``, ``engine.scores(...)``, then ``fx = engine.clean_scores()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ValidationError
from .batching import chunk_size, iter_chunks, row_bytes
from .config import memory_budget
from .hooks import HookSet
from .inputs import all_finite, select_rows
from .model import ModelAdapter
from .targets import Target

Rows = tuple[torch.Tensor, ...]
#: working memory of a numpy model per byte of its input row (intermediate arrays, tree traversal buffers)
_NUMPY_FACTOR = 32
#: at most this many rows per call of a numpy model (keeps peak memory of unknown models reasonable)
_NUMPY_MAX_ROWS = 1 << 17
#: a model without parameters to probe gets about this many input bytes per call, but at least
#: ``_NUMPY_MIN_ROWS`` rows (bounds the per-call overhead of models such as scikit-learn's, ~0.1 ms a call).
#: Measured on 2 cores with a 30-feature MLP: one 200k-row call is 2.5-3x slower per row than 4k-16k-row
#: calls (its fresh arrays above glibc's 32 MiB mmap threshold are page-faulted in on every call); a torch
#: MLP behind a numpy function is fastest at ~2 MiB calls, but scikit-learn's BLAS thread pool and torch's
#: (which builds the rows) hand the cores back and forth at every call, which made 2 MiB calls 1.3-1.8x
#: slower than 8-16 MiB calls there. 8 MiB is the compromise.
_FUNCTION_CHUNK_BYTES = 8 << 20
_NUMPY_MIN_ROWS = 1024


class EvaluationEngine:
    """Batched, gradient-free target scores for one ``explain`` call.

    Args:
        adapter: the wrapped model.
        forward_kwargs: extra model arguments; tensors whose first dimension is ``n_samples`` are per sample
            and are indexed by each row's sample.
        target: the target (fixed by :meth:`resolve` when it depends on the output, e.g. the predicted class).
        n_samples: number of explained samples.
        batch_size: most rows per model call (``None``: from the memory budget).
        progress: progress bar switch.
        owner: method name for messages.
    """

    def __init__(self, adapter: ModelAdapter, forward_kwargs: Mapping[str, Any], target: Target, *,
                 n_samples: int, batch_size: int | None = None, progress: bool | None = None,
                 owner: str = "lumos") -> None:
        self.adapter = adapter
        self.forward_kwargs = dict(forward_kwargs)
        self.target = target
        self.n_samples = int(n_samples)
        self.batch_size = batch_size
        self.progress = progress
        self.owner = owner
        #: number of rows the model was called on (probe excluded)
        self.n_evaluations = 0
        #: clean inputs waiting to ride along with the first chunk of the next :meth:`scores` call (:meth:`defer`)
        self._pending: Rows | None = None
        self._clean_scores: torch.Tensor | None = None
        self._target_layers = {spec: adapter.find_layer(spec)[1] for spec in target.layers}

    # ------------------------------------------------------------------ one call
    def _forward(self, rows: Rows, sample_index: torch.Tensor) -> tuple[torch.Tensor, dict[Any, torch.Tensor]]:
        captured: dict[Any, torch.Tensor] = {}
        kwargs = select_rows(self.forward_kwargs, sample_index, self.n_samples)
        if self._target_layers:
            with HookSet() as hooks:
                for spec, module in self._target_layers.items():
                    hooks.forward(module, _capture_into(captured, spec))
                output = self.adapter(rows, kwargs)
        else:
            output = self.adapter(rows, kwargs)
        self.n_evaluations += int(rows[0].shape[0])
        return output, captured

    def _check(self, output: torch.Tensor, scores: torch.Tensor, what: str) -> None:
        if scores.ndim != 1 or scores.shape[0] != output.shape[0]:
            raise ValidationError(
                f"{self.owner}: the target must give one score per row, got shape {tuple(scores.shape)} for "
                f"{output.shape[0]} rows"
            )
        if not all_finite(scores):
            bad = int((~torch.isfinite(scores)).sum())
            raise ValidationError(
                f"{self.owner}: the model returned NaN or infinite scores for {bad} of {scores.shape[0]} {what}; "
                f"lumos needs finite outputs (check the model on inputs built from the baseline/background)"
            )

    # ------------------------------------------------------------------ chunking
    def chunk(self, n_rows: int, example: Rows) -> int:
        """Rows per model call for rows shaped like ``example``."""
        if self.batch_size is not None:
            return max(1, min(self.batch_size, n_rows))
        module = self.adapter.module
        if module is None:
            row = sum(t[:1].numel() * t.element_size() for t in example)
            factor = _NUMPY_FACTOR if self.adapter.is_numpy else 4 * _NUMPY_FACTOR
            fits = int(memory_budget() // max(1, row * factor))
            if example[0].device.type == "cpu":  # cache-sized calls; accelerators get the budget's chunk
                fits = min(fits, max(_NUMPY_MIN_ROWS, _FUNCTION_CHUNK_BYTES // max(1, row)))
            return max(1, min(n_rows, fits, _NUMPY_MAX_ROWS))
        key = ("forward", tuple((tuple(t.shape[1:]), t.dtype) for t in example))
        per_row = row_bytes(module, key, lambda: self._probe(module, example),
                            parameters=lambda: [*module.parameters(), *module.buffers()])
        if not per_row:
            return max(1, n_rows)
        return chunk_size(n_rows, batch_size=None, bytes_per_row=per_row, device=example[0].device, backward=False)

    def _probe(self, module: nn.Module, example: Rows) -> None:
        """One row forward with gradients on, to count the activations it creates (not an evaluation)."""
        counted = self.n_evaluations
        index = torch.zeros(1, dtype=torch.long, device=example[0].device)
        with torch.enable_grad():
            rows = tuple(t[:1].detach().requires_grad_(t.is_floating_point()) for t in example)
            output, captured = self._forward(rows, index)
        self.n_evaluations = counted
        del output, captured

    # ------------------------------------------------------------------ public entry points
    def resolve(self, tensors: Rows, *, desc: str = "forward") -> torch.Tensor:
        """Target scores of the clean inputs (one row per sample), fixing the target on their output first.

        ``target=None`` becomes the predicted class here; class indices are checked against the output.
        """
        n_rows = int(tensors[0].shape[0])
        device = tensors[0].device
        index = torch.arange(n_rows, device=device)
        parts = []
        with torch.no_grad():
            for rows in iter_chunks(n_rows, self.chunk(n_rows, tensors), desc=desc, progress=self.progress):
                output, captured = self._forward(tuple(t[rows] for t in tensors), index[rows])
                parts.append((rows, output, captured))
            output = torch.cat([p[1] for p in parts])
            self.target = self.target.resolve(output, owner=self.owner, n_samples=n_rows)
            scores = torch.cat([self.target.score(out, index[rows], cap) for rows, out, cap in parts])
        self._check(output, scores, "inputs")
        return scores

    def defer(self, tensors: Rows) -> None:
        """Evaluate the clean inputs (one row per sample) with the first chunk of the next :meth:`scores` call.

        Saves one model call per ``explain`` (its fixed cost matters for cheap models on few rows). The target is resolved on the clean rows' output before any perturbed row
        is scored, exactly as :meth:`resolve` does; read the clean scores with :meth:`clean_scores`. Targets
        read from a layer (hooks) are resolved at once instead.
        """
        if self._target_layers:
            self._clean_scores = self.resolve(tensors)
        else:
            self._pending = tensors

    def clean_scores(self) -> torch.Tensor:
        """Target scores of the inputs given to :meth:`defer` (evaluated now if no :meth:`scores` call took them)."""
        if self._pending is not None:
            tensors, self._pending = self._pending, None
            self._clean_scores = self.resolve(tensors)
        if self._clean_scores is None:
            raise RuntimeError("EvaluationEngine.clean_scores needs a defer() or resolve() call first")
        return self._clean_scores

    def _forward_with_clean(self, clean: Rows, tensors: Rows,
                            index: torch.Tensor) -> tuple[torch.Tensor, dict[Any, torch.Tensor]]:
        """One model call on the clean rows followed by ``tensors``; resolves the target on the clean part,
        keeps its scores, and returns the output of ``tensors``' rows."""
        n = int(clean[0].shape[0])
        clean_index = torch.arange(n, device=index.device)
        rows = tuple(torch.cat([c, t.to(c.dtype)]) for c, t in zip(clean, tensors, strict=True))
        output, captured = self._forward(rows, torch.cat([clean_index, index]))
        head = output[:n]
        self.target = self.target.resolve(head, owner=self.owner, n_samples=n)
        scores = self.target.score(head, clean_index, {})
        self._check(head, scores, "inputs")
        self._clean_scores = scores
        return output[n:], captured

    def scores(self, n_rows: int, make_rows: Callable[[slice], Rows],
               sample_index: torch.Tensor | Callable[[slice], torch.Tensor], *,
               desc: str = "evaluations", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Target score of each of ``n_rows`` rows, shape ``(n_rows,)`` in ``dtype``.

        ``make_rows(rows)`` builds the model inputs of the rows in slice ``rows``; ``sample_index`` gives the
        sample of each row (a tensor, or a function of the slice). Call :meth:`resolve` first when the target
        depends on the clean output.
        """
        out: torch.Tensor | None = None
        size: int | None = None
        with torch.no_grad():
            first = make_rows(slice(0, min(n_rows, 1)))
            size = self.chunk(n_rows, first)
            for rows in iter_chunks(n_rows, size, desc=desc, progress=self.progress):
                tensors = make_rows(rows)
                index = sample_index(rows) if callable(sample_index) else sample_index[rows]
                if self._pending is not None:  # the clean inputs ride along with the first chunk
                    clean, self._pending = self._pending, None
                    output, captured = self._forward_with_clean(clean, tensors, index)
                else:
                    output, captured = self._forward(tensors, index)
                chunk_scores = self.target.score(output, index, captured)
                self._check(output, chunk_scores, "perturbed rows")
                if out is None:
                    out = torch.empty(n_rows, dtype=dtype, device=chunk_scores.device)
                out[rows] = chunk_scores.to(dtype)
        if out is None:
            return torch.empty(0, dtype=dtype)
        return out


def _capture_into(store: dict[Any, torch.Tensor], key: Any) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        store[key] = output

    return hook
