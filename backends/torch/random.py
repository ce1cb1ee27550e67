"""Gumbel noise from torch's own generator (SPEC S1.6)."""

from __future__ import annotations

import torch

__all__ = ["gumbel_like"]

_U_MAX = 1.0 - 2.0**-53
"""Largest float64 below 1: the upper end of the open interval."""


def gumbel_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Standard Gumbel noise ``g = -log(-log u)`` of ``x``'s shape, dtype and device.

    ``u`` is drawn in float64 with a ``torch.Generator(device=x.device)`` seeded with
    ``seed``; torch draws float64 uniforms on the grid ``k * 2**-53``.  ``u`` is then
    clamped into ``[tiny, 1 - 2**-53]`` (``tiny = 2**-1022``), which makes the interval
    open: the clamp changes only the value ``u = 0`` (probability ``2**-53``) and, on
    devices whose generator returns ``(0, 1]``, ``u = 1``.  The noise is computed in
    float64, then cast to ``x.dtype``; it is finite (``-6.56 <= g <= 36.8``).  The same
    seed on the same device gives the same numbers.

    Parameters
    ----------
    x : torch.Tensor
        Template for shape, dtype and device.
    seed : int
        Non-negative seed of the generator.

    Returns
    -------
    torch.Tensor like ``x``

    Examples
    --------
    >>> g = gumbel_like(torch.zeros(2, 4), seed=0)
    >>> g.shape, g.dtype
    (torch.Size([2, 4]), torch.float32)
    """
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64, device=x.device)
    u = u.clamp(torch.finfo(torch.float64).tiny, _U_MAX)
    return (-torch.log(-torch.log(u))).to(x.dtype)
