"""Image displays (heatmap, top-k region, comparison grid): what is drawn equals the maps, colour limits follow
the percentile rule, saving gives valid PNG/SVG, pyplot is never touched, bad input raises ValidationError."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from lumos.errors import ValidationError
from lumos.explanation import Explanation
from lumos.plots.colors import color_limits, pool_channels, top_region_mask
from lumos.plots.images import ComparisonGridDisplay, HeatmapDisplay, TopRegionDisplay

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 20 and pixels.shape[1] > 20
    assert pixels[..., :3].var() > 0  # not blank


def check_svg(path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 10


@pytest.fixture()
def no_pyplot_state():
    """The displays must leave pyplot's figure registry and the backend as they found them."""
    figures, backend = plt.get_fignums(), matplotlib.get_backend()
    yield
    assert plt.get_fignums() == figures
    assert matplotlib.get_backend() == backend


def image_explanation(n: int = 3, c: int = 3, h: int = 9, w: int = 7, *, torch_arrays: bool = False) -> Explanation:
    a = rng(0).normal(size=(n, c, h, w))
    x = rng(1).uniform(-2, 3, size=(n, c, h, w))
    if torch_arrays:
        a, x = torch.from_numpy(a), torch.from_numpy(x)
    return Explanation(attributions=a, inputs=x, method="integrated_gradients", targets=np.array([2, 0, 1][:n]))


# ---------------------------------------------------------------------------------------------- colours


def test_pool_channels_matches_each_reduction_written_out() -> None:
    a = rng(2).normal(size=(3, 4, 5))
    np.testing.assert_allclose(pool_channels(a, "sum"), a[0] + a[1] + a[2])
    np.testing.assert_allclose(pool_channels(a, "abs_sum"), abs(a[0]) + abs(a[1]) + abs(a[2]))
    np.testing.assert_allclose(pool_channels(a, "max_abs"), np.maximum(np.maximum(abs(a[0]), abs(a[1])), abs(a[2])))
    np.testing.assert_array_equal(pool_channels(a[0]), a[0])
    with pytest.raises(ValidationError, match="reduce must be one of"):
        pool_channels(a, "mean")


def test_color_limits_symmetric_percentile_and_sequential_from_zero() -> None:
    v = rng(3).normal(size=1000)
    v[0] = 1e6  # one extreme value must not set the scale
    vmin, vmax, signed = color_limits(v, clip_percentile=99.0)
    assert signed and vmin == -vmax
    assert vmax == pytest.approx(np.percentile(np.abs(v), 99.0))
    assert vmax < 10
    pos = np.abs(v)
    vmin, vmax, signed = color_limits(pos, clip_percentile=95.0)
    assert not signed and vmin == 0.0 and vmax == pytest.approx(np.percentile(pos, 95.0))
    assert color_limits(np.zeros(5)) == (0.0, 1.0, False)  # constant map: non-degenerate scale
    with pytest.raises(ValidationError, match="clip_percentile"):
        color_limits(v, clip_percentile=0)


def test_top_region_mask_selects_exactly_the_largest_values() -> None:
    v = rng(4).normal(size=(10, 10))
    mask = top_region_mask(v, 7.0)
    assert mask.sum() == 7
    assert v[mask].min() > v[~mask].max()
    mask_abs = top_region_mask(v, 10.0, by="abs")
    assert mask_abs.sum() == 10 and np.abs(v)[mask_abs].min() > np.abs(v)[~mask_abs].max()


# ---------------------------------------------------------------------------------------------- heatmap


@pytest.mark.parametrize("reduce", ["sum", "abs_sum", "max_abs"])
def test_heatmap_draws_the_pooled_map_with_percentile_limits(reduce, no_pyplot_state) -> None:
    e = image_explanation()
    d = HeatmapDisplay.from_explanation(e, index=1, reduce=reduce).plot()
    expected = pool_channels(e.attributions[1], reduce)
    np.testing.assert_allclose(np.asarray(d.image_.get_array()), expected)
    lo, hi = d.image_.get_clim()
    if reduce == "sum":
        assert d.signed_ and lo == -hi and hi == pytest.approx(np.percentile(np.abs(expected), 99.5))
        assert d.image_.get_cmap().name == "RdBu_r"
    else:
        assert not d.signed_ and lo == 0.0 and hi == pytest.approx(np.percentile(expected, 99.5))
        assert d.image_.get_cmap().name == "inferno"
    assert d.colorbar_ is not None and d.colorbar_.ax.get_ylabel() == "attribution"
    assert d.ax_.get_title() == "integrated_gradients - target 0"
    assert d.figure_ is d.ax_.figure


def test_heatmap_overlays_the_normalised_image_gray_or_rgb() -> None:
    e = image_explanation(c=1)
    d = HeatmapDisplay.from_explanation(e, index=2).plot(alpha=0.4)
    background = np.asarray(d.background_.get_array())
    x = e.inputs[2, 0]
    np.testing.assert_allclose(background, (x - x.min()) / (x.max() - x.min()))
    assert d.image_.get_alpha() == 0.4
    # RGB inputs are shown as luminance under a map; the map alone without overlay
    e3 = image_explanation(c=3)
    d3 = HeatmapDisplay.from_explanation(e3, index=0).plot()
    x3 = np.moveaxis(e3.inputs[0], 0, -1)
    x3 = (x3 - x3.min()) / (x3.max() - x3.min())
    np.testing.assert_allclose(np.asarray(d3.background_.get_array()), x3 @ np.array([0.299, 0.587, 0.114]))
    alone = HeatmapDisplay.from_explanation(e3, index=0).plot(overlay=False)
    assert alone.background_ is None and len(alone.ax_.images) == 1


