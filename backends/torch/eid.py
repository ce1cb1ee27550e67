"""Eligibility-inspired distillation on torch tensors (SPEC S2.1-S2.7).

`eid_loss` is written with differentiable torch ops and detached targets, so autograd
gives SPEC S2.7; `eid_loss_vjp` is ``torch.func.vjp`` of `eid_loss`.
"""

from __future__ import annotations

import torch

from .arrays import as_cotangent
from .blocks import from_blocks, log_softmax_block, softmax_block, to_blocks

__all__ = ["eligibility_credit", "eid_targets", "eid_loss", "eid_loss_vjp"]

_MEAN_FLOOR = 1e-12
"""Added to ``mean(C)`` in SPEC S2.5."""


def eligibility_credit(
    x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, decay: float,
) -> torch.Tensor:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t``;
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``.

    The inner sum is ``d_t^T e_t`` (one ``(O, B) @ (B, K)`` product per step); the sum
    over ``t`` is accumulated, so memory stays ``O(O * K + B * K)``.

    Parameters
    ----------
    x : torch.Tensor ``(T, B, K)``
    d : torch.Tensor ``(T, B, O)``
    weight : torch.Tensor ``(O, K)``
    decay : float in [0, 1]

    Returns
    -------
    torch.Tensor ``(O, K)``, non-negative

    Examples
    --------
    >>> x = torch.ones(2, 1, 4); d = torch.ones(2, 1, 1); w = torch.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)
    tensor([[5., 5., 5., 5.]])
    """
    trace = torch.zeros_like(x[0])
    total = torch.zeros_like(weight)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t]
        total = total + torch.abs(d[t].transpose(0, 1) @ trace)
    return torch.abs(weight) * total


def eid_targets(credits: torch.Tensor, m: int, temperature: float) -> torch.Tensor:
    """Block-wise soft targets from running credits (SPEC S2.5).

    ``z = C / (mean(C) + 1e-12)`` with the mean over every entry, then
    ``q_block = softmax_block(z_block / temperature)``.

    Examples
    --------
    >>> eid_targets(torch.ones(4), 4, 1.0)
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    z = credits / (torch.mean(credits) + _MEAN_FLOOR)
    return from_blocks(softmax_block(to_blocks(z, m) / temperature))


def eid_loss(
    logits: torch.Tensor, targets: torch.Tensor, m: int, scale: float,
) -> torch.Tensor:
    """Mean block KL divergence ``KL(q || p)`` with ``p = softmax_block(scale * logits)``
    (SPEC S2.6).

    ``L = (1/G) * sum_blocks sum_i (xlogy(q_i, q_i) - q_i * log p_i)``, ``G`` the number of
    blocks; ``xlogy`` makes ``0 * log 0 = 0``.  The targets are detached, so autograd
    gives ``dL/dlogits = scale * (p * sum_block(q) - q) / G`` (SPEC S2.7) and nothing to
    the targets.  Returns a 0-d tensor of the logits' dtype.

    Examples
    --------
    >>> float(eid_loss(torch.zeros(4), torch.full((4,), 0.25), 4, 1.0))
    0.0
    """
    q = targets.detach()
    log_p = log_softmax_block(to_blocks(scale * logits, m))
    blocks = log_p.numel() // m
    return torch.sum(torch.xlogy(q, q) - q * from_blocks(log_p)) / blocks


def eid_loss_vjp(
    logits: torch.Tensor, targets: torch.Tensor, m: int, scale: float,
    cotangent: torch.Tensor,
) -> torch.Tensor:
    """``cotangent`` (0-d tensor or real number) times the gradient of `eid_loss` to the logits (SPEC S2.7),
    by ``torch.func.vjp`` of `eid_loss`.

    Examples
    --------
    >>> g = eid_loss_vjp(torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, 1.0,
    ...                  torch.tensor(1.0))
    >>> g
    tensor([-0.7500,  0.2500,  0.2500,  0.2500])
    """
    q = targets.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return eid_loss(x, q, m, scale)

    x = logits.detach()
    _, pullback = torch.func.vjp(forward, x)
    return pullback(as_cotangent(cotangent, x))[0]
