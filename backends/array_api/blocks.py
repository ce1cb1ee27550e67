"""Block views and the block softmax of the array-API backend.

A ``(..., K)`` array with ``K = G * m`` is seen as ``(..., G, m)``: block ``g`` of a row
is entries ``g*m .. g*m + m - 1`` of the last axis (SPEC, notation).  The softmax and
log-softmax below are the only ones in this backend.
"""

from __future__ import annotations

from typing import Any

from .namespace import namespace_of


def split_blocks(x: Any, m: int) -> Any:
    """``x`` ``(..., G * m)`` reshaped to ``(..., G, m)``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> split_blocks(xp.zeros((3, 8)), 4).shape
    (3, 2, 4)
    """
    xp = namespace_of(x)
    return xp.reshape(x, (*x.shape[:-1], x.shape[-1] // m, m))


def merge_blocks(blocks: Any) -> Any:
    """Inverse of `split_blocks`: ``(..., G, m)`` to ``(..., G * m)``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> merge_blocks(xp.zeros((3, 2, 4))).shape
    (3, 8)
    """
    xp = namespace_of(blocks)
    return xp.reshape(blocks, (*blocks.shape[:-2], blocks.shape[-2] * blocks.shape[-1]))


def softmax_block(v: Any) -> Any:
    """``softmax_block(v)_i = exp(v_i - max v) / sum_j exp(v_j - max v)`` on the last axis.

    Parameters
    ----------
    v : floating array ``(..., G, m)`` (one block per row of the last axis)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> softmax_block(xp.asarray([[0.0, 0.0], [0.0, 0.0]]))
    Array([[0.5, 0.5],
           [0.5, 0.5]], dtype=array_api_strict.float64)
    """
    xp = namespace_of(v)
    e = xp.exp(v - xp.max(v, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def log_softmax_block(v: Any) -> Any:
    """``log softmax_block(v)_i = (v_i - max v) - log sum_j exp(v_j - max v)``.

    Finite for finite ``v`` even where the softmax underflows to 0.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> log_softmax_block(xp.asarray([[0.0, 0.0]]))
    Array([[-0.69314718, -0.69314718]], dtype=array_api_strict.float64)
    """
    xp = namespace_of(v)
    shifted = v - xp.max(v, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
