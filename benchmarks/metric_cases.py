"""What the metric benchmark runs: each lumos metric, its floor, and Quantus' equivalent on the same workload.

One :class:`Workload`: the small CNN, 16 images (32x32x3, seeded normal), one random class per image, signed
saliency attributions, and one random rectangle per image as a ground-truth mask. Every :class:`Case` holds
the lumos call, the floor (the model evaluations the metric needs, as plain full-batch torch calls built
beforehand: a forward without gradients for perturbation metrics, ``autograd.grad`` for the metrics that
re-explain), the Quantus call on the same model, inputs and attributions (or ``None`` without Quantus), and a
comparison of the two values.

Both libraries get the same explainer: Quantus' ``explain_func`` is lumos' ``Saliency`` on the tensors
Quantus passes (numpy in, numpy out), so explainer cost is the same on both sides. Quantus is imported after
:func:`specs.import_incumbents` declares torchvision's operator schemas (Quantus imports torchvision).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import lumos
import models
from lumos import metrics
from lumos.metrics.road import noisy_linear_impute

N, SIDE, CLASSES = 16, 32, 10
FLIP_STEPS = 48  # pixel flipping: 3072 elements in 48 steps of 64 (Quantus: the step must divide H*W)
PATCH = 8  # region perturbation / infidelity squares
SENS_SAMPLES, SENS_RADIUS = 10, 0.02  # max / avg sensitivity
LIPSCHITZ_SAMPLES, LIPSCHITZ_STD = 10, 0.1
ROAD_PERCENT = [10, 20, 30, 40, 50, 60, 70, 80, 90]
TOP_K = 100


def import_quantus() -> Any:
    """Quantus, or ``None`` when it is not installed (the Quantus columns then stay empty)."""
    import specs

    specs.import_incumbents()
    try:
        import quantus
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return quantus


@dataclass
class Case:
    """One benchmarked metric: ``lumos()`` and ``quantus()`` return values that ``compare`` turns into text."""

    name: str
    lumos: Callable[[], Any]
    floor: Callable[[], Any] | None
    floor_what: str
    quantus: Callable[[], Any] | None = None
    compare: Callable[[Any, Any], str] | None = None
    rows: Callable[[Any], int] | None = None


class Workload:
    """The shared model, inputs, targets, attributions and masks (all seeded)."""

    def __init__(self) -> None:
        self.model = models.small_cnn()
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn((N, 3, SIDE, SIDE), generator=generator)
        self.y = torch.randint(CLASSES, (N,), generator=generator)
        self.saliency = lumos.Saliency(self.model, progress=False)
        self.a = self.saliency.explain(self.x, target=self.y).attributions
        self.x_np, self.y_np, self.a_np = self.x.numpy(), self.y.numpy(), self.a.numpy()
        self.a_sum = self.a_np.sum(axis=1, keepdims=True)  # (N, 1, H, W): one heatmap per image
        masks = np.zeros((N, 1, SIDE, SIDE), dtype=bool)
        rng = np.random.default_rng(5)
        for i in range(N):
            top, left = rng.integers(0, SIDE - 12, 2)
            height, width = rng.integers(6, 13, 2)
            masks[i, 0, top:top + height, left:left + width] = True
        self.masks = masks
        self.elements = np.arange(3 * SIDE * SIDE).reshape(3, SIDE, SIDE)  # every element its own feature

    # ------------------------------------------------------------------ floors
    def rows(self, n_rows: int, *, grad: bool = False) -> torch.Tensor:
        """``n_rows`` distinct rows (the inputs plus seeded noise), built before timing."""
        base = self.x.repeat_interleave(max(1, -(-n_rows // N)), dim=0)[:n_rows]
        rows = base + 0.01 * torch.randn(base.shape, generator=torch.Generator().manual_seed(1))
        return rows.requires_grad_(grad)

    def forward_floor(self, n_rows: int) -> Callable[[], Any]:
        rows = self.rows(n_rows)

        def floor() -> Any:
            with torch.no_grad():
                return self.model(rows)

        return floor

    def grad_floor(self, n_rows: int, model: torch.nn.Module | None = None) -> Callable[[], Any]:
        rows = self.rows(n_rows, grad=True)
        targets = self.y.repeat_interleave(max(1, -(-n_rows // N)))[:n_rows, None]
        net = model or self.model
        return lambda: torch.autograd.grad(net(rows).gather(1, targets).sum(), rows)[0]

    def quantus_explain(self, model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        """Quantus' ``explain_func``: lumos' Saliency on the tensors Quantus passes (the same work as lumos)."""
        explainer = lumos.Saliency(model, progress=False)
        x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
        return explainer.explain(x, target=torch.as_tensor(np.asarray(targets))).attributions.numpy()


def _max_diff(a: Any, b: Any) -> str:
    difference = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    return f"max abs diff {difference:.1e}"


def _means(a: Any, b: Any, why: str) -> str:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)  # standard error of the difference
    return f"{why}: mean {a.mean():.3g} vs {b.mean():.3g} (difference {(a.mean() - b.mean()) / error:+.1f} s.e.)"


def _cascade(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The trained model and its cascading randomisations (top layer first), built before timing."""
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))][::-1]
    out, current = [model], copy.deepcopy(model)
    for index, name in enumerate(names):
        with torch.random.fork_rng():
            torch.manual_seed(index)
            current.get_submodule(name).reset_parameters()
        out.append(copy.deepcopy(current))
    return out


