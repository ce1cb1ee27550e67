"""Packed N:M kernels of the reference backend (SPEC S3.1-S3.3, S3.6).

All functions work on the last axis of NumPy arrays that `spikenm.api` has already
validated.  The loops are Numba kernels over C-contiguous arrays:

* `block_nnz`, `pack` and `unpack` only test and move bits, so they run on the
  unsigned-integer view of the values (``uint8``/``uint16``/``uint32``/``uint64`` by item
  size).  Every real dtype therefore works, including float16 and ml_dtypes' bfloat16,
  which Numba cannot compute with, and the values come back bit for bit (NaN payloads
  and ``-0.0`` of kept entries included).  The S3.3 test ``x != 0`` is made on the bits:
  ``bits & magnitude != 0`` with the sign bit cleared for floats (``-0.0`` is zero, NaN
  and subnormals are not) and every bit kept for integers and bool.
* `pack` is one fused pass per block: the kept positions of a block of ``m <= 8`` form
  a bit code, a table indexed by the code gives its count (the S3.3 at-most-``n`` check)
  and its ``n`` stored positions with the S3.2 padding, and the values and indices are
  written at once.  Blocks of ``m > 8`` use the same rule by a loop.
* Arrays of `PARALLEL_BLOCKS` blocks or more (off by default, see there) are split
  into ``numba.get_num_threads()`` ranges of blocks run at once on threads (the same
  compiled kernel, only the range differs); each range stops at its first bad block and
  the smallest one is reported, so the error names the first bad block in row-major
  order whatever the thread count.
* The packed product `spmm` (S3.6) is in `reference.spmm_kernels`.
* `first_bad_block` is the index check of S3.10 that `spikenm.validation.packed` runs on
  every `Packed` entering the API (for every backend, on the host copy of the indices):
  one pass, branch-free over chunks of blocks.

A kernel never trusts its input to stay inside the arrays: `pack` stops at a block that
keeps more than ``n`` entries and `unpack` at an index ``>= m``, and the wrapper
raises ``ValueError`` naming it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Callable

import numba
import numpy as np

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
"""Unsigned integer type with the item size of a dtype (for moving bits)."""

PARALLEL_BLOCKS = 1 << 62
"""Arrays of at least this many blocks are split over ``numba.get_num_threads()``
threads (when more than one).  Off by default: on the 2-core machine the kernels were
measured on, 2 threads packed a 4096x4096 float32 2:4 weight 2.5x *slower* than one
(30.7 ms against 77.6 ms, fresh outputs faulted in by both threads); set it (e.g. to
``1 << 20``) where threads pay."""

_TABLE_M = 8
"""Largest ``m`` whose kept-position codes are tabulated (``2**m`` rows)."""


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _bits(a: np.ndarray) -> np.ndarray:
    """2-D C-contiguous ``(rows, K)`` unsigned-integer view of ``a``'s bits."""
    a2 = np.ascontiguousarray(a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]))
    size = a2.dtype.itemsize
    real = a2.dtype.kind in "biuf" or a2.dtype.name == "bfloat16"
    if size not in _BITS or not real:
        raise TypeError(
            f"packed values must have a real dtype of 1, 2, 4 or 8 bytes, got {a2.dtype}"
        )
    return a2.view(_BITS[size])


def magnitude(dtype: np.dtype) -> np.generic:
    """Bit mask whose overlap with an entry's bits is non-zero exactly when the entry is
    ``!= 0`` (S3.3): every bit but the sign bit for floats, every bit otherwise; an
    unsigned scalar of the dtype's item size."""
    dtype = np.dtype(dtype)
    unsigned = _BITS[dtype.itemsize]
    full = (1 << (8 * dtype.itemsize)) - 1
    return unsigned(full >> 1 if _is_float(dtype) else full)


