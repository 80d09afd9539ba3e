"""The TorchFunctionMode that applies DeepLIFT's operation table.

Every torch function call the model makes during a DeepLIFT pass goes through :class:`DeepLiftRules`: an
operation with a rule (elementwise nonlinearities, max pooling, products of activations, softmax and
normalisers; the table of :mod:`.deeplift_table`, the autograd Functions of :mod:`.multipliers`) is
replaced by its rule; a linear operation (:func:`lumos.core.op_override.linear_ops`) runs as it is; any
other operation on an input-dependent tensor raises :class:`~lumos.errors.UnsupportedModelError` naming it
and the methods that work instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import UnsupportedModelError
from .deeplift_table import ALTERNATIVES, HANDLERS, LINEAR

__all__ = ["ALTERNATIVES", "HANDLERS", "LINEAR", "DeepLiftRules", "SharedBaselineMismatch", "op_name"]


# ---------------------------------------------------------------------------------------------- the mode


class DeepLiftRules(TorchFunctionMode):
    """Binds DeepLIFT's rules to the operations a model executes (modules, ``F.*`` and tensor methods alike).

    Used twice per chunk of samples: in :meth:`baseline_pass` every rule operation records its input-dependent
    operands (and runs without a graph); in :meth:`input_pass` the same operations, met in the same order,
    replay those records as ``z'`` and apply their rule. Operations in the linear allow-list run unchanged;
    any other operation whose result depends on the input raises :class:`UnsupportedModelError` naming it.
    Whether a tensor depends on the input is read from ``requires_grad`` (the model's parameters are frozen
    during the passes, the inputs or the layer's output are the only leaves that require gradients).
    """

    def __init__(self, owner: str, root: nn.Module | None = None) -> None:
        super().__init__()
        self.owner = owner
        self.root = root
        self.replaying = False
        self.records: list[tuple[tuple[Any, ...], tuple[int, ...]]] = []
        self.cursor = 0
        self.error: UnsupportedModelError | None = None
        #: the baseline pass ran on one row that every explained row shares (records broadcast over the batch)
        self.shared = False

    @contextmanager
    def _active(self) -> Iterator[None]:
        """The mode inside the block; an unsupported-operation error wins over what the model made of it.

        (torch's binary operators turn a TypeError, which UnsupportedModelError is, into NotImplemented, and
        the model adapter wraps other errors; the error raised first is the one that explains the failure.)
        """
        self.error = None
        try:
            with self:
                yield
        except Exception as exc:
            error, self.error = self.error, None
            if error is not None and exc is not error:
                raise error from None
            raise

    # ------------------------------------------------------------------ passes
    @contextmanager
    def baseline_pass(self) -> Iterator[None]:
        """Record the rule operations' operands of the baseline rows."""
        self.records = []
        self.replaying = False
        with self._active():
            yield

    @contextmanager
    def input_pass(self) -> Iterator[None]:
        """Apply the rules to the explained rows, pairing each operation with its baseline record."""
        self.replaying = True
        self.cursor = 0
        try:
            with self._active():
                yield
            if self.cursor != len(self.records):
                raise UnsupportedModelError(
                    f"{self.owner}: the model ran {self.cursor} rule operations on the inputs but "
                    f"{len(self.records)} on the baselines (data-dependent control flow); use {ALTERNATIVES}"
                )
        finally:
            self.records = []
            self.replaying = False

    def record(self, *tensors: torch.Tensor) -> None:
        self.records.append((tensors, tuple(t._version for t in tensors)))

    def replay(self, z: torch.Tensor, func: Any, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The baseline's operands of the next rule operation (checked against ``z``'s shape)."""
        if self.cursor >= len(self.records):
            raise self._mismatch(func)
        tensors, versions = self.records[self.cursor]
        self.cursor += 1
        if not (self._fits(tensors[0], z) and all(self._fits(t, o) for o, t in zip(others, tensors[1:], strict=False))):
            if self.shared:
                raise SharedBaselineMismatch(f"{self.owner}: {op_name(func)} is not batched along dimension 0")
            raise self._mismatch(func)
        if any(t._version != v for t, v in zip(tensors, versions, strict=True)):
            raise UnsupportedModelError(
                f"{self.owner}: the input of {op_name(func)} was modified in place after the operation ran, "
                f"so its reference value is lost; use {ALTERNATIVES}"
            )
        return tuple(t.detach() for t in tensors)

    def _fits(self, reference: torch.Tensor, live: torch.Tensor) -> bool:
        """The recorded operand pairs with the live one: same shape, or one shared row of the same sample shape."""
        if reference.shape == live.shape:
            return True
        return (self.shared and reference.ndim == live.ndim and reference.ndim > 0 and reference.shape[0] == 1
                and reference.shape[1:] == live.shape[1:])

    def _mismatch(self, func: Any) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{self.owner}: the model ran different operations on the inputs and on the baselines (at "
            f"{op_name(func)}; data-dependent control flow), so DeepLIFT cannot pair them; use {ALTERNATIVES}"
        )

    # ------------------------------------------------------------------ dispatch
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch protocol
        if kwargs is None:
            kwargs = {}
        handler = HANDLERS.get(func)
        if handler is not None:
            return handler(self, func, args, kwargs)
        out = func(*args, **kwargs)
        if func in LINEAR or not _carries_grad(out) or getattr(func, "__name__", None) == "__get__":
            return out
        raise self.unsupported(func)

    def unsupported(self, func: Any, what: str | None = None) -> UnsupportedModelError:
        where = self._module_name()
        error = UnsupportedModelError(
            f"{self.owner}: the model applies {op_name(func)}{where} to an input-dependent tensor"
            f"{' (' + what + ')' if what else ''}; DeepLIFT has no rule for this operation, so its attributions "
            f"would not sum to f(x) - f(baseline). Use {ALTERNATIVES}."
        )
        if self.error is None:
            self.error = error
        return error

    def _module_name(self) -> str:
        """`` in module 'name' (Type)`` of the innermost module whose forward is running, if found."""
        if self.root is None:
            return ""
        names = {id(m): n for n, m in self.root.named_modules()}
        frame = sys._getframe(1)
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, nn.Module) and id(candidate) in names:
                name = names[id(candidate)] or "<model>"
                return f" in module {name!r} ({type(candidate).__name__})"
            frame = frame.f_back
        return ""


class SharedBaselineMismatch(UnsupportedModelError):
    """The model does not run a one-row baseline like a batch row (an operand not batched along dimension 0):
    raised in a shared-baseline pass, caught by DeepLIFT, which then runs the baseline for every row."""


def _carries_grad(out: Any) -> bool:
    if isinstance(out, torch.Tensor):
        return out.requires_grad
    if isinstance(out, (tuple, list)):
        return any(isinstance(t, torch.Tensor) and t.requires_grad for t in out)
    return False


def op_name(func: Any) -> str:
    """A readable name for a torch function (``torch.exp``, ``Tensor.exp``, ``torch.nn.functional.gelu``)."""
    name = getattr(func, "__name__", None) or repr(func)
    qualname = getattr(func, "__qualname__", "") or ""
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None)
    if module in (None, "torch._C._VariableFunctions", "torch._C", "torch._VariableFunctionsClass"):
        module = "torch"
    if module == "torch._C._nn":
        module = "torch.nn.functional"
    return f"{module}.{name}"
