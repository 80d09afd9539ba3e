"""Image displays: a heatmap over the image, a methods x samples comparison grid, the top-k% region.

Attributions of images are channels first, ``(N, C, H, W)`` (as PyTorch) or ``(N, H, W)``. Channels are
pooled for display with ``reduce`` (see :func:`lumos.plots.colors.pool_channels`): ``"sum"`` (default,
signed), ``"abs_sum"`` or ``"max_abs"`` (magnitudes). The image under a heatmap is ``explanation.inputs``,
min-max scaled to [0, 1] (gray when C == 1, RGB when C == 3). A map of another size than the image (a
``layer=`` explanation, e.g. Grad-CAM) is stretched over the image.

Example:
    >>> HeatmapDisplay.from_explanation(explanation, index=0).plot().save("heatmap.png")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from .base import Display, check_choice, check_explanation, check_index, pick_input
from .colors import (
    DIVERGING_CMAP,
    SEQUENTIAL_CMAP,
    color_limits,
    image_for_display,
    pool_channels,
    to_numpy,
    top_region_mask,
)


def image_attributions(explanation: Explanation, owner: str, input_index: int = 0
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(attributions (N, [C,] H, W), inputs or None)`` of an image explanation, checked."""
    attributions, inputs = pick_input(explanation, input_index, owner)
    if attributions.ndim not in (3, 4):
        raise ValidationError(
            f"{owner}: needs image attributions (N, C, H, W) or (N, H, W), got shape {attributions.shape}; "
            "for tabular (N, features) explanations use BarDisplay/WaterfallDisplay, for tokens TextDisplay"
        )
    if inputs is not None and (inputs.ndim not in (3, 4) or inputs.shape[0] != attributions.shape[0]):
        inputs = None
    return attributions, inputs


def _pixel_centres(map_shape: tuple[int, int], image_shape: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """x and y coordinates of the map's pixel centres in the image's pixel coordinates (map stretched)."""
    h, w = map_shape
    big_h, big_w = image_shape if image_shape is not None else map_shape
    xs = (np.arange(w) + 0.5) * big_w / w - 0.5
    ys = (np.arange(h) + 0.5) * big_h / h - 0.5
    return xs, ys


def draw_map(ax: Any, values: np.ndarray, *, image: np.ndarray | None, vmin: float, vmax: float, cmap: str,
             alpha: float = 1.0, interpolation: str = "nearest") -> Any:
    """Draw a 2-D map (over ``image`` in gray if given, stretched to its size); returns the map's AxesImage.

    The image under a map is shown as luminance (gray) so that its colours never mix with the colour scale.
    """
    extent = None
    if image is not None:
        shown, gray = image_for_display(image)
        if not gray:
            shown = shown @ np.array([0.299, 0.587, 0.114])
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        big_h, big_w = shown.shape[:2]
        extent = (-0.5, big_w - 0.5, big_h - 0.5, -0.5)
    artist = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation=interpolation,
                       extent=extent)
    ax.set_xticks([])
    ax.set_yticks([])
    return artist


def draw_contour(ax: Any, mask: np.ndarray, image_shape: tuple[int, int] | None, *, color: str = "black",
                 linewidth: float = 1.5) -> Any:
    """The outline of a boolean mask (on the map's grid, stretched to the image)."""
    xs, ys = _pixel_centres(mask.shape, image_shape)
    padded = np.pad(mask.astype(float), 1)  # closes regions that touch the border
    dx = xs[1] - xs[0] if len(xs) > 1 else 1.0
    dy = ys[1] - ys[0] if len(ys) > 1 else 1.0
    xs = np.concatenate([[xs[0] - dx], xs, [xs[-1] + dx]])
    ys = np.concatenate([[ys[0] - dy], ys, [ys[-1] + dy]])
    contour = ax.contour(xs, ys, padded, levels=[0.5], colors=[color], linewidths=linewidth)
    lim_x = (-0.5, (image_shape or mask.shape)[1] - 0.5)
    lim_y = ((image_shape or mask.shape)[0] - 0.5, -0.5)
    ax.set_xlim(*lim_x)
    ax.set_ylim(*lim_y)
    return contour


