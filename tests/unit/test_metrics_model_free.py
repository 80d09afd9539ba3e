"""Model-free metrics (complexity, localisation, agreement) against hand computations and naive formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

import lumos
from lumos import metrics
from lumos.errors import ValidationError


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- complexity


def naive_gini(a: np.ndarray) -> float:
    """Gini coefficient as the mean absolute difference: sum_ij |a_i - a_j| / (2 d sum a)."""
    a = np.abs(a)
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * len(a) * a.sum()))


def test_sparseness_known_values_and_the_mean_difference_formula() -> None:
    np.testing.assert_allclose(metrics.sparseness(np.array([[0, 0, 0, 1.0], [2, 2, 2, 2.0], [0, 0, 0, 0.0]])),
                               [0.75, 0.0, 0.0])
    a = rng(0).normal(size=(6, 17))
    np.testing.assert_allclose(metrics.sparseness(a), [naive_gini(row) for row in a], rtol=1e-12)
    np.testing.assert_allclose(metrics.sparseness(-3 * a), metrics.sparseness(a), rtol=1e-12)  # |.|, scale-free


def test_complexity_is_the_entropy_of_the_fractional_contributions() -> None:
    np.testing.assert_allclose(metrics.complexity(np.array([[0, 5.0, 0, 0], [1, -1, 1, -1.0]])), [0, np.log(4)])
    a = rng(1).normal(size=(5, 9))
    p = np.abs(a) / np.abs(a).sum(1, keepdims=True)
    np.testing.assert_allclose(metrics.complexity(a), stats.entropy(p, axis=1), rtol=1e-12)


def test_effective_complexity_counts_features_above_the_relative_threshold() -> None:
    a = np.array([[10.0, -5.0, 0.05, 0.0, 0.2], [0, 0, 0, 0, 0.0]])
    np.testing.assert_array_equal(metrics.effective_complexity(a, threshold=0.01), [3, 0])
    np.testing.assert_array_equal(metrics.effective_complexity(a, threshold=0.0), [4, 0])
    with pytest.raises(ValidationError, match="threshold"):
        metrics.effective_complexity(a, threshold=1.5)


def test_metrics_accept_explanations_tuples_and_tensors_alike() -> None:
    a = rng(2).normal(size=(3, 4))
    b = rng(3).normal(size=(3, 2))
    explanation = lumos.Explanation(attributions=(torch.from_numpy(a), torch.from_numpy(b)))
    np.testing.assert_allclose(metrics.sparseness(explanation), metrics.sparseness(np.concatenate([a, b], 1)))
    with pytest.raises(ValidationError, match="NaN"):
        metrics.complexity(np.array([[1.0, np.nan]]))
    with pytest.raises(ValidationError, match="batch axis"):
        metrics.complexity(np.array([1.0, 2.0]))


# ---------------------------------------------------------------------------------------------- localisation


def image_attributions() -> tuple[np.ndarray, np.ndarray]:
    """Two samples, 2 channels, 3x3; masks: the left column."""
    a = np.zeros((2, 2, 3, 3))
    a[0, 0, 1, 0], a[0, 1, 1, 0] = 2.0, 1.0  # sample 0: peak 3 inside (left column)
    a[0, 0, 2, 2] = 1.0  # and 1 outside
    a[0, 1, 0, 2] = -4.0  # negative relevance outside: ignored by sum_pos, dominant for sum_abs
    a[1, 0, 0, 2] = 5.0  # sample 1: peak outside
    a[1, 0, 0, 0] = 1.0
    mask = np.zeros((3, 3), dtype=bool)
    mask[:, 0] = True
    return a, mask


def test_pointing_game_with_pooling_and_tolerance() -> None:
    a, mask = image_attributions()
    np.testing.assert_array_equal(metrics.pointing_game(a, mask), [1.0, 0.0])
    np.testing.assert_array_equal(metrics.pointing_game(a, mask, pooling="sum_abs"), [0.0, 0.0])  # |-4| wins
    # the peak of sample 1 is at column 2: one pixel of tolerance reaches column 1 only, two reach it
    np.testing.assert_array_equal(metrics.pointing_game(a, mask, tolerance=1), [1.0, 0.0])
    np.testing.assert_array_equal(metrics.pointing_game(a, mask, tolerance=2), [1.0, 1.0])


def test_relevance_mass_and_rank_accuracy_by_hand() -> None:
    a, mask = image_attributions()
    # sample 0, sum_pos map: inside 3 (at (1, 0)), outside 1 (at (2, 2)); the -4 is dropped -> 3 / 4
    # sample 1: inside 1, outside 5 -> 1 / 6
    np.testing.assert_allclose(metrics.relevance_mass_accuracy(a, mask), [0.75, 1 / 6])
    # K = 3 mask pixels; top-3 of sample 0: (1,0)=3, (2,2)=1, then a zero -> first zero in row-major (0,0),
    # inside -> 2 of 3. Sample 1: (0,2)=5, (0,0)=1, then (0,1)=0 outside -> 1 of 3
    np.testing.assert_allclose(metrics.relevance_rank_accuracy(a, mask), [2 / 3, 1 / 3])
    per_sample_masks = np.stack([mask, ~mask])
    np.testing.assert_allclose(metrics.relevance_mass_accuracy(a, per_sample_masks), [0.75, 5 / 6])


def test_top_k_intersection_by_hand_and_errors() -> None:
    a, mask = image_attributions()
    # sum_abs maps: sample 0 -> (0,2)=4, (1,0)=3, (2,2)=1; top-2 = {(0,2), (1,0)} -> 1 inside of 2
    np.testing.assert_allclose(metrics.top_k_intersection(a, mask, k=2), [0.5, 0.5])
    with pytest.raises(ValidationError, match="k must be"):
        metrics.top_k_intersection(a, mask, k=0)
    with pytest.raises(ValidationError, match="masks must have shape"):
        metrics.relevance_mass_accuracy(a, np.ones((4, 4), dtype=bool))
    with pytest.raises(ValidationError, match="pooling"):
        metrics.pointing_game(a, mask, pooling="mean")


# ---------------------------------------------------------------------------------------------- agreement


def test_agreement_of_an_explanation_with_itself_and_with_its_negation() -> None:
    a = rng(4).normal(size=(5, 12))
    for name, fn in metrics.AGREEMENT_METRICS.items():
        params = {} if "features" in (fn.__kwdefaults__ or {}) else {"k": 4}
        np.testing.assert_allclose(fn(a, a, **params), 1.0, err_msg=name)
    np.testing.assert_allclose(metrics.feature_agreement(a, -a, k=4), 1.0)  # magnitudes agree
    np.testing.assert_allclose(metrics.sign_agreement(a, -a, k=4), 0.0)  # every sign differs
    np.testing.assert_allclose(metrics.signed_rank_agreement(a, -a, k=4), 0.0)


def test_top_k_agreements_by_hand() -> None:
    a = np.array([[5.0, -4.0, 3.0, 0.1, 0.0]])
    b = np.array([[-4.0, 5.0, 0.2, 3.0, 0.0]])
    # top-3: A = (0, 1, 2), B = (1, 0, 3): common {0, 1}; same rank nowhere; signs: f0 +/-, f1 -/+
    assert metrics.feature_agreement(a, b, k=3)[0] == pytest.approx(2 / 3)
    assert metrics.rank_agreement(a, b, k=3)[0] == 0.0
    assert metrics.sign_agreement(a, b, k=3)[0] == 0.0
    c = np.array([[5.0, 4.0, 0.2, 3.0, 0.0]])  # top-3 (0, 1, 3): rank 1 agrees with A, f1 sign differs
    assert metrics.rank_agreement(a, c, k=3)[0] == pytest.approx(2 / 3)
    assert metrics.signed_rank_agreement(a, c, k=3)[0] == pytest.approx(1 / 3)
    assert metrics.sign_agreement(a, c, k=3)[0] == pytest.approx(1 / 3)


def test_rank_correlation_and_pairwise_agreement_against_brute_force() -> None:
    a, b = rng(5).normal(size=(2, 4, 9))
    expected = [stats.spearmanr(np.abs(x), np.abs(y)).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.rank_correlation(a, b), expected, rtol=1e-12)
    features = [0, 2, 3, 7]
    pairs = []
    for x, y in zip(a, b, strict=True):
        agree = [np.sign(abs(x[i]) - abs(x[j])) == np.sign(abs(y[i]) - abs(y[j]))
                 for i, j in itertools.combinations(features, 2)]
        pairs.append(np.mean(agree))
    np.testing.assert_allclose(metrics.pairwise_rank_agreement(a, b, features=features), pairs)
    reversed_b = 1.0 / np.abs(a)  # magnitudes in exactly the opposite order
    np.testing.assert_allclose(metrics.rank_correlation(a, reversed_b), -1.0)
    np.testing.assert_allclose(metrics.pairwise_rank_agreement(a, reversed_b), 0.0)


def test_random_attributions_agree_only_by_chance() -> None:
    a, b = rng(6).normal(size=(2, 4000, 20))
    assert metrics.feature_agreement(a, b, k=5).mean() == pytest.approx(5 / 20, abs=0.02)  # E = k / d
    assert abs(np.nanmean(metrics.rank_correlation(a, b))) < 0.02


def test_agreement_matrix_is_symmetric_with_a_unit_diagonal() -> None:
    base = rng(7).normal(size=(6, 10))
    explanations = {"a": base, "b": base + 0.01 * rng(8).normal(size=base.shape), "c": rng(9).normal(size=base.shape)}
    names, matrix = metrics.agreement_matrix(explanations, metric="rank_correlation")
    assert names == ["a", "b", "c"]
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] > 0.95 > 0.5 > abs(matrix[0, 2])
    with pytest.raises(ValidationError, match="metric must be"):
        metrics.agreement_matrix(explanations, metric="jaccard")
    with pytest.raises(ValidationError, match="same samples"):
        metrics.feature_agreement(base, base[:, :5], k=2)


def test_metric_info_covers_every_metric() -> None:
    helpers = {"agreement_matrix", "evaluate", "load_evaluation", "noisy_linear_impute", "region_perturbation", "road"}
    helpers |= {name for name in metrics.__all__ if name.startswith(("load_", "sanity"))}
    helpers |= {"hog_similarity", "spearman_similarity", "ssim_similarity"}
    ordered = {"region_perturbation_morf", "region_perturbation_lerf", "road_morf", "road_lerf"}
    exported = {name for name in metrics.__all__ if name.islower() and name not in helpers}
    assert exported <= set(metrics.METRIC_INFO)
    assert set(metrics.METRIC_INFO) - exported <= ordered | set(getattr(metrics, "RANDOMISATION_METRICS", ()))
    assert metrics.METRIC_INFO["complexity"].higher_is_better is False
    assert metrics.METRIC_INFO["deletion"].higher_is_better is False
    assert metrics.METRIC_INFO["insertion"].higher_is_better is True
