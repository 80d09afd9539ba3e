"""Batching engine: one ``batch_size`` knob (most samples per model call) for every method.

``batch_size=None`` chooses the chunk from the memory budget (:mod:`lumos.core.config`): the bytes one row
needs are measured once per model and input shape by a probe forward of a single row, counting the tensors
autograd saves for the backward pass, and cached. Results never depend on the chunk size.

On a CPU the chunk is also kept cache-sized: a model call runs fastest when one layer's activations for the
whole chunk stay around a few MiB (measured on 2 cores: a small CNN is 1.5-2x faster per row at 64 rows
than at 1,024, a ResNet-18 at 4-16 rows than at 48), so rows per call are capped at
``CPU_LAYER_BYTES * n_saved_tensors / bytes_per_row``, i.e. the mean saved activation of one layer times
the rows stays near :data:`CPU_LAYER_BYTES`. Accelerators get the largest chunk the budget allows.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator

import torch

from ..errors import ValidationError
from .config import memory_budget
from .progress import progress_bar

#: peak memory of forward + backward relative to the tensors saved for backward
_BACKWARD_FACTOR = 2.0
#: on a CPU, aim for about this many bytes of one layer's activations per model call (cache-sized chunks)
CPU_LAYER_BYTES = 3 * 2**20


class RowCost(int):
    """Bytes autograd saves for one row (an ``int``), with the number of distinct tensors saved."""

    n_tensors: int

    def __new__(cls, nbytes: int, n_tensors: int) -> RowCost:
        cost = super().__new__(cls, nbytes)
        cost.n_tensors = int(n_tensors)
        return cost
_probe_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_batch_size(batch_size: int | None, *, owner: str) -> int | None:
    """Validate the ``batch_size`` argument (``None`` or an int >= 1)."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(f"{owner}: batch_size must be None or an int >= 1, got {batch_size!r}")
    return batch_size


def measure_row_bytes(run_one_row: Callable[[], object], *,
                      parameters: Iterable[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]) -> RowCost:
    """Bytes of activations autograd saves when ``run_one_row`` runs one row forward (parameters excluded),
    as a :class:`RowCost` that also counts the distinct tensors saved.

    ``parameters`` may be a callable returning them (only called when a measurement is made).
    """
    if callable(parameters):
        parameters = parameters()
    param_storages = {p.untyped_storage().data_ptr() for p in parameters}
    seen: set[int] = set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages and ptr not in seen:
            seen.add(ptr)
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run_one_row()
    return RowCost(total, len(seen))


def row_bytes(owner_object: object, key: Hashable, run_one_row: Callable[[], object],
              *, parameters: Iterable[torch.Tensor] | Callable[[], Iterable[torch.Tensor]]) -> RowCost:
    """Cached :func:`measure_row_bytes` per (model, key); the model is held weakly."""
    try:
        cache = _probe_cache.setdefault(owner_object, {})
    except TypeError:  # not weak-referenceable: measure every time
        return measure_row_bytes(run_one_row, parameters=parameters)
    if key not in cache:
        cache[key] = measure_row_bytes(run_one_row, parameters=parameters)
    return cache[key]


def chunk_size(n_rows: int, *, batch_size: int | None, bytes_per_row: int | None,
               device: torch.device | None = None, backward: bool = True) -> int:
    """Rows per model call: ``batch_size`` when given, else as many as fit in the memory budget (forward +
    backward, or a forward alone with ``backward=False``), capped to cache-sized chunks on a CPU ``device``
    when ``bytes_per_row`` is a :class:`RowCost`."""
    if batch_size is not None:
        return max(1, min(batch_size, n_rows))
    if not bytes_per_row:
        return max(1, n_rows)
    fits = int(memory_budget() // (bytes_per_row * (_BACKWARD_FACTOR if backward else 1.0)))
    if device is not None and device.type == "cpu" and getattr(bytes_per_row, "n_tensors", 0):
        fits = min(fits, cpu_rows(bytes_per_row))
    return max(1, min(n_rows, fits))


def cpu_rows(cost: RowCost) -> int:
    """Cache-sized rows per call on a CPU: ``CPU_LAYER_BYTES * n_tensors / bytes_per_row`` (at least 1)."""
    return max(1, int(CPU_LAYER_BYTES * cost.n_tensors // max(1, int(cost))))


def iter_chunks(n_rows: int, size: int, *, desc: str, progress: bool | None) -> Iterator[slice]:
    """Yield consecutive row slices of at most ``size`` rows, with a progress bar."""
    n_chunks = math.ceil(n_rows / size)
    if n_chunks <= 1 and not progress:  # one call: no bar to show (saves building a disabled tqdm)
        yield slice(0, n_rows)
        return
    with progress_bar(n_chunks, desc=desc, progress=progress) as bar:
        for start in range(0, n_rows, size):
            yield slice(start, min(start + size, n_rows))
            bar.update(1)