def _empty(count: int, dtype: type) -> np.ndarray:
    """Uninitialised 1-D array aligned to 64 bytes, so that the jax backend can adopt
    the kernels' outputs without a copy (XLA takes external CPU buffers only at that
    alignment; NumPy's own are aligned to 16)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(count * itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + count * itemsize].view(dtype)


def _use_threads(blocks: int) -> bool:
    return blocks >= PARALLEL_BLOCKS and numba.get_num_threads() > 1


_POOL: list[ThreadPoolExecutor] = []


def _in_threads(kernel: Callable[..., Any], blocks: int, *args: Any) -> int:
    """Run ``kernel(*args, g0, g1)`` over ``numba.get_num_threads()`` contiguous ranges of
    the ``blocks`` blocks at once (the kernels release the GIL); return the smallest
    non-negative result (the first bad block or position in row-major order) or -1.

    The ranges run the serial kernel itself, so results do not depend on the thread
    count (a ``prange`` version of the same loops compiled to code 2x slower per thread).
    """
    threads = numba.get_num_threads()
    if not _POOL or _POOL[0]._max_workers < threads:  # noqa: SLF001
        _POOL[:] = [ThreadPoolExecutor(max_workers=threads)]
    step = -(-blocks // threads)
    futures = [_POOL[0].submit(kernel, *args, g0, min(blocks, g0 + step))
               for g0 in range(0, blocks, step)]
    found = [int(r) for r in (f.result() for f in futures) if r is not None and r >= 0]
    return min(found) if found else -1


@lru_cache(maxsize=None)
def _tables(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per code of kept positions (bit ``i`` set when entry ``i`` is kept), its count
    (int64 ``(2**m,)``) and its ``n`` stored positions, S3.2 padding included (uint8
    ``(2**m, n)``; rows of codes with more than ``n`` kept are unused)."""
    size = 1 << m if m <= _TABLE_M else 1
    counts = np.zeros(size, dtype=np.int64)
    slots = np.zeros((size, n), dtype=np.uint8)
    for code in range(size):
        kept = [i for i in range(m) if code >> i & 1]
        counts[code] = len(kept)
        if len(kept) <= n:
            pad = [i for i in range(m) if not code >> i & 1][: n - len(kept)]
            slots[code] = sorted(kept + pad)
    return counts, slots


@numba.njit(cache=True, nogil=True)
def _nnz_range(x, mag, m, counts, g0, g1):  # type: ignore[no-untyped-def]
    for g in range(g0, g1):
        base = g * m
        c = 0
        for i in range(m):
            if x[base + i] & mag:
                c += 1
        counts[g] = c


@numba.njit(cache=True, nogil=True)
def _nnz_serial(x, mag, m, counts):  # type: ignore[no-untyped-def]
    _nnz_range(x, mag, m, counts, 0, counts.size)


