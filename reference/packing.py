"""Packed N:M kernels of the reference backend (SPEC S3.1-S3.3, S3.6).

All functions work on the last axis of NumPy arrays that `spikenm.api` has already
validated.  The loops are Numba kernels over 2-D C-contiguous arrays ``(rows, K)``:

* `pack` and `unpack` only move bits, so they run on the unsigned-integer view of the
  values (``uint8``/``uint16``/``uint32``/``uint64`` by item size).  Every real dtype
  therefore works, including float16 and ml_dtypes' bfloat16, which Numba cannot
  compute with, and the values come back bit for bit (NaN payloads and ``-0.0`` of kept
  entries included).
* `spmm` multiplies without building the dense matrix.  It accumulates float32 and
  float64 in their own precision, float16 and bfloat16 in float32 (Numba has no 16-bit
  float arithmetic on the CPU), and integers in int64; the result is cast to the values'
  dtype (integers wrap modulo ``2**bits``, as NumPy's integer matmul does).

A kernel never trusts its input to stay inside the arrays: `pack` stops at a block that
keeps more than ``n`` entries and `unpack`/`spmm` at an index ``>= m``, and the wrapper
raises ``ValueError`` naming it.
"""

from __future__ import annotations

import numba
import numpy as np

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
"""Unsigned integer type with the item size of a dtype (for moving bits)."""


def _bits(a: np.ndarray) -> np.ndarray:
    """2-D C-contiguous ``(rows, K)`` unsigned-integer view of ``a``'s bits."""
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    size = a2.dtype.itemsize
    real = a2.dtype.kind in "biuf" or a2.dtype.name == "bfloat16"
    if size not in _BITS or not real:
        raise TypeError(
            f"packed values must have a real dtype of 1, 2, 4 or 8 bytes, got {a2.dtype}"
        )
    return a2.view(_BITS[size])


