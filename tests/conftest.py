"""Shared small models and helpers for the lumos test suite.

Every model here is tiny (a few hundred parameters) so that the whole default suite runs in seconds on two
CPU cores. Models with known weights are built deterministically (``torch.manual_seed`` inside a
``torch.random.fork_rng`` block, so building a model never changes the caller's global RNG state).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos

# ---------------------------------------------------------------------------------------------- helpers


def build(seed: int, factory: Callable[[], nn.Module], dtype: torch.dtype = torch.float32) -> nn.Module:
    """Build ``factory()`` with its random initialisation drawn from ``seed``, without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    return model.to(dtype).eval()


def rand(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal values from a private generator (the global RNG is not touched)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------------------------------------- models

#: weights of the linear model: 3 classes x 4 features, with distinct values so mistakes show
LINEAR_WEIGHT = torch.tensor(
    [[1.0, -2.0, 0.5, 3.0],
     [-1.5, 0.25, 2.0, -0.75],
     [0.3, 1.2, -0.6, 0.9]],
    dtype=torch.float64,
)
LINEAR_BIAS = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)


def make_linear(dtype: torch.dtype = torch.float64) -> nn.Linear:
    """``f(x) = W x + b`` with :data:`LINEAR_WEIGHT` and :data:`LINEAR_BIAS`."""
    model = nn.Linear(4, 3).to(dtype)
    with torch.no_grad():
        model.weight.copy_(LINEAR_WEIGHT)
        model.bias.copy_(LINEAR_BIAS)
    return model.to(dtype).eval()


class MLP(nn.Module):
    """6 -> 8 -> 3 with a ReLU."""

    def __init__(self, n_in: int = 6, hidden: int = 8, n_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def make_mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> MLP:
    return build(seed, MLP, dtype)


class SmoothMLP(nn.Module):
    """6 -> 8 -> 3 with tanh (smooth: Gauss-Legendre integration converges fast)."""

    def __init__(self, n_in: int = 6, hidden: int = 8, n_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def make_smooth_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> SmoothMLP:
    return build(seed, SmoothMLP, dtype)


class CNN(nn.Module):
    """(N, 1, 8, 8) -> conv -> batchnorm -> ReLU -> maxpool -> linear -> (N, 3)."""

    def __init__(self, bias: bool = True, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(4) if batchnorm else nn.Identity()
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(h.flatten(1))


def make_cnn(seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: Any) -> CNN:
    model = build(seed, lambda: CNN(**kwargs), dtype)
    if isinstance(model.bn, nn.BatchNorm2d):  # non-trivial running statistics
        with torch.no_grad():
            model.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))
            model.bn.running_var.copy_(torch.tensor([0.5, 1.5, 0.8, 1.2]))
            model.bn.weight.copy_(torch.tensor([1.2, 0.7, -0.9, 1.1]))
            model.bn.bias.copy_(torch.tensor([0.05, -0.1, 0.2, 0.0]))
    return model


class TrainModeNet(nn.Module):
    """An MLP with batchnorm and dropout (for the eval-mode / state-restoration contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def make_train_mode_net(seed: int = 0) -> TrainModeNet:
    model = build(seed, TrainModeNet)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        model.bn.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    return model.train()


class MultiInputNet(nn.Module):
    """forward(a: (N, 3), b: (N, 2)) -> (N, 2): a smooth function of both inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(3, 4)
        self.fb = nn.Linear(2, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.fa(a) + self.fb(b)))


def make_multi_input(seed: int = 0, dtype: torch.dtype = torch.float32) -> MultiInputNet:
    return build(seed, MultiInputNet, dtype)


class DictOutputNet(nn.Module):
    """Returns ``{"features": (N, 8), "logits": (N, 3)}`` (logits not first, so the selector matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MLP(6, 8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return {"features": features, "logits": self.head(torch.tanh(features))}


class TupleOutputNet(DictOutputNet):
    """Returns ``(features (N, 8), logits (N, 3))``: the scores are at position 1."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        out = super().forward(x)
        return out["features"], out["logits"]


def make_dict_output(seed: int = 0, dtype: torch.dtype = torch.float64) -> DictOutputNet:
    return build(seed, DictOutputNet, dtype)


def make_tuple_output(seed: int = 0, dtype: torch.dtype = torch.float64) -> TupleOutputNet:
    return build(seed, TupleOutputNet, dtype)


