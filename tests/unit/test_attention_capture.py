"""Attention capture and the attention family on real architectures: a tiny Hugging Face BERT (random
weights, eager attention, no download), a wrapped BERT (like the demo's SentimentModel), nn.TransformerEncoder
(also through PyTorch's inference fast path); padding, model state and errors."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

import lumos
import lumos.methods.attention  # noqa: F401 - registers the attention methods
from conftest import build, make_mlp, make_token, rand
from lumos.core.hooks import count_hooks
from lumos.core.model import ModelAdapter
from lumos.demo.text import hide_broken_torchvision
from lumos.methods.attention import AttentionRollout, AttentionWeights, GradientWeightedRollout
from lumos.methods.attention.capture import AttentionCapture

METHODS = ("attention", "attention_rollout", "attention_grad_rollout")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
hide_broken_torchvision()  # a torchvision built for another torch breaks transformers' model imports
transformers = pytest.importorskip("transformers")


def tiny_bert(attn_implementation: str = "eager", seed: int = 0) -> nn.Module:
    config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16, num_labels=3,
                                     attn_implementation=attn_implementation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(config)
    return model.eval()


class Wrapped(nn.Module):
    """An encoder inside a user module (as the demo's SentimentModel): masked mean pooling -> 2 classes."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1))


def token_ids(seed: int, n: int, t: int = 6) -> torch.Tensor:
    return torch.randint(1, 30, (n, t), generator=torch.Generator().manual_seed(seed))


def naive_rollout(attentions: list[torch.Tensor], query: int = 0) -> torch.Tensor:
    rollout = torch.eye(attentions[0].shape[-1], dtype=torch.float64)
    for a in attentions:
        mixed = 0.5 * a.double().mean(1) + 0.5 * torch.eye(a.shape[-1], dtype=torch.float64)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    return rollout[:, query]


# ---------------------------------------------------------------------------------------------- Hugging Face


def test_bert_maps_equal_output_attentions() -> None:
    model = tiny_bert()
    x = token_ids(0, 3)
    with torch.no_grad():  # (on a copy: transformers installs hooks of its own when asked for attentions)
        reference = copy.deepcopy(model)(x, output_attentions=True).attentions
    assert len(reference) == 2
    with torch.no_grad(), AttentionCapture(ModelAdapter(model), None, owner="test") as capture:
        model(x)
        maps = capture.take(n_rows=3)
    # the innermost modules (BertAttention passes BertSelfAttention's tensor on), in layer order
    assert [type(model.get_submodule(m.name)).__name__ for m in maps] == ["BertSelfAttention"] * 2
    assert "layer.0." in maps[0].name and "layer.1." in maps[1].name
    for m, ref in zip(maps, reference, strict=True):
        torch.testing.assert_close(m.probabilities, ref, rtol=0, atol=0)
    # the explainers read them
    e = AttentionWeights(model, layer_index=0, head_reduction=1, query=2).explain(x, 1)
    torch.testing.assert_close(e.attributions, reference[0][:, 1, 2])
    assert e.attributions.shape == x.shape and e.layer is None  # one number per token id
    r = AttentionRollout(model).explain(x)
    torch.testing.assert_close(r.attributions.double(), naive_rollout(list(reference)), rtol=1e-6, atol=1e-7)
    assert count_hooks(model) == 0
    assert model.config.output_attentions is False


def test_bert_gradient_rollout_against_output_attentions_gradients() -> None:
    model = tiny_bert(seed=1)
    x = token_ids(1, 2)
    with torch.enable_grad():
        out = copy.deepcopy(model)(x, output_attentions=True)
        for a in out.attentions:
            a.retain_grad()
        out.logits[:, 2].sum().backward()
    relevance = torch.eye(6).expand(2, 6, 6)
    for a in out.attentions:
        relevance = relevance + (a.grad * a.detach()).clamp_min(0).mean(1) @ relevance
    e = GradientWeightedRollout(model).explain(x, 2)
    torch.testing.assert_close(e.attributions, relevance[:, 0], rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in model.parameters()) and count_hooks(model) == 0


def test_wrapped_bert_with_padding_gives_the_unpadded_attributions() -> None:
    model = build(2, lambda: Wrapped(tiny_bert(seed=2).bert))
    x = token_ids(2, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    for name, params in [("attention", {"query": "mean"}), ("attention_rollout", {"query": "mean"}),
                         ("attention_grad_rollout", {"query": "mean"}), ("attention_rollout", {"query": 0})]:
        cls = lumos.methods.get_method(name)
        e = cls(model, **params).explain(x, 1, forward_kwargs={"attention_mask": mask})
        assert e.attributions.shape == (2, 6)
        assert torch.all(e.attributions[1, 4:] == 0)  # padding tokens get nothing
        alone = cls(model, **params).explain(x[1:, :4], 1)  # the same sentence without padding
        torch.testing.assert_close(e.attributions[1, :4], alone.attributions[0], rtol=1e-5, atol=1e-6)
        assert count_hooks(model) == 0


class LegacyAttention(nn.Module):
    """Returns its probabilities only when ``config.output_attentions`` is set (older transformers)."""

    def __init__(self, config: object) -> None:
        super().__init__()
        self.config = config
        self.qk = nn.Linear(4, 8)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k = self.qk(h).chunk(2, -1)
        probs = (q @ k.transpose(-1, -2)).softmax(-1)[:, None]
        return (probs[:, 0] @ h), (probs if self.config.output_attentions else None)


class LegacyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(output_attentions=False)
        self.embeddings = nn.Embedding(30, 4)
        self.attention = LegacyAttention(self.config)
        self.head = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.attention(self.embeddings(ids))[0][:, 0])


def test_models_that_return_maps_only_when_asked_are_asked_once() -> None:
    model = build(0, LegacyModel)
    x = token_ids(0, 4)
    calls: list[int] = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    e = AttentionWeights(model, batch_size=2).explain(x, 1)
    model.config.output_attentions = True
    with torch.no_grad():
        expected = model.attention(model.embeddings(x))[1][:, 0, 0]
    model.config.output_attentions = False
    torch.testing.assert_close(e.attributions, expected)
    assert len(calls) == 3  # the first chunk twice (the second time asking for the maps), the second once
    assert e.extras["n_evaluations"] == 6
    assert model.config.output_attentions is False and count_hooks(model) == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(dtype: torch.dtype) -> None:
    model, x = tiny_bert(seed=3), token_ids(3, 2)
    for cls in (AttentionWeights, AttentionRollout, GradientWeightedRollout):
        full = cls(model).explain(x, 1)
        half = cls(copy.deepcopy(model).to(dtype)).explain(x, 1)
        assert half.attributions.dtype == torch.float32 and half.scores.dtype == np.float32
        torch.testing.assert_close(half.attributions, full.attributions, rtol=0.05, atol=0.02)


def test_sdpa_bert_error_says_to_load_eager() -> None:
    model = tiny_bert("sdpa")
    with pytest.raises(lumos.UnsupportedModelError, match="eager") as info:
        AttentionRollout(model).explain(token_ids(0, 2))
    assert "occlusion" in str(info.value)
    assert count_hooks(model) == 0


def test_vision_transformer_maps_go_onto_the_image() -> None:
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=8, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=16, num_labels=3,
                                    attn_implementation="eager")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.ViTForImageClassification(config).eval()
    x = rand(0, 2, 3, 8, 8)
    with torch.no_grad():
        reference = copy.deepcopy(model)(x, output_attentions=True).attentions
    assert reference[0].shape == (2, 2, 5, 5)  # [CLS] + a 2 x 2 patch grid
    raw = AttentionRollout(model, upsample=False).explain(x)
    assert raw.attributions.shape == (2, 5) and raw.layer == raw.extras["attention_layers"].split(", ")[0]
    expected = naive_rollout(list(reference))
    torch.testing.assert_close(raw.attributions.double(), expected, rtol=1e-6, atol=1e-7)
    image = AttentionRollout(model).explain(x)
    assert image.attributions.shape == x.shape and image.layer is None and image.extras["n_extra_tokens"] == 1
    grid = expected[:, 1:].reshape(2, 1, 2, 2).float()  # row-major patches: top-left, top-right, ...
    upsampled = torch.nn.functional.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(image.attributions, upsampled.expand(-1, 3, -1, -1), rtol=1e-5, atol=1e-6)
    assert float(image.attributions[0, 0, 0, 0]) == pytest.approx(float(expected[0, 1]), rel=1e-5)  # a corner
    assert count_hooks(model) == 0


