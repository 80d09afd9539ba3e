"""LRP canonizers: rewrite a model into an equivalent form whose layers LRP's rules explain well.

:class:`MergeBatchNorm` (the default) folds every batch norm (eval mode) into the linear layer or
convolution whose output it normalises: ``BN(W a + b) = (s W) a + (s b + t)`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - s mean``, so the layer's rule sees one linear map
(Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview", section 10.4; Hui & Binder 2019,
"BatchNorm Decomposition for Deep Neural Network Interpretation").

Design: the merge is bound to the operations executed, not to the model's structure. During the LRP forward
pass, a batch norm whose input is, unmodified, the output of a linear layer or convolution *executed in the
same pass* is fused with it: the forward values are the model's own (the batch norm runs on the layer's
output), and the backward pass applies the layer's rule to the merged weights. Hence it finds
``conv -> bn`` pairs in any structure (``nn.Sequential`` or not, reused modules, ``F.batch_norm``), and it
never writes to the model: nothing to restore, parameters and buffers stay bit for bit what they were.
A batch norm with no such producer (e.g. after a residual addition) is an elementwise affine layer and gets
the composite's rule for batch norm (default: epsilon). Without ``MergeBatchNorm`` every batch norm is
treated that way.

Residual additions need no canonizer: every sum of two input-dependent tensors is split proportionally to
its terms (see :mod:`lumos.methods.propagation.lrp.graph`).

:class:`Canonizer` is the base class of user canonizers that DO rewrite the model: override
:meth:`Canonizer.rewrite`; :meth:`Canonizer.applied` restores parameters, buffers, submodules (and their
hooks) exactly on exit, also when the explanation raised.

Example::

    LRP(model, canonizers=[MergeBatchNorm()])   # the default
    LRP(model, canonizers=[])                   # batch norm explained as its own affine layer
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class Canonizer:
    """Base class: a temporary, exactly undone rewrite of the model (see :meth:`applied`)."""

    #: whether the forward pass fuses batch norms into their producing layers (see :class:`MergeBatchNorm`)
    merges_batch_norm: bool = False

    def rewrite(self, model: nn.Module) -> None:
        """Rewrite ``model`` in place (parameters, buffers, submodules); undone by :meth:`applied`."""

    @contextlib.contextmanager
    def applied(self, model: Any) -> Iterator[None]:
        """``rewrite(model)`` inside the block; on exit every module's parameters, buffers and children are
        the original objects again, with their original values, even when the block raised."""
        if type(self).rewrite is Canonizer.rewrite or not isinstance(model, nn.Module):
            yield  # nothing rewritten: nothing to save
            return
        saved = []
        for module in model.modules():
            values = {k: (v, v.detach().clone()) for k, v in (*module._parameters.items(), *module._buffers.items())
                      if v is not None}
            saved.append((module, dict(module._parameters), dict(module._buffers), dict(module._modules), values))
        try:
            self.rewrite(model)
            yield
        finally:
            with torch.no_grad():
                for module, params, buffers, children, values in saved:
                    module._parameters.clear()
                    module._parameters.update(params)
                    module._buffers.clear()
                    module._buffers.update(buffers)
                    module._modules.clear()
                    module._modules.update(children)
                    for tensor, value in values.values():
                        if tensor.shape != value.shape or tensor.dtype != value.dtype:
                            tensor.data = value
                        elif not torch.equal(tensor, value):
                            tensor.copy_(value)

    def describe(self) -> str:
        return type(self).__name__ + "()"

    def __repr__(self) -> str:
        return self.describe()


class MergeBatchNorm(Canonizer):
    """Fold eval-mode batch norm into the preceding linear layer / convolution, per executed operation.

    ``BN(W a + b) = (s W) a + (s b + t)``, ``s = gamma / sqrt(running_var + eps)``, ``t = beta - s running_mean``.
    The model is never modified (see the module docstring).
    """

    merges_batch_norm = True
