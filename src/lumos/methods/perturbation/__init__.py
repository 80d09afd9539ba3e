"""Perturbation methods for any model: occlusion, feature ablation, LIME and RISE (and the shared masking
machinery: tabular backgrounds, superpixels, text tokens)."""

from .ablation import FeatureAblation
from .lime import LIME
from .occlusion import Occlusion
from .rise import RISE
from .text import HIDDEN_ID, TextModel, TokenizedTexts, TokenModel, explain_text, token_feature_groups

__all__ = ["HIDDEN_ID", "LIME", "RISE", "FeatureAblation", "Occlusion", "TextModel", "TokenModel", "TokenizedTexts",
           "explain_text", "token_feature_groups"]
