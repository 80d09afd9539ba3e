"""Oracle tests of the attention family: hand-built attention maps (rollout = the product computed by hand),
the gradient-weighted rollout against a naive per-sample re-implementation with torch.autograd, and the raw
weights against the model's own maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lumos.methods.attention  # noqa: F401 - registers the attention methods
from conftest import build, rand
from lumos.methods.attention import AttentionRollout, AttentionWeights, GradientWeightedRollout

# ---------------------------------------------------------------------------------------------- models


class SelfAttention(nn.Module):
    """Standard multi-head self-attention returning ``(output, probabilities)`` like Hugging Face modules.

    ``fixed`` (heads, T, T) replaces the input-dependent scores (hand-built attention: known maps).
    """

    def __init__(self, dim: int, heads: int, fixed: torch.Tensor | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.fixed = fixed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fixed is None:
            probs = (q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5).softmax(-1)
        else:
            probs = self.fixed.to(x.dtype).expand(b, -1, -1, -1)
        context = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(context), probs


class TinyAttentionNet(nn.Module):
    """Token ids -> embeddings -> 2 x (residual self-attention + tanh MLP) -> first token -> 3 classes."""

    def __init__(self, fixed: list[torch.Tensor] | None = None, vocab: int = 12, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(SelfAttention(dim, heads, None if fixed is None else fixed[i]) for i in range(2))
        self.mlps = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.head = nn.Linear(dim, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(ids)
        for block, mlp in zip(self.blocks, self.mlps, strict=True):
            h = h + block(h)[0]
            h = h + torch.tanh(mlp(h))
        return self.head(h[:, 0])


def known_maps(n_tokens: int = 5, heads: int = 2) -> list[torch.Tensor]:
    """Two layers of distinct (heads, T, T) row-stochastic matrices."""
    generator = torch.Generator().manual_seed(7)
    return [torch.rand(heads, n_tokens, n_tokens, generator=generator, dtype=torch.float64).mul(3).softmax(-1)
            for _ in range(2)]


def ids(seed: int, n: int, t: int = 5, vocab: int = 12) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- rollout


@pytest.mark.parametrize("reduction", ["mean", "max", "min", 1])
def test_rollout_is_the_product_of_the_hand_built_maps(reduction) -> None:
    maps = known_maps()
    model = build(0, lambda: TinyAttentionNet(maps), torch.float64)
    x = ids(1, 3)
    e = AttentionRollout(model, head_reduction=reduction).explain(x)
    combine = {"mean": lambda a: a.mean(0), "max": lambda a: a.max(0), "min": lambda a: a.min(0),
               1: lambda a: a[1]}[reduction]
    rollout = np.eye(5)
    for a in maps:
        mixed = 0.5 * combine(a.numpy()) + 0.5 * np.eye(5)
        mixed /= mixed.sum(1, keepdims=True)
        rollout = mixed @ rollout
    np.testing.assert_allclose(e.attributions.numpy(), np.tile(rollout[0], (3, 1)), rtol=1e-12, atol=1e-14)
    assert not e.extras["class_specific"] and e.extras["n_layers"] == 2
    # query="mean": the mean row; start_layer=1: the last layer alone
    e_mean = AttentionRollout(model, head_reduction=reduction, query="mean").explain(x)
    np.testing.assert_allclose(e_mean.attributions[0].numpy(), rollout.mean(0), rtol=1e-12)
    last = 0.5 * combine(maps[1].numpy()) + 0.5 * np.eye(5)
    last /= last.sum(1, keepdims=True)
    e_start = AttentionRollout(model, head_reduction=reduction, start_layer=1, query=-1).explain(x)
    np.testing.assert_allclose(e_start.attributions[0].numpy(), last[-1], rtol=1e-12)


def test_rollout_discard_ratio_against_a_naive_loop() -> None:
    maps = known_maps()
    model = build(0, lambda: TinyAttentionNet(maps), torch.float64)
    e = AttentionRollout(model, discard_ratio=0.3).explain(ids(1, 2))
    rollout = np.eye(5)
    for a in maps:
        fused = a.numpy().mean(0)
        n_discard = int(np.floor(0.3 * fused.size))  # 7 of 25
        for flat_index in np.argsort(fused, axis=None, kind="stable")[:n_discard]:
            fused[np.unravel_index(flat_index, fused.shape)] = 0.0
        mixed = 0.5 * fused + 0.5 * np.eye(5)
        mixed /= mixed.sum(1, keepdims=True)
        rollout = mixed @ rollout
    np.testing.assert_allclose(e.attributions[0].numpy(), rollout[0], rtol=1e-12)
    assert not np.allclose(rollout[0], AttentionRollout(model).explain(ids(1, 1)).attributions[0].numpy())


def test_attention_weights_read_the_chosen_layer_head_and_query() -> None:
    maps = known_maps()
    model = build(0, lambda: TinyAttentionNet(maps), torch.float64)
    x = ids(2, 2)
    cases = [({}, maps[1].mean(0)[0]), ({"layer_index": 0}, maps[0].mean(0)[0]),
             ({"head_reduction": "max", "query": 3}, maps[1].amax(0)[3]),
             ({"head_reduction": 0, "layer_index": -2, "query": "mean"}, maps[0][0].mean(0))]
    for params, expected in cases:
        e = AttentionWeights(model, **params).explain(x)
        torch.testing.assert_close(e.attributions, expected.expand(2, 5), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------- Chefer et al.


def naive_chefer(model: nn.Module, x: torch.Tensor, target: list[int], query: int | str = 0) -> np.ndarray:
    """One sample at a time: maps and their gradients with retain_grad, the rule written out with loops."""
    rows = []
    for i in range(x.shape[0]):
        probs: list[torch.Tensor] = []
        handles = [block.register_forward_hook(lambda m, a, out, store=probs: store.append(out[1]))
                   for block in model.blocks]
        try:
            with torch.enable_grad():
                output = model(x[i:i + 1])
                for p in probs:
                    p.retain_grad()
                output[0, target[i]].backward()
        finally:
            for h in handles:
                h.remove()
        model.zero_grad(set_to_none=True)
        n_tokens = x.shape[1]
        relevance = np.eye(n_tokens)
        for p in probs:
            a, g = p.detach()[0].numpy(), p.grad[0].numpy()
            weighted = np.zeros((n_tokens, n_tokens))
            for h in range(a.shape[0]):
                weighted += np.maximum(g[h] * a[h], 0.0) / a.shape[0]
            relevance = relevance + weighted @ relevance
        rows.append(relevance.mean(0) if query == "mean" else relevance[query])
    return np.stack(rows)


@pytest.mark.parametrize("query", [0, "mean"])
def test_gradient_weighted_rollout_equals_a_naive_re_implementation(query) -> None:
    model = build(3, TinyAttentionNet, torch.float64)  # input-dependent attention
    x = ids(4, 4)
    target = [0, 1, 2, 1]
    e = GradientWeightedRollout(model, query=query).explain(x, target)
    np.testing.assert_allclose(e.attributions.numpy(), naive_chefer(model, x, target, query), rtol=1e-10,
                               atol=1e-13)
    assert e.extras["class_specific"]
    gained = GradientWeightedRollout(model, query=query, subtract_identity=True).explain(x, target)
    identity_row = np.full(5, 1 / 5) if query == "mean" else np.eye(5)[query]
    np.testing.assert_allclose(gained.attributions.numpy(), e.attributions.numpy() - identity_row, rtol=1e-10,
                               atol=1e-13)
    other = GradientWeightedRollout(model, query=query).explain(x, [1, 2, 0, 0])
    assert not torch.allclose(other.attributions, e.attributions)  # it explains a class
    assert all(p.grad is None for p in model.parameters())


def test_gradient_weighted_rollout_of_a_frozen_model_on_token_ids() -> None:
    model = build(3, TinyAttentionNet, torch.float64).requires_grad_(False)
    x = ids(4, 3)
    e = GradientWeightedRollout(model).explain(x, 1)
    model.requires_grad_(True)
    np.testing.assert_allclose(e.attributions.numpy(), naive_chefer(model, x, [1, 1, 1]), rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------------------------------------- nn.MultiheadAttention


class MHANet(nn.Module):
    """Float token features (N, T, 6) -> 2 residual nn.MultiheadAttention layers -> mean -> 3 classes.

    Called like ``nn.TransformerEncoderLayer`` calls its attention: ``need_weights=False``.
    """

    def __init__(self, dim: int = 6, heads: int = 2, batch_first: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=batch_first) for _ in range(2))
        self.head = nn.Linear(dim, 3)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.batch_first else x.transpose(0, 1)
        for layer in self.layers:
            h = h + torch.tanh(layer(h, h, h, need_weights=False)[0])
        h = h if self.batch_first else h.transpose(0, 1)
        return self.head(h.mean(1))


def manual_mha(layer: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.MultiheadAttention written out (batch first): (output, probabilities (N, heads, T, T))."""
    n, t, d = x.shape
    heads = layer.num_heads
    q, k, v = F.linear(x, layer.in_proj_weight, layer.in_proj_bias).chunk(3, -1)
    split = lambda z: z.reshape(n, t, heads, d // heads).transpose(1, 2)  # noqa: E731
    probs = (split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5).softmax(-1)
    context = (probs @ split(v)).transpose(1, 2).reshape(n, t, d)
    return layer.out_proj(context), probs


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_maps_and_chefer_rule(batch_first: bool) -> None:
    model = build(5, lambda: MHANet(batch_first=batch_first), torch.float64)
    x = rand(6, 3, 4, 6, dtype=torch.float64)
    # the maps, written out
    probs = []
    h = x.clone().requires_grad_(False)
    with torch.enable_grad():
        for layer in model.layers:
            out, p = manual_mha(layer, h)
            p.retain_grad()
            probs.append(p)
            h = h + torch.tanh(out)
        output = model.head(h.mean(1))
        torch.testing.assert_close(output, model(x))
        output[:, 2].sum().backward()
    model.zero_grad(set_to_none=True)
    e = AttentionWeights(model, layer_index=0, head_reduction=1, query=2).explain(x, 2)
    assert e.attributions.shape == (3, 4)  # token space: one number per token of (N, T, dim) inputs
    assert e.layer == "layers.0"
    torch.testing.assert_close(e.attributions, probs[0].detach()[:, 1, 2])
    relevance = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    for p in probs:
        relevance = relevance + (p.grad * p.detach()).clamp_min(0).mean(1) @ relevance
    g = GradientWeightedRollout(model).explain(x, 2)
    torch.testing.assert_close(g.attributions, relevance[:, 0])
