"""The masked weight of one PyTorch layer: ``W_eff = W * mask`` with the method's
gradients (SPEC S5.3, S5.4, S6.0).

`NMMask` is a ``torch.nn.utils.parametrize`` parametrization registered on the
``weight`` of a masked ``nn.Linear`` / ``nn.ConvNd``.  It holds no parameter and no
buffer: the mask of the current step comes from a `MaskSource` (the
`spikenm.backends.torch.nn_handle.SpikeNMHandle`), so the user's optimizer sees the
layer's own parameters only and ``model.state_dict()`` keeps its usual tensors (the
weight as ``<layer>.parametrizations.weight.original``).

In train mode with gradients enabled, ``module.weight`` is `MaskedWeight`: the forward
value is ``W * mask``; the backward pass hands ``G = dL/dW_eff`` to the source, which
accumulates it (the mask-parameter gradient ``dL/dmask = G * W`` of S5.4 is taken from
that sum once per step) and returns ``dL/dW`` as the method defines it
(`spikenm.methods.base.Method.weight_grads`: ``G * mask`` for SpikeNM, the
straight-through rule of SR-STE, S6.4).  Every access -- the ``T`` calls of a spiking
network, several forward passes of a gradient accumulation -- uses the same mask of the
step.  Otherwise (eval mode, ``torch.no_grad()``) ``module.weight`` is the plain product
with the mask the source gives for that mode.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

__all__ = ["NMMask", "MaskedWeight", "MaskSource"]


class MaskSource(Protocol):
    """What `NMMask` asks for (implemented by the handle)."""

    def layer_mask(self, layer: int, training: bool) -> torch.Tensor | None:
        """The framework-layout mask of ``layer`` for the mode (``None``: dense)."""

    def weight_backward(self, layer: int, weight: torch.Tensor, mask: torch.Tensor,
                        grad: torch.Tensor) -> torch.Tensor:
        """Record ``G = grad`` and return ``dL/dW``."""


class MaskedWeight(torch.autograd.Function):
    """``W_eff = W * mask``; backward: ``source.weight_backward(layer, W, mask, G)``."""

    @staticmethod
    def forward(weight: torch.Tensor, mask: torch.Tensor, source: Any,  # type: ignore[override]
                layer: int) -> torch.Tensor:
        return weight * mask

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        weight, mask, source, layer = inputs
        ctx.save_for_backward(weight, mask)
        ctx.source, ctx.layer = source, layer

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        weight, mask = ctx.saved_tensors
        return ctx.source.weight_backward(ctx.layer, weight, mask, grad), None, None, None


class NMMask(nn.Module):
    """Parametrization ``W -> W * mask`` with the mask of a `MaskSource` (module docstring).

    Parameters
    ----------
    source : MaskSource
        Gives the masks and takes the gradients.
    layer : int
        Layer ordinal of this weight (S4.14, S5.2).
    n, m : int
        The pattern, for the representation.
    """

    def __init__(self, source: MaskSource, layer: int, n: int, m: int) -> None:
        super().__init__()
        self.source = source
        self.layer = int(layer)
        self.n, self.m = int(n), int(m)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight * mask`` of the current step and mode (the weight itself when the
        method has no mask at this step)."""
        mask = self.source.layer_mask(self.layer, self.training)
        if mask is None:
            return weight
        if self.training and torch.is_grad_enabled():
            return MaskedWeight.apply(weight, mask, self.source, self.layer)
        return weight * mask

    def extra_repr(self) -> str:
        return f"layer={self.layer}, n={self.n}, m={self.m}"