class HeatmapDisplay(Display):
    """One sample's attribution map, over its image or alone, with a colour bar.

    Colour scale: diverging ``RdBu_r`` symmetric around 0 when the map has negative values, sequential
    ``inferno`` from 0 otherwise (``signed=None``, or force with ``signed=True/False``); the limit is the
    ``clip_percentile``-th percentile of |values| (99.5 by default) so a few extreme pixels do not wash out the
    map. ``top_percent`` adds the outline of the top-k% region (by value).

    Args:
        attributions: ``(H, W)`` or ``(C, H, W)`` map of one sample.
        image: the sample's input, ``(H, W)``, ``(C, H, W)`` or ``None`` (map alone).
        reduce: channel pooling, ``"sum"`` | ``"abs_sum"`` | ``"max_abs"``.
        signed, clip_percentile, cmap: the colour scale (``cmap=None``: by sign).
        title, colorbar_label: texts.
        top_percent: if given, draw the contour of the top ``top_percent`` % pixels.

    Attributes (after ``plot``): ``figure_``, ``ax_``, ``image_`` (the map's AxesImage), ``background_``
    (the input's AxesImage or None), ``colorbar_``, ``vmin_``/``vmax_``/``signed_``, ``contour_``.

    Example:
        >>> HeatmapDisplay(np.random.randn(8, 8)).plot().save("map.svg")   # doctest: +SKIP
    """

    def __init__(self, attributions: Any, image: Any = None, *, reduce: str = "sum", signed: bool | None = None,
                 clip_percentile: float = 99.5, cmap: str | None = None, title: str | None = None,
                 colorbar_label: str = "attribution", top_percent: float | None = None) -> None:
        owner = type(self).__name__
        raw = to_numpy(attributions, owner=owner, name="attributions")
        self.map_ = pool_channels(raw, reduce, owner=owner)
        self.image = None if image is None else to_numpy(image, owner=owner, name="image")
        if self.image is not None:
            image_for_display(self.image, owner=owner)  # validates the shape now, not at plot time
        self.vmin_, self.vmax_, self.signed_ = color_limits(self.map_, signed=signed, clip_percentile=clip_percentile,
                                                            owner=owner)
        self.cmap = cmap or (DIVERGING_CMAP if self.signed_ else SEQUENTIAL_CMAP)
        self.title = title
        self.colorbar_label = colorbar_label
        self.top_percent = top_percent
        self.mask_ = None if top_percent is None else top_region_mask(self.map_, top_percent, owner=owner)
        self.image_ = self.background_ = self.colorbar_ = self.contour_ = None

    @classmethod
    def from_explanation(cls, explanation: Explanation, index: int = 0, *, input_index: int = 0,
                         show_image: bool = True, **kwargs: Any) -> HeatmapDisplay:
        """The map of sample ``index`` of an image explanation, over ``explanation.inputs[index]``."""
        owner = cls.__name__
        check_explanation(explanation, owner)
        attributions, inputs = image_attributions(explanation, owner, input_index)
        i = check_index(index, attributions.shape[0], owner)
        image = inputs[i] if (show_image and inputs is not None) else None
        if "title" not in kwargs:
            target = "" if explanation.targets is None else f" - target {np.asarray(explanation.targets)[i]}"
            kwargs["title"] = f"{explanation.method or 'attributions'}{target}"
        return cls(attributions[i], image, **kwargs)

    def plot(self, ax: Any = None, *, overlay: bool = True, alpha: float = 0.6, colorbar: bool = True,
             interpolation: str = "nearest") -> HeatmapDisplay:
        """Draw; ``overlay=False`` draws the map alone even when an image is known."""
        ax = self._axes(ax, (4.2, 3.6))
        image = self.image if overlay else None
        self.image_ = draw_map(ax, self.map_, image=image, vmin=self.vmin_, vmax=self.vmax_, cmap=self.cmap,
                               alpha=alpha if image is not None else 1.0, interpolation=interpolation)
        self.background_ = ax.images[0] if image is not None else None
        if colorbar:
            self.colorbar_ = self.figure_.colorbar(self.image_, ax=ax, shrink=0.85)
            self.colorbar_.set_label(self.colorbar_label)
        if self.mask_ is not None:
            shape = None if image is None else image_for_display(image)[0].shape[:2]
            self.contour_ = draw_contour(ax, self.mask_, shape)
        if self.title:
            ax.set_title(self.title)
        return self


