"""RISE (Petsiuk, Das & Saenko 2018): saliency as the score-weighted average of random smooth masks."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ...core.evaluation import EvaluationEngine
from ...core.registry import register
from ...core.seeding import derive_seed, torch_generator
from ...errors import ValidationError
from ..base import Attribution, ExplainContext
from .base import PerturbationExplainer
from .fills import FILLS, make_fill

#: keep all masks of one input in memory when they need at most this many bytes (else rebuilt per chunk)
_CACHE_BYTES = 1 << 26


class RiseMasks:
    """The ``n_masks`` smooth random masks of RISE for samples of shape ``sample_shape``.

    Masks live on the spatial axes: ``(H, W)`` of ``(C, H, W)`` images, ``L`` of ``(C, L)`` signals, ``d`` of
    tabular rows ``(d,)`` (a grid over the features); channels share the mask. A binary grid of
    ``s = min(grid_size, side)`` cells per axis is drawn with ``P(1) = p``, upsampled (bilinear / linear,
    ``align_corners=False``) to ``(s + 1) * cell`` with ``cell = ceil(side / s)``, and cropped to the side from
    a uniform random offset in ``[0, cell)`` per axis (the paper's random shift). Draws come from
    ``generator`` at construction; :meth:`block` rebuilds any range of masks deterministically.

    Example::

        masks = RiseMasks((3, 32, 32), 100, grid_size=7, p=0.5, generator=torch_generator(0)).block(0, 100)
    """

    def __init__(self, sample_shape: tuple[int, ...], n_masks: int, *, grid_size: int, p: float,
                 generator: torch.Generator, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32, owner: str = "RISE") -> None:
        if len(sample_shape) not in (1, 2, 3):
            raise ValidationError(f"{owner}: RISE explains samples of shape (d,), (C, L) or (C, H, W), got sample "
                                  f"shape {sample_shape}")
        self.sample_shape = tuple(sample_shape)
        self.spatial = self.sample_shape[-2:] if len(sample_shape) == 3 else self.sample_shape[-1:]
        self.cells = [min(grid_size, side) for side in self.spatial]
        self.cell_size = [math.ceil(side / s) for side, s in zip(self.spatial, self.cells, strict=True)]
        self.n_masks, self.dtype = n_masks, dtype
        self.device = device or torch.device("cpu")
        self.grid = (torch.rand(n_masks, *self.cells, generator=generator, dtype=torch.float64) < p).to(dtype)
        self.shifts = [torch.randint(0, c, (n_masks,), generator=generator) for c in self.cell_size]
        self._cache: torch.Tensor | None = None
        if n_masks * math.prod(self.spatial) * torch.finfo(dtype).bits // 8 <= _CACHE_BYTES:
            self._cache = self._build(0, n_masks)

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Masks ``start .. stop - 1``, shape ``(k, *spatial)``, values in ``[0, 1]``."""
        if self._cache is not None:
            return self._cache[start:stop]
        return self._build(start, stop)

    def _build(self, start: int, stop: int) -> torch.Tensor:
        grid = self.grid[start:stop, None].to(self.device)
        size = [(s + 1) * c for s, c in zip(self.cells, self.cell_size, strict=True)]
        mode = "bilinear" if len(size) == 2 else "linear"
        up = F.interpolate(grid, size=size, mode=mode, align_corners=False)[:, 0].clamp_(0, 1)  # rounding
        k = torch.arange(stop - start, device=self.device)
        index = [self.shifts[a][start:stop].to(self.device)[:, None] + torch.arange(side, device=self.device)[None]
                 for a, side in enumerate(self.spatial)]
        if len(index) == 2:
            return up[k[:, None, None], index[0][:, :, None], index[1][:, None, :]]
        return up[k[:, None], index[0]]

    def expand(self, masks: torch.Tensor) -> torch.Tensor:
        """``(k, *spatial)`` masks -> ``(k, *ones, *spatial)`` broadcastable against samples."""
        extra = len(self.sample_shape) - len(self.spatial)
        return masks.reshape(masks.shape[0], *([1] * extra), *self.spatial)


@register
class RISE(PerturbationExplainer):
    """RISE: ``S_x(j) = 1 / (N p) sum_i f(x (.) M_i + b (.) (1 - M_i)) M_i(j)`` over N random smooth masks.

    ``M_i`` are the masks of :class:`RiseMasks` (``grid_size`` cells per axis, ``P(cell kept) = p``, bilinear
    upsampling with a random shift); ``b`` is the fill (default: ``baseline=``, zeros = the paper's
    ``x (.) M``; ``"mean"``, ``"blur"``, a background image, or a background set with one random row per
    mask, see :mod:`.fills`). The saliency is the Monte Carlo estimate of ``E[f(masked x) M(j)] / p`` (the
    expected score given that element j is kept, for binary masks); ``extras["standard_error"]`` is its standard error per element
    (``std_i(f_i M_i(j)) / (p sqrt(N))``). Channels share a mask, so every channel of a pixel gets the
    pixel's saliency. The same masks serve every sample (mask ``i`` of input ``t`` is drawn from seed stream
    ``t``); all ``N x n`` masked rows go through batched model calls. Works for images ``(N, C, H, W)``,
    signals ``(N, C, L)`` and tabular rows ``(N, d)`` (a grid over the features), and tuples of them (one mask
    per input).

    Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC.

    Args:
        n_masks: N. Default 2000: the paper uses 4000-8000 on 224 x 224 ImageNet images with a 7 x 7 grid;
            the estimate's noise falls as ``1 / sqrt(N)`` and depends on the grid (49 cells), not the image
            size, so 2000 keeps the standard error near ``0.02 sd(f)`` per cell at half the paper's cost;
            check ``extras["standard_error"]`` and raise it for fine grids.
        grid_size: cells per spatial axis (clipped to the axis' size), default 7 (the paper's).
        p: probability of keeping a cell, default 0.5 (the paper's).
        fill: ``"baseline"``, ``"mean"`` or ``"blur"``; blur_sigma: the blur's sigma.

    Example::

        RISE(cnn, n_masks=4000, seed=0).explain(images, target=labels)
    """

    name: ClassVar[str] = "rise"
    stochastic: ClassVar[bool] = True
    reference: ClassVar[str] = "Petsiuk, Das & Saenko 2018, arXiv:1806.07421"
    data_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: Any, *, n_masks: int = 2000, grid_size: int = 7, p: float = 0.5,
                 fill: str = "baseline", blur_sigma: float | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        for key, value in (("n_masks", n_masks), ("grid_size", grid_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValidationError(f"RISE: {key} must be an int >= 1, got {value!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValidationError(f"RISE: p must be a number in (0, 1], got {p!r}")
        if fill not in FILLS:
            raise ValidationError(f"RISE: fill must be one of {', '.join(map(repr, FILLS))}, got {fill!r}")
        if blur_sigma is not None and (isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float))
                                       or not 0 < blur_sigma < math.inf):
            raise ValidationError(f"RISE: blur_sigma must be None or a finite number > 0, got {blur_sigma!r}")
        self.n_masks, self.grid_size, self.p = int(n_masks), int(grid_size), float(p)
        self.fill, self.blur_sigma = fill, blur_sigma

    def get_params(self) -> dict[str, Any]:
        return {"n_masks": self.n_masks, "grid_size": self.grid_size, "p": self.p, "fill": self.fill,
                "blur_sigma": self.blur_sigma}

    def masks(self, sample_shape: tuple[int, ...], seed: int, input_index: int = 0,
              device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> RiseMasks:
        """The masks this explainer uses for input ``input_index`` of sample shape ``sample_shape`` under ``seed``."""
        generator = torch_generator(derive_seed(seed, input_index))
        return RiseMasks(tuple(sample_shape), self.n_masks, grid_size=self.grid_size, p=self.p, generator=generator,
                         device=device, dtype=dtype)

    def _attribute(self, context: ExplainContext) -> Attribution:
        batch = context.batch
        if not batch.is_floating:
            raise ValidationError(f"RISE: masks multiply the inputs, which must be floating-point; got "
                                  f"{batch.describe()}; explain token models with lime (mode='groups')")
        engine = EvaluationEngine(context.adapter, context.forward_kwargs, context.target, n_samples=batch.n,
                                  batch_size=self.batch_size, progress=self.progress, owner="RISE")
        engine.defer(batch.tensors)  # f(x) is evaluated with the first chunk of masked rows
        fill = make_fill(self.fill, context.baseline, batch, owner="RISE", sigma=self.blur_sigma)
        fill.draw(self.n_masks, torch_generator(derive_seed(context.seed, len(batch.tensors))))
        n, big_n = batch.n, self.n_masks
        generators = [self.masks(tuple(x.shape[1:]), context.seed, i, device=x.device, dtype=x.dtype)
                      for i, x in enumerate(batch.tensors)]

        def make_rows(rows: slice) -> tuple[torch.Tensor, ...]:
            # rows are ordered (mask, sample): build the whole masks first .. last - 1 for every sample by
            # broadcasting (no per-row gathers), then cut the chunk out
            first, last = rows.start // n, (rows.stop - 1) // n + 1
            lo, hi = rows.start - first * n, rows.stop - first * n
            out = []
            for x, gen, filled in zip(batch.tensors, generators, fill.block(first, last), strict=True):
                masks = gen.expand(gen.block(first, last))[:, None]  # (k, 1, *ones, *spatial)
                filled = filled.reshape(filled.shape[0], filled.shape[1], *x.shape[1:]).to(x.dtype)
                built = x[None] * masks + filled * (1 - masks)  # (k, n, *shape)
                out.append(built.reshape(-1, *x.shape[1:])[lo:hi])
            return tuple(out)

        values = engine.scores(big_n * n, make_rows, lambda rows: torch.arange(rows.start, rows.stop,
                                                                               device=batch.tensors[0].device) % n,
                               desc="rise").reshape(big_n, n)
        scores = engine.clean_scores()
        attributions, errors = [], []
        step = 1024
        for x, gen in zip(batch.tensors, generators, strict=True):
            total = torch.zeros(n, math.prod(gen.spatial), dtype=torch.float64, device=values.device)
            squares = torch.zeros_like(total)
            for start in range(0, big_n, step):
                masks = gen.block(start, min(big_n, start + step)).reshape(-1, total.shape[1]).to(torch.float64)
                f = values[start:start + step].T.to(masks.device)  # (n, k)
                total += f @ masks
                squares += (f * f) @ (masks * masks)
            mean = total / big_n
            variance = (squares / big_n - mean**2).clamp_min(0) / max(1, big_n - 1)
            shape = (n, *gen.expand(torch.zeros(1, *gen.spatial)).shape[1:])
            saliency = (mean / self.p).reshape(shape).expand(x.shape)
            attributions.append(saliency.to(device=x.device, dtype=x.dtype))
            errors.append((variance.sqrt() / self.p).reshape(shape).expand(x.shape).to(torch.float64))
        extras = {"n_evaluations": engine.n_evaluations, "n_masks": big_n, "fill": fill.description,
                  "standard_error": errors[0] if len(errors) == 1 else tuple(errors)}
        return Attribution(tuple(attributions), scores, extras, engine.target)
