"""The N:M mask sampler on torch tensors (SPEC S1.1-S1.5, S1.7).

`relaxed_topn` and `sample_mask` are one ``torch.autograd.Function`` each (`_Relaxed`):
the forward runs the successive softmax of SPEC S1.3 and keeps its steps ``a_j``, the
backward runs the exact reverse recursion of S1.5.  Both work in the ``(m, B)`` layout
of `blocks.to_rows` (block entries as rows), where the per-block max, sum and dot products are
elementwise operations across ``m`` rows and vectorize; the ``*_vjp`` functions run the
same two recursions without autograd.  The node traces under
``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch

from .arrays import as_cotangent
from .blocks import from_blocks, from_rows, row_sum, softmax_block, to_blocks, to_rows

__all__ = [
    "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
]


def _topn_rows(v: torch.Tensor, n: int) -> torch.Tensor:
    """Hard top-n of every column of the ``(m, B)`` layout (SPEC S1.2), as a bool
    ``(m, B)`` tensor.

    ``rank_i = #{j : v_j > v_i} + #{j < i : v_j == v_i}``.  For ``m <= 16``: one
    comparison per pair ``j < i``, ``c = [v_j >= v_i]`` counts for ``i`` (the lower index
    wins a tie) and ``1 - c = [v_i > v_j]`` for ``j`` (``m (m - 1) / 2`` row operations,
    the fewest passes over memory); for larger ``m``: per row ``i``, the two comparisons
    with the rows above and below summed over rows (``m`` operations, so the number of
    calls stays linear in ``m``).  No sort, no in-place update (so ``torch.func.vmap``
    applies).
    """
    m = v.shape[0]
    if m > 16:
        return torch.stack([
            (v[:i] >= v[i : i + 1]).sum(dim=0) + (v[i + 1 :] > v[i : i + 1]).sum(dim=0) < n
            for i in range(m)
        ])
    rows = list(v.unbind(0))
    rank: list[torch.Tensor | int] = [0] * m
    for i in range(1, m):
        for j in range(i):
            c = (rows[j] >= rows[i]).to(torch.uint8)
            rank[i] = rank[i] + c
            rank[j] = rank[j] + (1 - c)
    return torch.stack([r < n for r in rank])  # type: ignore[operator]


def _successive_rows(
    v: torch.Tensor, n: int, tau: float, keep: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Soft mask ``s`` of S1.3 on the ``(m, B)`` layout, and, with ``keep``, the steps
    ``a_1..a_n`` (each ``(m, B)``) the VJP needs (else an empty list).

    ``a_j = softmax(alpha_j / tau)`` literally (quotient in the dtype, then
    ``torch.softmax`` over the ``m`` rows, which subtracts the column maximum and
    vectorizes across the columns); ``alpha_{j+1} = alpha_j +
    log(1 - a_j)``, where ``log(0) = -inf`` is exactly S1.3's ``-inf`` rule for an entry
    with ``a_j == 1`` (``alpha`` is never ``+inf``, so no NaN).  ``alpha_{n+1}`` is not
    computed.
    """
    kept = []
    alpha = v
    s = torch.zeros_like(v)
    for j in range(n):
        a = torch.softmax(alpha / tau, dim=0)
        if keep:
            kept.append(a)
        s = s + a
        if j + 1 < n:
            alpha = alpha + torch.log(1.0 - a)
    return s, kept