class SegmentationNet(nn.Module):
    """(N, 1, 6, 6) -> (N, 3, 6, 6): a dense per-pixel class score map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.tanh(self.conv1(x)))


def make_segmentation(seed: int = 0, dtype: torch.dtype = torch.float64) -> SegmentationNet:
    return build(seed, SegmentationNet, dtype)


class TokenNet(nn.Module):
    """Token ids (N, T) -> embeddings -> masked mean -> tanh -> linear -> (N, 2).

    ``attention_mask`` (N, T) is a forward keyword argument: masked tokens do not count.
    """

    def __init__(self, vocab: int = 20, dim: int = 4) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, 2)

    def pooled(self, embedded: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Everything after the embedding layer, as a function of the embeddings."""
        if attention_mask is None:
            attention_mask = torch.ones(embedded.shape[:2], dtype=embedded.dtype, device=embedded.device)
        mask = attention_mask.to(embedded.dtype).unsqueeze(-1)
        mean = (embedded * mask).sum(1) / mask.sum(1)
        return self.head(torch.tanh(mean))

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.pooled(self.embeddings(ids), attention_mask)


def make_token(seed: int = 0, dtype: torch.dtype = torch.float64) -> TokenNet:
    return build(seed, TokenNet, dtype)


class ReluStylesNet(nn.Module):
    """A chain of linear layers whose ReLUs are spelled every way torch allows.

    ``F.relu``, ``x.relu()``, one ``nn.ReLU`` module used twice, ``nn.ReLU(inplace=True)``, ``torch.relu``
    and ``F.relu(inplace=True)`` / ``x.relu_()``. :meth:`as_sequential` gives the same function with one
    distinct ``nn.ReLU`` module per activation.
    """

    n_layers = 8

    def __init__(self, width: int = 6, n_in: int = 5, n_out: int = 3) -> None:
        super().__init__()
        sizes = [n_in] + [width] * (self.n_layers - 1) + [n_out]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.act = nn.ReLU()
        self.act_inplace = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fc = self.linears
        h = F.relu(fc[0](x))
        h = fc[1](h).relu()
        h = self.act(fc[2](h))
        h = self.act(fc[3](h))  # the same module again
        h = self.act_inplace(fc[4](h))
        h = torch.relu(fc[5](h))
        h = fc[6](h)
        F.relu(h, inplace=True)  # return value ignored: only the in-place write counts
        h = fc[7](h.clone()).relu_()
        return h

    def as_sequential(self) -> nn.Sequential:
        """The same function with a distinct ``nn.ReLU`` module after every linear layer (the last included)."""
        layers: list[nn.Module] = []
        for linear in self.linears:
            layers += [copy.deepcopy(linear), nn.ReLU()]
        return nn.Sequential(*layers).eval()


def make_relu_styles(seed: int = 0, dtype: torch.dtype = torch.float64) -> ReluStylesNet:
    return build(seed, ReluStylesNet, dtype)


class RaisingNet(nn.Module):
    """A model whose forward raises after running a submodule (hooks may already be in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc(x)
        raise RuntimeError("boom inside forward")


class ConstantNet(nn.Module):
    """Output does not depend on the input: a trainable parameter expanded to the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.5, -0.5, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], 3)


class DetachingNet(nn.Module):
    """Detaches its input: the output depends on x in value but no gradient flows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.detach())


class GapCNN(nn.Module):
    """(N, 1, 8, 8) -> conv -> ReLU -> conv -> ReLU -> global average pool -> linear -> (N, 3).

    The standard model of the contract tests for methods that need a spatial layer (the CAM family; ``cam``
    itself needs the global-average-pool + linear head).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))


def make_gap_cnn(seed: int = 0, dtype: torch.dtype = torch.float32) -> GapCNN:
    return build(seed, GapCNN, dtype)


