"""Text display: tokens highlighted by their attribution, as self-contained HTML and as a figure.

Each token's background is red (positive: toward the target) or blue (negative), with opacity
``min(1, |a| / scale)``, ``scale`` = the largest |a| unless given (see :func:`lumos.plots.colors.token_rgba`).
The HTML has inline styles only: no script, no stylesheet, no external resource; tokens are HTML-escaped.

Example:
    >>> d = TextDisplay(["the", "film", "was", "great"], [0.0, 0.1, -0.05, 0.9])
    >>> "great" in d.to_html()
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..explanation import Explanation
from .base import Display, check_choice, check_explanation, check_index, pick_input
from .colors import to_numpy, token_rgba

TOKEN_REDUCTIONS = ("sum", "abs_sum", "l2")
#: width of a monospace character and line height, in units of the font size
_CHAR_WIDTH_EM, _LINE_HEIGHT_EM = 0.62, 2.0


def token_attributions(attributions: np.ndarray, reduce: str = "sum", *, owner: str = "TextDisplay") -> np.ndarray:
    """One value per token from ``(T,)`` or ``(T, D)`` (embedding) attributions.

    ``reduce`` over D: ``"sum"`` (signed, default: the token's total contribution), ``"abs_sum"`` or ``"l2"``
    (the norm, unsigned).
    """
    check_choice(reduce, TOKEN_REDUCTIONS, owner, "reduce")
    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim == 1:
        return a
    if a.ndim != 2:
        raise ValidationError(f"{owner}: token attributions must be (T,) or (T, D), got shape {a.shape}")
    if reduce == "sum":
        return a.sum(axis=1)
    if reduce == "abs_sum":
        return np.abs(a).sum(axis=1)
    return np.sqrt((a * a).sum(axis=1))


def wrap_tokens(tokens: Sequence[str], width: int, separator: str = " ") -> list[list[int]]:
    """Greedy line breaking: token indices per line, each line at most ``width`` characters (a longer token
    gets a line of its own)."""
    lines: list[list[int]] = [[]]
    used = 0
    for i, token in enumerate(tokens):
        extra = len(token) + (len(separator) if lines[-1] else 0)
        if lines[-1] and used + extra > width:
            lines.append([])
            used, extra = 0, len(token)
        lines[-1].append(i)
        used += extra
    return lines


class TextDisplay(Display):
    """Tokens highlighted by attribution.

    Args:
        tokens: the T tokens (strings, shown as given, e.g. word pieces).
        values: T attributions, or ``(T, D)`` (summed over D with ``reduce``).
        scale: |attribution| of full opacity (default: the largest |value|).
        title: optional heading. separator: between tokens (``""`` for pieces that carry their own spaces).
        width: characters per line in the figure.

    Attributes: ``values_`` (one per token), ``colors_`` (``(r, g, b, alpha)`` per token); after ``plot``
    ``texts_`` (one matplotlib Text per token), ``lines_`` (token indices per line).
    """

    def __init__(self, tokens: Sequence[str], values: Any, *, reduce: str = "sum", scale: float | None = None,
                 title: str | None = None, separator: str = " ", width: int = 60) -> None:
        owner = type(self).__name__
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise ValidationError(f"{owner}: tokens must be a list of strings, got {type(tokens).__name__}")
        self.tokens = [str(t) for t in tokens]
        self.values_ = token_attributions(to_numpy(values, owner=owner, name="values"), reduce, owner=owner)
        if len(self.values_) != len(self.tokens):
            raise ValidationError(f"{owner}: {len(self.tokens)} tokens but {len(self.values_)} attributions")
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValidationError(f"{owner}: scale must be a number > 0 or None, got {scale!r}")
        if not isinstance(width, int) or width < 1:
            raise ValidationError(f"{owner}: width must be an int >= 1, got {width!r}")
        self.colors_ = token_rgba(self.values_, scale)
        self.title, self.separator, self.width = title, separator, width
        self.texts_: list[Any] = []

    @classmethod
    def from_explanation(cls, explanation: Explanation, tokens: Sequence[str], index: int = 0, *,
                         input_index: int = 0, **kwargs: Any) -> TextDisplay:
        """Sample ``index`` of an explanation of token inputs: attributions ``(N, T)`` or ``(N, T, D)``."""
        owner = cls.__name__
        attributions, _ = pick_input(check_explanation(explanation, owner), input_index, owner)
        if attributions.ndim not in (2, 3):
            raise ValidationError(f"{owner}: needs token attributions (N, T) or (N, T, D), got shape "
                                  f"{attributions.shape}")
        i = check_index(index, len(attributions), owner)
        kwargs.setdefault("title", explanation.method or None)
        return cls(tokens, attributions[i], **kwargs)

    # ------------------------------------------------------------------ HTML
    def to_html(self) -> str:
        """A self-contained ``<div>``: one ``<span>`` per token, inline styles, escaped text, no script."""
        spans = []
        for token, value, (r, g, b, a) in zip(self.tokens, self.values_, self.colors_, strict=True):
            spans.append(
                f'<span style="background-color: rgba({r}, {g}, {b}, {a}); padding: 0.1em 0.15em; '
                f'border-radius: 0.2em;" title="{value:+.4g}" data-attribution="{value:.6g}">'
                f"{html.escape(token, quote=True)}</span>"
            )
        heading = "" if not self.title else (
            f'<div style="font-weight: bold; margin-bottom: 0.3em;">{html.escape(self.title)}</div>')
        sep = html.escape(self.separator)
        return (f'<div class="lumos-text" style="font-family: sans-serif; line-height: 1.9; color: #111;">'
                f"{heading}{sep.join(spans)}</div>")

    def _repr_html_(self) -> str:
        return self.to_html()

    # ------------------------------------------------------------------ figure
    def plot(self, ax: Any = None, *, fontsize: float = 11.0) -> TextDisplay:
        """Draw the tokens as highlighted monospace text, wrapped at ``width`` characters per line."""
        lines = wrap_tokens(self.tokens, self.width, self.separator)
        if ax is None:
            char_in = fontsize * _CHAR_WIDTH_EM / 72.0
            line_in = fontsize * _LINE_HEIGHT_EM / 72.0
            figsize = (0.4 + char_in * (self.width + 2), 0.4 + line_in * (len(lines) + (1 if self.title else 0)))
        else:
            figsize = (1.0, 1.0)
        ax = self._axes(ax, figsize)
        ax.set_axis_off()
        ax.set_xlim(0, self.width + 1)
        ax.set_ylim(len(lines), 0)
        self.texts_, self.lines_ = [None] * len(self.tokens), lines
        for row, line in enumerate(lines):
            column = 0
            for i in line:
                r, g, b, a = self.colors_[i]
                self.texts_[i] = ax.text(
                    0.5 + column, row + 0.5, self.tokens[i], family="monospace", fontsize=fontsize, va="center",
                    ha="left", parse_math=False,
                    bbox={"facecolor": (r / 255, g / 255, b / 255, a), "edgecolor": "none", "pad": 1.5})
                column += len(self.tokens[i]) + len(self.separator)
        if self.title:
            ax.set_title(self.title, loc="left", fontsize=fontsize)
        return self