def block_nnz(x: np.ndarray, m: int) -> np.ndarray:
    """Number of non-zero entries in each block of ``m`` along the last axis.

    ``nnz[..., g] = #{i < m : x[..., g*m + i] != 0}``.  ``-0.0`` counts as zero and NaN
    as non-zero (the test is ``x != 0``).

    Parameters
    ----------
    x : array ``(..., K)`` with ``K % m == 0``, any real dtype
    m : int

    Returns
    -------
    int64 array ``(..., K // m)``

    Examples
    --------
    >>> import numpy as np
    >>> block_nnz(np.array([[0.0, 1.0, 2.0, 0.0, 3.0, 0.0, 0.0, 0.0]]), 4)
    array([[2, 1]])
    """
    blocks = np.asarray(x).reshape(*x.shape[:-1], x.shape[-1] // m, m)
    return np.count_nonzero(blocks != 0, axis=-1).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _pack_kernel(w, keep, n, m, values, indices):  # type: ignore[no-untyped-def]
    """Fill ``values``/``indices`` ``(rows, G*n)``; return the flat block index of the
    first block keeping more than ``n`` entries, or -1."""
    rows, k = w.shape
    groups = k // m
    for r in range(rows):
        for g in range(groups):
            base = g * m
            kept = 0
            for i in range(m):
                if keep[r, base + i]:
                    kept += 1
            if kept > n:
                return r * groups + g
            pad = n - kept  # S3.2: value 0 at the smallest unused indices
            out = g * n
            for i in range(m):
                if keep[r, base + i]:
                    values[r, out] = w[r, base + i]
                    indices[r, out] = i
                    out += 1
                elif pad > 0:
                    values[r, out] = 0
                    indices[r, out] = i
                    out += 1
                    pad -= 1
    return -1


def pack(w: np.ndarray, keep: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed ``(values, indices)`` of the entries of ``w`` where ``keep != 0``.

    In block ``g`` (entries ``g*m .. g*m+m-1`` of the last axis) the kept positions
    ``i_0 < i_1 < ...`` give ``values[..., g*n + j] = w[..., g*m + i_j]`` and
    ``indices[..., g*n + j] = i_j`` (SPEC S3.1).  A block keeping ``c < n`` entries is
    padded with value 0 at its ``n - c`` smallest unused indices, merged in ascending
    order (SPEC S3.2).

    Parameters
    ----------
    w : array ``(..., K)``, any real dtype (float16, bfloat16, float32, int8, ...)
    keep : array of the same shape
        ``w`` itself (keep its non-zeros) or a 0/1 mask.  At most ``n`` kept per block.
    n, m : int

    Returns
    -------
    values : array ``(..., K // m * n)`` of ``w``'s dtype, bit-exact copies
    indices : uint8 array of the same shape, strictly increasing within each block

    Raises
    ------
    ValueError
        A block keeps more than ``n`` entries (the caller normally checked this first).

    Examples
    --------
    >>> import numpy as np
    >>> v, i = pack(np.array([0.0, 5.0, 0.0, 0.0]), np.array([0, 1, 0, 0]), 2, 4)
    >>> v, i
    (array([0., 5.]), array([0, 1], dtype=uint8))
    """
    lead, k = w.shape[:-1], w.shape[-1]
    bits = _bits(w)
    keep2 = np.ascontiguousarray((keep != 0).reshape(-1, k))
    rows, width = bits.shape[0], k // m * n
    values = np.empty((rows, width), dtype=bits.dtype)
    indices = np.empty((rows, width), dtype=np.uint8)
    bad = _pack_kernel(bits, keep2, n, m, values, indices)
    if bad >= 0:
        row, g = divmod(int(bad), k // m)
        raise ValueError(
            f"block {g} of row {row} (entries {g * m}:{(g + 1) * m} of the last axis) keeps "
            f"more than n={n} entries; expected at most {n}"
        )
    values = values.view(w.dtype).reshape(*lead, width)
    return values, indices.reshape(*lead, width)


@numba.njit(cache=True, nogil=True)
def _unpack_kernel(values, indices, n, m, dense):  # type: ignore[no-untyped-def]
    """Scatter ``(rows, G*n)`` into zeroed ``dense`` ``(rows, G*m)``; return the flat
    position of the first index ``>= m``, or -1."""
    rows, width = values.shape
    for r in range(rows):
        for p in range(width):
            i = indices[r, p]
            if i >= m:
                return r * width + p
            dense[r, (p // n) * m + i] = values[r, p]
    return -1


def _bad_index(indices: np.ndarray, flat: int, n: int, m: int) -> ValueError:
    row, p = divmod(flat, indices.shape[-1])
    value = int(indices.reshape(-1, indices.shape[-1])[row, p])
    return ValueError(
        f"indices[{row}, {p}] (block {p // n} of row {row}) is {value}; expected a value in "
        f"[0, {m})"
    )


def unpack(values: np.ndarray, indices: np.ndarray, n: int, m: int) -> np.ndarray:
    """Dense array from packed ``(values, indices)`` (inverse of `pack`, SPEC S3.1).

    ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``, every other entry
    0.  Bits of the values are copied unchanged.

    Parameters
    ----------
    values : array ``(..., G * n)``, any real dtype
    indices : uint8 array of the same shape, entries in ``[0, m)``
    n, m : int

    Returns
    -------
    array ``(..., G * m)`` of the values' dtype

    Examples
    --------
    >>> import numpy as np
    >>> unpack(np.array([5.0, 7.0]), np.array([1, 3], dtype=np.uint8), 2, 4)
    array([0., 5., 0., 7.])
    """
    lead, width = values.shape[:-1], values.shape[-1]
    bits = _bits(values)
    idx = np.ascontiguousarray(indices.reshape(-1, width))
    k = width // n * m
    dense = np.zeros((bits.shape[0], k), dtype=bits.dtype)
    bad = _unpack_kernel(bits, idx, n, m, dense)
    if bad >= 0:
        raise _bad_index(idx, int(bad), n, m)
    return dense.view(values.dtype).reshape(*lead, k)


@numba.njit(cache=True, nogil=True)
def _spmm_kernel(values, indices, n, m, x, out):  # type: ignore[no-untyped-def]
    """``out[o, :] += values[o, p] * x[g*m + indices[o, p], :]`` over the packed entries
    of row ``o``; return the flat position of the first index ``>= m``, or -1."""
    rows, width = values.shape
    cols = x.shape[1]
    for o in range(rows):
        for p in range(width):
            i = indices[o, p]
            if i >= m:
                return o * width + p
            v = values[o, p]
            kk = (p // n) * m + i
            for c in range(cols):
                out[o, c] += v * x[kk, c]
    return -1


def _accumulator(dtype: np.dtype) -> type[np.generic]:
    """Type `spmm` accumulates in for values of ``dtype``."""
    if dtype.kind in "iub":
        return np.int64 if dtype.kind != "u" else np.uint64
    if dtype == np.float64:
        return np.float64
    return np.float32  # float32, and float16/bfloat16 which Numba cannot compute with


def spmm(values: np.ndarray, indices: np.ndarray, n: int, m: int, x: np.ndarray) -> np.ndarray:
    """``unpack(values, indices) @ x`` without building the dense matrix (SPEC S3.6).

    ``y[o, :] = sum_g sum_j values[o, g*n+j] * x[g*m + indices[o, g*n+j], :]``, visiting
    only the ``n`` stored entries of each block.  For finite ``x`` this equals the
    dense product up to summation order (exactly, for integers).  float16 and bfloat16
    are accumulated in float32 and the result cast back; integers accumulate in
    (u)int64 and wrap on the cast back, like NumPy's matmul.

    Parameters
    ----------
    values : array ``(O, G * n)``
    indices : uint8 array ``(O, G * n)``, entries in ``[0, m)``
    n, m : int
    x : array ``(K,)`` or ``(K, P)`` with ``K = G * m``, same dtype as ``values``

    Returns
    -------
    array ``(O,)`` or ``(O, P)`` of the values' dtype

    Examples
    --------
    >>> import numpy as np
    >>> v, i = np.array([[5.0, 7.0]]), np.array([[1, 3]], dtype=np.uint8)
    >>> spmm(v, i, 2, 4, np.array([1.0, 1.0, 0.0, 2.0]))
    array([19.])
    """
    acc = _accumulator(np.dtype(values.dtype))
    vals = np.ascontiguousarray(values, dtype=acc)
    idx = np.ascontiguousarray(indices)
    cols = 1 if x.ndim == 1 else x.shape[1]
    x2 = np.ascontiguousarray(x.reshape(x.shape[0], cols), dtype=acc)
    out = np.zeros((vals.shape[0], x2.shape[1]), dtype=acc)
    bad = _spmm_kernel(vals, idx, n, m, x2, out)
    if bad >= 0:
        raise _bad_index(idx, int(bad), n, m)
    y = out.astype(values.dtype)
    return y.reshape(-1) if x.ndim == 1 else y