def nnz_bits(bits: np.ndarray, mag: np.generic, m: int) -> np.ndarray:
    """The kernel of `block_nnz` on a flat unsigned bit array: int64 counts of
    ``bits & mag != 0`` per block of ``m`` (``mag`` from `magnitude`)."""
    counts = _empty(bits.size // m, np.int64)
    if _use_threads(counts.size):
        _in_threads(_nnz_range, counts.size, bits, mag, m, counts)
    else:
        _nnz_serial(bits, mag, m, counts)
    return counts


def block_nnz(x: np.ndarray, m: int) -> np.ndarray:
    """Number of non-zero entries in each block of ``m`` along the last axis.

    ``nnz[..., g] = #{i < m : x[..., g*m + i] != 0}``.  ``-0.0`` counts as zero and NaN
    as non-zero (the test is ``x != 0``, made on the bits, S3.3).

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
    x = np.asarray(x)
    counts = nnz_bits(_bits(x).reshape(-1), magnitude(x.dtype), m)
    return counts.reshape(*x.shape[:-1], x.shape[-1] // m)


@numba.njit(cache=True, nogil=True)
def _pack_range(w, keep, mag, n, m, counts, slots, values, indices, g0, g1):  # type: ignore[no-untyped-def]
    """Pack blocks ``g0 .. g1-1`` of the flat ``w``/``keep``; return the first block
    keeping more than ``n`` entries, or -1."""
    if m <= 8:  # the table path (_TABLE_M)
        for g in range(g0, g1):
            base = g * m
            code = 0
            for i in range(m):
                if keep[base + i] & mag:
                    code |= 1 << i
            if counts[code] > n:
                return g
            out = g * n
            for j in range(n):
                i = slots[code, j]
                indices[out + j] = i
                if code >> i & 1:
                    values[out + j] = w[base + i]
                else:
                    values[out + j] = 0
        return -1
    for g in range(g0, g1):
        base = g * m
        kept = 0
        for i in range(m):
            if keep[base + i] & mag:
                kept += 1
        if kept > n:
            return g
        pad = n - kept  # S3.2: value 0 at the smallest unused indices
        out = g * n
        for i in range(m):
            if keep[base + i] & mag:
                values[out] = w[base + i]
                indices[out] = i
                out += 1
            elif pad > 0:
                values[out] = 0
                indices[out] = i
                out += 1
                pad -= 1
    return -1


@numba.njit(cache=True, nogil=True)
def _pack_serial(w, keep, mag, n, m, counts, slots, values, indices):  # type: ignore[no-untyped-def]
    return _pack_range(w, keep, mag, n, m, counts, slots, values, indices, 0, w.size // m)


def pack_bits(
    w: np.ndarray, keep: np.ndarray, keep_magnitude: np.generic, n: int, m: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The fused kernel of `pack` on flat unsigned bit arrays.

    Parameters
    ----------
    w : 1-D C-contiguous unsigned array, the values' bits, size a multiple of ``m``
    keep : 1-D C-contiguous unsigned array of the same size (may be ``w`` itself)
    keep_magnitude : `magnitude` of ``keep``'s dtype
    n, m : int

    Returns
    -------
    values : 1-D array of ``w``'s dtype, ``size // m * n``
    indices : uint8 array of the same size
    bad : int
        Flat index of the first block keeping more than ``n`` entries, or -1 (then the
        outputs are incomplete).
    """
    counts, slots = _tables(n, m)
    blocks = w.size // m
    values = _empty(blocks * n, w.dtype)
    indices = _empty(blocks * n, np.uint8)
    if _use_threads(blocks):
        bad = _in_threads(_pack_range, blocks, w, keep, keep_magnitude, n, m, counts, slots,
                          values, indices)
    else:
        bad = _pack_serial(w, keep, keep_magnitude, n, m, counts, slots, values, indices)
    return values, indices, int(bad)


def pack_error(bad: int, k: int, n: int, m: int) -> ValueError:
    """The error for flat block ``bad`` of rows of length ``k`` keeping more than ``n``."""
    row, g = divmod(int(bad), k // m)
    return ValueError(
        f"block {g} of row {row} (entries {g * m}:{(g + 1) * m} of the last axis) keeps "
        f"more than n={n} entries; expected at most {n}"
    )


def pack(w: np.ndarray, keep: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed ``(values, indices)`` of the entries of ``w`` where ``keep != 0``.

    In block ``g`` (entries ``g*m .. g*m+m-1`` of the last axis) the kept positions
    ``i_0 < i_1 < ...`` give ``values[..., g*n + j] = w[..., g*m + i_j]`` and
    ``indices[..., g*n + j] = i_j`` (SPEC S3.1).  A block keeping ``c < n`` entries is
    padded with value 0 at its ``n - c`` smallest unused indices, merged in ascending
    order (SPEC S3.2).  The check, the compression and the padding are one pass
    (`pack_bits`).

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
    keep = np.asarray(keep)
    bits = _bits(w).reshape(-1)
    keep_bits = bits if keep is w else _bits(keep).reshape(-1)
    values, indices, bad = pack_bits(bits, keep_bits, magnitude(keep.dtype), n, m)
    if bad >= 0:
        raise pack_error(bad, k, n, m)
    width = k // m * n
    return values.view(w.dtype).reshape(*lead, width), indices.reshape(*lead, width)


@numba.njit(cache=True, nogil=True)
def _unpack_range(values, indices, n, m, dense, g0, g1):  # type: ignore[no-untyped-def]
    """Write blocks ``g0 .. g1-1`` of the flat ``dense`` (zeros, then the stored
    entries); return the flat position of the first index ``>= m``, or -1."""
    for g in range(g0, g1):
        base = g * m
        for i in range(m):
            dense[base + i] = 0
        for p in range(g * n, g * n + n):
            i = indices[p]
            if i >= m:
                return p
            dense[base + i] = values[p]
    return -1


@numba.njit(cache=True, nogil=True)
def _unpack_serial(values, indices, n, m, dense):  # type: ignore[no-untyped-def]
    return _unpack_range(values, indices, n, m, dense, 0, dense.size // m)


def unpack_bits(values: np.ndarray, indices: np.ndarray, n: int, m: int) -> tuple[np.ndarray, int]:
    """The kernel of `unpack` on flat arrays: ``values`` unsigned bits, ``indices``
    uint8, both 1-D C-contiguous of a size that is a multiple of ``n``.  Returns the flat
    dense bits and the flat position of the first index ``>= m``, or -1 (then the dense
    is incomplete)."""
    blocks = values.size // n
    dense = _empty(blocks * m, values.dtype)
    if _use_threads(blocks):
        bad = _in_threads(_unpack_range, blocks, values, indices, n, m, dense)
    else:
        bad = _unpack_serial(values, indices, n, m, dense)
    return dense, int(bad)


def bad_index_error(indices: np.ndarray, flat: int, n: int, m: int) -> ValueError:
    """The error for the index at flat position ``flat`` of ``indices`` ``(..., width)``
    being ``>= m``."""
    row, p = divmod(flat, indices.shape[-1])
    value = int(indices.reshape(-1, indices.shape[-1])[row, p])
    return ValueError(
        f"indices[{row}, {p}] (block {p // n} of row {row}) is {value}; expected a value in "
        f"[0, {m})"
    )


def unpack(values: np.ndarray, indices: np.ndarray, n: int, m: int) -> np.ndarray:
    """Dense array from packed ``(values, indices)`` (inverse of `pack`, SPEC S3.1).

    ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``, every other entry
    0.  Bits of the values are copied unchanged; each block is written once (zeros,
    then its stored entries).

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
    bits = _bits(values).reshape(-1)
    idx = np.ascontiguousarray(indices).reshape(-1)
    k = width // n * m
    dense, bad = unpack_bits(bits, idx, n, m)
    if bad >= 0:
        raise bad_index_error(idx.reshape(-1, width), bad, n, m)
    return dense.view(values.dtype).reshape(*lead, k)



_CHECK_CHUNK = 4096
"""Blocks `_first_bad_block` checks branch-free before looking for the bad one."""


@numba.njit(cache=True, nogil=True)
def _first_bad_block(indices, n, m):  # type: ignore[no-untyped-def]
    """Flat number of the first block of ``n`` indices that are not strictly increasing
    in ``[0, m)``, or -1.  Chunks of `_CHECK_CHUNK` blocks are tested without branches
    (an OR of the violations); only a failing chunk is searched block by block."""
    blocks = indices.size // n
    for b0 in range(0, blocks, _CHECK_CHUNK):
        b1 = min(blocks, b0 + _CHECK_CHUNK)
        bad = False
        for b in range(b0, b1):
            prev = np.int64(-1)
            for j in range(n):
                i = np.int64(indices[b * n + j])
                bad |= (i >= m) | (i <= prev)
                prev = i
        if bad:
            for b in range(b0, b1):
                prev = np.int64(-1)
                for j in range(n):
                    i = np.int64(indices[b * n + j])
                    if i >= m or i <= prev:
                        return b
                    prev = i
    return -1


def first_bad_block(indices: np.ndarray, n: int, m: int) -> int:
    """The S3.2/S3.10 index check of a packed array in one pass: the flat number of the
    first block of ``n`` consecutive entries of the uint8 ``indices`` (any shape, last
    axis a multiple of ``n``) that are not ``n`` strictly increasing indices in
    ``[0, m)``, or -1 when every block is.

    Examples
    --------
    >>> import numpy as np
    >>> first_bad_block(np.array([0, 1, 2, 3, 3, 3], dtype=np.uint8), 2, 4)
    2
    >>> first_bad_block(np.array([0, 1, 1, 4], dtype=np.uint8), 2, 4)
    1
    """
    flat = np.ascontiguousarray(indices).reshape(-1)
    return int(_first_bad_block(flat, n, m))
