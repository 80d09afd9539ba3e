"""What the benchmark runs: each lumos method, its floor, its target ratio and the incumbent's equivalent.

A :class:`MethodSpec` says how to call the lumos method, how many rows its floor has per sample and what
kind of floor it is (``"grad"``: one batched forward + backward to the input; ``"forward"``: batched forward
passes only, for methods that only evaluate the model), the target ratio of the issue that asked for it,
and how to run the incumbent library's equivalent on the same inputs (captum, zennit or pytorch-grad-cam,
each optional: a library that is not importable leaves its columns empty).

zennit and pytorch-grad-cam import torchvision; PyPI's torchvision build does not import beside the CPU
torch pinned here ("operator torchvision::nms does not exist"). :func:`import_incumbents` declares the two
missing operator schemas first so that torchvision's pure-Python part loads; lumos itself never imports
torchvision, and the benchmark warns if anything else did.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import lumos

N_STEPS = 50  # integrated gradients
NT_SAMPLES = 25  # SmoothGrad / VarGrad
NOISE_LEVEL = 0.15  # SmoothGrad / VarGrad, fraction of each sample's value range
SHAP_SAMPLES = 50  # GradientSHAP

#: CAM layers per workload (the same module for lumos and pytorch-grad-cam): the last convolution block
CAM_LAYERS = {"small_cnn": "features.7", "resnet18": "layer4"}

Call = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], Any]

INCUMBENTS: dict[str, Any] = {}


def import_incumbents() -> dict[str, Any]:
    """Import captum, zennit and pytorch-grad-cam where installed; returns ``{library: module or None}``."""
    if INCUMBENTS:
        return INCUMBENTS
    try:
        import captum
        import captum.attr  # noqa: F401
        INCUMBENTS["captum"] = captum
    except ImportError:  # pragma: no cover - depends on the environment
        INCUMBENTS["captum"] = None
    for schema in ("nms", "qnms"):  # let PyPI's torchvision load its Python part beside this torch
        try:
            torch.library.define(f"torchvision::{schema}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already defined (a working torchvision is installed)
    for library, module in (("zennit", "zennit.composites"), ("pytorch_grad_cam", "pytorch_grad_cam")):
        try:
            importlib.import_module(module)
            INCUMBENTS[library] = importlib.import_module(library)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            INCUMBENTS[library] = None
    return INCUMBENTS


@dataclass
class MethodSpec:
    """One benchmarked method.

    ``floor_rows(workload_name, batch, model)`` gives the floor's row count; ``incumbent`` runs the
    incumbent library's equivalent (``None`` when it is not installed); ``workloads`` restricts where it
    runs by default.
    """

    name: str
    lumos: Call
    settings: str
    target: float
    floor_rows: Callable[[str, int, nn.Module], int]
    floor_kind: str = "grad"
    incumbent_library: str | None = None
    incumbent: Call | None = None
    workloads: tuple[str, ...] = ("small_cnn", "resnet18")
    notes: dict[str, str] = field(default_factory=dict)


def _per_sample(rows: int) -> Callable[[str, int, nn.Module], int]:
    return lambda workload, batch, model: batch * rows


def _cam_channels(workload: str, batch: int, model: nn.Module) -> int:
    """ScoreCAM / AblationCAM floor: one forward per (sample, channel of the CAM layer)."""
    layer = model.get_submodule(CAM_LAYERS[workload])
    channels = _output_channels(model, layer)
    return batch * channels


def _output_channels(model: nn.Module, layer: nn.Module) -> int:
    shapes: list[torch.Size] = []
    handle = layer.register_forward_hook(lambda m, a, out: shapes.append(out.shape))
    try:
        with torch.no_grad():
            first = next(model.parameters())
            side = 32 if isinstance(model, _small_cnn_type()) else 224
            model(torch.zeros(1, 3, side, side, dtype=first.dtype, device=first.device))
    finally:
        handle.remove()
    return int(shapes[-1][1])


def _small_cnn_type() -> type:
    import models  # benchmarks/models.py

    return models.SmallCNN


def _method(name: str, **params: Any) -> Any:
    return lambda model: lumos.methods.get_method(name)(model, progress=False, **params)


def _absolute_sigma(x: torch.Tensor) -> float:
    """Captum's ``stdevs`` is one absolute sigma; ours is ``noise_level * (max - min)`` per sample.

    Pass captum the mean of our per-sample sigmas (the inputs are i.i.d., so they are all close)."""
    flat = x.reshape(x.shape[0], -1)
    return float((NOISE_LEVEL * (flat.max(1).values - flat.min(1).values)).mean())


def gradient_specs(inc: dict[str, Any]) -> list[MethodSpec]:
    """Issue 2's gradient family against captum (target 1.15x)."""
    ca = inc["captum"].attr if inc.get("captum") else None
    lib = "captum" if ca else None

    def cap(fn: Call) -> Call | None:
        return fn if ca else None

    def tunnel(kind: str) -> Call:
        return lambda model, x, y, bg: ca.NoiseTunnel(ca.Saliency(model)).attribute(
            x, nt_type=kind, nt_samples=NT_SAMPLES, stdevs=_absolute_sigma(x), target=y)

    return [
        MethodSpec("saliency", lambda model, x, y, bg: _method("saliency")(model).explain(x, target=y), "-",
                   1.15, _per_sample(1), "grad", lib,
                   cap(lambda model, x, y, bg: ca.Saliency(model).attribute(x, target=y))),
        MethodSpec("input_x_gradient", lambda model, x, y, bg: _method("input_x_gradient")(model).explain(x, target=y),
                   "-", 1.15, _per_sample(1), "grad", lib,
                   cap(lambda model, x, y, bg: ca.InputXGradient(model).attribute(x, target=y))),
        MethodSpec("integrated_gradients",
                   lambda model, x, y, bg: _method("integrated_gradients", n_steps=N_STEPS)(model).explain(
                       x, target=y, baseline=0.0),
                   f"n_steps={N_STEPS}, Gauss-Legendre, baseline 0", 1.15, _per_sample(N_STEPS), "grad", lib,
                   cap(lambda model, x, y, bg: ca.IntegratedGradients(model).attribute(
                       x, baselines=0.0, target=y, n_steps=N_STEPS, method="gausslegendre"))),
        MethodSpec("smoothgrad",
                   lambda model, x, y, bg: _method("smoothgrad", n_samples=NT_SAMPLES, noise_level=NOISE_LEVEL,
                                                   seed=0)(model).explain(x, target=y),
                   f"n_samples={NT_SAMPLES}, noise_level={NOISE_LEVEL}", 1.15, _per_sample(NT_SAMPLES), "grad",
                   lib, cap(tunnel("smoothgrad"))),
        MethodSpec("vargrad",
                   lambda model, x, y, bg: _method("vargrad", n_samples=NT_SAMPLES, noise_level=NOISE_LEVEL,
                                                   seed=0)(model).explain(x, target=y),
                   f"n_samples={NT_SAMPLES}, noise_level={NOISE_LEVEL}", 1.15, _per_sample(NT_SAMPLES), "grad",
                   lib, cap(tunnel("vargrad"))),
        MethodSpec("guided_backprop", lambda model, x, y, bg: _method("guided_backprop")(model).explain(x, target=y),
                   "-", 1.15, _per_sample(1), "grad", lib,
                   cap(lambda model, x, y, bg: ca.GuidedBackprop(model).attribute(x, target=y))),
        MethodSpec("deconvolution", lambda model, x, y, bg: _method("deconvolution")(model).explain(x, target=y),
                   "-", 1.15, _per_sample(1), "grad", lib,
                   cap(lambda model, x, y, bg: ca.Deconvolution(model).attribute(x, target=y))),
        MethodSpec("gradient_shap",
                   lambda model, x, y, bg: _method("gradient_shap", n_samples=SHAP_SAMPLES, seed=0)(model).explain(
                       x, target=y, baseline=bg),
                   f"n_samples={SHAP_SAMPLES}, background set", 1.15, _per_sample(SHAP_SAMPLES), "grad", lib,
                   cap(lambda model, x, y, bg: ca.GradientShap(model).attribute(
                       x, baselines=bg, n_samples=SHAP_SAMPLES, target=y))),
    ]


