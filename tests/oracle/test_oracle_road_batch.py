"""ROAD's batched imputation (one banded solve for many images) against a naive per-image solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lumos.core.seeding import derive_seed, numpy_generator
from lumos.errors import ValidationError
from lumos.metrics.perturb import features, pool, ranks
from lumos.metrics.road import NEIGHBOURS, noisy_linear_impute, noisy_linear_impute_batch, road

QUIET = {"progress": False}


def naive_impute(image: np.ndarray, removed: np.ndarray, noise_std: float, rng: np.random.Generator | None):
    """One image: a dense solve of ``x_p = sum_q w_pq x_q / sum_q w_pq`` over the removed pixels (row-normalised,
    as written in Rong et al. 2022, sec. 4.2), then noise ``rng.normal(0, std, (n_removed, C))``."""
    c, h, w = image.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    index = {p: i for i, p in enumerate(unknown)}
    matrix = np.eye(len(unknown))
    rhs = np.zeros((len(unknown), c))
    for i, (y, x) in enumerate(unknown):
        inside = [((y + dy, x + dx), weight) for (dy, dx), weight in NEIGHBOURS
                  if 0 <= y + dy < h and 0 <= x + dx < w]
        total = sum(weight for _, weight in inside)
        for q, weight in inside:
            if q in index:
                matrix[i, index[q]] -= weight / total
            else:
                rhs[i] += weight / total * image[:, q[0], q[1]]
    out = image.astype(np.float64).copy()
    if not unknown:
        return out
    solution = np.linalg.solve(matrix, rhs)
    if noise_std > 0:
        solution = solution + rng.normal(0.0, noise_std, solution.shape)
    for i, (y, x) in enumerate(unknown):
        out[:, y, x] = solution[i]
    return out


@pytest.mark.parametrize("shape", [(3, 7, 9), (1, 6, 6), (2, 12, 5)])
def test_batched_imputation_equals_one_naive_solve_per_image(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, *shape))
    fractions = np.array([0.0, 0.05, 0.3, 0.6, 0.9, 0.97])[:, None, None]  # a mix, one image with nothing removed
    removed = rng.random((6, *shape[1:])) < fractions
    removed[-1] = True
    removed[-1, 0, 0] = False  # all but one pixel removed: still solvable
    for noise_std in (0.0, 0.3):
        batched = noisy_linear_impute_batch(images, removed, noise_std=noise_std,
                                            rngs=[np.random.default_rng(10 + b) for b in range(6)])
        for b in range(6):
            expected = naive_impute(images[b], removed[b], noise_std, np.random.default_rng(10 + b))
            np.testing.assert_allclose(batched[b], expected, rtol=0, atol=1e-10)
            single = noisy_linear_impute(images[b], removed[b], noise_std=noise_std,
                                         rng=np.random.default_rng(10 + b))
            np.testing.assert_allclose(single, expected, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(batched[b][:, ~removed[b]], images[b][:, ~removed[b]])


def test_batched_imputation_rejects_an_image_with_every_pixel_removed() -> None:
    images = np.zeros((2, 1, 3, 3))
    removed = np.zeros((2, 3, 3), dtype=bool)
    removed[1] = True
    with pytest.raises(ValidationError, match="all removed"):
        noisy_linear_impute_batch(images, removed, noise_std=0.0)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_curves_equal_a_per_sample_loop_with_per_row_seeds(order: str) -> None:
    """The old implementation: one imputation per (sample, fraction), seeded by derive_seed(seed, row)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    model = model.double().eval()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    a = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    fractions, seed = (0.1, 0.45, 0.8), 7
    result = road(model, x, a, target=2, order=order, fractions=fractions, noise_std=0.05, seed=seed,
                  batch_size=4, **QUIET)  # chunks of 4 rows mix samples and fractions
    groups, n_features = features((2, 8, 8), owner="test")
    rank = ranks(pool(a.reshape(5, -1), groups, n_features), descending=order == "morf").numpy()
    counts = np.round(np.asarray(fractions) * n_features).astype(int)
    for i in range(5):
        for k, count in enumerate(counts):
            rng = numpy_generator(derive_seed(seed, i * len(fractions) + k))
            filled = naive_impute(x[i].numpy(), (rank[i] < count).reshape(8, 8), 0.05, rng)
            with torch.no_grad():
                expected = model(torch.from_numpy(filled)[None])[0, 2].item()
            assert result.curves[i, k] == pytest.approx(expected, abs=1e-10)
    unbatched = road(model, x, a, target=2, order=order, fractions=fractions, noise_std=0.05, seed=seed, **QUIET)
    np.testing.assert_allclose(unbatched.curves, result.curves, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 5, 6), (1, 1, 7), (3, 6, 1)])
def test_batched_imputation_of_isolated_pixels_and_thin_images(shape: tuple[int, int, int]) -> None:
    """Sparse removed pixels (isolated ones give a diagonal-only system) and one-row / one-column images."""
    rng = np.random.default_rng(3)
    images = rng.normal(size=(3, *shape))
    removed = np.zeros((3, *shape[1:]), dtype=bool)
    removed[0].flat[0] = True  # a corner
    removed[1].flat[::3] = True  # every third pixel
    removed[2].flat[-1] = True
    removed[1].flat[-1] = False  # keep one pixel of each image
    batched = noisy_linear_impute_batch(images, removed, noise_std=0.0)
    for b in range(3):
        np.testing.assert_allclose(batched[b], naive_impute(images[b], removed[b], 0.0, None), rtol=0, atol=1e-10)
