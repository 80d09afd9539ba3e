"""Fill strategies: what hidden features (pixels, time steps, tokens, columns) are replaced with.

- ``"baseline"`` (default): the ``baseline=`` argument of ``explain``: ``None`` (zeros), a number, one row with
  a sample's shape (e.g. a background image, or a mask-token id for token inputs), or a background set of
  rows, of which one row drawn at random (seeded) fills each perturbed input (a one-row Monte Carlo draw of
  the marginal average, so a perturbation costs one model row whatever the background's size);
- ``"mean"``: the sample's own mean, per channel for samples of shape ``(C, ...)``, over the whole sample for
  tabular rows ``(d,)``;
- ``"blur"``: a Gaussian-blurred copy of the sample (separable convolution on the model's device, edges
  replicated), over the spatial axes: ``(H, W)`` of ``(C, H, W)`` images, ``L`` of ``(C, L)`` signals.

Example::

    fill = make_fill("blur", None, batch, owner="LIME", sigma=4.0)
    rows = fill.rows(sample_index, perturbation_index)   # one flattened tensor per input
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core.inputs import InputBatch
from ...errors import ValidationError
from .masking import prepare_reference

FILLS = ("baseline", "mean", "blur")


@dataclass
class Fill:
    """Replacement values: ``per_sample`` rows ``(n, n_elements_i)``, or a ``pool`` of background rows
    ``(B, n_elements_i)`` of which ``choice[k]`` fills perturbation ``k`` (see :meth:`draw`)."""

    per_sample: tuple[torch.Tensor, ...] | None
    pool: tuple[torch.Tensor, ...] | None
    description: str
    choice: torch.Tensor | None = None

    def draw(self, n_perturbations: int, generator: torch.Generator) -> None:
        """Draw the background row of each perturbation (no-op without a pool)."""
        if self.pool is not None:
            b = int(self.pool[0].shape[0])
            self.choice = torch.randint(0, b, (n_perturbations,), generator=generator).to(self.pool[0].device)

    def rows(self, sample: torch.Tensor, perturbation: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The fill of each row, one ``(rows, n_elements_i)`` tensor per input."""
        if self.per_sample is not None:
            return tuple(p.index_select(0, sample) for p in self.per_sample)
        if self.choice is None:
            raise RuntimeError("Fill.draw must be called before Fill.rows for a background pool")
        index = self.choice.index_select(0, perturbation)
        return tuple(p.index_select(0, index) for p in self.pool)


    def block(self, first: int, last: int) -> tuple[torch.Tensor, ...]:
        """The fill of perturbations ``first .. last - 1`` for every sample, one tensor per input broadcastable
        to ``(last - first, n, n_elements_i)``: ``(1, n, e)`` per-sample rows or ``(k, 1, e)`` pool rows."""
        if self.per_sample is not None:
            return tuple(p[None] for p in self.per_sample)
        if self.choice is None:
            raise RuntimeError("Fill.draw must be called before Fill.block for a background pool")
        index = self.choice[first:last]
        return tuple(p.index_select(0, index)[:, None] for p in self.pool)


def make_fill(kind: str, baseline: object, batch: InputBatch, *, owner: str, sigma: float | None = None) -> Fill:
    """Build the fill of ``kind`` (see the module doc) for the explained ``batch``."""
    if kind not in FILLS:
        raise ValidationError(f"{owner}: fill must be one of {', '.join(map(repr, FILLS))}, got {kind!r}")
    n = batch.n
    if kind == "baseline":
        reference = prepare_reference(baseline, batch, owner=owner)
        if reference.n_rows == 1:
            rows = tuple(r.expand(n, -1) for r in reference.rows)
            return Fill(rows, None, f"baseline ({reference.estimand})")
        return Fill(None, reference.rows, f"a random row of the {reference.n_rows}-row background per perturbation")
    if baseline is not None:
        raise ValidationError(f"{owner}: baseline= is not used with fill={kind!r} (the fill comes from each sample); "
                              f"pass fill='baseline' to use it, got baseline of type {type(baseline).__name__}")
    if not batch.is_floating:
        raise ValidationError(f"{owner}: fill={kind!r} needs floating-point inputs, got {batch.describe()}; "
                              f"use fill='baseline' with a mask value (e.g. a mask-token id)")
    out = []
    for x in batch.tensors:
        if kind == "mean":
            dims = tuple(range(2, x.ndim)) if x.ndim >= 3 else (1,)
            filled = x.mean(dim=dims, keepdim=True).expand_as(x)
        else:
            filled = gaussian_blur(x, sigma, owner=owner)
        out.append(filled.reshape(n, -1).contiguous())
    return Fill(tuple(out), None, kind if kind == "mean" else f"blur (sigma={_sigma(x, sigma):g})")


def _sigma(x: torch.Tensor, sigma: float | None) -> float:
    return float(sigma) if sigma is not None else max(1.0, max(x.shape[2:]) / 10)


def gaussian_blur(x: torch.Tensor, sigma: float | None, *, owner: str) -> torch.Tensor:
    """Gaussian blur of ``(n, C, H, W)`` images or ``(n, C, L)`` signals over their spatial axes.

    ``sigma=None`` = a tenth of the longest spatial side (at least 1). The kernel is truncated at
    ``ceil(3 sigma)`` and normalised; edges are replicated.
    """
    if x.ndim not in (3, 4):
        raise ValidationError(f"{owner}: fill='blur' needs images (N, C, H, W) or signals (N, C, L), got inputs of "
                              f"shape {tuple(x.shape)}")
    s = _sigma(x, sigma)
    if not s > 0 or not math.isfinite(s):
        raise ValidationError(f"{owner}: blur_sigma must be a finite number > 0, got {sigma!r}")
    radius = max(1, math.ceil(3 * s))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-grid**2 / (2 * s * s))
    kernel = (kernel / kernel.sum()).to(device=x.device, dtype=x.dtype)
    spatial = x.shape[2:]
    h = x.reshape(-1, 1, *spatial)
    if x.ndim == 4:
        h = F.conv2d(F.pad(h, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        h = F.conv2d(F.pad(h, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    else:
        h = F.conv1d(F.pad(h, (radius, radius), mode="replicate"), kernel.view(1, 1, -1))
    return h.reshape(x.shape)
