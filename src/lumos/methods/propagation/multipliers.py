"""DeepLIFT's per-operation rules as autograd Functions.

Each Function takes the operation's input for the explained inputs (``z``, part of the autograd graph) and
the same operation's input recorded during the baseline pass (``z_ref``, a constant), computes the operation
normally in the forward pass, and passes back *multipliers* instead of gradients, so that
``sum(multiplier * (z - z_ref)) = f(z) - f(z_ref)`` for every operation (summation-to-delta):

- :class:`Rescale` (Shrikumar et al. 2017, sec. 3.5.2): elementwise nonlinearities,
  ``m = (f(z) - f(z')) / (z - z')``, and ``f'(z)`` where ``|z - z'|`` is at rounding level;
- :class:`MaxPoolRoute`: max pooling. Each window's output difference ``y - y'`` is routed to one position:
  the input's winner or the baseline's winner, whichever has the larger ``|z - z'|``, and divided by
  ``z - z'`` there. Since ``dz[baseline winner] <= y - y' <= dz[input winner]``, the multiplier lies in
  [-1, 1] and the window's difference is conserved exactly (``y = y'`` when both differences are 0);
- :class:`Bilinear`: products of two input-dependent tensors (``a * b``, ``a @ b``, attention scores),
  ``ab - a'b' = ((a + a') / 2) (b - b') + (a - a') ((b + b') / 2)``: the Shapley split of a product of two
  players, exact;
- :class:`PathJacobian`: softmax, log-softmax and normalisers (LayerNorm, GroupNorm, RMSNorm, ...): the
  operation's Jacobian averaged along the straight line from ``z'`` to ``z`` (Gauss-Legendre, 16 nodes),
  exact up to the quadrature error, which the summation check reports.

:class:`BaselineOp` is the baseline pass's version of every rule: it computes the operation without a graph
(the baseline needs no gradient) while keeping the output marked as input-dependent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.autograd import Function

#: Gauss-Legendre nodes on [0, 1] for :class:`PathJacobian`
PATH_STEPS = 16
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(PATH_STEPS)
_NODES = ((_NODES + 1.0) / 2.0).tolist()
_WEIGHTS = (_WEIGHTS / 2.0).tolist()
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------- derivatives


def relu_derivative(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)


def sigmoid_derivative(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y * (1 - y)


def tanh_derivative(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1 - y * y


def silu_derivative(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def gelu_derivative(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z * _SQRT_HALF)) + z * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI


def autograd_derivative(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``f'(z)`` of an elementwise ``fn`` by autograd (the generic fallback)."""
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(leaf).sum(), leaf)
    return grad


# ---------------------------------------------------------------------------------------------- Functions