# ---------------------------------------------------------------------------------------------- PyTorch encoders


class EncoderNet(nn.Module):
    """nn.TransformerEncoder classifier (first token), padding through ``src_key_padding_mask``."""

    def __init__(self, nested: bool = True) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(30, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(self.embeddings(ids), src_key_padding_mask=src_key_padding_mask)[:, 0])


def test_transformer_encoder_fast_path_is_bypassed_and_restored() -> None:
    model = build(3, EncoderNet)
    frozen = copy.deepcopy(model).requires_grad_(False)  # no_grad + frozen: the fast path would skip the hooks
    x = token_ids(3, 3)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2, [False] * 6])
    h = model.embeddings(x).detach()
    expected = []
    for layer in model.encoder.layers:  # the maps written out from the layers' own attention
        expected.append(layer.self_attn(h, h, h, key_padding_mask=pad, need_weights=True,
                                        average_attn_weights=False)[1].detach())
        h = layer(h, src_key_padding_mask=pad).detach()
    assert torch.backends.mha.get_fastpath_enabled()
    for net in (model, frozen):
        e = AttentionWeights(net, layer_index=1, query=0).explain(x, forward_kwargs={"src_key_padding_mask": pad})
        torch.testing.assert_close(e.attributions, expected[1].mean(1)[:, 0], rtol=1e-5, atol=1e-6)
        assert torch.all(e.attributions[1, 4:] == 0)
        assert torch.backends.mha.get_fastpath_enabled()  # restored
        assert count_hooks(net) == 0
    g = GradientWeightedRollout(frozen).explain(x, 1, forward_kwargs={"src_key_padding_mask": pad})
    assert float(g.attributions.abs().sum()) > 0 and not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_model_state_is_restored_and_batch_size_does_not_matter(name: str) -> None:
    model = build(4, EncoderNet).train()
    model.encoder.layers[0].eval()  # a mixed state comes back exactly
    modes = {n: m.training for n, m in model.named_modules()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.head.weight.requires_grad_(False)
    x = token_ids(4, 5)
    cls = lumos.methods.get_method(name)
    results = [cls(model, batch_size=b).explain(x, [0, 1, 2, 0, 1]) for b in (1, 2, None)]
    for e in results[1:]:
        torch.testing.assert_close(e.attributions, results[0].attributions, rtol=1e-6, atol=1e-7)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert not model.head.weight.requires_grad and model.head.bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)
    eval_result = cls(copy.deepcopy(model).eval()).explain(x, [0, 1, 2, 0, 1])  # computed in eval mode
    torch.testing.assert_close(results[0].attributions, eval_result.attributions, rtol=1e-6, atol=1e-7)
    assert results[0].extras["n_evaluations"] == 5
    assert results[0].extras["class_specific"] == (name == "attention_grad_rollout")
    np.testing.assert_array_equal(results[0].targets, [0, 1, 2, 0, 1])
    with torch.no_grad():
        scores = model.eval()(x)[torch.arange(5), torch.tensor([0, 1, 2, 0, 1])]
    np.testing.assert_allclose(results[0].scores, scores.numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_hooks_and_modes_are_restored_when_the_model_raises(name: str) -> None:
    class Raising(EncoderNet):
        def forward(self, ids, src_key_padding_mask=None):  # noqa: ANN001, ANN202
            self.encoder(self.embeddings(ids))
            raise RuntimeError("boom inside forward")

    model = build(0, Raising).train()
    with pytest.raises(lumos.ModelCallError, match="boom"):
        lumos.methods.get_method(name)(model).explain(token_ids(0, 2), 0)
    assert count_hooks(model) == 0 and all(m.training for m in model.modules())
    assert torch.backends.mha.get_fastpath_enabled()


def test_explicit_attention_layers() -> None:
    model = build(5, lambda: EncoderNet(nested=False))
    x = token_ids(5, 2)
    auto = AttentionRollout(model).explain(x)
    named = AttentionRollout(model, attention_layers=["encoder.layers.0.self_attn",
                                                      model.encoder.layers[1].self_attn]).explain(x)
    torch.testing.assert_close(named.attributions, auto.attributions, rtol=0, atol=0)
    one = AttentionRollout(model, attention_layers="encoder.layers.1.self_attn").explain(x)
    torch.testing.assert_close(one.attributions, AttentionRollout(model, start_layer=1).explain(x).attributions)
    with pytest.raises(lumos.UnsupportedModelError, match="encoder.layers.0.linear1"):
        AttentionRollout(model, attention_layers="encoder.layers.0.linear1").explain(x)
    with pytest.raises(lumos.ValidationError, match="not a submodule"):
        AttentionRollout(model, attention_layers="encoder.layers.7").explain(x)
    assert count_hooks(model) == 0


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", METHODS)
def test_model_without_attention(name: str) -> None:
    with pytest.raises(lumos.UnsupportedModelError) as info:
        lumos.methods.get_method(name)(make_token()).explain(torch.tensor([[1, 2, 3]]), 0)
    message = str(info.value)
    assert "MultiheadAttention" in message and "has none" in message
    assert "integrated_gradients" in message and "occlusion" in message  # what works instead
    with pytest.raises(lumos.UnsupportedModelError, match="nn.Module"):
        lumos.methods.get_method(name)(lambda x: x).explain(rand(0, 2, 3), 0)


@pytest.mark.parametrize(("name", "param", "value"), [
    ("attention", "query", "cls"), ("attention", "query", 1.5), ("attention", "head_reduction", "median"),
    ("attention", "head_reduction", -1), ("attention", "layer_index", "last"),
    ("attention_rollout", "discard_ratio", 1.0), ("attention_rollout", "discard_ratio", -0.1),
    ("attention_rollout", "start_layer", -1), ("attention_grad_rollout", "start_layer", 1.0),
    ("attention_rollout", "attention_layers", 3), ("attention", "upsample", 1), ("attention_grad_rollout", "subtract_identity", "yes"),
])
def test_bad_hyper_parameters(name: str, param: str, value) -> None:
    with pytest.raises(lumos.ValidationError, match=param) as info:
        lumos.methods.get_method(name)(make_mlp(), **{param: value})
    assert repr(value) in str(info.value)


def test_out_of_range_positions_name_the_argument() -> None:
    model = build(5, lambda: EncoderNet(nested=False))
    x = token_ids(5, 2)
    cases = [(AttentionWeights, {"layer_index": 2}, "layer_index=2.*2 attention layer"),
             (AttentionWeights, {"query": 6}, "query=6.*6 query positions"),
             (AttentionWeights, {"head_reduction": 2}, "head_reduction=2.*2 heads"),
             (AttentionRollout, {"start_layer": 2}, "start_layer=2")]
    for cls, params, pattern in cases:
        with pytest.raises(lumos.ValidationError, match=pattern):
            cls(model, **params).explain(x)
    with pytest.raises(lumos.ValidationError, match="layer="):
        AttentionRollout(model, layer="encoder")
    assert count_hooks(model) == 0


def test_registry_metadata() -> None:
    for name, cls in zip(METHODS, (AttentionWeights, AttentionRollout, GradientWeightedRollout), strict=True):
        assert lumos.methods.get_method(name) is cls
        assert cls.family == "attention" and cls.models == "attention" and cls.reference
        assert cls.requires_gradients == cls.class_specific == (name == "attention_grad_rollout")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_model_equals_cpu(name: str) -> None:
    cls = lumos.methods.get_method(name)
    model = build(6, lambda: EncoderNet(nested=True), torch.float64)
    x = token_ids(6, 3)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2, [False] * 6])
    cpu = cls(model).explain(x, 1, forward_kwargs={"src_key_padding_mask": pad})
    gpu_model = copy.deepcopy(model).cuda()
    gpu = cls(gpu_model).explain(x.cuda(), 1, forward_kwargs={"src_key_padding_mask": pad.cuda()})
    assert gpu.attributions.device.type == "cuda"
    torch.testing.assert_close(gpu.attributions.cpu(), cpu.attributions, rtol=1e-9, atol=1e-11)
    from_cpu = cls(gpu_model).explain(x, 1, forward_kwargs={"src_key_padding_mask": pad})
    assert from_cpu.attributions.device.type == "cpu" and count_hooks(gpu_model) == 0
