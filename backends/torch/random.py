"""Gumbel noise from torch's own generator (SPEC S1.6)."""

from __future__ import annotations

import torch

__all__ = ["gumbel_like"]

_GRID = 2**52
"""``u = (k + 1/2) / 2**52`` for integer ``k`` in ``[0, 2**52)`` is an exact float64 strictly
inside ``(0, 1)``: ``2**-53 <= u <= 1 - 2**-53``."""


def gumbel_like(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Standard Gumbel noise ``g = -log(-log u)`` of ``x``'s shape, dtype and device.

    ``k`` is drawn uniformly from the integers ``[0, 2**52)`` by ``torch.randint`` with a
    ``torch.Generator(device=x.device)`` seeded with ``seed``, and
    ``u = (k + 1/2) / 2**52``.  Every such ``u`` is exact in float64 and lies on the open
    interval (``2**-53 <= u <= 1 - 2**-53``), so no value is clamped and
    ``-3.6 <= g <= 36.7`` is finite.  ``g`` is computed in float64 on the device, then
    cast to ``x.dtype``.  The same seed on the same device gives the same numbers.

    Parameters
    ----------
    x : torch.Tensor
        Template for shape, dtype and device.
    seed : int
        Non-negative seed of the generator.

    Returns
    -------
    torch.Tensor like ``x``, with ``P(g <= t) = exp(-exp(-t))``

    Examples
    --------
    >>> g = gumbel_like(torch.zeros(2, 4), seed=0)
    >>> g.shape, g.dtype
    (torch.Size([2, 4]), torch.float32)
    """
    gen = torch.Generator(device=x.device)
    gen.manual_seed(int(seed))
    k = torch.randint(0, _GRID, x.shape, generator=gen, dtype=torch.int64, device=x.device)
    u = k.to(torch.float64).add_(0.5).div_(_GRID)  # in place: one float64 temporary
    return u.log_().neg_().log_().neg_().to(x.dtype)