class BaselineOp(Function):
    """``fn(*tensors)`` without a graph; the output stays marked as depending on the input (requires_grad)."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., Any], *tensors: torch.Tensor) -> Any:  # noqa: D102
        out = fn(*tensors)
        if isinstance(out, tuple):
            ctx.mark_non_differentiable(*[t for t in out if not t.is_floating_point()])
        return out

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:  # noqa: D102
        raise RuntimeError("lumos DeepLIFT: the baseline pass has no backward pass")


class Rescale(Function):
    """Elementwise ``y = fn(z)``; backward passes ``g * m``, ``m = (fn(z) - fn(z')) / (z - z')``.

    Where ``|z - z'| <= sqrt(eps) |z|`` (a difference at rounding level), ``m = f'(z)`` (``derivative(z, y)``,
    or autograd when ``derivative`` is None); the error this adds to the summation is ``O(f'' dz^2)``, at
    rounding level too. For ReLU (``fn is torch.relu``) a leaner path: ``m = 1[z > 0]`` only where ``z = z'``
    (elsewhere the quotient is exactly 1 or 0 when both sides agree, and in [0, 1] when they do not).
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, z_ref: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:  # noqa: D102
        y = fn(z)
        dz = z - z_ref  # z_ref may be one row shared by the batch (broadcast)
        m = (y - fn(z_ref)).div_(dz)
        if fn is torch.relu:
            unmoved = dz == 0  # 0 / 0 there: the derivative instead (rare: skip the select when absent)
            if bool(unmoved.any()):
                m = torch.where(unmoved, (z > 0).to(m.dtype), m)
        else:
            small = dz.abs_() <= z.abs().mul_(_SQRT_EPS[z.dtype] if z.dtype in _SQRT_EPS else 1e-4)
            slope = derivative(z, y) if derivative is not None else autograd_derivative(fn, z)
            m = torch.where(small, slope, m)
        ctx.save_for_backward(m)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # noqa: D102
        (m,) = ctx.saved_tensors
        return grad * m, None, None, None


_SQRT_EPS = {dtype: math.sqrt(torch.finfo(dtype).eps) for dtype in (torch.float16, torch.bfloat16, torch.float32,
                                                                     torch.float64)}


class MaxPoolRoute(Function):
    """Max pooling ``(y, idx) = pool(z)`` whose backward routes ``g * (y - y') / dz`` to one position per window.

    ``pool`` returns values and flat indices into the last ``n_spatial`` dimensions (as
    ``max_pool2d_with_indices`` does); ``y_ref, idx_ref`` are the baseline's (possibly one row shared by the
    batch). Only the two winners' differences are formed: ``z - z'`` at the input's winner is ``y - z'[idx]``,
    at the baseline's winner ``z[idx'] - y'`` (no full-size difference map).
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, z_ref: torch.Tensor, y_ref: torch.Tensor, idx_ref: torch.Tensor,
                pool: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], n_spatial: int) -> Any:  # noqa: D102
        y, idx = pool(z)
        z_flat = z.flatten(-n_spatial)
        at_input = idx.flatten(-n_spatial)
        at_ref = idx_ref.flatten(-n_spatial).expand_as(at_input)
        ref_flat = z_ref.flatten(-n_spatial).expand_as(z_flat)
        y_flat = y.flatten(-n_spatial)
        dz_input = y_flat - ref_flat.gather(-1, at_input)
        dz_ref = z_flat.gather(-1, at_ref).sub_(y_ref.flatten(-n_spatial))
        use_input = dz_input.abs() >= dz_ref.abs()
        route = torch.where(use_input, at_input, at_ref)
        denominator = torch.where(use_input, dz_input, dz_ref)
        dy = (y - y_ref).flatten(-n_spatial)
        m = torch.where(denominator == 0, 1.0, dy.div_(denominator))
        ctx.save_for_backward(route, m)
        ctx.flat_shape = z_flat.shape
        ctx.shape = z.shape
        ctx.n_spatial = n_spatial
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, grad_idx: Any) -> Any:  # noqa: D102
        route, m = ctx.saved_tensors
        flat = grad.flatten(-ctx.n_spatial) * m
        out = torch.zeros(ctx.flat_shape, dtype=grad.dtype, device=grad.device).scatter_add_(-1, route, flat)
        return out.view(ctx.shape), None, None, None, None, None


class Bilinear(Function):
    """``y = fn(a, b)`` for ``fn`` bilinear; backward: ``vjp`` of ``fn(., (b + b')/2)`` and ``fn((a + a')/2, .)``."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor,
                b: torch.Tensor, a_ref: torch.Tensor, b_ref: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.fn = fn
        ctx.save_for_backward((a + a_ref) * 0.5, (b + b_ref) * 0.5)
        return fn(a, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # noqa: D102
        a_mid, b_mid = ctx.saved_tensors
        with torch.enable_grad():
            a_leaf = a_mid.detach().requires_grad_(True)
            b_leaf = b_mid.detach().requires_grad_(True)
            out = ctx.fn(a_leaf, b_mid) + ctx.fn(a_mid, b_leaf)
            grad_a, grad_b = torch.autograd.grad(out, (a_leaf, b_leaf), grad)
        return None, grad_a, grad_b, None, None


class PathJacobian(Function):
    """``y = fn(z)``; backward: the path-averaged Jacobian plus a rank-one correction that makes it exact.

    ``J = sum_k w_k J_fn(z' + t_k (z - z'))`` (Gauss-Legendre on [0, 1]) approximates the average Jacobian
    along the segment, whose product with ``dz = z - z'`` is exactly ``dy = fn(z) - fn(z')``. The quadrature
    error ``r = dy - J dz`` is added back along ``dz`` within each slice the operation normalises over
    (``dims``: the softmax dimension, the LayerNorm's trailing dimensions, a sample's channels for GroupNorm):
    ``M = J + r dz^T / |dz|^2``, so ``M dz = dy`` exactly. The backward only needs ``J^T g``:
    ``M^T g = J^T g + dz (dy . g - dz . J^T g) / |dz|^2`` (dot products over ``dims``).
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, z_ref: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                dims: tuple[int, ...]) -> torch.Tensor:  # noqa: D102
        y = fn(z)
        ctx.fn = fn
        ctx.dims = dims
        ctx.save_for_backward(z, z_ref, y - fn(z_ref))
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # noqa: D102
        z, z_ref, dy = ctx.saved_tensors
        dz = z - z_ref
        total = torch.zeros_like(z)
        with torch.enable_grad():
            for t, w in zip(_NODES, _WEIGHTS, strict=True):
                point = torch.add(z_ref, dz, alpha=t).requires_grad_(True)
                (g,) = torch.autograd.grad(ctx.fn(point), point, grad)
                total.add_(g, alpha=w)
        dims = ctx.dims
        residual = (dy * grad).sum(dims, keepdim=True) - (dz * total).sum(dims, keepdim=True)
        norm = (dz * dz).sum(dims, keepdim=True)
        scale = torch.where(norm > 0, residual / torch.where(norm > 0, norm, torch.ones_like(norm)),
                            torch.zeros_like(norm))
        return total + scale * dz, None, None, None
