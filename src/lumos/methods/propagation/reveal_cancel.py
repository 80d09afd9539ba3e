"""DeepLIFT's RevealCancel rule: positive and negative difference streams carried through the forward pass.

Shrikumar, Greenside & Kundaje (2017), "Learning Important Features Through Propagating Activation
Differences", ICML, sections 3.5.1 (linear rule) and 3.5.3 (RevealCancel).

Representation. During the explained inputs' pass, every input-dependent tensor ``v`` carries two streams
``(Δ+, Δ-)`` with ``Δ+ + Δ- = v - v'`` in an attribute (identity of the tensor object, version-checked so an
in-place change made behind the mode's back is caught). The streams are the autograd graph: the value
returned to the model is ``v + (s - s.detach())`` with ``s = Δ+ + Δ-`` (numerically ``v``, gradient 1 to
both streams), values themselves are computed from detached operands. So the backward pass of the target
score is the chain rule on the two streams, and the gradient at an input leaf is ``m+`` where
``x - x' > 0`` and ``m-`` where it is negative: ``attribution = (x - x') * gradient = Δx+ m+ + Δx- m-``.

Rules per operation:

- inputs (and the ``layer=`` output): ``Δ+ = max(x - x', 0)``, ``Δ- = min(x - x', 0)``;
- elementwise nonlinearity ``y = f(z)`` (ReLU, sigmoid, tanh, ... every Rescale activation):
  ``Δy+ = ½(f(z'+Δ+) - f(z')) + ½(f(z) - f(z'+Δ-))``, ``Δy- = ½(f(z'+Δ-) - f(z')) + ½(f(z) - f(z'+Δ+))``,
  ``m± = Δy± / Δ±`` (the limit ``½(f'(z') + f'(z'+Δ∓))`` where ``Δ±`` is at rounding level); ``Δy+ + Δy- =
  f(z) - f(z')`` exactly;
- weighted layers (``linear``, convolutions, transposed convolutions, a matrix product or einsum with a
  constant operand), the paper's linear rule: the input difference is re-split by the sign of its total,
  ``a+ = max(Δa, 0)``, ``a- = min(Δa, 0)``, then ``Δz+ = W+ a+ + W- a-``, ``Δz- = W+ a- + W- a+``
  (``W± `` the positive / negative weights). Both streams of ``a`` get the same multiplier (half of each
  where ``Δa = 0``), as in the paper;
- elementwise scalings by constants (``* c``, ``/ c``, batch norm in eval, negation, subtraction): the
  streams swap where the coefficient is negative;
- structural operations (reshapes, indexing, concatenation, additions, sums, average pooling, padding,
  interpolation, ...): the operation applied to each stream (constant operands removed);
- max pooling, products of two input-dependent tensors, softmax, LayerNorm and other normalisers keep their
  Rescale-family rules (:mod:`.multipliers`) on the total difference ``Δ+ + Δ-``; their output difference is
  re-split by sign like a weighted layer's input. RevealCancel is defined for elementwise nonlinearities only.

Every rule conserves ``Δ+ + Δ-``, so summation-to-delta holds exactly (to rounding) on networks built from
the supported operations. Structural operations with negative coefficients that the table does not know
(a bicubic interpolation, an ``index_add`` with negative ``alpha``) still conserve the total; only the split
into positive and negative parts is then not sign-pure.
"""


from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ...errors import UnsupportedModelError
from .deeplift_table import ALTERNATIVES, HANDLERS, LINEAR
from .rescale import DeepLiftRules, _carries_grad
from .reveal_cancel_streams import _SEEN, _STREAMS, Streams, _map, _tensors, _tracked, resplit
from .reveal_cancel_table import _PASS_THROUGH, RC_HANDLERS, _generic

__all__ = ["RC_HANDLERS", "RevealCancelRules"]


# ---------------------------------------------------------------------------------------------- the mode


