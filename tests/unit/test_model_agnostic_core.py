"""Unit tests of the model-agnostic core: numpy models in the ModelAdapter, the evaluation engine, the masker
(reference rows, feature groups), coalition sampling and the constrained least squares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lumos
from conftest import make_mlp, rand
from lumos.core.evaluation import EvaluationEngine
from lumos.core.inputs import prepare_inputs
from lumos.core.model import ModelAdapter, NumpyModel
from lumos.core.targets import Class, Predicted
from lumos.methods.perturbation.masking import Masker, prepare_groups, prepare_reference
from lumos.methods.shapley.coalitions import (
    PairedStratifiedSampler,
    all_coalitions,
    antithetic_permutations,
    kernel_weight,
    shapley_weights,
)
from lumos.methods.shapley.exact import ExactSHAP
from lumos.methods.shapley.kernel import KernelSHAP, solve_constrained
from lumos.methods.shapley.permutation import PermutationSHAP


class Estimator:
    """A scikit-learn-like estimator (not callable): fit / predict / predict_proba on numpy arrays."""

    def __init__(self) -> None:
        self.calls: list[type] = []

    def fit(self, x: np.ndarray, y: np.ndarray) -> Estimator:
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(type(x))
        p = 1 / (1 + np.exp(-x.sum(1)))
        return np.stack([1 - p, p], 1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(type(x))
        return (x.sum(1) > 0).astype(np.int64)


# ------------------------------------------------------------------------------------------ model adapter
def test_numpy_models_are_recognised_and_called_with_arrays() -> None:
    est = Estimator()
    x = torch.randn(4, 3, dtype=torch.float64)
    for model, expected in [(est, est.predict_proba(x.numpy())), (est.predict_proba, est.predict_proba(x.numpy())),
                            (NumpyModel(lambda a: a.sum(1)), x.numpy().sum(1))]:
        adapter = ModelAdapter(model)
        assert adapter.is_numpy and not adapter.differentiable and adapter.module is None
        est.calls.clear()
        out = adapter((x,))
        assert isinstance(out, torch.Tensor)
        np.testing.assert_allclose(out.numpy(), expected)
        assert all(c is np.ndarray for c in est.calls)
    labels = ModelAdapter(est.predict)((x,))
    assert labels.dtype == torch.float64 and labels.shape == (4,)  # integer labels become scores
    torch_fn = ModelAdapter(lambda t: t.sum(1))  # a plain function stays a function on tensors
    assert not torch_fn.is_numpy and torch_fn.differentiable
    assert ModelAdapter(make_mlp()).differentiable
    with pytest.raises(lumos.UnsupportedModelError, match="predict_proba/predict"):
        ModelAdapter(object())


def test_numpy_model_errors() -> None:
    x = np.ones((4, 3))
    with pytest.raises(lumos.ValidationError, match=r"returned 3 rows for \d+ samples"):
        KernelSHAP(NumpyModel(lambda a: a[:3].sum(1)), seed=0).explain(x, baseline=np.zeros((2, 3)))
    with pytest.raises(lumos.ValidationError, match="must return numbers"):
        ModelAdapter(NumpyModel(lambda a: np.array(["a"] * len(a))))((torch.ones(2, 1),))
    nan_model = NumpyModel(lambda a: np.where(a[:, 0] < 0.5, np.nan, 1.0))
    with pytest.raises(lumos.ValidationError, match="NaN or infinite scores for .* perturbed rows"):
        ExactSHAP(nan_model).explain(x, baseline=np.zeros((2, 3)))
    with pytest.raises(lumos.ValidationError, match="NaN or infinite scores"):
        ExactSHAP(nan_model).explain(np.zeros((2, 3)), baseline=np.ones((2, 3)))


def test_gradient_methods_refuse_numpy_models_clearly() -> None:
    with pytest.raises(lumos.UnsupportedModelError, match="model-agnostic"):
        lumos.explain(Estimator().predict_proba, torch.randn(2, 3), method="saliency", target=1)


# ------------------------------------------------------------------------------------------ evaluation engine
def test_engine_scores_chunks_and_counts() -> None:
    model = make_mlp()
    x = rand(0, 5, 6)
    batch = prepare_inputs(x, owner="T", device=None, float_dtype=torch.float32)
    rows = rand(1, 23, 6)
    sample = torch.arange(23) % 5
    results = []
    for batch_size in (None, 4, 100):
        engine = EvaluationEngine(ModelAdapter(model), {}, Predicted(), n_samples=5, batch_size=batch_size)
        fx = engine.resolve(batch.tensors)
        scores = engine.scores(23, lambda s: (rows[s],), sample)
        assert engine.n_evaluations == 28
        results.append(scores)
    with torch.no_grad():
        classes = model(x).argmax(1)
        expected = model(rows)[torch.arange(23), classes[sample]]
    torch.testing.assert_close(fx, model(x).detach().max(1).values)
    for scores in results:
        assert scores.dtype == torch.float64
        torch.testing.assert_close(scores, expected.double(), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ masker
def test_masker_builds_rows_like_a_naive_loop() -> None:
    x = rand(0, 2, 4, dtype=torch.float64)
    background = rand(1, 3, 4, dtype=torch.float64)
    batch = prepare_inputs(x, owner="T", device=None, float_dtype=None)
    seen: list[torch.Tensor] = []

    def model(rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return rows @ torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)

    engine = EvaluationEngine(ModelAdapter(model), {}, Class(0), n_samples=2, batch_size=5)
    engine.resolve(batch.tensors)
    seen.clear()
    masker = Masker(batch, prepare_reference(background, batch, owner="T"), prepare_groups([[0, 2]], batch, owner="T"),
                    engine)
    assert masker.n_players == 3  # {0, 2}, {1}, {3}
    keep = np.array([[True, False, False], [False, True, True]])
    values = masker.values(keep)
    rows = torch.cat(seen)
    expected_rows, expected_values = [], np.zeros((2, 2))
    for i in range(2):
        for j, kept in enumerate([[0, 2], [1, 3]]):
            for b in range(3):
                row = background[b].clone()
                row[kept] = x[i, kept]
                expected_rows.append(row)
                expected_values[i, j] += float(row @ torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=torch.float64)) / 3
    torch.testing.assert_close(rows, torch.stack(expected_rows), rtol=0, atol=0)
    np.testing.assert_allclose(values.numpy(), expected_values, rtol=1e-12)


def test_reference_and_group_parsing() -> None:
    x = rand(0, 2, 4)
    batch = prepare_inputs(x, owner="T", device=None, float_dtype=None)
    assert prepare_reference(None, batch, owner="T").estimand.startswith("baseline (zeros)")
    assert prepare_reference(0.5, batch, owner="T").rows[0].tolist() == [[0.5] * 4]
    assert prepare_reference(np.ones(4), batch, owner="T").estimand == "baseline"
    assert "over 6 background rows" in prepare_reference(np.ones((6, 4)), batch, owner="T").estimand
    with pytest.raises(lumos.ValidationError, match=r"n_background, 4\) with the inputs' columns, got .*\(10, 3\)"):
        KernelSHAP(lambda t: t.sum(1, keepdim=True), seed=0).explain(x, baseline=np.ones((10, 3)))
    with pytest.raises(lumos.ValidationError, match="finite"):
        prepare_reference(np.full((3, 4), np.nan), batch, owner="T")
    with pytest.raises(lumos.ValidationError, match="background_weights"):
        prepare_reference(np.ones((3, 4)), batch, owner="T", weights=[1.0, -1.0, 1.0])
    groups = prepare_groups(np.array([7, 3, 7, 3]), batch, owner="T")
    assert groups.n_groups == 2 and groups.labels == [3, 7] and groups.element_group.tolist() == [1, 0, 1, 0]
    with pytest.raises(lumos.ValidationError, match="overlap"):
        prepare_groups([[0, 1], [1, 2]], batch, owner="T")
    with pytest.raises(lumos.ValidationError, match="features are 0..3"):
        prepare_groups([[0, 9]], batch, owner="T")
    with pytest.raises(lumos.ValidationError, match="one sample's shape"):
        prepare_groups(np.zeros(5, dtype=int), batch, owner="T")
    with pytest.raises(lumos.ValidationError, match="unexpected argument"):
        ExactSHAP(lambda t: t.sum(1)).explain(x, feature_group=[[0]])


def test_exact_shap_refuses_too_many_players_and_names_the_alternatives() -> None:
    x = torch.zeros(1, 21)
    with pytest.raises(lumos.ValidationError, match=r"d = 21 .* limit of 20\. Use kernel_shap or permutation_shap"):
        ExactSHAP(lambda t: t.sum(1)).explain(x)
    e = ExactSHAP(lambda t: t.sum(1)).explain(x + 1, feature_groups=np.arange(21) // 3)  # 7 groups are fine
    np.testing.assert_allclose(e.extras["group_values"], [[3.0] * 7])


# ------------------------------------------------------------------------------------------ coalitions
def test_coalition_enumeration_and_weights() -> None:
    z = all_coalitions(4)
    assert z.shape == (16, 4) and z[5].tolist() == [True, False, True, False]
    w = shapley_weights(5)
    # sum over i's coalitions: sum_s C(d-1, s) w(s) = 1
    assert math.isclose(sum(math.comb(4, s) * w[s] for s in range(5)), 1.0)
    assert math.isclose(kernel_weight(5, 2), 4 / (10 * 2 * 3))


def test_paired_stratified_sampler() -> None:
    sampler = PairedStratifiedSampler(10, np.random.default_rng(0))
    masks, strata = sampler.extend(200)
    assert masks.shape == (200, 10) and (masks[0::2] == ~masks[1::2]).all()  # complementary pairs
    assert len(np.unique(masks, axis=0)) == 200  # no coalition twice
    info = sampler.stratum_info()
    assert info[0] == (10, 10)  # sizes 1 and 9: enumerated first
    assert all(m < n for m, n in info[1:])
    more, _ = sampler.extend(400)
    assert len(np.unique(np.concatenate([masks, more]), axis=0)) == 400  # a later round draws new ones only
    full = PairedStratifiedSampler(6, np.random.default_rng(0))
    full.extend(62)
    assert full.exact and full.n_coalitions == 62
    orders = antithetic_permutations(np.random.default_rng(0), 4, 5)
    assert (orders[1] == orders[0][::-1]).all() and sorted(orders[2]) == list(range(5))


def test_constrained_least_squares_meets_the_constraint_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    z = (torch.rand(40, 5, generator=generator) > 0.5).double()
    y = torch.randn(3, 40, generator=generator, dtype=torch.float64)
    w = torch.rand(40, generator=generator, dtype=torch.float64)
    delta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    phi, _ = solve_constrained(z, w, y, delta)
    torch.testing.assert_close(phi.sum(1), delta, rtol=0, atol=1e-12)
    # against the textbook elimination of the last coefficient: phi_d = delta - sum_{i<d} phi_i
    for k in range(3):
        reduced = z[:, :-1] - z[:, -1:]
        target = y[k] - z[:, -1] * delta[k]
        sw = w.sqrt()
        head = torch.linalg.lstsq(reduced * sw[:, None], (target * sw)[:, None]).solution[:, 0]
        torch.testing.assert_close(phi[k, :-1], head, rtol=1e-9, atol=1e-9)


def test_permutation_shap_validates_its_parameters() -> None:
    with pytest.raises(lumos.ValidationError, match="even int >= 2"):
        PermutationSHAP(lambda t: t, n_permutations=3)
    with pytest.raises(lumos.ValidationError, match="n_samples must be 'auto' or an int >= 2"):
        KernelSHAP(lambda t: t, n_samples=1)
    with pytest.raises(lumos.ValidationError, match="tol must be"):
        KernelSHAP(lambda t: t, tol=-1.0)


# ------------------------------------------------------------------------------------------ fast paths
def test_engine_defer_evaluates_clean_rows_with_the_first_chunk() -> None:
    model = make_mlp()
    x = rand(0, 5, 6)
    batch = prepare_inputs(x, owner="T", device=None, float_dtype=torch.float32)
    rows = rand(1, 23, 6)
    sample = torch.arange(23) % 5
    reference = EvaluationEngine(ModelAdapter(model), {}, Predicted(), n_samples=5, batch_size=None)
    fx = reference.resolve(batch.tensors)
    want = reference.scores(23, lambda s: (rows[s],), sample)
    calls: list[int] = []
    for batch_size in (None, 1, 4, 100):
        calls.clear()
        handle = model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
        try:
            engine = EvaluationEngine(ModelAdapter(model), {}, Predicted(), n_samples=5, batch_size=batch_size)
            engine.defer(batch.tensors)
            got = engine.scores(23, lambda s: (rows[s],), sample)
        finally:
            handle.remove()
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(engine.clean_scores(), fx, rtol=1e-6, atol=1e-7)
        assert engine.target.indices().tolist() == reference.target.indices().tolist()  # predicted class fixed
        assert engine.n_evaluations == 5 + 23 and sum(calls) == 28
        size = 23 if batch_size is None else min(batch_size, 23)
        assert calls[0] == 5 + size  # the clean rows rode along with the first chunk: no separate call
    # without a scores call the clean rows are evaluated on demand
    engine = EvaluationEngine(ModelAdapter(model), {}, Class(1), n_samples=5)
    engine.defer(batch.tensors)
    with torch.no_grad():
        torch.testing.assert_close(engine.clean_scores(), model(x)[:, 1], rtol=1e-6, atol=1e-7)
    assert engine.n_evaluations == 5


def test_numpy_models_get_cache_sized_chunks() -> None:
    adapter = ModelAdapter(NumpyModel(lambda a: a.sum(1)))
    engine = EvaluationEngine(adapter, {}, Class(0), n_samples=1)
    wide = (torch.zeros(1, 30, dtype=torch.float64),)  # 240 bytes a row -> 8 MiB / 240
    assert engine.chunk(10**6, wide) == (8 << 20) // 240
    assert engine.chunk(100, wide) == 100
    huge = (torch.zeros(1, 3, 224, 224),)  # 600 kB a row: at least 1,024 rows, within the memory budget
    assert engine.chunk(10**6, huge) == min(1024, int(lumos.config.memory_budget() // (3 * 224 * 224 * 4 * 32)))
    assert EvaluationEngine(adapter, {}, Class(0), n_samples=1, batch_size=7).chunk(10**6, wide) == 7


def test_fill_block_matches_fill_rows() -> None:
    from lumos.methods.perturbation.fills import make_fill

    batch = prepare_inputs(torch.randn(3, 2, 4, dtype=torch.float64), owner="T", device=None, float_dtype=None)
    for baseline in (None, torch.randn(6, 2, 4, dtype=torch.float64)):  # per-sample rows, a background pool
        fill = make_fill("baseline", baseline, batch, owner="T")
        fill.draw(10, torch.Generator().manual_seed(0))
        block = fill.block(2, 7)[0].expand(5, 3, 8)
        mask, sample = torch.meshgrid(torch.arange(2, 7), torch.arange(3), indexing="ij")
        assert torch.equal(block.reshape(15, 8), fill.rows(sample.reshape(-1), mask.reshape(-1))[0])


def test_enumerated_strata_come_in_ascending_bit_order() -> None:
    # the sampler takes combinations in reverse instead of sorting them (np.unique); that is only the same
    # order when combinations come in descending bit order, which this checks
    import itertools

    for d, k in ((7, 2), (9, 3), (12, 5)):
        members = np.array(list(itertools.combinations(range(d), k)))
        pool = np.zeros((len(members), d), dtype=bool)
        pool[np.arange(len(members))[:, None], members] = True
        assert np.array_equal(pool[::-1], np.unique(pool, axis=0))
