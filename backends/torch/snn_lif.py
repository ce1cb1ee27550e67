"""LIF neurons on torch tensors (SPEC S4.3-S4.5): the spike with its ATan surrogate
gradient, and the LIF recurrence over time.

The equations are those of `spikenm.snn.neuron` (one forward step `lif_step`, the
surrogate `surrogate`); here the spike is a `torch.autograd.Function` whose backward is
the surrogate, and autograd through `lif_step` gives exactly S4.5:
``dV_t/dH_t = (1 - S_t) - H_t sigma'(H_t)`` (hard) or ``1 - theta sigma'(H_t)`` (soft),
without the ``sigma'`` term when the reset is detached.
"""

from __future__ import annotations

from typing import Any

import torch

from spikenm.snn.neuron import LIFParams, lif_step, surrogate

__all__ = ["ATanSpike", "spike", "lif_over_time"]


class ATanSpike(torch.autograd.Function):
    """Heaviside step ``S = [H >= theta]`` whose backward pass is the ATan surrogate
    ``sigma'(H)`` of S4.4 (`spikenm.snn.neuron.surrogate`)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, lif: LIFParams) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.lif = lif
        return (h >= lif.theta).to(h.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (h,) = ctx.saved_tensors
        return grad * surrogate(h, ctx.lif), None


def spike(h: torch.Tensor, lif: LIFParams) -> torch.Tensor:
    """``[h >= lif.theta]`` in ``h``'s dtype, with the ATan surrogate gradient (S4.3, S4.4).

    Examples
    --------
    >>> h = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    >>> s = spike(h, LIFParams(theta=1.0, alpha=2.0)); s.sum().backward()
    >>> s.tolist(), round(h.grad[1].item(), 6)
    ([0.0, 1.0, 1.0], 1.0)
    """
    return ATanSpike.apply(h, lif)


def lif_over_time(current: torch.Tensor, lif: LIFParams, potentials: list[torch.Tensor]
                  | None = None) -> torch.Tensor:
    """Spikes ``S`` ``(T, B, ...)`` of LIF neurons driven by currents ``I`` ``(T, B, ...)``.

    `spikenm.snn.neuron.lif_step` for ``t = 1..T`` from ``V_0 = 0`` (S4.3), the spike
    being `spike`; the reset's spike is detached when ``lif.detach_reset`` (S4.5).  With
    ``potentials`` (a list), the membrane potentials ``H_t`` are appended to it (detached),
    one ``(B, ...)`` tensor per step.

    Examples
    --------
    >>> lif = LIFParams(beta=0.5, theta=1.0, time_steps=3)
    >>> lif_over_time(torch.full((3, 1), 0.7), lif).flatten().tolist()
    [0.0, 1.0, 0.0]
    """
    v = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        h, s, v = lif_step(v, current[t], lif, lambda a: spike(a, lif), torch.detach)
        if potentials is not None:
            potentials.append(h.detach())
        out.append(s)
    return torch.stack(out)