class RevealCancelRules(DeepLiftRules):
    """:class:`~.rescale.DeepLiftRules` with the RevealCancel rule: two difference streams per tensor.

    The baseline pass is Rescale's (rule operations record their operands) plus two records: the outputs of
    rule operations (the reference outputs the Rescale-family rules re-split) and the input-dependent tensors
    the model starts from (the inputs, or the ``layer=`` output), in the order first met. The input pass maps
    every operation onto the streams (see the module docstring); any operation without a rule raises
    :class:`~lumos.errors.UnsupportedModelError`, as for Rescale.
    """

    def __init__(self, owner: str, root: Any = None) -> None:
        super().__init__(owner, root)
        self.outputs: list[Any] = []
        self.sources: list[torch.Tensor] = []
        self.source_cursor = 0
        self.reference_output: Any = None

    # ------------------------------------------------------------------ bookkeeping
    @contextmanager
    def baseline_pass(self) -> Iterator[None]:  # noqa: D102
        self.outputs = []
        self.sources = []
        with super().baseline_pass():
            yield

    @contextmanager
    def input_pass(self) -> Iterator[None]:  # noqa: D102
        self.source_cursor = 0
        try:
            with super().input_pass():
                yield
        finally:
            self.outputs, self.sources, self.reference_output = [], [], None

    def replay(self, z: torch.Tensor, func: Any, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        self.reference_output = self.outputs[self.cursor] if self.cursor < len(self.outputs) else None
        return super().replay(z, func, *others)

    def _note_sources(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for t in _tensors(args, kwargs):
            if not t.requires_grad:
                continue
            if self.replaying:
                if getattr(t, _STREAMS, None) is None:
                    self._source_streams(t)
            elif not getattr(t, _SEEN, False):
                self.sources.append(t.detach())
                setattr(t, _SEEN, True)

    def _source_streams(self, t: torch.Tensor) -> None:
        if self.source_cursor >= len(self.sources) or self.sources[self.source_cursor].shape != t.shape:
            raise UnsupportedModelError(
                f"{self.owner}: the model used different input-dependent tensors on the inputs and on the "
                f"baselines (data-dependent control flow), so RevealCancel cannot pair them; use {ALTERNATIVES}"
            )
        reference = self.sources[self.source_cursor]
        self.source_cursor += 1
        self._set(t, *resplit(t - reference))

    def streams(self, t: torch.Tensor) -> Streams:
        """The (Δ+, Δ-) streams of an input-dependent tensor."""
        entry = getattr(t, _STREAMS, None)
        if entry is None:
            self._source_streams(t)
            entry = getattr(t, _STREAMS)
        p, n, version = entry
        if version != t._version:
            raise UnsupportedModelError(
                f"{self.owner}: an input-dependent tensor was modified in place through a view (or outside the "
                f"operations the mode sees), so its positive and negative differences are lost; "
                f"rule='reveal_cancel' cannot explain this model, use rule='rescale' or {ALTERNATIVES}"
            )
        return p, n

    def _zero_streams(self, t: torch.Tensor) -> Streams:
        if _tracked(t):
            p, n = self.streams(t)
            return p.clone(), n.clone()
        zeros = torch.zeros_like(t)
        return zeros, zeros.clone()

    @staticmethod
    def _set(t: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> None:
        setattr(t, _STREAMS, (p, n, t._version))

    def finish(self, value: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """``value`` whose gradient flows to the streams (the tensor handed back to the model)."""
        if p.shape != value.shape:
            p, n = p.expand(value.shape), n.expand(value.shape)
        s = p + n
        out = value + (s - s.detach())
        self._set(out, p, n)
        return out

    def rebase(self, target: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """In-place result: ``target`` (already holding the new value) now depends on the new streams only."""
        if target.requires_grad and target.is_leaf:
            raise UnsupportedModelError(
                f"{self.owner}: the model modifies its input (or the attributed layer's output) in place; "
                f"rule='reveal_cancel' cannot track that, use rule='rescale' or {ALTERNATIVES}"
            )
        with torch.enable_grad():
            target.copy_(self.finish(target.detach().clone(), p, n))
        self._set(target, p, n)
        return target

    # ------------------------------------------------------------------ dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch protocol
        if kwargs is None:
            kwargs = {}
        self._note_sources(args, kwargs)
        if not self.replaying:
            return self._baseline_call(func, args, kwargs)
        handler = RC_HANDLERS.get(func)
        if handler is not None:
            return handler(self, func, args, kwargs)
        if func in LINEAR:
            return _generic(self, func, args, kwargs)
        out = func(*args, **kwargs)
        if not _carries_grad(out):
            return out
        if getattr(func, "__name__", None) == "__get__":  # properties: .T, .mT, .real
            return _generic(self, func, args, kwargs)
        raise self.unsupported(func)

    def _baseline_call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handler = HANDLERS.get(func)
        if handler is not None:
            out = handler(self, func, args, kwargs)
        else:
            out = func(*args, **kwargs)
            if not (func in LINEAR or not _carries_grad(out) or getattr(func, "__name__", None) == "__get__"):
                raise self.unsupported(func)
        if len(self.records) > len(self.outputs):  # a rule operation ran: keep its reference output
            first = _tensors(args, kwargs)
            snapshot = (lambda t: t.detach().clone()) if any(o is out for o in first) else (lambda t: t.detach())
            self.outputs.append(_map(out, snapshot))
        if getattr(func, "__name__", "") not in _PASS_THROUGH:  # (requires_grad_ makes a source, not a result)
            _map(out, lambda t: setattr(t, _SEEN, True) if t.requires_grad else None)
        return out

