"""Packed N:M format of the array-API backend (SPEC S3.1-S3.3).

The standard (2023.12) has no scatter and gathers only with 1-D indices (``xp.take``),
so every gather here runs on the flattened array with flat indices
``block * width + position``.  Values are moved by ``take`` and ``where`` only, never by
arithmetic, so they come back bit for bit (``-0.0`` and NaN payloads included) for
every dtype the namespace has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import dtype_name, to_numpy
from .blocks import merge_blocks, split_blocks
from .namespace import device_of, namespace_of


def block_nnz(x: Any, m: int) -> Any:
    """Number of non-zeros in each block: ``nnz[..., g] = #{i < m : x[..., g*m+i] != 0}``.

    ``-0.0`` counts as zero and NaN as non-zero (the test is ``astype(x, bool)``).

    Returns
    -------
    array ``(..., K // m)`` of the namespace's default integer dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> block_nnz(xp.asarray([[0.0, 1.0, 2.0, 0.0, 3.0, 0.0, 0.0, 0.0]]), 4)
    Array([[2, 1]], dtype=array_api_strict.int64)
    """
    xp = namespace_of(x)
    return _count_true(xp, xp.astype(split_blocks(x, m), xp.bool))


def _count_true(xp: Any, flags: Any) -> Any:
    """Number of True entries of a bool array along its last axis (default integer).

    ``xp.count_nonzero`` is 2024.12; the sum of the flags as ``int8`` promotes to the
    default integer dtype.
    """
    return xp.sum(xp.astype(flags, xp.int8), axis=-1)


def _gather_blocks(xp: Any, blocks: Any, positions: Any) -> Any:
    """``out[..., g, j] = blocks[..., g, positions[..., g, j]]`` through one flat ``take``.

    ``blocks`` is ``(..., G, w)`` and ``positions`` ``(..., G, c)`` integer in ``[0, w)``.
    """
    lead = positions.shape[:-1]
    width = blocks.shape[-1]
    rows = 1
    for size in lead:
        rows *= int(size)
    base = xp.arange(rows, device=device_of(positions)) * width
    flat = xp.reshape(positions, (rows, positions.shape[-1])) + base[:, None]
    taken = xp.take(xp.reshape(blocks, (-1,)), xp.reshape(flat, (-1,)))
    return xp.reshape(taken, positions.shape)


def pack(w: Any, keep: Any, n: int, m: int) -> tuple[Any, Any]:
    """Packed ``(values, indices)`` of the entries of ``w`` where ``keep != 0``.

    In block ``g`` the kept positions ``i_0 < i_1 < ...`` give
    ``values[..., g*n + j] = w[..., g*m + i_j]`` and ``indices[..., g*n + j] = i_j``
    (SPEC S3.1).  A block keeping ``c < n`` entries is padded with value 0 at its
    ``n - c`` smallest unused indices, merged in ascending order (SPEC S3.2).

    The chosen positions of a block are the first ``n`` of a stable ``argsort`` of the key
    ``[keep_i == 0]`` (kept entries in index order, then unused ones in index order),
    sorted ascending.

    Parameters
    ----------
    w : array ``(..., K)`` of any real dtype of the namespace
    keep : array of the same shape: ``w`` itself or a 0/1 mask, at most ``n`` kept per block
    n, m : int

    Returns
    -------
    values : array ``(..., K // m * n)`` of ``w``'s dtype
    indices : uint8 array of the same shape, strictly increasing within each block

    Raises
    ------
    ValueError
        A block keeps more than ``n`` entries (the caller normally checked this first).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> v, i = pack(xp.asarray([0.0, 5.0, 0.0, 0.0]), xp.asarray([0, 1, 0, 0]), 2, 4)
    >>> v, i
    (Array([0., 5.], dtype=array_api_strict.float64), Array([0, 1], dtype=array_api_strict.uint8))
    """
    xp = namespace_of(w, keep)
    kept = xp.astype(split_blocks(keep, m), xp.bool)
    too_many = _count_true(xp, kept) > n
    if bool(xp.any(too_many)):
        raise _too_many(to_numpy(too_many), n, m)
    order = xp.argsort(xp.astype(xp.logical_not(kept), xp.int8), axis=-1, stable=True)
    positions = xp.sort(order[..., :n], axis=-1)
    values = _gather_blocks(xp, split_blocks(w, m), positions)
    values = xp.where(_gather_blocks(xp, kept, positions), values, xp.zeros_like(values))
    return merge_blocks(values), merge_blocks(xp.astype(positions, xp.uint8))


def _too_many(flags: np.ndarray, n: int, m: int) -> ValueError:
    """The error for the first block (C order) flagged in the host array ``flags``."""
    first = tuple(int(i) for i in np.argwhere(flags)[0])
    g = first[-1]
    return ValueError(
        f"block {g} at lead index {first[:-1]} (entries {g * m}:{(g + 1) * m} of the "
        f"last axis) keeps more than n={n} entries; expected at most {n}"
    )


def unpack(values: Any, indices: Any, n: int, m: int) -> Any:
    """Dense array from packed ``(values, indices)`` (inverse of `pack`, SPEC S3.1).

    ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``, every other entry
    0.  Without a scatter, each dense position ``p`` of block ``g`` looks up the packed
    slot ``j`` with ``indices[..., g*n + j] == p`` (the indices of a block are distinct,
    S3.2) and takes its value, or 0 when there is none.  Temporary memory is
    ``O(K * n)``.

    Raises
    ------
    ValueError
        An index is outside ``[0, m)`` (its value would have no place in the block).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> unpack(xp.asarray([5.0, 7.0]), xp.asarray([1, 3], dtype=xp.uint8), 2, 4)
    Array([0., 5., 0., 7.], dtype=array_api_strict.float64)
    """
    xp = namespace_of(values, indices)
    spots = xp.arange(m, device=device_of(values))
    slots = xp.astype(split_blocks(indices, n), spots.dtype)
    if bool(xp.any(xp.logical_or(slots < 0, slots >= m))):
        raise _bad_index(to_numpy(indices), m)
    match = slots[..., None, :] == spots[:, None]  # (..., G, m positions, n slots)
    found = xp.any(match, axis=-1)
    slot = xp.argmax(xp.astype(match, xp.int8), axis=-1)
    dense = _gather_blocks(xp, split_blocks(values, n), slot)
    return merge_blocks(xp.where(found, dense, xp.zeros_like(dense)))


def _bad_index(indices: np.ndarray, m: int) -> ValueError:
    """The error for the first index outside ``[0, m)`` (C order) of host ``indices``."""
    rows = indices.reshape(-1, indices.shape[-1])
    row, p = (int(i) for i in np.argwhere((rows < 0) | (rows >= m))[0])
    return ValueError(
        f"indices[{row}, {p}] (row {row} of the packed array seen as 2-D) is "
        f"{int(rows[row, p])}; expected a value in [0, {m})"
    )


def spmm(values: Any, indices: Any, n: int, m: int, x: Any) -> Any:
    """``unpack(values, indices) @ x`` (SPEC S3.6).

    ``y[o, :] = sum_g sum_j values[o, g*n+j] * x[g*m + indices[o, g*n+j], :]``.  The
    standard's only contraction is ``xp.matmul``, so this backend unpacks to the dense
    ``(O, K)`` matrix and multiplies (SPEC S0.7).  float32 and float64 accumulate in their
    own precision, float16 and bfloat16 (where the library has them) in float32 with one
    rounding at the end; integers wrap modulo ``2**bits``, which equals accumulating in 64
    bits and wrapping on the cast back.

    Parameters
    ----------
    values, indices : arrays ``(O, G * n)``
    n, m : int
    x : array ``(K,)`` or ``(K, P)`` of the values' dtype

    Returns
    -------
    array ``(O,)`` or ``(O, P)`` of the values' dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> v, i = xp.asarray([[5.0, 7.0]]), xp.asarray([[1, 3]], dtype=xp.uint8)
    >>> spmm(v, i, 2, 4, xp.asarray([1.0, 1.0, 0.0, 2.0]))
    Array([19.], dtype=array_api_strict.float64)
    """
    xp = namespace_of(values, indices, x)
    dense = unpack(values, indices, n, m)
    if dtype_name(values) not in HALF_PRECISION:
        return xp.matmul(dense, x)
    wide = xp.matmul(xp.astype(dense, xp.float32), xp.astype(x, xp.float32))
    return xp.astype(wide, values.dtype)


HALF_PRECISION = ("float16", "bfloat16")
"""dtypes `spmm` accumulates in float32 (SPEC S3.6)."""