def _successive_vjp_rows(
    steps: list[torch.Tensor] | tuple[torch.Tensor, ...], tau: float, cot: torch.Tensor
) -> torch.Tensor:
    """``galpha_1``, the exact reverse of S1.3 given in SPEC S1.5, on the ``(m, B)``
    layout: ``galpha_{n+1} = 0``; for ``j = n..1``:
    ``ga_j = G - galpha_{j+1} * [1 - a_j > 0] / (1 - a_j)``,
    ``galpha_j = galpha_{j+1} + a_j * (ga_j - sum_block(ga_j * a_j)) / tau``.
    Where ``a_j == 1`` the ``-inf`` branch is constant and contributes nothing; there
    every later ``a_k`` is exactly 0, so ``galpha_{j+1}`` is exactly 0 and the quotient
    by ``1 - a_j`` clamped at the smallest normal number is 0 as well: equal to the
    masked quotient of S1.5 whenever the gradients are finite (a clamp is several times
    faster than a masked select on CPU).  ``sum_block`` adds the ``m`` rows in index
    order (`blocks.row_sum`), as the reference does: in a saturated block ``ga_j - sum`` cancels
    and the order of the terms decides what is left.  The product is grouped as S1.5 writes it (``a_j * (ga_j - sum)``, not
    ``a_j * ga_j - a_j * sum`` as ``torch``'s softmax backward does: in a saturated
    block the two round differently).
    """
    galpha: torch.Tensor | None = None
    tiny = torch.finfo(cot.dtype).tiny
    for j in range(len(steps) - 1, -1, -1):
        a = steps[j]
        ga = cot if galpha is None else cot - galpha / (1.0 - a).clamp(min=tiny)
        step = a * (ga - row_sum(ga * a)) / tau
        galpha = step if galpha is None else galpha + step
    assert galpha is not None  # n >= 1
    return galpha


class _Relaxed(torch.autograd.Function):
    """``s = relaxed_topn(keys)`` (SPEC S1.3) with its exact VJP (S1.5) as one autograd
    node; with ``hard`` the values are ``topn(keys)`` (S1.2) and the gradient still that
    of ``s`` (straight-through, S1.4).  ``factor`` multiplies the gradient (the logit
    scale of S1.5 when the keys are ``scale * logits + noise``, computed inside so the
    node's input is the logits themselves).  The outputs after the first are the steps
    ``a_1..a_n`` for the backward (always returned: under ``torch.func`` transforms the
    inputs do not show ``requires_grad``; unused, they are freed with the call)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        logits: torch.Tensor, noise: torch.Tensor | None, n: int, m: int, tau: float,
        scale: float, hard: bool,
    ) -> torch.Tensor:
        keys = logits if noise is None else scale * logits + noise
        v = to_rows(keys, m)
        s, steps = _successive_rows(v, n, tau, True)
        out = _topn_rows(v, n).to(keys.dtype) if hard else s
        return (from_rows(out, keys), *steps)

    @staticmethod
    def setup_context(ctx: object, inputs: tuple, output: tuple) -> None:
        _, noise, n, m, tau, scale, _ = inputs
        ctx.tau, ctx.m = tau, m
        ctx.factor = 1.0 if noise is None else scale
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: object, cot: torch.Tensor, *_: object) -> tuple:
        g = _successive_vjp_rows(ctx.saved_tensors, ctx.tau, to_rows(cot, ctx.m))
        if ctx.factor != 1.0:
            g = ctx.factor * g
        return from_rows(g, cot), None, None, None, None, None, None


def topn_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Hard top-n mask of every block of ``m`` along the last axis (SPEC S1.2).

    Entry ``i`` of a block ``v`` is kept iff

    ``rank_i = #{j : v_j > v_i} + #{j < i : v_j == v_i} < n``

    so ties go to the lower index and every block keeps exactly ``n`` entries.  The rank
    is accumulated over ``j`` in the ``(m, B)`` layout of `blocks.to_rows` (one comparison of row
    ``j`` against the others per step): memory ``O(K)``, a fixed number of steps, no
    sort, deterministic on every device.  The result has the dtype of ``scores``
    (values 0 and 1) and no gradient.

    Examples
    --------
    >>> topn_mask(torch.tensor([0.3, 0.1, 0.3, 0.2]), 2, 4)
    tensor([1., 0., 1., 0.])
    """
    v = scores.detach()
    return from_rows(_topn_rows(to_rows(v, m), n).to(scores.dtype), v)


