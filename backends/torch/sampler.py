"""The N:M mask sampler on torch tensors (SPEC S1.1-S1.5, S1.7).

Forward functions are written with differentiable torch ops, so autograd gives the
gradients of SPEC S1.5; the ``*_vjp`` functions run ``torch.func.vjp`` over the same
forward functions instead of a second, hand-written formula.
"""

from __future__ import annotations

import torch

from .arrays import as_cotangent
from .blocks import from_blocks, softmax_block, to_blocks

__all__ = [
    "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
]


def topn_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Hard top-n mask of every block of ``m`` along the last axis (SPEC S1.2).

    Entry ``i`` of a block ``v`` is kept iff

    ``rank_i = #{j : v_j > v_i} + #{j < i : v_j == v_i} < n``

    so ties go to the lower index and every block keeps exactly ``n`` entries.  The rank
    is accumulated over ``j`` with one comparison of the block against its ``j``-th entry
    per step: memory ``O(K)``, a fixed number of steps, no sort, deterministic on every
    device.  The result has the dtype of ``scores`` (values 0 and 1) and no gradient.

    Examples
    --------
    >>> topn_mask(torch.tensor([0.3, 0.1, 0.3, 0.2]), 2, 4)
    tensor([1., 0., 1., 0.])
    """
    v = to_blocks(scores.detach(), m)
    position = torch.arange(m, device=v.device)
    rank = torch.zeros(v.shape, dtype=torch.int32, device=v.device)
    for j in range(m):
        vj = v[..., j : j + 1]
        before = (vj > v) | ((vj == v) & (position > j))
        rank = rank + before.to(torch.int32)
    return from_blocks((rank < n).to(scores.dtype))


def relaxed_topn(scores: torch.Tensor, n: int, m: int, temperature: float) -> torch.Tensor:
    """Successive-softmax relaxation of top-n per block (SPEC S1.3).

    ``alpha_1 = v``; for ``j = 1..n``: ``a_j = softmax_block(alpha_j / tau)``,
    ``alpha_{j+1} = alpha_j + log(1 - a_j)``, or ``-inf`` where ``a_j`` rounds to 1;
    returns ``s = sum_j a_j``.  The ``-inf`` branch is a ``torch.where`` whose other
    branch takes the log of a safe value, so autograd gives it a zero derivative without
    a 0 * inf, exactly as SPEC S1.5 states.  ``alpha_{n+1}`` does not enter ``s`` and is
    not computed.

    Examples
    --------
    >>> s = relaxed_topn(torch.tensor([3.0, 0.0, 2.0, -1.0]), 2, 4, 0.1)
    >>> torch.round(s, decimals=3)
    tensor([1., 0., 1., 0.])
    """
    alpha = to_blocks(scores, m)
    s = torch.zeros_like(alpha)
    for j in range(n):
        a = softmax_block(alpha / temperature)
        s = s + a
        if j + 1 < n:
            rest = 1.0 - a
            alive = rest > 0
            step = torch.log(torch.where(alive, rest, torch.ones_like(rest)))
            alpha = torch.where(alive, alpha + step, torch.full_like(alpha, -torch.inf))
    return from_blocks(s)


def sample_mask(
    logits: torch.Tensor, noise: torch.Tensor, n: int, m: int,
    temperature: float, scale: float, hard: bool,
) -> torch.Tensor:
    """N:M mask from logits and Gumbel noise (SPEC S1.1, S1.3, S1.4).

    Keys ``r = scale * logits + noise``; soft mask ``s = relaxed_topn(r)``.  With
    ``hard=True`` the result is ``h + (s - s.detach())`` with ``h = topn_mask(r)``: its
    values are exactly ``h`` and its gradient is that of ``s`` (straight-through); with
    ``hard=False`` it is ``s``.  Autograd then gives ``scale * VJP_s`` to the logits
    (SPEC S1.5); the noise receives no gradient.

    Examples
    --------
    >>> logits = torch.zeros(2, 8)
    >>> noise = torch.linspace(-1.0, 1.0, 16).reshape(2, 8)
    >>> sample_mask(logits, noise, 2, 4, 1.0, 1.0, True)
    tensor([[0., 0., 1., 1., 0., 0., 1., 1.],
            [0., 0., 1., 1., 0., 0., 1., 1.]])
    """
    keys = scale * logits + noise.detach()
    s = relaxed_topn(keys, n, m, temperature)
    if not hard:
        return s
    return topn_mask(keys, n, m) + (s - s.detach())


def block_probs(logits: torch.Tensor, m: int, scale: float) -> torch.Tensor:
    """Per-block probabilities ``p = softmax_block(scale * logits)`` (SPEC S1.7).

    Examples
    --------
    >>> block_probs(torch.zeros(4), 4, 1.0)
    tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    return from_blocks(softmax_block(to_blocks(scale * logits, m)))


def sample_mask_vjp(
    logits: torch.Tensor, noise: torch.Tensor, n: int, m: int,
    temperature: float, scale: float, hard: bool, cotangent: torch.Tensor,
) -> torch.Tensor:
    """``cotangent``-weighted gradient of `sample_mask` to the logits (SPEC S1.5).

    ``torch.func.vjp`` of `sample_mask` itself, so this is ``scale * VJP_s(cotangent)``
    for both values of ``hard``; it works under ``torch.no_grad`` too.

    Examples
    --------
    >>> g = sample_mask_vjp(torch.zeros(4), torch.zeros(4), 2, 4, 1.0, 1.0, True,
    ...                     torch.ones(4))
    >>> torch.allclose(g, torch.zeros(4), atol=1e-6)
    True
    """
    noise = noise.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return sample_mask(x, noise, n, m, temperature, scale, hard)

    x = logits.detach()
    _, pullback = torch.func.vjp(forward, x)
    return pullback(as_cotangent(cotangent, x))[0]


def relaxed_topn_vjp(
    scores: torch.Tensor, n: int, m: int, temperature: float, cotangent: torch.Tensor,
) -> torch.Tensor:
    """``cotangent``-weighted gradient of `relaxed_topn` to the scores (SPEC S1.5,
    ``VJP_s``), by ``torch.func.vjp`` of `relaxed_topn`.

    Examples
    --------
    >>> g = relaxed_topn_vjp(torch.zeros(4), 2, 4, 1.0, torch.ones(4))
    >>> torch.allclose(g, torch.zeros(4), atol=1e-6)
    True
    """

    def forward(x: torch.Tensor) -> torch.Tensor:
        return relaxed_topn(x, n, m, temperature)

    x = scores.detach()
    _, pullback = torch.func.vjp(forward, x)
    return pullback(as_cotangent(cotangent, x))[0]
