"""Packed N:M products of the reference backend (SPEC S3.6): float kernels, the
event-driven kernel for 0/1 inputs, and the rule that picks one (`choose_kernel`).

All compute ``unpack(values, indices) @ x`` for 2-D packed ``(O, G*n)`` weights and
``x`` ``(K,)`` or ``(K, P)`` with ``K = G*m``, without building the dense ``(O, K)``
matrix:

* **float, one column** (``"float"`` with 1-D ``x``): for 2:4 float weights, the
  interleaved 2-bit layout of `spikenm.reference.spmm_2of4` (S3.8, cached), which adds to
  all outputs at once and picks each ``x`` entry by comparisons; otherwise one pass over
  ``values`` and ``indices``, each row the dot product of its stored entries with the
  ``x`` entries they read (index arithmetic by shifts when ``n`` and ``m`` are powers of
  two).
* **float, several columns** (``"float"`` with 2-D ``x``): the stored entries of
  ``_TILE_ROWS`` rows at a time are scattered into a dense tile that stays in cache, and
  the tile times all ``P`` columns is one BLAS call, so ``values``/``indices`` are read
  once whatever ``P``.
* **event-driven** (``"events"``, 0/1 ``x``): for each *active* input ``k``
  (``x[k] != 0``) the row ``k`` of the transposed weights is added to the output (adds
  only, no multiplies, contiguous memory, vectorized).  The transposed weights (`ColumnView`,
  ``(K, O)`` in the accumulator dtype) are built once per pair of packed arrays and cached
  (`column_view`); they cost ``K * O * a`` bytes with ``a`` the accumulator item size (4 for
  float32, float16 and bfloat16, 8 for float64 and integers): 64 MiB for a 4096x4096
  float32 matrix, as much as its dense form, next to 40 MiB of packed arrays.  A
  CSC-like view holding only the stored entries (row index plus value, 6 bytes per entry
  in float32, 48 MiB for 4096x4096 2:4) was measured slower here: its scattered adds ran
  at about 0.9 ns per entry against 0.3 ns per dense entry (1.5 ms against 1.0 ms at
  batch 1 and 20% firing, 27 ms against 10 ms at batch 16), because this CPU has no
  vector gather or scatter.

Accumulation (S3.6): float32 and float64 in their own precision, float16/bfloat16 in
float32, integers in (u)int64, one cast back to the values' dtype at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from . import spmm_2of4, view_cache
from .packing import bad_index_error

_TILE_ROWS = 32
"""Rows per dense tile of the several-column float kernel (32 x 4096 float32 = 512 KiB)."""

_FAST = {"reassoc", "contract"}
"""Reordered sums and fused multiply-add only: NaN and inf keep IEEE semantics."""

EVENT_MAX_DENSITY = {1: 1.0, 16: 0.6, 64: 0.35}
"""Largest fraction of ones in a 0/1 ``x`` for which `choose_kernel` takes the event
kernel, by batch width ``P`` (the entry of the largest listed width ``<= P``): where the
event kernel stopped beating the float kernel on a 4096x4096 2:4 float32 matrix, one
thread (it won at every firing rate up to 0.9 below ``P = 16``, up to about 0.7 at 16 and
0.35 at 64)."""


def accumulator(dtype: np.dtype) -> type[np.generic]:
    """Type the products accumulate in for values of ``dtype`` (S3.6)."""
    if dtype.kind in "iub":
        return np.int64 if dtype.kind != "u" else np.uint64
    if dtype == np.float64:
        return np.float64
    return np.float32  # float32, and float16/bfloat16 which Numba cannot compute with


def _log2(v: int) -> int:
    """``log2(v)`` for a power of two, else -1."""
    return v.bit_length() - 1 if v > 0 and v & (v - 1) == 0 else -1


# -- float kernels --------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _first_bad(indices, m):  # type: ignore[no-untyped-def]
    """Flat position of the first stored index ``>= m``, or -1."""
    rows, width = indices.shape
    for o in range(rows):
        for p in range(width):
            if indices[o, p] >= m:
                return o * width + p
    return -1


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dot_pow2(values, indices, sn, sm, x, out):  # type: ignore[no-untyped-def]
    """``out[o] = sum_p values[o, p] * x[(p >> sn << sm) + indices[o, p]]``; return
    whether some index is ``>= 2**sm`` (reads stay inside ``x`` either way)."""
    rows, width = values.shape
    mask = (1 << sm) - 1
    seen = 0
    for o in range(rows):
        s = out.dtype.type(0)
        vo = values[o]
        io = indices[o]
        for p in range(width):
            i = io[p]
            seen |= i
            s += vo[p] * x[((p >> sn) << sm) + (i & mask)]
        out[o] = s
    return seen > mask


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dot_any(values, indices, n, m, x, out):  # type: ignore[no-untyped-def]
    """`_dot_pow2` for any ``n:m`` (block loop instead of shifts); return whether some
    index is ``>= m``."""
    rows, width = values.shape
    groups = width // n
    top = 0
    for o in range(rows):
        s = out.dtype.type(0)
        vo = values[o]
        io = indices[o]
        for g in range(groups):
            base = g * m
            for j in range(g * n, g * n + n):
                i = io[j]
                top = max(top, i)
                s += vo[j] * x[base + min(i, m - 1)]
        out[o] = s
    return top >= m


@numba.njit(cache=True, nogil=True)
def _tile_pow2(values, indices, sn, sm, r0, r1, tile):  # type: ignore[no-untyped-def]
    """`_tile` with shifts for ``n = 2**sn``, ``m = 2**sm``; return whether some index is
    ``>= m`` (reads and writes stay inside the arrays either way)."""
    width = values.shape[1]
    mask = (1 << sm) - 1
    seen = 0
    for o in range(r0, r1):
        t = tile[o - r0]
        t[:] = 0
        vo = values[o]
        io = indices[o]
        for p in range(width):
            i = io[p]
            seen |= i
            t[((p >> sn) << sm) + (i & mask)] = vo[p]
    return seen > mask


@numba.njit(cache=True, nogil=True)
def _tile(values, indices, n, m, r0, r1, tile):  # type: ignore[no-untyped-def]
    """Dense rows ``r0:r1`` into ``tile[:r1 - r0]``; return whether some index is
    ``>= m`` (that entry is not written)."""
    width = values.shape[1]
    groups = width // n
    bad = False
    for o in range(r0, r1):
        t = tile[o - r0]
        t[:] = 0
        vo = values[o]
        io = indices[o]
        for g in range(groups):
            base = g * m
            for j in range(g * n, g * n + n):
                i = io[j]
                if i < m:
                    t[base + i] = vo[j]
                else:
                    bad = True
    return bad


def spmm_float(values: np.ndarray, indices: np.ndarray, n: int, m: int,
               x: np.ndarray) -> np.ndarray:
    """``unpack(values, indices) @ x`` by the float kernels (S3.6), any finite ``x``.

    Parameters
    ----------
    values : array ``(O, G * n)``
    indices : uint8 array ``(O, G * n)``, entries in ``[0, m)``
    n, m : int
    x : array ``(K,)`` or ``(K, P)``, ``K = G * m``, values' dtype (or bool)

    Returns
    -------
    array ``(O,)`` or ``(O, P)`` of the values' dtype

    Raises
    ------
    ValueError
        A stored index is ``>= m`` (named with its row and block).

    Examples
    --------
    >>> import numpy as np
    >>> v, i = np.array([[5.0, 7.0]]), np.array([[1, 3]], dtype=np.uint8)
    >>> spmm_float(v, i, 2, 4, np.array([1.0, 1.0, 0.0, 2.0]))
    array([19.])
    """
    acc = accumulator(np.dtype(values.dtype))
    vals = np.ascontiguousarray(values, dtype=acc)
    idx = np.ascontiguousarray(indices)
    xa = np.ascontiguousarray(x, dtype=acc)
    rows = vals.shape[0]
    if x.ndim == 1 and (n, m) == (2, 4) and np.dtype(acc).kind == "f":
        return spmm_2of4.spmm_vector(values, indices, x, acc).astype(values.dtype, copy=False)
    if x.ndim == 1:
        out = np.empty(rows, dtype=acc)
        sn, sm = _log2(n), _log2(m)
        if sn >= 0 and sm >= 0:
            bad = _dot_pow2(vals, idx, sn, sm, xa, out)
        else:
            bad = _dot_any(vals, idx, n, m, xa, out)
    else:
        out = np.empty((rows, x.shape[1]), dtype=acc)
        tile = np.empty((min(_TILE_ROWS, rows), xa.shape[0]), dtype=acc)
        sn, sm = _log2(n), _log2(m)
        bad = False
        for r0 in range(0, rows, _TILE_ROWS):
            r1 = min(r0 + _TILE_ROWS, rows)
            if sn >= 0 and sm >= 0:
                bad |= _tile_pow2(vals, idx, sn, sm, r0, r1, tile)
            else:
                bad |= _tile(vals, idx, n, m, r0, r1, tile)
            np.dot(tile[: r1 - r0], xa, out=out[r0:r1])
    if bad:
        raise bad_index_error(idx, int(_first_bad(idx, m)), n, m)
    return out.astype(values.dtype, copy=False)


# -- event-driven kernel --------------------------------------------------------------

@dataclass(frozen=True)
class ColumnView:
    """Transposed weights of a packed ``(O, G*n)`` matrix: ``wt[k, o] = W[o, k]``,
    ``(K, O)``, C-contiguous, in the accumulator dtype; ``finite`` says whether every
    stored value is finite."""

    wt: np.ndarray
    finite: bool

    @property
    def nbytes(self) -> int:
        """Bytes held by the view."""
        return int(self.wt.nbytes)


@numba.njit(cache=True, nogil=True)
def _transpose(values, indices, n, m, wt):  # type: ignore[no-untyped-def]
    """Scatter the stored entries into zeroed ``wt`` ``(K, O)``, 64 rows at a time so the
    writes of neighbouring rows share cache lines; return whether some index is ``>= m``
    (that entry is not written)."""
    rows, width = values.shape
    groups = width // n
    bad = False
    for o0 in range(0, rows, 64):
        o1 = min(o0 + 64, rows)
        for g in range(groups):
            base = g * m
            for j in range(g * n, g * n + n):
                for o in range(o0, o1):
                    i = indices[o, j]
                    if i < m:
                        wt[base + i, o] = values[o, j]
                    else:
                        bad = True
    return bad


_VIEWS = view_cache.VIEWS
"""The cache of derived layouts (`spikenm.reference.view_cache`)."""


def column_view(values: np.ndarray, indices: np.ndarray, n: int, m: int) -> ColumnView:
    """The `ColumnView` of ``(values, indices)``, built on first use and cached while both
    arrays are alive (`spikenm.reference.view_cache`: the arrays are made read-only).

    Raises
    ------
    ValueError
        A stored index is ``>= m``.
    """
    shape = (values.shape[1] // n * m, values.shape[0])

    def build() -> ColumnView:
        acc = accumulator(np.dtype(values.dtype))
        vals = np.ascontiguousarray(values, dtype=acc)
        idx = np.ascontiguousarray(indices)
        wt = np.zeros(shape, dtype=acc)
        if _transpose(vals, idx, n, m, wt):
            raise bad_index_error(idx, int(_first_bad(idx, m)), n, m)
        return ColumnView(wt, vals.dtype.kind != "f" or bool(np.isfinite(vals).all()))

    return view_cache.cached("columns", values, indices, lambda v: v.wt.shape == shape, build)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _events_vec(wt, active, out):  # type: ignore[no-untyped-def]
    """``out += wt[k]`` for every active input ``k``, in increasing order."""
    cols = out.shape[0]
    for a in range(active.shape[0]):
        r = wt[active[a]]
        for o in range(cols):
            out[o] += r[o]


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _events_mat(wt, x, out_t):  # type: ignore[no-untyped-def]
    """``out_t[c] += wt[k]`` for every ``k`` with ``x[k, c]``, ``k`` increasing."""
    k_in, cols = x.shape
    width = out_t.shape[1]
    for k in range(k_in):
        r = wt[k]
        for c in range(cols):
            if x[k, c]:
                oc = out_t[c]
                for o in range(width):
                    oc[o] += r[o]


def spmm_events(values: np.ndarray, indices: np.ndarray, n: int, m: int,
                x: np.ndarray) -> np.ndarray:
    """``unpack(values, indices) @ x`` for a 0/1 ``x`` by the event-driven kernel (S3.6).

    ``y[o, c] = sum_{k : x[k, c] != 0, k ascending} W[o, k]`` summed left to right in the
    accumulator dtype: only active inputs are visited and their weights are added (no
    multiplies).  Every non-zero of ``x`` counts as 1: the caller checks that ``x`` holds
    only 0 and 1 (`binary_density`).

    Parameters
    ----------
    values : array ``(O, G * n)``
    indices : uint8 array ``(O, G * n)``, entries in ``[0, m)``
    n, m : int
    x : array ``(K,)`` or ``(K, P)`` of zeros and ones, ``K = G * m``, any real dtype or
        bool

    Returns
    -------
    array ``(O,)`` or ``(O, P)`` of the values' dtype

    Examples
    --------
    >>> import numpy as np
    >>> v, i = np.array([[5.0, 7.0]]), np.array([[1, 3]], dtype=np.uint8)
    >>> spmm_events(v, i, 2, 4, np.array([True, True, False, True]))
    array([12.])
    """
    wt = column_view(values, indices, n, m).wt
    rows = values.shape[0]
    if x.ndim == 1:
        out = np.zeros(rows, dtype=wt.dtype)
        _events_vec(wt, np.flatnonzero(x), out)
        return out.astype(values.dtype, copy=False)
    out_t = np.zeros((x.shape[1], rows), dtype=wt.dtype)
    _events_mat(wt, np.ascontiguousarray(x != 0), out_t)
    return out_t.T.astype(values.dtype, order="C")


# -- dispatch -------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _ones_or_bad(flat):  # type: ignore[no-untyped-def]
    """Number of ones in ``flat``, or -1 at the first entry neither 0 nor 1."""
    ones = 0
    for q in range(flat.shape[0]):
        v = flat[q]
        if v == 1:
            ones += 1
        elif v != 0:
            return -1
    return ones


def binary_density(x: np.ndarray) -> float | None:
    """Fraction of ones in ``x`` when every entry is 0 or 1 (always for bool), else None
    (one pass over ``x``; ``-0.0`` counts as 0, NaN as neither).

    Examples
    --------
    >>> import numpy as np
    >>> binary_density(np.array([0.0, 1.0, 1.0, 0.0])), binary_density(np.array([0.5]))
    (0.5, None)
    """
    if x.size == 0:
        return 0.0
    if x.dtype == np.bool_:
        return np.count_nonzero(x) / x.size
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype.name in ("float16", "bfloat16"):  # no 16-bit floats in Numba
        flat = flat.astype(np.float32)
    ones = _ones_or_bad(flat)
    return None if ones < 0 else ones / x.size


def choose_kernel(x: np.ndarray) -> str:
    """``"events"`` or ``"float"``: the kernel `spmm` runs for ``x``.

    ``"events"`` exactly when every entry of ``x`` is 0 or 1 (``x`` bool, or a check of
    the values) and the fraction of ones is at most ``EVENT_MAX_DENSITY`` at ``x``'s batch
    width ``P`` (1 for 1-D ``x``; the entry of the largest listed width ``<= P``).

    Examples
    --------
    >>> import numpy as np
    >>> choose_kernel(np.ones(4)), choose_kernel(np.ones((4, 64)))
    ('events', 'float')
    >>> choose_kernel(np.array([0.0, 0.5, 0.0, 0.0]))
    'float'
    """
    density = binary_density(x)
    if density is None:
        return "float"
    width = 1 if x.ndim == 1 else x.shape[1]
    limit = EVENT_MAX_DENSITY[max(p for p in EVENT_MAX_DENSITY if p <= max(width, 1))]
    return "events" if density <= limit else "float"


def spmm(values: np.ndarray, indices: np.ndarray, n: int, m: int, x: np.ndarray) -> np.ndarray:
    """``unpack(values, indices) @ x`` without building the dense matrix (SPEC S3.6), by
    the kernel `choose_kernel` picks: the event-driven one for 0/1 ``x`` below the
    density limit when every stored value is finite (a NaN or inf weight must meet the
    zeros of ``x`` as ``0 * inf = NaN``, as in the dense product, which only the float
    kernel forms), the float one otherwise.

    Parameters
    ----------
    values : array ``(O, G * n)``
    indices : uint8 array ``(O, G * n)``, entries in ``[0, m)``
    n, m : int
    x : array ``(K,)`` or ``(K, P)`` with ``K = G * m``, same dtype as ``values`` or bool

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
    if choose_kernel(x) == "events" and column_view(values, indices, n, m).finite:
        return spmm_events(values, indices, n, m, x)
    return spmm_float(values, indices, n, m, x)