def _cam_layer(model: nn.Module) -> nn.Module:
    return model.get_submodule(CAM_LAYERS["small_cnn" if isinstance(model, _small_cnn_type()) else "resnet18"])


def _cam_layer_name(model: nn.Module) -> str:
    return CAM_LAYERS["small_cnn" if isinstance(model, _small_cnn_type()) else "resnet18"]


def _lumos_cam(name: str) -> Call:
    return lambda model, x, y, bg: _method(name, layer=_cam_layer_name(model))(model).explain(x, target=y)


def _grad_cam_library(cls_name: str, inc: dict[str, Any]) -> Call | None:
    pgc = inc.get("pytorch_grad_cam")
    if pgc is None:
        return None
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pgc, cls_name)

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bg: torch.Tensor) -> Any:
        # pytorch-grad-cam registers its hooks in __init__: build it per call and release it after
        with cls(model=model, target_layers=[_cam_layer(model)]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])

    return run


def _zennit_lrp(inc: dict[str, Any]) -> Call | None:
    if inc.get("zennit") is None:
        return None
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bg: torch.Tensor) -> Any:
        # the composite registered per call, as a user explaining one batch does
        composite = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
        leaf = x.detach().requires_grad_(True)
        with composite.context(model) as modified:
            output = modified(leaf)
            seed = torch.zeros_like(output).scatter_(1, y[:, None], 1.0)
            (relevance,) = torch.autograd.grad(output, leaf, grad_outputs=seed)
        return relevance

    return run