class TopRegionDisplay(Display):
    """The outline of the top ``percent`` % region of a map over the image; the rest is dimmed.

    The region is the ``ceil(percent/100 * H*W)`` pixels with the largest value (``by="value"``: evidence for
    the target) or magnitude (``by="abs"``).

    Attributes: ``mask_`` (the region, bool (H, W)), and after ``plot`` ``contour_``, ``figure_``, ``ax_``.
    """

    def __init__(self, attributions: Any, image: Any = None, *, percent: float = 10.0, by: str = "value",
                 reduce: str = "sum", title: str | None = None, color: str = "yellow") -> None:
        owner = type(self).__name__
        self.map_ = pool_channels(to_numpy(attributions, owner=owner, name="attributions"), reduce, owner=owner)
        self.image = None if image is None else to_numpy(image, owner=owner, name="image")
        self.percent = percent
        self.mask_ = top_region_mask(self.map_, percent, by=by, owner=owner)
        self.title = title if title is not None else f"top {percent:g}% region"
        self.color = color
        self.contour_ = None

    @classmethod
    def from_explanation(cls, explanation: Explanation, index: int = 0, *, input_index: int = 0,
                         **kwargs: Any) -> TopRegionDisplay:
        owner = cls.__name__
        check_explanation(explanation, owner)
        attributions, inputs = image_attributions(explanation, owner, input_index)
        i = check_index(index, attributions.shape[0], owner)
        return cls(attributions[i], None if inputs is None else inputs[i], **kwargs)

    def plot(self, ax: Any = None, *, dim: float = 0.55) -> TopRegionDisplay:
        """Draw the image (or the map in gray), dim outside the region by ``dim``, outline the region."""
        ax = self._axes(ax, (3.6, 3.6))
        if self.image is not None:
            shown, gray = image_for_display(self.image)
            ax.imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
            shape = shown.shape[:2]
        else:
            vmin, vmax, _ = color_limits(self.map_, signed=False)
            ax.imshow(self.map_, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            shape = None
        big_h, big_w = shape or self.map_.shape
        shade = np.zeros((*self.mask_.shape, 4))
        shade[~self.mask_, 3] = dim
        ax.imshow(shade, extent=(-0.5, big_w - 0.5, big_h - 0.5, -0.5), interpolation="nearest")
        self.contour_ = draw_contour(ax, self.mask_, shape, color=self.color)
        ax.set_xticks([])
        ax.set_yticks([])
        if self.title:
            ax.set_title(self.title)
        return self


def draw_map_rows(axes: np.ndarray, rows: Sequence[Sequence[np.ndarray]], *, first_row: int, scale: str,
                  signed: bool | None, clip_percentile: float, cmap: str | None, owner: str,
                  images: Sequence[np.ndarray | None] | None = None, alpha: float = 1.0) -> tuple[list, np.ndarray]:
    """Draw ``rows[r][c]`` (2-D maps) into ``axes[first_row + r, c]``; one sign decision per row.

    ``scale="cell"``: each cell its own percentile-clipped limits; ``"row"``: one limit for the whole row.
    Returns the AxesImages (rows x cols) and the limits array (rows, cols, 2).
    """
    check_choice(scale, ("cell", "row"), owner, "scale")
    artists, limits = [], np.zeros((len(rows), len(rows[0]) if rows else 0, 2))
    for r, row in enumerate(rows):
        row_signed = signed if signed is not None else any(np.nanmin(m) < 0 for m in row if np.isfinite(m).any())
        row_cmap = cmap or (DIVERGING_CMAP if row_signed else SEQUENTIAL_CMAP)
        if scale == "row":
            every = np.concatenate([np.ravel(m) for m in row])
            shared = color_limits(every, signed=row_signed, clip_percentile=clip_percentile, owner=owner)
        line = []
        for c, values in enumerate(row):
            vmin, vmax, _ = shared if scale == "row" else color_limits(
                values, signed=row_signed, clip_percentile=clip_percentile, owner=owner)
            limits[r, c] = vmin, vmax
            image = images[c] if images is not None else None
            line.append(draw_map(axes[first_row + r, c], values, image=image, vmin=vmin, vmax=vmax, cmap=row_cmap,
                                 alpha=alpha if image is not None else 1.0))
        artists.append(line)
    return artists, limits


class ComparisonGridDisplay(Display):
    """A grid of maps: one row per method (explanation), one column per sample, the inputs in the first row.

    Args:
        maps: ``{row name: (N, [C,] H, W) attributions}`` (all rows the same N).
        images: ``(N, [C,] H, W)`` inputs for the first row, or ``None``.
        sample_titles: one title per column (default ``"sample i"``).
        reduce: channel pooling; ``scale``: ``"cell"`` (each map its own colour limits, the default: shows
            each map's structure) or ``"row"`` (one limit per row: magnitudes comparable along a row).
        signed, clip_percentile, cmap: as in :class:`HeatmapDisplay` (sign decided per row).

    Attributes (after ``plot``): ``axes_`` ((1 if images) + rows, N), ``cell_images_``, ``limits_``.

    Example:
        >>> ComparisonGridDisplay.from_explanations([e_ig, e_saliency], indices=[0, 1, 2]).plot()  # doctest: +SKIP
    """

    def __init__(self, maps: Mapping[str, Any], images: Any = None, *, sample_titles: Sequence[str] | None = None,
                 reduce: str = "sum", scale: str = "cell", signed: bool | None = None, clip_percentile: float = 99.5,
                 cmap: str | None = None, title: str | None = None) -> None:
        owner = type(self).__name__
        if not isinstance(maps, Mapping) or not maps:
            raise ValidationError(f"{owner}: maps must be a non-empty {{name: (N, [C,] H, W) array}} dict, "
                                  f"got {type(maps).__name__}")
        self.names = [str(n) for n in maps]
        self.maps = []
        for name, value in maps.items():
            array = to_numpy(value, owner=owner, name=f"maps[{name!r}]")
            if array.ndim not in (3, 4):
                raise ValidationError(f"{owner}: maps[{name!r}] must be (N, H, W) or (N, C, H, W), got {array.shape}")
            self.maps.append([pool_channels(a, reduce, owner=owner) for a in array])
        n = {len(m) for m in self.maps}
        if len(n) != 1:
            raise ValidationError(f"{owner}: every row needs the same number of samples, got {sorted(n)}")
        self.n_samples = n.pop()
        self.images = None if images is None else to_numpy(images, owner=owner, name="images")
        if self.images is not None and len(self.images) != self.n_samples:
            raise ValidationError(f"{owner}: images has {len(self.images)} samples, the maps {self.n_samples}")
        if sample_titles is not None and len(sample_titles) != self.n_samples:
            raise ValidationError(f"{owner}: sample_titles has {len(sample_titles)} titles for {self.n_samples} "
                                  "samples")
        self.sample_titles = list(sample_titles) if sample_titles is not None else [
            f"sample {i}" for i in range(self.n_samples)]
        check_choice(scale, ("cell", "row"), owner, "scale")
        self.scale, self.signed, self.clip_percentile, self.cmap, self.title = (
            scale, signed, clip_percentile, cmap, title)
        self.cell_images_, self.limits_ = None, None

    @classmethod
    def from_explanations(cls, explanations: Mapping[str, Explanation] | Sequence[Explanation],
                          indices: Sequence[int] | None = None, *, input_index: int = 0,
                          **kwargs: Any) -> ComparisonGridDisplay:
        """Rows from explanations of the same samples (a list is named by each method); inputs of the first."""
        owner = cls.__name__
        if isinstance(explanations, Mapping):
            items = dict(explanations)
        else:
            items = {}
            for e in explanations:
                name = check_explanation(e, owner).method or f"explanation {len(items)}"
                if name in items:
                    raise ValidationError(f"{owner}: the method {name!r} repeats; pass a {{name: explanation}} dict")
                items[name] = e
        if not items:
            raise ValidationError(f"{owner}: needs at least one explanation")
        maps, images = {}, None
        for name, e in items.items():
            attributions, inputs = image_attributions(check_explanation(e, owner), owner, input_index)
            chosen = range(len(attributions)) if indices is None else [
                check_index(i, len(attributions), owner, "indices[...]") for i in indices]
            maps[name] = attributions[list(chosen)]
            if images is None and inputs is not None:
                images = inputs[list(chosen)]
        kwargs.setdefault("sample_titles", [f"sample {i}" for i in chosen])
        return cls(maps, images, **kwargs)

    def plot(self, ax: Any = None, *, overlay: bool = False, alpha: float = 0.6, colorbar: bool = False,
             cell_size: float = 1.6) -> ComparisonGridDisplay:
        """Draw the grid; ``overlay=True`` draws each map over its input (the input row stays);
        ``colorbar=True`` adds one colour bar per row (meaningful with ``scale="row"``)."""
        top = 0 if self.images is None else 1
        shape = (top + len(self.maps), self.n_samples)
        axes = self._grid(ax, shape, (1.2 + cell_size * shape[1], 0.4 + cell_size * shape[0]))
        if top:
            for c, image in enumerate(self.images):
                shown, gray = image_for_display(image)
                axes[0, c].imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
                axes[0, c].set_xticks([])
                axes[0, c].set_yticks([])
            axes[0, 0].set_ylabel("input")
        self.cell_images_, self.limits_ = draw_map_rows(
            axes, self.maps, first_row=top, scale=self.scale, signed=self.signed, clip_percentile=self.clip_percentile,
            cmap=self.cmap, owner=type(self).__name__, images=self.images if overlay else None, alpha=alpha)
        for c, text in enumerate(self.sample_titles):
            axes[0, c].set_title(text, fontsize=9)
        for r, name in enumerate(self.names):
            axes[top + r, 0].set_ylabel(name.replace("_", " "), fontsize=9)
            if colorbar:
                self.figure_.colorbar(self.cell_images_[r][-1], ax=list(axes[top + r, :]), shrink=0.8)
        if self.title:
            self.figure_.suptitle(self.title)
        return self
