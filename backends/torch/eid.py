"""Eligibility-inspired distillation on torch tensors (SPEC S2.1-S2.10).

`eid_loss` is written with differentiable torch ops and detached targets, so autograd
gives SPEC S2.7; `eid_loss_vjp` is ``torch.func.vjp`` of `eid_loss`.  `credit_scores`
(S2.10) and `stop_gradient` are the primitives the target variants of S2.11 are built
from (`spikenm.eid_variants`).  Nothing here leaves the device or reads a value on the
host.
"""

from __future__ import annotations

import torch

from .arrays import as_cotangent
from .blocks import (ROWS_UP_TO, from_blocks, from_rows, log_softmax_block, row_sum,
                     softmax_block, to_blocks, to_rows)

__all__ = [
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss", "eid_loss_vjp",
    "stop_gradient",
]

_MEAN_FLOOR = 1e-12
"""Added to ``mean(C)`` in SPEC S2.5."""


def eligibility_credit(
    x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, decay: float,
    signed: bool = False,
) -> torch.Tensor:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3, S2.9).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t``;
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``, or with ``signed``
    ``c[o, k] = |W[o, k]| * | sum_t sum_b d_t[b, o] * e_t[b, k] |`` (S2.9: the time sum
    comes first, so contributions of alternating sign cancel).

    The inner sum is ``d_t^T e_t`` (one ``(O, B) @ (B, K)`` product per step); the sum
    over ``t`` is accumulated, so memory stays ``O(O * K + B * K)``.

    Parameters
    ----------
    x : torch.Tensor ``(T, B, K)``
    d : torch.Tensor ``(T, B, O)``
    weight : torch.Tensor ``(O, K)``
    decay : float in [0, 1]
    signed : bool
        Sum over time before the absolute value (S2.9).

    Returns
    -------
    torch.Tensor ``(O, K)``, non-negative

    Examples
    --------
    >>> x = torch.ones(2, 1, 4); d = torch.ones(2, 1, 1); w = torch.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)
    tensor([[5., 5., 5., 5.]])
    >>> eligibility_credit(x, torch.tensor([[[1.0]], [[-1.0]]]), w, 0.5, signed=True)
    tensor([[1., 1., 1., 1.]])
    """
    trace = torch.zeros_like(x[0])
    total = torch.zeros_like(weight)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t]
        step = d[t].transpose(0, 1) @ trace
        total = total + (step if signed else torch.abs(step))
    if signed:
        total = torch.abs(total)
    return torch.abs(weight) * total


def credit_scores(credits: torch.Tensor, m: int, gated: bool) -> torch.Tensor:
    """Scale-free block scores of a running credit, optionally gated (SPEC S2.10).

    ``z_i = C_i / mean_b`` with ``mean_b = sum_block(C) / m`` (0 in an all-zero block);
    with ``gated`` every entry is multiplied by ``g_b = E_b / (E_b + E_med)``,
    ``E_b = sum_block(C)`` and ``E_med`` the lower median of ``E`` over every block of
    the array (``torch.median``, which returns the element of rank ``(G - 1) // 2``),
    ``g_b = 0`` where ``E_b + E_med = 0``.  Every step is a tensor operation: no value
    goes to the host.

    Parameters
    ----------
    credits : torch.Tensor ``(..., K)``, non-negative
    m : int
    gated : bool

    Returns
    -------
    torch.Tensor of ``credits``' shape, dtype and device

    Examples
    --------
    >>> credit_scores(torch.tensor([1.0, 3.0, 0.0, 0.0, 2e-9, 0.0]), 2, False)
    tensor([0.5000, 1.5000, 0.0000, 0.0000, 2.0000, 0.0000])
    >>> credit_scores(torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 2.0]), 2, True)  # E_med = 4
    tensor([0.2500, 0.7500, 0.0000, 0.0000, 0.5000, 0.5000])
    """
    rows = m <= ROWS_UP_TO and credits.numel() > 0
    c = to_rows(credits, m) if rows else to_blocks(credits, m)
    mass = row_sum(c) if rows else torch.sum(c, dim=-1, keepdim=True)
    mean = mass / m
    live = mean > 0
    z = torch.where(live, c / torch.where(live, mean, torch.ones_like(mean)),
                    torch.zeros_like(c))
    if gated and mass.numel() > 0:
        median = torch.median(mass.reshape(-1))
        total = mass + median
        positive = total > 0
        gate = torch.where(positive, mass / torch.where(positive, total, torch.ones_like(total)),
                           torch.zeros_like(total))
        z = z * gate
    return from_rows(z, credits) if rows else from_blocks(z)


def stop_gradient(x: torch.Tensor) -> torch.Tensor:
    """``x`` cut from the autograd graph (``x.detach()``): the optional protocol member
    that keeps the targets of S2.11 ``gated`` constant.

    Examples
    --------
    >>> stop_gradient(torch.ones(2, requires_grad=True)).requires_grad
    False
    """
    return x.detach()


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
