"""The demo's figure: a grid of heatmaps, one row per method and one column per image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def heatmap_grid(images: np.ndarray, titles: Sequence[str], rows: Sequence[tuple[str, np.ndarray]],
                 path: Path, *, suptitle: str = "") -> Path:
    """Save a PNG grid: the input images on top, then one row of attributions per method.

    Args:
        images: (n, h, w) inputs in [0, 1], drawn in gray.
        titles: one title per image (e.g. label and prediction).
        rows: ``(method name, (n, h, w) attributions)`` per row; each cell uses a diverging colormap
            symmetric around 0 and scaled to its own largest magnitude (red: toward the target class).
        path: where to write the PNG.
    """
    # A Figure without pyplot: no GUI backend, no global figure registry, nothing to close, and the
    # caller's matplotlib backend is left alone (savefig renders with Agg).
    from matplotlib.figure import Figure

    n_cols = len(images)
    n_rows = 1 + len(rows)
    cell = 1.25
    fig = Figure(figsize=(1.9 + cell * n_cols, 0.9 + cell * n_rows), dpi=110, layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for j, (image, title) in enumerate(zip(images, titles, strict=True)):
        ax = axes[0, j]
        ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=9, rotation=0, ha="right", va="center")
    for i, (name, values) in enumerate(rows, start=1):
        for j in range(n_cols):
            ax = axes[i, j]
            cell_values = np.asarray(values[j], dtype=np.float64)
            finite = np.isfinite(cell_values)
            scale = float(np.abs(cell_values[finite]).max()) if finite.any() else 0.0
            scale = scale if scale > 0 else 1.0
            ax.imshow(cell_values, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
            # the digit's outline, to see which strokes the attributions fall on
            ax.contour(images[j], levels=[0.5], colors="0.35", linewidths=0.6, alpha=0.7)
        axes[i, 0].set_ylabel(name.replace("_", " "), fontsize=8.5, rotation=0, ha="right", va="center")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
