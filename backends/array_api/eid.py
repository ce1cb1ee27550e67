"""Eligibility-inspired distillation of the array-API backend (SPEC S2), forward only."""

from __future__ import annotations

from typing import Any

from .blocks import log_softmax_block, merge_blocks, softmax_block, split_blocks
from .namespace import device_of, namespace_of


def eligibility_credit(x: Any, d: Any, weight: Any, decay: float) -> Any:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t`` and
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``, the inner sum being
    ``matmul(d_t^T, e_t)``.

    Parameters
    ----------
    x : array ``(T, B, K)``
    d : array ``(T, B, O)``
    weight : array ``(O, K)``
    decay : float in [0, 1]

    Returns
    -------
    array ``(O, K)`` of the inputs' namespace, device and dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> x = xp.ones((2, 1, 4)); d = xp.ones((2, 1, 1)); w = xp.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    Array([[5., 5., 5., 5.]], dtype=array_api_strict.float64)
    """
    xp = namespace_of(x, d, weight)
    trace = xp.zeros(x.shape[1:], dtype=x.dtype, device=device_of(x))
    total = xp.zeros_like(weight)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t, ...]
        total = total + xp.abs(xp.matmul(xp.matrix_transpose(d[t, ...]), trace))
    return xp.abs(weight) * total


def eid_targets(credits: Any, m: int, temperature: float) -> Any:
    """Block-wise soft targets ``q_block = softmax_block(z_block / tau_e)`` (SPEC S2.5).

    ``z = C / (mean(C) + 1e-12)`` with the mean over every entry of ``credits``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> eid_targets(xp.asarray([1.0, 1.0, 1.0, 1.0]), 4, 1.0)
    Array([0.25, 0.25, 0.25, 0.25], dtype=array_api_strict.float64)
    """
    xp = namespace_of(credits)
    tau = float(temperature)
    z = credits / (xp.mean(credits) + 1e-12)
    return merge_blocks(softmax_block(split_blocks(z, m) / tau))


def eid_loss(logits: Any, targets: Any, m: int, scale: float) -> Any:
    """``L_eid = (1/G) sum_blocks sum_i q_i (log q_i - log p_i)`` (SPEC S2.6).

    ``p_block = softmax_block(scale * logits)``, taken in log space so ``log p`` stays
    finite where ``p`` underflows; ``0 * log 0 = 0``; ``G`` is the number of blocks of
    the whole array.  A negative target makes the loss NaN.

    Returns
    -------
    0-d array of the logits' namespace, device and dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> float(eid_loss(xp.zeros(4), xp.full(4, 0.25), 4, 1.0))
    0.0
    """
    xp = namespace_of(logits, targets)
    kappa = float(scale)
    log_p = log_softmax_block(split_blocks(kappa * logits, m))
    q = split_blocks(targets, m)
    empty = q == 0.0
    log_q = xp.log(xp.where(empty, xp.ones_like(q), q))
    terms = xp.where(empty, xp.zeros_like(q), q * (log_q - log_p))
    blocks = q.shape[-2] * _count(q.shape[:-2])
    return xp.sum(terms) / float(blocks)


def _count(shape: tuple[int, ...]) -> int:
    """Number of entries of an array of ``shape``."""
    total = 1
    for size in shape:
        total *= int(size)
    return total
