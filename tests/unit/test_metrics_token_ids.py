"""Replacement metrics on integer token ids (a token id as the baseline), against naive re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lumos.errors import ValidationError
from lumos.metrics import faithfulness as faith
from lumos.metrics import faithfulness_sampled as sampled

VOCAB, MASK_ID = 12, 11


class BagOfTokens(torch.nn.Module):
    """f(ids)[c] = sum_t W[ids_t, c] over the attended tokens: a token's effect does not depend on the others."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(-1.0, 1.3, VOCAB * 2).reshape(VOCAB, 2) ** 3)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        values = self.weight[ids]
        if attention_mask is not None:
            values = values * attention_mask[..., None]
        return values.sum(1)


IDS = torch.tensor([[1, 4, 7, 2, 9, 3], [5, 8, 10, 6, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
ATTR = np.array([[0.5, -1.0, 2.0, 0.1, 0.3, -0.2], [1.0, 3.0, -0.5, 0.2, 0.0, 0.0]])


def score(model: BagOfTokens, ids: torch.Tensor, mask: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(model(ids[None], mask[None])[0, target])


def replaced(ids: torch.Tensor, positions: np.ndarray, baseline: torch.Tensor) -> torch.Tensor:
    out = ids.clone()
    out[torch.as_tensor(positions, dtype=torch.long)] = baseline[torch.as_tensor(positions, dtype=torch.long)]
    return out


@pytest.mark.parametrize("name", ["comprehensiveness", "sufficiency"])
def test_eraser_on_token_ids_matches_a_naive_loop(name: str) -> None:
    model = BagOfTokens()
    fractions = (0.2, 0.5, 1.0)
    result = getattr(faith, name)(model, IDS, ATTR, target=0, baseline=MASK_ID, fractions=fractions,
                                  forward_kwargs={"attention_mask": MASK})
    d = IDS.shape[1]
    for i in range(2):
        order = np.argsort(-ATTR[i], kind="stable")
        fx = score(model, IDS[i], MASK[i], 0)
        drops = []
        for p in fractions:
            top = order[:math.ceil(p * d)]
            chosen = top if name == "comprehensiveness" else np.setdiff1d(np.arange(d), top)
            drops.append(fx - score(model, replaced(IDS[i], chosen, torch.full((d,), MASK_ID)), MASK[i], 0))
        assert result.values[i] == pytest.approx(np.mean(drops), abs=1e-6)
    assert result.values.shape == (2,)


def test_deletion_with_per_sample_token_baseline_keeps_the_kept_positions() -> None:
    """A per-sample id baseline that repeats some ids (e.g. [CLS]/padding) never changes those positions."""
    model = BagOfTokens()
    baseline = torch.where(MASK.bool(), torch.full_like(IDS, MASK_ID), IDS)
    baseline[:, 0] = IDS[:, 0]  # the first token is "special": kept
    result = faith.deletion(model, IDS, ATTR, target=1, baseline=baseline, n_steps=6,
                            forward_kwargs={"attention_mask": MASK})
    for i in range(2):
        order = np.argsort(-ATTR[i], kind="stable")
        expected = [score(model, replaced(IDS[i], order[:k], baseline[i]), MASK[i], 1) for k in range(7)]
        np.testing.assert_allclose(result.curves[i], expected, atol=1e-6)
    # removing the kept first token or a padding position changes nothing: those steps are flat
    k_first = int(np.where(np.argsort(-ATTR[0], kind="stable") == 0)[0][0]) + 1
    assert result.curves[0, k_first] == pytest.approx(result.curves[0, k_first - 1], abs=1e-9)


def test_faithfulness_correlation_and_residual_accept_token_ids() -> None:
    model = BagOfTokens()
    # the exact per-token effect (bag of tokens: additive) correlates perfectly with every subset's drop
    exact = np.stack([[score(model, IDS[i], MASK[i], 0) - score(model, replaced(IDS[i], np.array([t]),
                                                                                 torch.full((6,), MASK_ID)),
                                                                 MASK[i], 0) for t in range(6)] for i in range(2)])
    result = sampled.faithfulness_correlation(model, IDS, exact, target=0, baseline=MASK_ID, subset_size=2,
                                              n_runs=20, seed=0, forward_kwargs={"attention_mask": MASK})
    assert result.values[0] == pytest.approx(1.0, abs=1e-9)
    residual = sampled.completeness_residual(model, IDS, exact, target=0, baseline=MASK_ID,
                                             forward_kwargs={"attention_mask": MASK})
    np.testing.assert_allclose(residual.values, 0.0, atol=1e-5)  # additive model: effects sum to f(x) - f(mask)


def test_token_ids_need_a_token_baseline_and_noise_metrics_refuse_them() -> None:
    model = BagOfTokens()
    with pytest.raises(ValidationError, match="baseline must be a token id"):
        faith.comprehensiveness(model, IDS, ATTR, target=0)  # default baseline 0.0 is not a token id
    with pytest.raises(ValidationError, match="baseline must be a token id"):
        faith.deletion(model, IDS, ATTR, target=0, baseline="mean")
    with pytest.raises(ValidationError, match="baseline must be a token id"):
        faith.deletion(model, IDS, ATTR, target=0, baseline=np.zeros((3,), dtype=np.int64))  # wrong shape
    with pytest.raises(ValidationError, match="floating point.*take token ids"):
        sampled.infidelity(model, IDS, ATTR, target=0)
