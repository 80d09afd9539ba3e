"""RevealCancel's arithmetic: the (Δ+, Δ-) difference streams, their re-split by sign, and the multipliers of
an elementwise nonlinearity (Shrikumar et al. 2017, sec. 3.5.3). Used by the mode (:mod:`.reveal_cancel`)
and its operation table (:mod:`.reveal_cancel_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import Function

from .multipliers import _SQRT_EPS, autograd_derivative

_STREAMS = "_lumos_reveal_cancel_streams"
_SEEN = "_lumos_reveal_cancel_seen"

Streams = tuple[torch.Tensor, torch.Tensor]



def _tracked(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _tensors(args: Any, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _map(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor of ``obj`` (one level of lists / tuples, as torch signatures nest)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in obj):
        return type(obj)(fn(v) if isinstance(v, torch.Tensor) else v for v in obj)
    return obj


def _substitute(args: tuple[Any, ...], kwargs: dict[str, Any], fn: Callable[[torch.Tensor], Any]
                ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(_map(a, fn) for a in args), {k: _map(v, fn) for k, v in kwargs.items()}


def _detached(t: Any) -> Any:
    return t.detach() if isinstance(t, torch.Tensor) and t.requires_grad else t


def _sign_weights(total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 where total > 0, ½ where 0), (1 where total < 0, ½ where 0): the paper's re-split of a total."""
    positive = (total > 0).to(total.dtype) + 0.5 * (total == 0).to(total.dtype)
    return positive, 1.0 - positive


def resplit(total: torch.Tensor) -> Streams:
    """``(max(Δ, 0), min(Δ, 0))`` of a total difference ``Δ`` (part of the graph); at ``Δ = 0`` both get half
    the multiplier, as in the paper's linear rule."""
    positive, negative = _sign_weights(total.detach())
    return total * positive, total * negative


def _signed_scale(p: torch.Tensor, n: torch.Tensor, c: Any, op: Callable[[torch.Tensor, Any], torch.Tensor]
                  ) -> Streams:
    """Streams of ``op(v, c)`` for an elementwise scaling by a constant ``c``: swapped where ``c < 0``."""
    if isinstance(c, torch.Tensor):
        keep = c >= 0
        return op(torch.where(keep, p, n), c), op(torch.where(keep, n, p), c)
    if c >= 0:
        return op(p, c), op(n, c)
    return op(n, c), op(p, c)


class RevealCancelMultipliers(Function):
    """``(Δy+, Δy-)`` of ``y = f(z)`` from ``(Δz+, Δz-)``; backward ``(g+ m+, g- m-)``, ``m± = Δy± / Δz±``."""

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, n: torch.Tensor, z: torch.Tensor, z_ref: torch.Tensor, y: torch.Tensor,
                fn: Callable[[torch.Tensor], torch.Tensor],
                derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> Any:  # noqa: D102
        base = fn(z_ref)
        at_p = fn(z_ref + p)
        at_n = fn(z_ref + n)
        dy_p = (at_p - base).add_(y - at_n).mul_(0.5)
        dy_n = (at_n - base).add_(y - at_p).mul_(0.5)
        if fn is torch.relu:
            small_p, small_n = p == 0, n == 0
        else:
            scale = z_ref.abs() + p.abs() + n.abs()
            tol = _SQRT_EPS.get(z.dtype, 1e-4)
            small_p, small_n = p.abs() <= tol * scale, n.abs() <= tol * scale
        m_p = dy_p / torch.where(small_p, 1.0, p)
        m_n = dy_n / torch.where(small_n, 1.0, n)
        if bool(small_p.any()) or bool(small_n.any()):
            def slope(at: torch.Tensor) -> torch.Tensor:
                if derivative is None:
                    return autograd_derivative(fn, at)
                return derivative(at, fn(at))

            d_base = slope(z_ref)
            m_p = torch.where(small_p, 0.5 * (d_base + slope(z_ref + n)), m_p)
            m_n = torch.where(small_n, 0.5 * (d_base + slope(z_ref + p)), m_n)
        ctx.save_for_backward(m_p, m_n)
        return dy_p, dy_n

    @staticmethod
    def backward(ctx: Any, g_p: torch.Tensor, g_n: torch.Tensor) -> Any:  # noqa: D102
        m_p, m_n = ctx.saved_tensors
        return g_p * m_p, g_n * m_n, None, None, None, None, None

