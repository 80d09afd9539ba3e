"""Oracle tests of LIME and RISE: closed forms (models linear in the interpretable representation), known
answers (a model that reads one segment / one region), and a naive loop re-implementation of RISE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from conftest import make_cnn, make_mlp, rand
from lumos.core.model import NumpyModel
from lumos.methods.perturbation.lime import LIME
from lumos.methods.perturbation.rise import RISE
from lumos.methods.perturbation.segments import grid_segments
from lumos.methods.perturbation.text import explain_text

W = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, 1.5], dtype=torch.float64)


def linear(x: torch.Tensor) -> torch.Tensor:
    return (x @ W)[:, None]


# ------------------------------------------------------------------------------------------------ LIME tabular
def test_lime_tabular_gaussian_recovers_the_weights_of_a_linear_model() -> None:
    x, background = rand(0, 3, 6, dtype=torch.float64), rand(1, 200, 6, dtype=torch.float64) * 2
    e = LIME(linear, seed=0, discretize=False, alpha=0.0).explain(x, target=0, baseline=background)
    std = background.std(0, unbiased=False)
    # z = (x' - x) / std, so the exact coefficient is w * std (the effect of one standard deviation)
    torch.testing.assert_close(e.attributions, (W * std).expand(3, 6), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(e.extras["score"], 1.0, atol=1e-12)
    np.testing.assert_allclose(e.extras["intercept"], linear(x)[:, 0].numpy(), atol=1e-9)
    np.testing.assert_allclose(e.extras["local_prediction"], e.scores, atol=1e-9)
    assert e.extras["n_evaluations"] == 3 * 1000 and e.extras["mode"] == "tabular"
    # ridge (alpha = 1, the default) shrinks towards 0, but only a little with 1000 samples
    shrunk = LIME(linear, seed=0, discretize=False).explain(x, target=0, baseline=background).attributions
    assert bool((shrunk.norm(dim=1) < (W * std).norm()).all())
    torch.testing.assert_close(shrunk, (W * std).expand(3, 6), rtol=0.02, atol=5e-3)


def test_lime_tabular_discretized_quartile_effects_of_a_linear_model() -> None:
    """With quartile bins, z_j = 1 draws x_j from the sample's bin: for a linear model the exact coefficient of
    z_j is w_j (E[x_j | in bin] - E[x_j | outside bin]) over the background values; LIME gets it back."""
    x, background = rand(2, 2, 6, dtype=torch.float64), rand(3, 400, 6, dtype=torch.float64)
    e = LIME(linear, seed=1, alpha=0.0, n_samples=100_000).explain(x, target=0, baseline=background)
    edges = torch.quantile(background, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0).T
    bins_bg = (background[:, :, None] > edges[None]).sum(2)
    bins_x = (x[:, :, None] > edges[None]).sum(2)
    for i in range(2):
        inside = bins_bg == bins_x[i]
        gap = (background * inside).sum(0) / inside.sum(0) - (background * ~inside).sum(0) / (~inside).sum(0)
        torch.testing.assert_close(e.attributions[i], W * gap, rtol=0, atol=0.07)  # ~3.5 standard errors
    assert (e.extras["score"] > 0.3).all()  # within-bin spread is noise the surrogate cannot explain


def test_lime_sklearn_models_numpy_in_numpy_out() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x, y = data.data, data.target
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    e = LIME(clf.predict_proba, seed=0, n_samples=500).explain(x[:4], target=1, baseline=x[100:])
    assert isinstance(e.attributions, np.ndarray) and e.attributions.shape == (4, 30)
    assert np.isfinite(e.attributions).all() and np.abs(e.attributions).sum() > 0
    np.testing.assert_allclose(e.scores, clf.predict_proba(x[:4])[:, 1])
    # the decision function is linear: Gaussian LIME with alpha = 0 returns coef / scale * std exactly
    decision = LIME(clf.decision_function, seed=0, discretize=False, alpha=0.0, n_samples=200)
    e_lin = decision.explain(x[:2], target=None, baseline=x[100:])
    logistic = clf[-1].coef_[0] / clf[0].scale_ * x[100:].std(0)
    np.testing.assert_allclose(e_lin.attributions, np.broadcast_to(logistic, (2, 30)), rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------ LIME coalitions
def test_lime_model_linear_in_the_representation_is_exact() -> None:
    """f linear in pixels, hidden pixels filled with 0: f(masked) = sum_g z_g e_g with e_g the segment's share
    of f(x): alpha = 0 gives coefficients e_g, R^2 = 1, intercept f(0) = 0, local prediction f(x)."""
    images = rand(4, 2, 1, 6, 6, dtype=torch.float64)
    v = rand(5, 36, dtype=torch.float64)
    segments = grid_segments(6, 6, 9)  # 3 x 3 cells of 2 x 2 pixels

    def model(t: torch.Tensor) -> torch.Tensor:
        return (t.reshape(t.shape[0], -1) @ v)[:, None]

    e = LIME(model, seed=0, alpha=0.0, n_samples=300).explain(images, target=0, feature_groups=segments[None])
    effects = torch.stack([torch.stack([(images[i, 0].reshape(-1) * v)[segments.reshape(-1) == g].sum()
                                        for g in range(9)]) for i in range(2)])
    torch.testing.assert_close(torch.as_tensor(e.extras["group_values"]), effects, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(e.attributions[:, 0], effects[:, torch.as_tensor(segments)], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(e.extras["score"], 1.0, atol=1e-12)
    np.testing.assert_allclose(e.extras["intercept"], 0.0, atol=1e-9)
    np.testing.assert_allclose(e.extras["local_prediction"], e.scores, atol=1e-9)
    assert e.extras["n_evaluations"] == 2 * 300


def test_lime_image_model_reading_one_segment() -> None:
    images = rand(6, 2, 3, 8, 8).abs() + 0.5
    segments = grid_segments(8, 8, 16)
    chosen = torch.as_tensor(segments == 5)

    def model(t: torch.Tensor) -> torch.Tensor:
        return t[:, :, chosen].sum((1, 2))[:, None]

    e = LIME(model, seed=0, segmentation="grid", segmentation_params={"n_segments": 16}).explain(images, target=0)
    np.testing.assert_array_equal(e.extras["segments"], np.broadcast_to(segments, (2, 8, 8)))
    values = np.asarray(e.extras["group_values"])
    assert (values.argmax(1) == 5).all()
    others = np.delete(values, 5, axis=1)
    assert np.abs(others).max() < 0.02 * values[:, 5].min()
    # the chosen segment's coefficient is its pixel sum (ridge-shrunk a little)
    np.testing.assert_allclose(values[:, 5], images[:, :, chosen].sum((1, 2)).numpy(), rtol=0.05)
    assert e.attributions.shape == images.shape


@pytest.mark.parametrize("selection", ["forward_selection", "highest_weights", "lasso_path"])
def test_lime_feature_selection_finds_the_two_features_that_matter(selection: str) -> None:
    sparse = torch.tensor([0.0, 4.0, 0.0, 0.0, -3.0, 0.1], dtype=torch.float64)
    x, background = rand(6, 3, 6, dtype=torch.float64), rand(7, 100, 6, dtype=torch.float64)
    e = LIME(lambda t: (t @ sparse)[:, None], seed=0, discretize=False, n_features=2,
             feature_selection=selection).explain(x, target=0, baseline=background)
    np.testing.assert_array_equal(e.extras["selected"], np.broadcast_to(sparse.abs() > 1, (3, 6)))
    assert bool((e.attributions[:, sparse.abs() <= 1] == 0).all())


def test_lime_text_bag_of_words_weights() -> None:
    weights = {"good": 2.0, "bad": -1.5, "film": 0.25, "plot": -0.5, "but": 0.0}

    def classifier(texts: list[str]) -> np.ndarray:
        return np.array([[sum(weights.get(w, 0.0) for w in t.split())] for t in texts])

    texts = ["good film but bad plot", "bad film"]
    e = explain_text(classifier, texts, target=0, seed=0, alpha=0.0, n_samples=200)
    assert e.extras["tokens"] == [t.split() for t in texts]
    np.testing.assert_allclose(e.attributions[0], [2.0, 0.25, 0.0, -1.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(e.attributions[1], [-1.5, 0.25, 0, 0, 0], atol=1e-9)  # padding gets 0
    np.testing.assert_allclose(e.extras["score"], 1.0, atol=1e-12)
    np.testing.assert_array_equal(e.extras["n_groups"], [5, 2])


# ------------------------------------------------------------------------------------------------ RISE
def test_rise_equals_a_naive_loop_over_its_masks() -> None:
    model = make_cnn(dtype=torch.float64)
    x = rand(8, 2, 1, 8, 8, dtype=torch.float64)
    fill = rand(9, 1, 1, 8, 8, dtype=torch.float64)[0]
    explainer = RISE(model, n_masks=20, grid_size=3, p=0.4, seed=5)
    e = explainer.explain(x, target=[0, 2], baseline=fill)
    masks = explainer.masks((1, 8, 8), 5).block(0, 20).to(torch.float64)  # (20, 8, 8)
    expected = torch.zeros(2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        for i, target in enumerate([0, 2]):
            for mask in masks:
                score = model((x[i] * mask + fill * (1 - mask))[None])[0, target]
                expected[i] += score * mask / (20 * 0.4)
    torch.testing.assert_close(e.attributions[:, 0], expected, rtol=1e-10, atol=1e-12)
    assert e.extras["n_evaluations"] == 2 + 2 * 20


def test_rise_concentrates_on_the_region_the_model_reads() -> None:
    x = rand(10, 1, 1, 16, 16).abs() + 1.0
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[2:6, 9:14] = True

    def model(t: torch.Tensor) -> torch.Tensor:
        return t[:, 0][:, region].mean(1, keepdim=True)

    e = RISE(model, seed=0, n_masks=3000).explain(x, target=0)
    saliency = e.attributions[0, 0]
    far = torch.zeros_like(region)
    far[10:, :6] = True  # well away from the region (more than a grid cell)
    assert float(saliency[region].mean()) > 1.2 * float(saliency[far].mean())
    peak = divmod(int(saliency.argmax()), 16)
    assert 1 <= peak[0] <= 6 and 8 <= peak[1] <= 14
    # far from the region the mask is independent of f's inputs: E[f M] / p = E[f] = p * mean(x_region)
    torch.testing.assert_close(saliency[far].mean(), 0.5 * x[0, 0][region].mean(), rtol=0.05, atol=0)
    assert float(e.extras["standard_error"].max()) < 0.05


def test_rise_tabular_and_signals() -> None:
    """Linear model, zero fill: E[f(x M) M_j] / p = sum_k w_k x_k E[M_k M_j] / p; with a grid as fine as the
    features (binary masks) E[M_k M_j] = p^2 + p(1-p) [k = j], so S_j = p f(x) + (1 - p) w_j x_j."""
    x = rand(11, 2, 6, dtype=torch.float64)
    explainer = RISE(linear, seed=0, n_masks=4000, grid_size=6, p=0.5)
    masks = explainer.masks((6,), 0).block(0, 4000)
    # a 6-cell grid upsampled to 7 with a zero shift: linear interpolation, so masks are not binary; use them
    second = (masks.T.to(torch.float64) @ masks.to(torch.float64)) / 4000
    expected = (x * W) @ second / 0.5
    e = explainer.explain(x, target=0)
    torch.testing.assert_close(e.attributions, expected, rtol=0.05, atol=0.05)
    signals = RISE(lambda t: t.sum((1, 2))[:, None], seed=0, n_masks=50).explain(rand(12, 2, 2, 6), target=0)
    assert signals.attributions.shape == (2, 2, 6)
    torch.testing.assert_close(signals.attributions[:, 0], signals.attributions[:, 1])  # channels share a mask


# ------------------------------------------------------------------------------------------------ both
@pytest.mark.parametrize("make", [
    lambda seed, **kw: LIME(make_mlp(), seed=seed, n_samples=200, **kw),
    lambda seed, **kw: RISE(make_mlp(), seed=seed, n_masks=200, **kw),
])
def test_seeded_determinism_and_batch_size_invariance(make) -> None:
    x, background = rand(13, 3, 6), rand(14, 20, 6)
    first = make(3).explain(x, target=1, baseline=background).attributions
    again = make(3).explain(x, target=1, baseline=background).attributions
    other = make(4).explain(x, target=1, baseline=background).attributions
    small = make(3, batch_size=7).explain(x, target=1, baseline=background).attributions
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    torch.testing.assert_close(small, first, rtol=1e-5, atol=1e-6)


def test_image_lime_and_rise_numpy_and_torch_agree() -> None:
    model = make_cnn()
    x = rand(15, 2, 1, 8, 8)
    for explainer in (LIME(model, seed=0, n_samples=100, segmentation="grid", fill="blur"),
                      RISE(model, seed=0, n_masks=100, fill="mean")):
        t = explainer.explain(x, target=1)
        n = explainer.explain(x.numpy(), target=1)
        assert isinstance(n.attributions, np.ndarray)
        np.testing.assert_allclose(n.attributions, t.attributions.numpy(), rtol=1e-6, atol=1e-7)


def test_lime_sampling_schemes_and_numpy_function() -> None:
    model = NumpyModel(lambda a: a.reshape(len(a), -1).sum(1))
    x = rand(16, 2, 1, 4, 4, dtype=torch.float64).numpy()
    for sampling in ("bernoulli", "size"):
        e = LIME(model, seed=0, alpha=0.0, n_samples=100, sampling=sampling).explain(x, feature_groups=grid_segments(
            4, 4, 4)[None], target=None)
        blocks = x[:, 0].reshape(2, 2, 2, 2, 2).sum((2, 4)).reshape(2, 4)  # the 2 x 2 cells' sums
        np.testing.assert_allclose(e.extras["group_values"], blocks, atol=1e-9)
    assert isinstance(e.attributions, np.ndarray)
    with pytest.raises(lumos.ValidationError, match="sampling"):
        LIME(model, sampling="half")
