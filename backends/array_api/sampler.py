"""Mask sampler of the array-API backend (SPEC S1), forward only.

Every function takes arrays that `spikenm.api` has validated (float32/float64, blocks of
``m`` along the last axis, paired arrays of one shape and dtype) and returns arrays of the
same namespace, device and dtype.  Only functions of the array API standard (2023.12) are
called; the namespace comes from the arrays.
"""

from __future__ import annotations

from typing import Any

from .blocks import merge_blocks, softmax_block, split_blocks
from .namespace import namespace_of


def topn_mask(scores: Any, n: int, m: int) -> Any:
    """Hard top-n mask of every block of ``m`` along the last axis (SPEC S1.2).

    Entry ``i`` of a block is 1 iff ``#{j : v_j > v_i} + #{j < i : v_j == v_i} < n``.
    That count is the position of ``i`` in the block sorted by decreasing value with ties
    in index order, i.e. a stable ascending ``argsort`` of ``-v``; the rank of each entry
    is the inverse permutation, ``argsort(argsort(-v))``.  The keys are ``0.0 - v`` so
    that ``-0.0`` and ``0.0`` (equal, hence tied) become the same key ``+0.0`` for every
    sort implementation.

    Parameters
    ----------
    scores : float32 or float64 array ``(..., K)``, ``K % m == 0``
    n, m : int

    Returns
    -------
    0/1 array of the shape, dtype, namespace and device of ``scores``

    Examples
    --------
    >>> import array_api_strict as xp
    >>> topn_mask(xp.asarray([0.3, 0.1, 0.3, 0.2]), 2, 4)
    Array([1., 0., 1., 0.], dtype=array_api_strict.float64)
    """
    xp = namespace_of(scores)
    order = xp.argsort(0.0 - split_blocks(scores, m), axis=-1, stable=True)
    rank = xp.argsort(order, axis=-1, stable=True)
    return merge_blocks(xp.astype(rank < n, scores.dtype))


def relaxed_topn(scores: Any, n: int, m: int, temperature: float) -> Any:
    """Successive-softmax relaxation of top-n in every block (SPEC S1.3).

    ``alpha_1 = v``; for ``j = 1..n``: ``a_j = softmax_block(alpha_j / tau)``,
    ``alpha_{j+1} = alpha_j + log(1 - a_j)``, or ``-inf`` where ``a_j`` rounds to 1;
    returns ``s = sum_j a_j``.

    Raises
    ------
    ValueError
        When ``temperature`` is 0 or inf in the dtype of ``scores``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> s = relaxed_topn(xp.asarray([3.0, 0.0, 2.0, -1.0]), 2, 4, 0.1)
    >>> [round(float(v), 3) for v in s]
    [1.0, 0.0, 1.0, 0.0]
    """
    xp = namespace_of(scores)
    tau = float(temperature)
    alpha = split_blocks(scores, m)
    total = xp.zeros_like(alpha)
    for j in range(n):
        a = softmax_block(alpha / tau)
        total = total + a
        if j + 1 < n:  # alpha_{n+1} is never used
            rest = 1.0 - a
            alive = rest > 0
            step = xp.log(xp.where(alive, rest, xp.ones_like(rest)))
            alpha = xp.where(alive, alpha + step, xp.full_like(alpha, -xp.inf))
    return merge_blocks(total)


def block_probs(logits: Any, m: int, scale: float) -> Any:
    """Block probabilities ``p = softmax_block(scale * logits)`` (SPEC S1.7).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> block_probs(xp.asarray([0.0, 0.0, 0.0, 0.0]), 4, 1.0)
    Array([0.25, 0.25, 0.25, 0.25], dtype=array_api_strict.float64)
    """
    kappa = float(scale)
    return merge_blocks(softmax_block(split_blocks(kappa * logits, m)))


def sample_mask(
    logits: Any, noise: Any, n: int, m: int,
    temperature: float, scale: float, hard: bool,
) -> Any:
    """N:M mask from logits and Gumbel noise (SPEC S1.1-S1.4), values only.

    Keys ``r = scale * logits + noise`` (S1.1).  ``hard=True`` returns ``topn(r)``
    (S1.2); ``hard=False`` returns the soft mask ``relaxed_topn(r, temperature)`` (S1.3).
    This backend has no autodiff, so the straight-through gradient of S1.4 does not
    apply: the hard output is the mask itself.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> logits = xp.asarray([0.0, 1.0, 2.0, 3.0])
    >>> sample_mask(logits, xp.zeros(4), 2, 4, 1.0, 1.0, True)
    Array([0., 0., 1., 1.], dtype=array_api_strict.float64)
    """
    kappa = float(scale)
    keys = kappa * logits + noise
    if hard:
        return topn_mask(keys, n, m)
    return relaxed_topn(keys, n, m, temperature)
