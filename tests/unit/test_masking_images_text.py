"""Unit tests of image and text masking: superpixels, per-sample feature groups, the coalition masker, fills,
RISE masks, token features and model wrappers, and the errors of LIME and RISE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from conftest import make_mlp, make_token, rand
from lumos.core.evaluation import EvaluationEngine
from lumos.core.inputs import prepare_inputs
from lumos.core.model import ModelAdapter
from lumos.core.targets import Class
from lumos.methods.perturbation.fills import gaussian_blur, make_fill
from lumos.methods.perturbation.lime import LIME
from lumos.methods.perturbation.masking import CoalitionMasker, prepare_sample_groups
from lumos.methods.perturbation.rise import RISE, RiseMasks
from lumos.methods.perturbation.segments import grid_segments, segment_image, segment_images
from lumos.methods.perturbation.text import (
    HIDDEN_ID,
    PAD_ID,
    TextModel,
    TokenizedTexts,
    TokenModel,
    explain_text,
    token_feature_groups,
)


# ------------------------------------------------------------------------------------------------ superpixels
@pytest.mark.parametrize("method", ["slic", "quickshift", "felzenszwalb", "grid"])
def test_every_segmentation_gives_label_maps_of_the_image_size(method: str) -> None:
    images = np.stack([np.kron(np.eye(2), np.ones((8, 8)))[None].repeat(3, 0) * s for s in (1.0, 2.0)])  # blocks
    labels = segment_images(images, method)
    assert labels.shape == (2, 16, 16) and labels.dtype == np.int64
    for label in labels:
        assert np.array_equal(np.unique(label), np.arange(label.max() + 1))  # renumbered 0..k-1


def test_grid_segments_count_and_layout() -> None:
    labels = grid_segments(8, 8, 16)
    assert len(np.unique(labels)) == 16
    np.testing.assert_array_equal(labels[:2, :2], 0)
    np.testing.assert_array_equal(labels[6:, 6:], 15)
    assert labels[0, 2] == 1 and labels[2, 0] == 4
    assert len(np.unique(grid_segments(6, 12, 8))) == 8  # 2 x 4 on a wide image
    assert len(np.unique(grid_segments(4, 4, 100))) == 16  # clipped to the pixels


def test_slic_separates_two_flat_regions_and_a_callable_segmentation() -> None:
    image = np.zeros((3, 12, 12))
    image[:, :, 6:] = 1.0
    labels = segment_image(image, "slic", n_segments=4)
    assert not set(np.unique(labels[:, :6])) & set(np.unique(labels[:, 6:]))  # no superpixel crosses the edge
    halves = segment_image(image, lambda hwc: (hwc[..., 0] > 0.5).astype(int))
    np.testing.assert_array_equal(halves, np.broadcast_to(np.arange(12) >= 6, (12, 12)))
    with pytest.raises(lumos.ValidationError, match="label map of shape"):
        segment_image(image, lambda hwc: np.zeros((3, 3), dtype=int))
    with pytest.raises(lumos.ValidationError, match="segmentation must be one of"):
        segment_image(image, "watershed")
    with pytest.raises(lumos.ValidationError, match="segmentation_params"):
        segment_image(image, "felzenszwalb", n_segments=4)
    with pytest.raises(lumos.ValidationError, match=r"\(C, H, W\)"):
        segment_image(image[0], "grid")


# ------------------------------------------------------------------------------------------------ groups, masker
def test_per_sample_groups_with_negative_ids() -> None:
    batch = prepare_inputs(torch.zeros(2, 4), owner="t", device=None, float_dtype=None)
    groups = prepare_sample_groups(np.array([[7, 7, 3, -1], [0, 1, 2, 3]]), batch, owner="t")
    np.testing.assert_array_equal(groups.element_group.numpy(), [[1, 1, 0, -1], [0, 1, 2, 3]])
    assert groups.n_groups.tolist() == [2, 4] and groups.labels == [[3, 7], [0, 1, 2, 3]]
    np.testing.assert_array_equal(groups.valid().numpy(), [[True, True, False, False], [True] * 4])
    shared = prepare_sample_groups(np.array([0, 0, 1, 1]), batch, owner="t")  # one map for every sample
    assert shared.n_groups.tolist() == [2, 2]
    assert prepare_sample_groups(None, batch, owner="t").n_groups.tolist() == [4, 4]
    with pytest.raises(lumos.ValidationError, match="without any feature"):
        prepare_sample_groups(np.array([[0, 1, 2, 3], [-1, -1, -1, -1]]), batch, owner="t")


def test_coalition_masker_builds_the_rows_of_a_naive_loop() -> None:
    x = rand(0, 2, 5, dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def model(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return t.sum(1, keepdim=True)

    batch = prepare_inputs(x, owner="t", device=None, float_dtype=None)
    groups = prepare_sample_groups(np.array([[0, 0, 1, 1, -1], [0, 1, 2, 3, 4]]), batch, owner="t")
    fill = make_fill("baseline", 10.0, batch, owner="t")
    engine = EvaluationEngine(ModelAdapter(model), {}, Class(0), n_samples=2, batch_size=3)
    keep = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(0)) < 0.5
    values = CoalitionMasker(batch, groups, fill, engine).values(keep)
    rows = torch.cat(seen)
    for i in range(2):
        for k in range(4):
            element = groups.element_group[i]
            kept = torch.where(element >= 0, keep[i, k][element.clamp_min(0)], torch.ones((), dtype=torch.bool))
            expected = torch.where(kept, x[i], torch.full_like(x[i], 10.0))
            torch.testing.assert_close(rows[i * 4 + k], expected)
            assert float(values[i, k]) == pytest.approx(float(expected.sum()))


# ------------------------------------------------------------------------------------------------ fills
def test_fills_mean_blur_and_background_pool() -> None:
    from scipy.ndimage import gaussian_filter

    x = rand(1, 2, 3, 9, 11, dtype=torch.float64)
    batch = prepare_inputs(x, owner="t", device=None, float_dtype=None)
    mean = make_fill("mean", None, batch, owner="t").per_sample[0].reshape(x.shape)
    torch.testing.assert_close(mean[:, :, 4, 7], x.mean((2, 3)))
    blurred = gaussian_blur(x, 1.5, owner="t")
    reference = gaussian_filter(x.numpy(), sigma=(0, 0, 1.5, 1.5), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(blurred.numpy(), reference, atol=1e-12)
    pool = make_fill("baseline", rand(2, 4, 3, 9, 11, dtype=torch.float64), batch, owner="t")
    pool.draw(6, torch.Generator().manual_seed(0))
    rows = pool.rows(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 5]))[0]
    torch.testing.assert_close(rows[0], rows[1])  # one background row per perturbation, for every sample
    torch.testing.assert_close(rows[2], pool.pool[0][pool.choice[5]])
    with pytest.raises(lumos.ValidationError, match="fill must be one of"):
        make_fill("noise", None, batch, owner="t")
    with pytest.raises(lumos.ValidationError, match="not used with fill='mean'"):
        make_fill("mean", 0.0, batch, owner="t")
    tabular = prepare_inputs(torch.zeros(2, 4), owner="t", device=None, float_dtype=None)
    with pytest.raises(lumos.ValidationError, match="blur"):
        make_fill("blur", None, tabular, owner="t")


# ------------------------------------------------------------------------------------------------ RISE masks
def test_rise_masks_are_smooth_shifted_grids() -> None:
    masks = RiseMasks((3, 10, 10), 400, grid_size=4, p=0.3, generator=torch.Generator().manual_seed(0))
    block = masks.block(0, 400)
    assert block.shape == (400, 10, 10) and float(block.min()) >= 0 and float(block.max()) <= 1
    assert abs(float(block.mean()) - 0.3) < 0.03
    assert masks.cells == [4, 4] and masks.cell_size == [3, 3]
    # mask 7 by hand: upsample its 4 x 4 grid to 15 x 15 and crop 10 x 10 at its shift
    grid = masks.grid[7][None, None]
    up = torch.nn.functional.interpolate(grid, size=(15, 15), mode="bilinear", align_corners=False)[0, 0]
    dy, dx = int(masks.shifts[0][7]), int(masks.shifts[1][7])
    torch.testing.assert_close(block[7], up[dy:dy + 10, dx:dx + 10])
    torch.testing.assert_close(masks._build(5, 9), block[5:9])  # the chunked path equals the cached one
    assert RiseMasks((6,), 5, grid_size=7, p=0.5, generator=torch.Generator()).block(0, 5).shape == (5, 6)
    with pytest.raises(lumos.ValidationError, match="sample shape"):
        RiseMasks((1, 2, 3, 4), 5, grid_size=2, p=0.5, generator=torch.Generator())


# ------------------------------------------------------------------------------------------------ text
class WordPieceTokenizer:
    """A stand-in for a Hugging Face tokenizer: splits words after 4 characters into '##' pieces."""

    def tokenize(self, text: str) -> list[str]:
        out = []
        for word in text.split():
            out += [word[:4]] + (["##" + word[4:]] if len(word) > 4 else [])
        return out

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens).replace(" ##", "")


def test_tokenized_texts_and_decoding() -> None:
    texts = TokenizedTexts(["a b a", "c"])
    assert texts.tokens == [["a", "b", "a"], ["c"]] and texts.vocabulary == ["a", "b", "c"]
    np.testing.assert_array_equal(texts.ids.numpy(), [[0, 1, 0], [2, PAD_ID, PAD_ID]])
    np.testing.assert_array_equal(texts.feature_groups, [[0, 1, 2], [0, -1, -1]])
    assert texts.decode([0, HIDDEN_ID, 0]) == "a a"
    assert texts.decode([0, HIDDEN_ID, 0], "[MASK]") == "a [MASK] a"
    pieces = TokenizedTexts(["wonderful film"], tokenizer=WordPieceTokenizer())
    assert pieces.tokens == [["wond", "##erful", "film"]]
    assert pieces.decode(pieces.ids[0].tolist()) == "wonderful film"
    with pytest.raises(lumos.ValidationError, match="no tokens"):
        TokenizedTexts(["fine", "   "])
    with pytest.raises(lumos.ValidationError, match="tokenize"):
        TokenizedTexts(["fine"], tokenizer=object())
    with pytest.raises(lumos.ValidationError, match="list of strings"):
        TokenizedTexts("just one string")
    with pytest.raises(lumos.ValidationError, match="not in the vocabulary"):
        texts.decode([7])


def test_text_model_and_explain_text_with_a_tokenizer() -> None:
    seen: list[list[str]] = []

    def classifier(strings: list[str]) -> np.ndarray:
        seen.extend(strings)
        return np.array([[s.count("wonderful"), len(s.split())] for s in strings], dtype=float)

    e = explain_text(classifier, ["wonderful film"], target=0, tokenizer=WordPieceTokenizer(), seed=0, alpha=0.0,
                     n_samples=64, mask_token="[UNK]")
    # "wonderful" needs both pieces: f = z0 z1, not linear; both pieces get the same positive weight
    a = e.attributions[0].numpy()
    assert a[0] == pytest.approx(a[1], rel=0.1) and a[0] > 0.3 and abs(a[2]) < 0.05
    assert any("[UNK]" in s for s in seen)
    texts = TokenizedTexts(["x y"])
    with pytest.raises(lumos.ValidationError, match="token ids"):
        TextModel(classifier, texts)(torch.zeros(1, 2))
    with pytest.raises(lumos.ValidationError, match="TokenizedTexts"):
        TextModel(classifier, ["x y"])


def test_token_model_removal_compacts_the_kept_tokens() -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def model(ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        calls.append((ids, attention_mask))
        return ids.float()

    wrapped = TokenModel(model, pad_id=0)
    wrapped(torch.tensor([[5, HIDDEN_ID, 7, 8]]), torch.tensor([[1, 1, 1, 0]]))
    np.testing.assert_array_equal(calls[-1][0].numpy(), [[5, 7, 8, 0]])
    np.testing.assert_array_equal(calls[-1][1].numpy(), [[1, 1, 0, 0]])
    TokenModel(model, mask_id=3)(torch.tensor([[5, HIDDEN_ID]]))
    np.testing.assert_array_equal(calls[-1][0].numpy(), [[5, 3]])
    groups = token_feature_groups(torch.tensor([[1, 1, 1, 0]]), special_tokens_mask=[[1, 0, 0, 0]])
    np.testing.assert_array_equal(groups, [[-1, 1, 2, -1]])


def test_lime_on_a_token_model_keeps_the_model_state() -> None:
    model = make_token().train()
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    e = LIME(TokenModel(model, mask_id=0), seed=0, n_samples=50).explain(
        ids, 0, baseline=HIDDEN_ID, feature_groups=token_feature_groups(mask), forward_kwargs={"attention_mask": mask})
    assert e.attributions.shape == (2, 4) and float(e.attributions[1, 3]) == 0.0
    assert model.training and e.extras["mode"] == "groups"


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("params", "match"), [
    ({"n_samples": 0}, "n_samples"), ({"n_samples": 1}, "n_samples"), ({"mode": "audio"}, "mode"),
    ({"segmentation": "watershed"}, "segmentation"), ({"feature_selection": "lars"}, "feature_selection"),
    ({"n_features": 0}, "n_features"), ({"kernel_width": 0.0}, "kernel_width"), ({"alpha": -1.0}, "alpha"),
    ({"fill": "noise"}, "fill"), ({"discretize": "yes"}, "discretize"), ({"segmentation_params": 3}, "params"),
])
def test_lime_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(lumos.ValidationError, match=match):
        LIME(make_mlp(), **params)


@pytest.mark.parametrize(("params", "match"), [
    ({"n_masks": 0}, "n_masks"), ({"grid_size": 0}, "grid_size"), ({"p": 0.0}, "p must"), ({"p": 1.5}, "p must"),
    ({"fill": "noise"}, "fill"), ({"blur_sigma": -1.0}, "blur_sigma"),
])
def test_rise_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(lumos.ValidationError, match=match):
        RISE(make_mlp(), **params)


def test_lime_and_rise_data_errors() -> None:
    x = rand(0, 2, 6)
    with pytest.raises(lumos.ValidationError, match="baseline=<training data>"):
        LIME(make_mlp(), seed=0).explain(x, target=0)
    with pytest.raises(lumos.ValidationError, match="fill='mean' applies"):
        LIME(make_mlp(), seed=0, fill="mean").explain(x, target=0, baseline=rand(1, 5, 6))
    with pytest.raises(lumos.ValidationError, match="mode='image'"):
        LIME(make_mlp(), seed=0, mode="image").explain(x, target=0)
    with pytest.raises(lumos.ValidationError, match="floating-point"):
        LIME(make_token(), seed=0, mode="tabular").explain(torch.tensor([[1, 2]]), target=0)
    with pytest.raises(lumos.ValidationError, match="floating-point"):
        RISE(make_token(), seed=0).explain(torch.tensor([[1, 2]]), target=0)
    with pytest.raises(lumos.ValidationError, match="segmentation_params"):
        LIME(lambda t: t.sum((1, 2, 3))[:, None], seed=0, segmentation="slic",
             segmentation_params={"bogus": 1}).explain(rand(0, 1, 3, 8, 8), target=0)