def cases(w: Workload, quantus: Any) -> list[Case]:
    """Every benchmarked metric on workload ``w`` (Quantus columns only when ``quantus`` is not ``None``)."""
    model, x, y, a = w.model, w.x, w.y, w.a
    q = quantus
    qargs = {"model": model, "x_batch": w.x_np, "y_batch": w.y_np, "device": "cpu", "channel_first": True}
    n_rows = lambda result: int(result.n_evaluations)  # noqa: E731
    out: list[Case] = []

    def qcall(metric: Any, **kwargs: Any) -> Any:
        np.random.seed(0)  # Quantus draws from numpy's global generator
        return metric(**{**qargs, **kwargs})

    # ---- faithfulness by ordered removal
    flip = FLIP_STEPS
    out.append(Case(
        f"pixel flipping ({flip} steps of {3 * SIDE * SIDE // flip} elements)",
        lambda: metrics.deletion(model, x, a, target=y, baseline=0.0, n_steps=flip, score="probability",
                                 feature_groups=w.elements, progress=False),
        w.forward_floor(N * (flip + 1)), "forward",
        None if q is None else lambda: qcall(q.PixelFlipping(features_in_step=3 * SIDE * SIDE // flip,
                                                             normalise=False, perturb_baseline=0.0,
                                                             disable_warnings=True),
                                             a_batch=w.a_np, softmax=True),
        lambda lumos_r, quantus_r: _max_diff(lumos_r.curves[:, 1:], quantus_r), n_rows))
    out.append(Case(
        f"region perturbation (MoRF, {PATCH}x{PATCH} patches)",
        lambda: metrics.region_perturbation(model, x, a, target=y, order="morf", patch_size=PATCH, baseline=0.0,
                                            score="probability", progress=False),
        w.forward_floor(N * ((SIDE // PATCH) ** 2 + 1)), "forward",
        None if q is None else lambda: qcall(q.RegionPerturbation(patch_size=PATCH, order="morf",
                                                                  regions_evaluation=(SIDE // PATCH) ** 2,
                                                                  normalise=False, perturb_baseline=0.0,
                                                                  disable_warnings=True),
                                             a_batch=w.a_np, softmax=True),
        lambda lumos_r, quantus_r: _max_diff(lumos_r.curves[:, :1] - lumos_r.curves[:, 1:], quantus_r), n_rows))
    # ---- faithfulness by random perturbation
    out.append(Case(
        "faithfulness correlation (100 runs of 224 elements)",
        lambda: metrics.faithfulness_correlation(model, x, a, target=y, baseline=0.0, subset_size=224, n_runs=100,
                                                 feature_groups=w.elements, seed=0, progress=False),
        w.forward_floor(N * 101), "forward",
        None if q is None else lambda: qcall(q.FaithfulnessCorrelation(nr_runs=100, subset_size=224, normalise=False,
                                                                       perturb_baseline=0.0, return_aggregate=False,
                                                                       disable_warnings=True),
                                             a_batch=w.a_np, softmax=False),
        lambda lumos_r, quantus_r: _means(lumos_r.values, quantus_r, "same definition, other random subsets"),
        n_rows))
    n_squares = 3 * (SIDE // PATCH) ** 2
    out.append(Case(
        f"infidelity ({n_squares} {PATCH}x{PATCH} squares)",
        lambda: metrics.infidelity(model, x, a, target=y, perturbation="square", square_size=PATCH,
                                   n_perturbations=n_squares, normalize=False, seed=0, progress=False),
        w.forward_floor(N * (n_squares + 1)), "forward",
        None if q is None else lambda: qcall(q.Infidelity(perturb_patch_sizes=[PATCH], n_perturb_samples=3,
                                                          perturb_baseline=0.0, disable_warnings=True),
                                             a_batch=w.a_np, softmax=False),
        lambda lumos_r, quantus_r: _means(lumos_r.values, quantus_r, "definitions differ"), n_rows))
    fractions = tuple(p / 100 for p in ROAD_PERCENT)
    out.append(Case(
        f"ROAD (MoRF, {len(fractions)} fractions, noisy linear imputation)",
        lambda: metrics.road(model, x, a, target=y, order="morf", fractions=fractions, score="probability",
                             seed=0, progress=False),
        w.forward_floor(N * (len(fractions) + 1)), "forward",
        None if q is None else lambda: qcall(q.ROAD(percentages=[3 * p for p in ROAD_PERCENT],
                                                    perturb_func=_pixel_imputation(q), disable_warnings=True),
                                             a_batch=w.a_sum, softmax=True),
        lambda lumos_r, quantus_r: _road_compare(w, q), n_rows))
    # ---- robustness (both libraries re-explain with lumos' Saliency)
    sens_rows = N * (SENS_SAMPLES + 1)
    for name, fn, cls in (("max-sensitivity", metrics.max_sensitivity, "MaxSensitivity"),
                          ("avg-sensitivity", metrics.avg_sensitivity, "AvgSensitivity")):
        out.append(Case(
            f"{name} ({SENS_SAMPLES} samples, radius {SENS_RADIUS})",
            lambda fn=fn: fn(model, x, w.saliency, target=y, radius=SENS_RADIUS, n_samples=SENS_SAMPLES, seed=0),
            w.grad_floor(sens_rows), "grad",
            None if q is None else lambda cls=cls: qcall(getattr(q, cls)(nr_samples=SENS_SAMPLES,
                                                                         lower_bound=SENS_RADIUS, normalise=False,
                                                                         disable_warnings=True),
                                                         a_batch=None, explain_func=w.quantus_explain),
            lambda lumos_r, quantus_r: _means(lumos_r.values, quantus_r, "same definition, other random draws"),
            lambda result: sens_rows))
    out.append(Case(
        f"local Lipschitz estimate ({LIPSCHITZ_SAMPLES} samples)",
        lambda: metrics.local_lipschitz_estimate(model, x, w.saliency, target=y, radius=LIPSCHITZ_STD,
                                                 n_samples=LIPSCHITZ_SAMPLES, seed=0),
        w.grad_floor(N * (LIPSCHITZ_SAMPLES + 1)), "grad",
        None if q is None else lambda: qcall(q.LocalLipschitzEstimate(nr_samples=LIPSCHITZ_SAMPLES,
                                                                      perturb_std=LIPSCHITZ_STD, normalise=False,
                                                                      disable_warnings=True),
                                             a_batch=None, explain_func=w.quantus_explain),
        lambda lumos_r, quantus_r: _means(lumos_r.values, quantus_r,
                                          "definitions differ (uniform L-inf ball vs Gaussian noise)"),
        lambda result: N * (LIPSCHITZ_SAMPLES + 1)))
    # ---- randomisation
    cascade = _cascade(model)
    floors = [w.grad_floor(N, m) for m in cascade]
    out.append(Case(
        f"model-parameter randomisation (cascading, {len(cascade) - 1} layers)",
        lambda: metrics.model_parameter_randomisation(model, x, [w.saliency], target=y,
                                                      measures=("spearman_abs",), seed=0, progress=False),
        lambda: [f() for f in floors], "grad",
        None if q is None else lambda: _quantus_mprt(q, qcall, w),
        lambda lumos_r, quantus_r: _means(next(iter(lumos_r.values())).similarity["spearman_abs"][-1],
                                          quantus_r, "other random weights; lumos ranks channel-summed abs(a) maps, Quantus all C*H*W elements (last layer)"),
        lambda result: N * len(cascade)))
    out.append(Case(
        "random logit (SSIM)",
        lambda: metrics.random_logit(model, x, [w.saliency], target=y, measures=("ssim",), seed=0, progress=False),
        w.grad_floor(2 * N), "grad",
        None if q is None else lambda: qcall(q.RandomLogit(num_classes=CLASSES, disable_warnings=True),
                                             a_batch=w.a_np, explain_func=w.quantus_explain),
        lambda lumos_r, quantus_r: _means(next(iter(lumos_r.values())).similarity["ssim"][0], quantus_r,
                                          "definitions differ (Quantus: 1-D SSIM of flattened maps)"),
        lambda result: 2 * N))
    # ---- model-free: complexity and localisation
    for name, fn, cls in (("sparseness", metrics.sparseness, "Sparseness"),
                          ("complexity", metrics.complexity, "Complexity")):
        out.append(Case(name, lambda fn=fn: fn(a), None, "",
                        None if q is None else lambda cls=cls: qcall(getattr(q, cls)(disable_warnings=True),
                                                                     a_batch=w.a_np),
                        _max_diff))
    out.append(Case("effective complexity (eps 1e-5)", lambda: metrics.effective_complexity(a, threshold=1e-5),
                    None, "",
                    None if q is None else lambda: qcall(q.EffectiveComplexity(eps=1e-5, disable_warnings=True),
                                                         a_batch=w.a_np),
                    lambda lumos_r, quantus_r: _effective_compare(w, lumos_r, quantus_r)))
    localisation = (
        ("pointing game", lambda: metrics.pointing_game(w.a_sum, w.masks, pooling="none"), "PointingGame", {}),
        ("relevance mass accuracy", lambda: metrics.relevance_mass_accuracy(w.a_sum, w.masks, pooling="none"),
         "RelevanceMassAccuracy", {}),
        ("relevance rank accuracy", lambda: metrics.relevance_rank_accuracy(w.a_sum, w.masks, pooling="none"),
         "RelevanceRankAccuracy", {}),
        (f"top-k intersection (k={TOP_K})", lambda: metrics.top_k_intersection(w.a_sum, w.masks, k=TOP_K,
                                                                                pooling="none"),
         "TopKIntersection", {"k": TOP_K}),
    )
    for name, fn, cls, params in localisation:
        out.append(Case(name, fn, None, "",
                        None if q is None else lambda cls=cls, params=params: qcall(
                            getattr(q, cls)(disable_warnings=True, **params), a_batch=w.a_sum, s_batch=w.masks),
                        _max_diff))
    return out


def _quantus_mprt(q: Any, qcall: Callable[..., Any], w: Workload) -> np.ndarray:
    """Quantus' MPRT (trained model explained once, then once per layer); the last layer's similarities."""
    with torch.random.fork_rng():  # Quantus reseeds the global torch generator
        scores = qcall(q.MPRT(layer_order="top_down", disable_warnings=True), a_batch=w.a_np,
                       explain_func=w.quantus_explain)
    return np.asarray(list(scores.values())[-1])


def _effective_compare(w: Workload, lumos_values: Any, quantus_values: Any) -> str:
    """Quantus normalises by the maximum over the whole batch (its ``normalise_by_max`` default axes): with
    that threshold the count equals Quantus' exactly."""
    magnitude = np.abs(w.a_np.reshape(N, -1)).astype(np.float32)
    batch_max = (magnitude / magnitude.max() > 1e-5).sum(axis=1)
    return (f"{_max_diff(lumos_values, quantus_values)} (per-sample max); with Quantus' batch-wide max "
            f"{_max_diff(batch_max, quantus_values)}")


def _pixel_imputation(q: Any) -> Callable[..., np.ndarray]:
    """Quantus 0.6's ROAD ranks the C*H*W elements of the (broadcast) attributions but imputes H*W pixels, and
    fails on colour images (IndexError); this perturb_func hands its imputation the pixels of those elements.
    Each pixel's C elements tie (channel-summed attributions), so tripled percentages remove the same pixels
    (+-1 at a cut through a pixel's channels)."""
    def impute(arr: np.ndarray, indices: np.ndarray, **kwargs: Any) -> np.ndarray:
        pixels = np.unique(np.asarray(indices) % (arr.shape[-1] * arr.shape[-2]))
        return q.functions.perturb_func.noisy_linear_imputation(arr=arr, indices=pixels, noise=0.01)

    return impute


def _road_compare(w: Workload, q: Any) -> str:
    """ROAD's values cannot be compared (Quantus: accuracy per percentage over the batch; lumos: each sample's
    target score); its imputation can: both libraries fill the same pixels of one image without noise."""
    ranked = np.argsort(-w.a_sum[0].reshape(-1), kind="stable")
    diffs = []
    for percent in (10, 50, 90):
        indices = ranked[: int(SIDE * SIDE * percent / 100)]
        removed = np.zeros(SIDE * SIDE, dtype=bool)
        removed[indices] = True
        ours = noisy_linear_impute(w.x_np[0].astype(np.float64), removed.reshape(SIDE, SIDE), noise_std=0.0)
        theirs = q.functions.perturb_func.noisy_linear_imputation(arr=w.x_np[0].astype(np.float64), indices=indices,
                                                                   noise=0.0)
        diffs.append(float(np.abs(ours - theirs).max()))
    return f"readouts differ; imputation max abs diff {max(diffs):.1e}"