def relaxed_topn(scores: torch.Tensor, n: int, m: int, temperature: float) -> torch.Tensor:
    """Successive-softmax relaxation of top-n per block (SPEC S1.3).

    ``alpha_1 = v``; for ``j = 1..n``: ``a_j = softmax_block(alpha_j / tau)``,
    ``alpha_{j+1} = alpha_j + log(1 - a_j)``, or ``-inf`` where ``a_j`` rounds to 1;
    returns ``s = sum_j a_j``.  Forward and backward are one ``torch.autograd.Function``
    computed in the ``(m, B)`` layout of `blocks.to_rows`; the forward keeps ``a_1..a_n`` and the
    backward is the exact reverse recursion of SPEC S1.5 (the ``-inf`` branch has zero
    derivative).  Traceable by ``torch.compile(fullgraph=True)``.

    Examples
    --------
    >>> s = relaxed_topn(torch.tensor([3.0, 0.0, 2.0, -1.0]), 2, 4, 0.1)
    >>> torch.round(s, decimals=3)
    tensor([1., 0., 1., 0.])
    """
    return _Relaxed.apply(scores, None, n, m, temperature, 1.0, False)[0]


def sample_mask(
    logits: torch.Tensor, noise: torch.Tensor, n: int, m: int,
    temperature: float, scale: float, hard: bool,
) -> torch.Tensor:
    """N:M mask from logits and Gumbel noise (SPEC S1.1, S1.3, S1.4).

    Keys ``r = scale * logits + noise`` (two roundings, as in the reference); soft mask
    ``s = relaxed_topn(r)``.  With ``hard=True`` the values are exactly
    ``h = topn_mask(r)`` and the gradient is that of ``s`` (straight-through); with
    ``hard=False`` the result is ``s``.  The gradient to the logits is
    ``scale * VJP_s`` (SPEC S1.5); the noise receives none.  One autograd node (keys,
    hard and soft mask in the forward; the S1.5 recursion in the backward).

    Examples
    --------
    >>> logits = torch.zeros(2, 8)
    >>> noise = torch.linspace(-1.0, 1.0, 16).reshape(2, 8)
    >>> sample_mask(logits, noise, 2, 4, 1.0, 1.0, True)
    tensor([[0., 0., 1., 1., 0., 0., 1., 1.],
            [0., 0., 1., 1., 0., 0., 1., 1.]])
    """
    return _Relaxed.apply(logits, noise.detach(), n, m, temperature, scale, hard)[0]


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
    """``cotangent``-weighted gradient of `sample_mask` to the logits (SPEC S1.5):
    ``scale * VJP_s(cotangent)`` for both values of ``hard`` (which does not enter), by
    the same forward and reverse recursions as `sample_mask`'s autograd node; it works
    under ``torch.no_grad`` too.

    Examples
    --------
    >>> g = sample_mask_vjp(torch.zeros(4), torch.zeros(4), 2, 4, 1.0, 1.0, True,
    ...                     torch.ones(4))
    >>> torch.allclose(g, torch.zeros(4), atol=1e-6)
    True
    """
    keys = scale * logits.detach() + noise.detach()
    return _vjp(keys, n, m, temperature, scale, as_cotangent(cotangent, keys))


def relaxed_topn_vjp(
    scores: torch.Tensor, n: int, m: int, temperature: float, cotangent: torch.Tensor,
) -> torch.Tensor:
    """``cotangent``-weighted gradient of `relaxed_topn` to the scores (SPEC S1.5,
    ``VJP_s``), by the recursions of `relaxed_topn`'s autograd node.

    Examples
    --------
    >>> g = relaxed_topn_vjp(torch.zeros(4), 2, 4, 1.0, torch.ones(4))
    >>> torch.allclose(g, torch.zeros(4), atol=1e-6)
    True
    """
    x = scores.detach()
    return _vjp(x, n, m, temperature, 1.0, as_cotangent(cotangent, x))


def _vjp(keys: torch.Tensor, n: int, m: int, tau: float, factor: float,
         cot: torch.Tensor) -> torch.Tensor:
    """``factor * VJP_s(cot)`` at ``keys`` (S1.5), without autograd."""
    with torch.no_grad():
        _, steps = _successive_rows(to_rows(keys, m), n, tau, True)
        g = _successive_vjp_rows(steps, tau, to_rows(cot, m))
        if factor != 1.0:
            g = factor * g
        return from_rows(g, keys)
