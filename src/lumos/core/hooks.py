"""Hook manager: hooks exist only inside a ``with`` block and are removed in ``finally``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class HookSet:
    """Registers forward hooks and removes every one of them on exit, even when the body raised.

    Example::

        with HookSet() as hooks:
            hooks.forward(layer, capture)
            model(x)
        # no hook is left on layer here
    """

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def forward(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        """Register ``hook(module, args, output)`` (may return a replacement output)."""
        handle = module.register_forward_hook(hook)
        self._handles.append(handle)
        return handle

    def forward_pre(self, module: nn.Module, hook: Callable[..., Any]) -> RemovableHandle:
        handle = module.register_forward_pre_hook(hook)
        self._handles.append(handle)
        return handle

    def tensor(self, tensor: torch.Tensor, hook: Callable[[torch.Tensor], Any]) -> RemovableHandle:
        handle = tensor.register_hook(hook)
        self._handles.append(handle)
        return handle

    def remove_all(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> HookSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_all()


def count_hooks(model: nn.Module) -> int:
    """Number of hooks registered on ``model`` and its submodules (used by the contract tests)."""
    total = 0
    for module in model.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
        ):
            total += len(getattr(module, name, {}) or {})
    return total