class TrainModeCNN(nn.Module):
    """GapCNN with batchnorm and dropout (the eval-mode / state-restoration contract for spatial methods)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.drop(torch.relu(self.bn(self.conv1(x))))))
        return self.head(h.mean(dim=(2, 3)))


def make_train_mode_cnn(seed: int = 0) -> TrainModeCNN:
    model = build(seed, TrainModeCNN)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        model.bn.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    return model.train()


class RaisingCNN(nn.Module):
    """An image model whose forward raises after running its convolution (hooks may already be in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.conv(x)
        raise RuntimeError("boom inside forward")


class FeatureTokenTransformer(nn.Module):
    """(N, *features) floats -> one token per feature (``x_i * w_i + b_i``) -> 2-layer nn.TransformerEncoder
    -> mean over tokens -> linear -> (N, 3): the attention methods' contract model (FT-Transformer style, so
    attributions have the inputs' shape). ``dropout``/``batchnorm`` for the train-mode contract."""

    def __init__(self, n_features: int = 6, dim: int = 8, dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        self.token_weight = nn.Parameter(torch.randn(n_features, dim))
        self.token_bias = nn.Parameter(torch.randn(n_features, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.bn = nn.BatchNorm1d(dim) if batchnorm else nn.Identity()
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(1)[:, :, None] * self.token_weight + self.token_bias
        return self.head(self.bn(self.encoder(tokens).mean(1)))


def make_feature_transformer(seed: int = 0, dtype: torch.dtype = torch.float32, n_features: int = 6) -> nn.Module:
    return build(seed, lambda: FeatureTokenTransformer(n_features), dtype)


def make_train_mode_transformer(seed: int = 0) -> FeatureTokenTransformer:
    """The feature-token transformer with dropout and batch norm (with non-trivial statistics), in train mode."""
    model = build(seed, lambda: FeatureTokenTransformer(dropout=0.5, batchnorm=True))
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
        model.bn.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    return model.train()


# ---------------------------------------------------------------------------------------------- methods

#: fast hyper-parameters per registered method (every method must appear here: see the contract tests)
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "attention": {},
    "attention_rollout": {},
    "attention_grad_rollout": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"n_samples": 4},
    "vargrad": {"n_samples": 4},
    "noise_tunnel": {"base_method": "saliency", "n_samples": 4},
    "guided_backprop": {},
    "deconvolution": {},
    "gradient_shap": {"n_samples": 6},
    "cam": {},
    "grad_cam": {},
    "grad_cam_plus_plus": {},
    "xgrad_cam": {},
    "hires_cam": {},
    "layer_cam": {},
    "score_cam": {},
    "ablation_cam": {},
    "eigen_cam": {},
    "guided_grad_cam": {},
    "deeplift": {},
    "deep_shap": {},
    "kernel_shap": {"n_samples": 32},
    "permutation_shap": {"n_permutations": 2},
    "exact_shap": {},
    "feature_ablation": {},
    "occlusion": {"window": 2},
    # LRP-0 (= gradient x input on these nets): epsilon > 0 or z+ rules are not implementation-invariant
    "lrp": {"composite": "epsilon", "epsilon": 1e-12},
    "lime": {"n_samples": 50},
    "rise": {"n_masks": 50},
    "tree_shap": {},
    "shapley_interactions": {},
}

#: methods whose explain() gets a background set as ``baseline`` in the contract tests
BACKGROUND_METHODS = ("gradient_shap", "deep_shap", "kernel_shap", "permutation_shap", "exact_shap",
                      "feature_ablation", "occlusion", "lime", "shapley_interactions")


def method_params(name: str, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments for method ``name``: fast settings, ``seed=0`` for stochastic methods."""
    if name not in FAST_PARAMS:
        raise KeyError(f"add registered method {name!r} to FAST_PARAMS in tests/conftest.py")
    params = dict(FAST_PARAMS[name])
    if lumos.methods.get_method(name).stochastic:
        params["seed"] = 0
    params.update(overrides)
    return params


def make_explainer(name: str, model: Any, **overrides: Any) -> lumos.Explainer:
    return lumos.methods.get_method(name)(model, **method_params(name, **overrides))


def background_for(inputs: Any, n: int = 5, seed: int = 99) -> Any:
    """A background set shaped like ``inputs`` (a tensor/array or a tuple of them), ``n`` rows."""
    if isinstance(inputs, tuple):
        return tuple(background_for(x, n, seed + i) for i, x in enumerate(inputs))
    if not isinstance(inputs, (np.ndarray, torch.Tensor)) or inputs.ndim == 0:
        return None  # not an array: let the method report the inputs
    if isinstance(inputs, np.ndarray):
        return rand(seed, n, *inputs.shape[1:], dtype=torch.float64).numpy().astype(inputs.dtype)
    return rand(seed, n, *inputs.shape[1:], dtype=inputs.dtype)


def coarse_groups(inputs: Any, n_groups: int = 8) -> Any:
    """Feature-group ids (one sample's shape; a tuple per input) splitting the features into ``n_groups``."""
    if isinstance(inputs, tuple):
        sizes = [int(np.prod(x.shape[1:])) for x in inputs]
        ids = np.arange(sum(sizes)) * n_groups // sum(sizes)
        parts, start = [], 0
        for x, size in zip(inputs, sizes, strict=True):
            parts.append(ids[start:start + size].reshape(x.shape[1:]))
            start += size
        return tuple(parts)
    if not isinstance(inputs, (np.ndarray, torch.Tensor)) or inputs.ndim < 2:
        return None
    size = int(np.prod(inputs.shape[1:]))
    return (np.arange(size) * n_groups // size).reshape(inputs.shape[1:])


def explain_args(name: str, inputs: Any) -> dict[str, Any]:
    """Data arguments ``explain`` needs for method ``name``: a background set for the methods that average
    over one, and coarse feature groups for ExactSHAP (at most 20 players)."""
    args: dict[str, Any] = {}
    if name in BACKGROUND_METHODS:
        args["baseline"] = background_for(inputs)
    if name in ("exact_shap", "shapley_interactions"):
        groups = coarse_groups(inputs)
        if groups is not None:
            args["feature_groups"] = groups
    return args


def run_method(name: str, model: Any, inputs: Any, target: Any = None, **overrides: Any) -> lumos.Explanation:
    """Explain ``model`` at ``inputs`` with method ``name`` using test settings."""
    return make_explainer(name, model, **overrides).explain(inputs, target, **explain_args(name, inputs))


# ---------------------------------------------------------------------------------------------- method kinds


class Case:
    """The standard model, inputs and layer names the contract tests use for one kind of method.

    ``"any"``: methods that explain any model (the 6 -> 8 -> 3 MLP on (N, 6) inputs); ``"spatial"``: methods
    that need a spatial layer (the CAM family: the GAP CNN on (N, 1, 8, 8) images); ``"attention"``: methods
    that read attention maps (a feature-token transformer on (N, 6) inputs).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        spatial = kind == "spatial"
        attention = kind == "attention"
        self.sample_shape: tuple[int, ...] = (1, 8, 8) if spatial else (6,)
        self.layers: tuple[str, ...] = ("conv1", "conv2", "head") if spatial else ("fc1", "fc2")
        self.neuron_layer = "head" if spatial else "fc2"  # an inner/last layer for Neuron targets
        self._model = make_gap_cnn if spatial else make_feature_transformer if attention else make_mlp
        self._train_mode_model = (make_train_mode_cnn if spatial else make_train_mode_transformer if attention
                                  else make_train_mode_net)
        #: the first and last layer of :meth:`image_model` (frozen / hooked by the state contract tests)
        self.first_layer, self.last_layer = {"spatial": ("conv1", "head"),
                                             "attention": ("encoder", "head")}.get(kind, ("conv", "fc"))
        self.raising_model: Callable[[], nn.Module] = RaisingCNN if spatial else RaisingNet
        self.raising_layer = "conv" if spatial else "fc"

    def model(self, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
        return self._model(seed, dtype)

    def train_mode_model(self) -> nn.Module:
        return self._train_mode_model()

    def image_model(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        """A CNN on (N, 1, 8, 8) images with 3 classes, for tests that need one."""
        if self.kind == "attention":
            return make_feature_transformer(dtype=dtype, n_features=64)
        return make_gap_cnn(dtype=dtype) if self.kind == "spatial" else make_cnn(dtype=dtype)

    def inputs(self, seed: int, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return rand(seed, n, *self.sample_shape, dtype=dtype)

    def wrong_inputs(self, seed: int, n: int) -> tuple[torch.Tensor, str]:
        """Inputs of a shape the model cannot take, and a fragment of the model's own error message."""
        if self.kind == "spatial":
            return rand(seed, n, 2, 8, 8), "channels"
        if self.kind == "attention":
            return rand(seed, n, 5), "must match the size"
        return rand(seed, n, 5), "mat1 and mat2"


def method_kind(name: str) -> str:
    """``"spatial"`` (the CAM family), ``"trees"`` (tree-ensemble methods), ``"attention"`` or ``"any"``."""
    cls = lumos.methods.get_method(name)
    if getattr(cls, "needs_spatial_layer", False):
        return "spatial"
    models = getattr(cls, "models", "any")
    return models if models in ("trees", "attention") else "any"


def case_for(name: str) -> Case:
    return Case(method_kind(name))


METHOD_NAMES = lumos.method_names()
STOCHASTIC_METHODS = [n for n in METHOD_NAMES if lumos.methods.get_method(n).stochastic]
#: methods that explain any model (not only models with a spatial layer)
GENERAL_METHODS = [n for n in METHOD_NAMES if method_kind(n) == "any"]
SPATIAL_METHODS = [n for n in METHOD_NAMES if method_kind(n) == "spatial"]
#: methods that explain fitted tree ensembles only (their own contract tests: tests/contract/test_contract_trees.py)
TREE_METHODS = [n for n in METHOD_NAMES if method_kind(n) == "trees"]
NEURAL_METHODS = [n for n in METHOD_NAMES if method_kind(n) != "trees"]
#: methods that need gradients of the model (asked of an instance: a noise tunnel's depends on its base)
GRADIENT_METHODS = [n for n in NEURAL_METHODS if make_explainer(n, make_mlp()).requires_gradients]


@pytest.fixture(autouse=True)
def _quiet_and_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No progress bars, no memory budget leaking between tests."""
    monkeypatch.setenv("LUMOS_PROGRESS", "0")
    monkeypatch.delenv("LUMOS_MEMORY_BUDGET", raising=False)
    yield
    lumos.config.set_memory_budget(None)
