"""LIF neurons on torch tensors (SPEC S4.3-S4.5): the spike function with its ATan
surrogate gradient, and the LIF recurrence over time.

Forward, for ``t = 1..T`` with ``V_0 = 0``:

    H_t = beta * V_{t-1} + I_t
    S_t = [H_t >= theta]
    V_t = H_t * (1 - S_t)          (hard reset)   or   V_t = H_t - theta * S_t   (soft)

Backward: ``dS_t/dH_t`` is replaced by the ATan surrogate

    sigma'(H) = (alpha / 2) / (1 + (pi / 2 * alpha * (H - theta))^2)

and autograd does the rest, which is exactly S4.5: ``dV_t/dH_t = (1 - S_t) - H_t sigma'(H_t)``
(hard) or ``1 - theta sigma'(H_t)`` (soft), with the ``sigma'`` term dropped when the reset
is detached.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spikenm.train.config import LIFConfig

__all__ = ["ATanSpike", "spike", "lif_over_time"]

_HALF_PI = math.pi / 2.0


class ATanSpike(torch.autograd.Function):
    """Heaviside step ``S = [H >= theta]`` whose backward pass is the ATan surrogate
    ``sigma'(H) = (alpha / 2) / (1 + (pi / 2 * alpha * (H - theta))^2)`` (S4.4)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, theta: float, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.theta = theta
        ctx.alpha = alpha
        return (h >= theta).to(h.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (h,) = ctx.saved_tensors
        u = (_HALF_PI * ctx.alpha) * (h - ctx.theta)
        return grad * ((ctx.alpha / 2.0) / (1.0 + u * u)), None, None


def spike(h: torch.Tensor, theta: float, alpha: float) -> torch.Tensor:
    """``[h >= theta]`` as ``h``'s dtype, with the ATan surrogate gradient (S4.3, S4.4).

    Examples
    --------
    >>> h = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    >>> s = spike(h, 1.0, 2.0); s.sum().backward()
    >>> s.tolist(), round(h.grad[1].item(), 6)
    ([0.0, 1.0, 1.0], 1.0)
    """
    return ATanSpike.apply(h, theta, alpha)


def lif_over_time(current: torch.Tensor, lif: LIFConfig) -> torch.Tensor:
    """Spikes ``S`` ``(T, B, ...)`` of LIF neurons driven by currents ``I`` ``(T, B, ...)``.

    ``H_t = beta V_{t-1} + I_t``, ``S_t = [H_t >= theta]``, hard reset
    ``V_t = H_t (1 - S_t)`` or soft reset ``V_t = H_t - theta S_t`` (S4.3).  With
    ``lif.detach_reset`` the ``S_t`` of the reset term carries no gradient (S4.5).

    Examples
    --------
    >>> lif = LIFConfig(beta=0.5, theta=1.0, time_steps=3)
    >>> lif_over_time(torch.full((3, 1), 0.7), lif).flatten().tolist()
    [0.0, 1.0, 0.0]
    """
    beta, theta, alpha = lif.beta, lif.theta, lif.alpha
    soft = lif.reset == "soft"
    v = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        h = beta * v + current[t]
        s = spike(h, theta, alpha)
        r = s.detach() if lif.detach_reset else s
        v = h - theta * r if soft else h * (1.0 - r)
        out.append(s)
    return torch.stack(out)
