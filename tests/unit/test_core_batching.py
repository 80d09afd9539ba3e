"""Unit: the batching engine (lumos.core.batching) and the memory budget it reads."""

from __future__ import annotations

import pytest
import torch

import lumos
from conftest import NEURAL_METHODS, case_for, make_cnn, make_token, rand, run_method
from lumos.core import batching
from lumos.core.batching import check_batch_size, chunk_size, iter_chunks, measure_row_bytes


def test_check_batch_size() -> None:
    assert check_batch_size(None, owner="X") is None
    assert check_batch_size(7, owner="X") == 7
    for bad in (0, -3, 2.0, True, "8"):
        with pytest.raises(lumos.ValidationError, match=r"X: batch_size must be None or an int >= 1"):
            check_batch_size(bad, owner="X")


def test_chunk_size_with_an_explicit_batch_size() -> None:
    assert chunk_size(10, batch_size=3, bytes_per_row=10**9) == 3  # batch_size wins over the budget
    assert chunk_size(2, batch_size=3, bytes_per_row=None) == 2  # never more than the rows


def test_chunk_size_respects_the_memory_budget() -> None:
    lumos.config.set_memory_budget(1000)
    # each row needs 100 bytes saved, x2 for the backward pass: 5 rows fit in 1000 bytes
    assert chunk_size(100, batch_size=None, bytes_per_row=100) == 5
    assert chunk_size(3, batch_size=None, bytes_per_row=100) == 3
    assert chunk_size(100, batch_size=None, bytes_per_row=10**6) == 1  # at least one row
    assert chunk_size(100, batch_size=None, bytes_per_row=0) == 100  # nothing measured: all rows
    lumos.config.set_memory_budget("1MB")
    assert chunk_size(10**6, batch_size=None, bytes_per_row=100) == 1024**2 // 200


def test_iter_chunks_covers_every_row_once() -> None:
    slices = list(iter_chunks(10, 4, desc="t", progress=False))
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 10)]
    assert [(s.start, s.stop) for s in iter_chunks(3, 5, desc="t", progress=False)] == [(0, 3)]


def test_measure_row_bytes_counts_saved_activations() -> None:
    linear = torch.nn.Linear(100, 50)
    x = torch.randn(1, 100, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def one_row() -> None:
        torch.tanh(linear(x))

    measured = measure_row_bytes(one_row, parameters=list(linear.parameters()))
    # autograd keeps the input of the linear layer (400 bytes) and tanh's output (200 bytes), not the weights
    assert measured == 100 * 4 + 50 * 4
    with torch.no_grad():
        assert measure_row_bytes(one_row, parameters=list(linear.parameters())) == 0


class CountCalls:
    """Counts model calls and rows with a forward pre-hook, removed on exit."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls = 0
        self.rows = 0

    def __enter__(self) -> CountCalls:
        def hook(module, args):  # noqa: ANN001, ANN202
            self.calls += 1
            self.rows += int(args[0].shape[0])

        self.handle = self.model.register_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize("name", NEURAL_METHODS)
def test_tiny_memory_budget_means_more_calls_and_the_same_results(name: str) -> None:
    model = case_for(name).image_model(dtype=torch.float64)
    x = rand(0, 6, 1, 8, 8, dtype=torch.float64)
    run_method(name, model, x, target=0)  # warm-up: caches that do not depend on the budget (e.g. a CAM's layer)
    batching._probe_cache.clear()
    with CountCalls(model) as roomy:
        expected = run_method(name, model, x, target=[0, 1, 2, 0, 1, 2])
    lumos.config.set_memory_budget(20_000)  # a few rows of this CNN per call
    batching._probe_cache.clear()
    with CountCalls(model) as tight:
        e = run_method(name, model, x, target=[0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(e.attributions, expected.attributions, rtol=1e-10, atol=1e-12)
    assert tight.calls > roomy.calls
    assert tight.rows == roomy.rows  # the same work, in smaller pieces
    assert e.extras["n_evaluations"] == expected.extras["n_evaluations"]


def test_memory_budget_bounds_the_rows_per_call() -> None:
    """With batch_size=None, no model call (probe aside) gets more rows than the budget allows."""
    model = make_cnn(dtype=torch.float64)
    x = rand(1, 4, 1, 8, 8, dtype=torch.float64)
    batching._probe_cache.clear()
    lumos.config.set_memory_budget(50_000)
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: sizes.append(int(args[0].shape[0])))
    try:
        lumos.IntegratedGradients(model, n_steps=16).explain(x, 0)
    finally:
        handle.remove()
    per_row = next(iter(batching._probe_cache[model].values()))
    limit = max(1, int(50_000 // (per_row * batching._BACKWARD_FACTOR)))
    assert per_row > 0
    assert 1 < limit < 64  # the budget matters for the 4 x 16 path points
    assert max(sizes[3:]) == limit  # gradient passes: forward + backward within the budget
    assert max(sizes) <= max(1, int(50_000 // per_row))  # forward passes alone keep less
    assert sum(sizes) == 1 + 4 + 4 + 4 * 16  # probe, inputs, baselines, path points


def test_cpu_chunks_are_cache_sized() -> None:
    """On a CPU, rows per call stay near CPU_LAYER_BYTES of one (mean) layer's activations."""
    cost = batching.RowCost(4 * 2**20, 40)  # 4 MiB saved per row over 40 tensors: ~100 KiB per layer per row
    cap = batching.cpu_rows(cost)
    assert cap == int(batching.CPU_LAYER_BYTES * 40 // (4 * 2**20))
    assert chunk_size(10_000, batch_size=None, bytes_per_row=cost, device=torch.device("cpu")) == cap
    accelerator = torch.device("meta")  # any non-CPU device: only the memory budget limits the chunk
    budget_rows = int(lumos.config.memory_budget() // (2 * cost))
    assert chunk_size(10_000, batch_size=None, bytes_per_row=cost, device=accelerator) == budget_rows > cap
    assert chunk_size(10_000, batch_size=None, bytes_per_row=int(cost), device=torch.device("cpu")) == budget_rows
    assert chunk_size(10_000, batch_size=7, bytes_per_row=cost, device=torch.device("cpu")) == 7


def test_probe_measures_gradient_memory_even_under_no_grad() -> None:
    """The chunk size of gradient passes must not depend on the caller's grad mode."""
    model = make_cnn(dtype=torch.float64)
    x = rand(2, 4, 1, 8, 8, dtype=torch.float64)
    batching._probe_cache.clear()
    with torch.no_grad():
        e = lumos.Saliency(model).explain(x, 1)
    assert next(iter(batching._probe_cache[model].values())) > 0
    grad = torch.autograd.grad(model(x.requires_grad_(True))[:, 1].sum(), x)[0]
    torch.testing.assert_close(e.attributions, grad, rtol=0, atol=0)


def test_layer_attribution_under_a_tiny_budget() -> None:
    model = make_token()
    ids = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    expected = lumos.IntegratedGradients(model, layer="embeddings", n_steps=8).explain(ids, 1)
    batching._probe_cache.clear()
    lumos.config.set_memory_budget(300)
    with CountCalls(model) as counter:
        e = lumos.IntegratedGradients(model, layer="embeddings", n_steps=8).explain(ids, 1)
    torch.testing.assert_close(e.attributions, expected.attributions, rtol=1e-10, atol=1e-12)
    assert counter.calls > 4