def decomposition_specs(inc: dict[str, Any], n_background: dict[str, int]) -> list[MethodSpec]:
    """Issue 3's DeepLIFT / DeepSHAP, LRP and CAM family against captum, zennit and pytorch-grad-cam."""
    ca = inc["captum"].attr if inc.get("captum") else None

    def cap(fn: Call) -> Call | None:
        return fn if ca else None

    def background_pairs(workload: str, batch: int, model: nn.Module) -> int:
        return 2 * batch * n_background[workload]

    return [
        MethodSpec("deeplift", lambda model, x, y, bg: _method("deeplift")(model).explain(x, target=y, baseline=0.0),
                   "Rescale, baseline 0", 1.3, _per_sample(2), "grad", "captum" if ca else None,
                   cap(lambda model, x, y, bg: ca.DeepLift(model).attribute(x, baselines=torch.zeros_like(x),
                                                                             target=y)),
                   notes={"floor": "input and baseline rows together (2 x batch)"}),
        MethodSpec("deep_shap", lambda model, x, y, bg: _method("deep_shap")(model).explain(x, target=y, baseline=bg),
                   "Rescale, background set", 1.3, background_pairs, "grad", "captum" if ca else None,
                   cap(lambda model, x, y, bg: ca.DeepLiftShap(model).attribute(x, baselines=bg, target=y)),
                   notes={"floor": "every (sample, background) pair, both rows"}),
        MethodSpec("lrp", lambda model, x, y, bg: _method("lrp", composite="epsilon_plus_flat")(model).explain(x, target=y),
                   "EpsilonPlusFlat, batch norm merged", 1.3, _per_sample(1), "grad",
                   "zennit" if inc.get("zennit") else None, _zennit_lrp(inc)),
        MethodSpec("grad_cam", _lumos_cam("grad_cam"), "last conv block", 1.3, _per_sample(1), "grad",
                   "pytorch-grad-cam" if inc.get("pytorch_grad_cam") else None, _grad_cam_library("GradCAM", inc)),
        MethodSpec("score_cam", _lumos_cam("score_cam"), "last conv block", 1.2, _cam_channels, "forward",
                   "pytorch-grad-cam" if inc.get("pytorch_grad_cam") else None, _grad_cam_library("ScoreCAM", inc),
                   workloads=("small_cnn",),
                   notes={"floor": "one forward per (sample, channel), no gradient"}),
        MethodSpec("ablation_cam", _lumos_cam("ablation_cam"), "last conv block", 1.2, _cam_channels, "forward",
                   "pytorch-grad-cam" if inc.get("pytorch_grad_cam") else None,
                   _grad_cam_library("AblationCAM", inc), workloads=("small_cnn",),
                   notes={"floor": "one forward per (sample, channel), no gradient"}),
    ]


def all_specs(n_background: dict[str, int]) -> dict[str, MethodSpec]:
    """Every benchmarked method by name (incumbents imported where installed)."""
    inc = import_incumbents()
    return {s.name: s for s in gradient_specs(inc) + decomposition_specs(inc, n_background)}