def test_heatmap_stretches_a_small_map_over_the_image_and_draws_the_top_region() -> None:
    small = Explanation(attributions=rng(5).normal(size=(2, 4, 4)), inputs=rng(6).uniform(size=(2, 1, 16, 16)),
                        method="grad_cam")
    d = HeatmapDisplay.from_explanation(small, top_percent=25).plot()
    assert d.image_.get_extent() == [-0.5, 15.5, 15.5, -0.5]
    assert d.mask_.sum() == 4 and d.contour_ is not None
    np.testing.assert_array_equal(d.mask_, top_region_mask(small.attributions[0], 25))
    # torch tensors work like numpy arrays
    dt = HeatmapDisplay.from_explanation(image_explanation(torch_arrays=True), index=0).plot()
    np.testing.assert_allclose(np.asarray(dt.image_.get_array()), image_explanation().attributions[0].sum(0))


def test_top_region_display_dims_outside_and_outlines_the_region(no_pyplot_state) -> None:
    e = image_explanation()
    d = TopRegionDisplay.from_explanation(e, index=0, percent=10).plot()
    m = pool_channels(e.attributions[0])
    assert d.mask_.sum() == int(np.ceil(0.1 * m.size)) and m[d.mask_].min() > m[~d.mask_].max()
    shade = np.asarray(d.ax_.images[-1].get_array())
    np.testing.assert_array_equal(shade[..., 3] > 0, ~d.mask_)
    assert len(d.contour_.allsegs[0]) >= 1
    check_png(d.to_bytes("png"))


def test_heatmap_into_a_given_axes_and_save_png_svg(tmp_path, no_pyplot_state) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    d = HeatmapDisplay(rng(7).normal(size=(6, 6)), title="custom").plot(ax=ax)
    assert d.ax_ is ax and d.figure_ is fig and ax.get_title() == "custom"
    path = d.save(tmp_path / "map.png")
    check_png(path.read_bytes())
    check_svg(d.save(tmp_path / "map.svg"))
    assert d.save(tmp_path / "map.pdf").read_bytes()[:4] == b"%PDF"
    check_png(d._repr_png_())
    with pytest.raises(ValidationError, match="format must be one of"):
        d.save(tmp_path / "map.gif")
    # save() plots first when plot() was not called
    check_png(HeatmapDisplay(rng(8).normal(size=(5, 5))).save(tmp_path / "auto.png").read_bytes())


def test_heatmap_errors_name_the_owner_and_argument() -> None:
    tabular = Explanation(attributions=np.zeros((4, 6)), method="saliency")
    with pytest.raises(ValidationError, match=r"HeatmapDisplay: needs image attributions .* got shape \(4, 6\)"):
        HeatmapDisplay.from_explanation(tabular)
    with pytest.raises(ValidationError, match=r"HeatmapDisplay: index must be an int in \[0, 3\)"):
        HeatmapDisplay.from_explanation(image_explanation(), index=3)
    with pytest.raises(ValidationError, match="must be a lumos Explanation"):
        HeatmapDisplay.from_explanation(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValidationError, match="clip_percentile"):
        HeatmapDisplay(np.ones((3, 3)), clip_percentile=150)
    with pytest.raises(ValidationError, match="reduce"):
        HeatmapDisplay(np.ones((3, 3, 3)), reduce="mean")
    with pytest.raises(ValidationError, match="ax must be a matplotlib Axes"):
        HeatmapDisplay(np.ones((3, 3))).plot(ax="left")


# ---------------------------------------------------------------------------------------------- grid


def test_comparison_grid_rows_are_methods_and_cells_the_maps(no_pyplot_state) -> None:
    e1 = image_explanation()
    e2 = Explanation(attributions=np.abs(rng(9).normal(size=(3, 3, 9, 7))), method="saliency")
    d = ComparisonGridDisplay.from_explanations([e1, e2], indices=[2, 0], scale="cell").plot()
    assert d.axes_.shape == (3, 2)  # inputs + two methods, two samples
    assert [a.get_title() for a in d.axes_[0]] == ["sample 2", "sample 0"]
    assert d.axes_[1, 0].get_ylabel() == "integrated gradients" and d.axes_[2, 0].get_ylabel() == "saliency"
    for r, e in enumerate([e1, e2]):
        for c, i in enumerate([2, 0]):
            expected = pool_channels(e.attributions[i])
            np.testing.assert_allclose(np.asarray(d.cell_images_[r][c].get_array()), expected)
            assert tuple(d.limits_[r, c]) == pytest.approx(color_limits(expected)[:2])  # each cell its own scale
    assert d.cell_images_[1][0].get_cmap().name == "inferno"  # non-negative row: sequential


def test_comparison_grid_row_scaling_shares_one_limit_per_row() -> None:
    scales = np.array([1, 10, 100])[:, None, None]
    maps = {"a": rng(10).normal(size=(3, 5, 5)) * scales, "b": rng(11).normal(size=(3, 5, 5))}
    d = ComparisonGridDisplay(maps, scale="row").plot(colorbar=True)
    assert d.axes_.shape == (2, 3)
    for r, name in enumerate(maps):
        expected = np.percentile(np.abs(maps[name]), 99.5)
        np.testing.assert_allclose(d.limits_[r, :, 1], expected)
        np.testing.assert_allclose(d.limits_[r, :, 0], -expected)
    with pytest.raises(ValidationError, match="scale must be one of"):
        ComparisonGridDisplay(maps, scale="column")
    with pytest.raises(ValidationError, match="same number of samples"):
        ComparisonGridDisplay({"a": np.zeros((2, 4, 4)), "b": np.zeros((3, 4, 4))})
    with pytest.raises(ValidationError, match="repeats"):
        ComparisonGridDisplay.from_explanations([image_explanation(), image_explanation()])
