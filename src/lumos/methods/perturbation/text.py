"""Token features for text: explain a classifier on strings, or a token model, with any masking method.

Texts become a padded tensor of token ids (``TokenizedTexts``): tokens come from a whitespace split or a
Hugging Face tokenizer's ``tokenize`` (any object with ``tokenize(str) -> list[str]``; strings are rebuilt
with its ``convert_tokens_to_string`` when it has one, else joined with spaces). Each token is a feature
(one group per position; padding is never perturbed). A hidden token carries the id :data:`HIDDEN_ID`,
which the model wrappers turn into either *removal* (the token is dropped; the text gets shorter, handled
per sample) or the *mask token* (``mask_token=`` a string for string classifiers, ``mask_id=`` for token
models):

- :class:`TextModel` wraps ``f(list[str]) -> scores`` (one row per text) as a model on id tensors;
- :class:`TokenModel` wraps a token model ``f(ids, attention_mask=...)`` (e.g. a Hugging Face classifier):
  removal moves the kept tokens to the front, pads the end with ``pad_id`` and zeroes its attention mask;
- :func:`explain_text` does all of it in one call.

Example::

    e = explain_text(pipeline_scores, ["a great film", "dull and slow"], target=1, seed=0)
    e.extras["tokens"], e.attributions      # (n, T) one value per token
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.registry import get_method
from ...errors import ValidationError, describe_value
from ...explanation import Explanation
from . import lime as _lime  # noqa: F401  (registers "lime", the default method)

#: id of a hidden token (pass it as ``baseline=``); the wrappers remove it or put the mask token there
HIDDEN_ID = -1
#: id of a padding position in :class:`TokenizedTexts` (never a feature)
PAD_ID = -2


class TokenizedTexts:
    """Texts as a padded ``(n, T)`` tensor of vocabulary ids with one feature per token.

    Args:
        texts: the strings.
        tokenizer: ``None`` (whitespace split) or an object with ``tokenize(str) -> list[str]``.

    Attributes: ``tokens`` (per text), ``vocabulary``, ``ids`` (``PAD_ID`` after a text's end),
    ``feature_groups`` (``(n, T)``: the token's position, ``-1`` for padding).
    """

    def __init__(self, texts: Sequence[str], *, tokenizer: Any = None) -> None:
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise ValidationError(f"TokenizedTexts: texts must be a list of strings, got {describe_value(texts)}")
        if not texts:
            raise ValidationError("TokenizedTexts: texts is empty")
        if tokenizer is not None and not callable(getattr(tokenizer, "tokenize", None)):
            raise ValidationError(f"TokenizedTexts: tokenizer must have a tokenize(str) method (a Hugging Face "
                                  f"tokenizer), got {describe_value(tokenizer)}")
        self.tokenizer = tokenizer
        self.tokens = [list(tokenizer.tokenize(t)) if tokenizer is not None else t.split() for t in texts]
        for i, tokens in enumerate(self.tokens):
            if not tokens:
                raise ValidationError(f"TokenizedTexts: text {i} ({texts[i]!r}) has no tokens to explain")
        self.vocabulary = sorted({token for tokens in self.tokens for token in tokens})
        index = {token: i for i, token in enumerate(self.vocabulary)}
        length = max(len(tokens) for tokens in self.tokens)
        ids = np.full((len(texts), length), PAD_ID, dtype=np.int64)
        groups = np.full((len(texts), length), -1, dtype=np.int64)
        for i, tokens in enumerate(self.tokens):
            ids[i, :len(tokens)] = [index[token] for token in tokens]
            groups[i, :len(tokens)] = np.arange(len(tokens))
        self.ids = torch.from_numpy(ids)
        self.feature_groups = groups

    def explain_args(self) -> dict[str, Any]:
        """``baseline`` (the hidden id) and ``feature_groups`` (one map per text) for ``explain``."""
        return {"baseline": HIDDEN_ID, "feature_groups": self.feature_groups}

    def decode(self, row: Sequence[int], mask_token: str | None = None) -> str:
        """The text of one id row: hidden tokens removed (or ``mask_token``), padding dropped."""
        tokens = []
        for i in row:
            if i == HIDDEN_ID:
                if mask_token is not None:
                    tokens.append(mask_token)
            elif 0 <= i < len(self.vocabulary):
                tokens.append(self.vocabulary[i])
            elif i != PAD_ID:
                raise ValidationError(f"TextModel: token id {i} is not in the vocabulary of the tokenized texts "
                                      f"(0..{len(self.vocabulary) - 1}, {HIDDEN_ID} hidden, {PAD_ID} padding)")
        joiner = getattr(self.tokenizer, "convert_tokens_to_string", None)
        return joiner(tokens) if callable(joiner) else " ".join(tokens)


class TextModel:
    """A classifier on strings, ``fn(list[str]) -> scores (n, k) or (n,)``, as a lumos model on token ids.

    Args:
        fn: the classifier (e.g. ``lambda s: pipe_scores(s)``, ``clf.predict_proba`` of a text pipeline).
        texts: the :class:`TokenizedTexts` the ids come from.
        mask_token: ``None`` removes hidden tokens; a string (e.g. ``"[MASK]"``, ``"UNK"``) replaces them.
    """

    def __init__(self, fn: Callable[[list[str]], Any], texts: TokenizedTexts, *, mask_token: str | None = None) -> None:
        if not callable(fn):
            raise ValidationError(f"TextModel: fn must be callable on a list of strings, got {describe_value(fn)}")
        if not isinstance(texts, TokenizedTexts):
            raise ValidationError(f"TextModel: texts must be TokenizedTexts (the token features), got "
                                  f"{describe_value(texts)}")
        if mask_token is not None and not isinstance(mask_token, str):
            raise ValidationError(f"TextModel: mask_token must be None (removal) or a string, got {mask_token!r}")
        self.fn, self.texts, self.mask_token = fn, texts, mask_token

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.is_floating_point() or ids.ndim != 2:
            raise ValidationError(f"TextModel: expects token ids (n, T) from TokenizedTexts, got "
                                  f"{describe_value(ids)}; explain with explain_text or texts.ids")
        strings = [self.texts.decode(row, self.mask_token) for row in ids.tolist()]
        out = np.asarray(self.fn(strings), dtype=np.float64)
        return torch.from_numpy(out).to(ids.device)


class TokenModel(nn.Module):
    """A token model ``model(ids, attention_mask=...)`` whose hidden tokens (:data:`HIDDEN_ID`) are removed or
    replaced by ``mask_id``.

    Removal keeps the order of the kept tokens, moves them to the front and pads the end with ``pad_id``
    (attention mask 0). The wrapped model is a submodule, so lumos restores its mode and flags after a call.
    """

    def __init__(self, model: nn.Module | Callable[..., Any], *, pad_id: int = 0, mask_id: int | None = None) -> None:
        super().__init__()
        if not callable(model):
            raise ValidationError(f"TokenModel: model must be callable, got {describe_value(model)}")
        self.model = model
        self.pad_id, self.mask_id = int(pad_id), mask_id

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        hidden = ids == HIDDEN_ID
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        if self.mask_id is not None:
            return self.model(torch.where(hidden, torch.full_like(ids, self.mask_id), ids),
                              attention_mask=attention_mask, **kwargs)
        order = hidden.to(torch.int8).argsort(dim=1, stable=True)  # kept tokens first, in their order
        ids = torch.where(hidden, torch.full_like(ids, self.pad_id), ids).gather(1, order)
        attention_mask = torch.where(hidden, torch.zeros_like(attention_mask), attention_mask).gather(1, order)
        return self.model(ids, attention_mask=attention_mask, **kwargs)


def token_feature_groups(attention_mask: Any, special_tokens_mask: Any = None) -> np.ndarray:
    """Per-sample feature groups for a token model: each attended, non-special token its own feature, ``-1``
    (never perturbed) for padding and special tokens (``[CLS]``, ``[SEP]``)."""
    mask = np.asarray(attention_mask.cpu() if isinstance(attention_mask, torch.Tensor) else attention_mask) != 0
    if special_tokens_mask is not None:
        special = np.asarray(special_tokens_mask.cpu() if isinstance(special_tokens_mask, torch.Tensor)
                             else special_tokens_mask) != 0
        mask = mask & ~special
    positions = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    return np.where(mask, positions, -1).astype(np.int64)


def explain_text(model: Callable[[list[str]], Any], texts: Sequence[str], target: Any = None, *,
                 method: str = "lime", tokenizer: Any = None, mask_token: str | None = None,
                 **params: Any) -> Explanation:
    """Explain a classifier on strings for each text, one attribution per token.

    ``method``: any model-agnostic method name (``"lime"`` gets one feature map per text; the others mask
    every position, padding included, with no effect on padding). ``extras["tokens"]`` holds the tokens.

    Example::

        explain_text(lambda s: clf.predict_proba(s), ["good film", "bad plot"], target=1, seed=0)
    """
    tokenized = TokenizedTexts(texts, tokenizer=tokenizer)
    explainer = get_method(method)(TextModel(model, tokenized, mask_token=mask_token), **params)
    args = tokenized.explain_args()
    if "feature_groups" not in type(explainer).data_arguments or method != "lime":
        args.pop("feature_groups")
    explanation = explainer.explain(tokenized.ids, target, **args)
    explanation.extras["tokens"] = tokenized.tokens
    return explanation
