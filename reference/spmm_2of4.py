"""The 2:4 float kernel for one column, on 2-bit indices (SPEC S3.6, S3.8).

A 2:4 block's two indices are strictly increasing (S3.2), so the first is 0, 1 or 2 and
the second 1, 2 or 3: each takes 2 bits, and the ``x`` entry it reads is picked from the
block's four entries by two comparisons instead of a gather.  `Interleaved2of4` holds the
values transposed, ``vt[s, o] = values[o, s]`` (``(G*2, O)``, the accumulator dtype), and
the indices as 2-bit codes, four per byte: ``codes[h, o]`` holds, from the low bits up,
the two indices of block ``2h`` and the two of block ``2h + 1`` of row ``o`` (S3.8).  The
kernel walks the blocks in pairs, and for each pair adds to all ``O`` outputs at once,
which vectorizes over rows: it reads 8.5 bytes per float32 block against 10 for the S3.1
arrays and 16 for the dense row.  The view is built once per pair of packed arrays and
cached (`spikenm.reference.view_cache`); it costs ``(G*2*a + ceil(G/2)) * O`` bytes, ``a``
the accumulator item size: 34 MiB for a 4096x4096 float32 matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import view_cache
from .packing import bad_index_error

_FAST = {"reassoc", "contract"}
"""Reordered sums and fused multiply-add only: NaN and inf keep IEEE semantics."""


@dataclass(frozen=True)
class Interleaved2of4:
    """Transposed values ``vt`` ``(G*2, O)`` and 2-bit index codes ``(ceil(G/2), O)``
    of a packed 2:4 ``(O, G*2)`` matrix (S3.8)."""

    vt: np.ndarray
    codes: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes held by the view."""
        return int(self.vt.nbytes + self.codes.nbytes)


@numba.njit(cache=True, nogil=True)
def _interleave(values, indices, vt, codes):  # type: ignore[no-untyped-def]
    """Fill ``vt`` and ``codes``; return the flat position of the first block whose
    indices are not ``i0 < i1 <= 3`` (its second entry), or -1."""
    rows, width = values.shape
    for o in range(rows):
        for g in range(width // 2):
            i0 = indices[o, 2 * g]
            i1 = indices[o, 2 * g + 1]
            if not i0 < i1 <= 3:
                return o * width + 2 * g + 1
            vt[2 * g, o] = values[o, 2 * g]
            vt[2 * g + 1, o] = values[o, 2 * g + 1]
            shift = 4 * (g & 1)
            codes[g >> 1, o] |= (i0 | (i1 << 2)) << shift
    return -1


def interleaved_view(values: np.ndarray, indices: np.ndarray, acc: type[np.generic]
                     ) -> Interleaved2of4:
    """The cached `Interleaved2of4` of 2:4 ``(values, indices)`` ``(O, G*2)``.

    Raises
    ------
    ValueError
        An index ``>= 4`` (named as by the other kernels), or a block whose indices are not
        strictly increasing, named by row and block.
    """
    rows, width = values.shape
    groups = width // 2

    def build() -> Interleaved2of4:
        vt = np.empty((width, rows), dtype=acc)
        codes = np.zeros(((groups + 1) // 2, rows), dtype=np.uint8)
        bad = _interleave(np.ascontiguousarray(values, dtype=acc),
                          np.ascontiguousarray(indices), vt, codes)
        if bad >= 0:
            idx = np.ascontiguousarray(indices)
            if (idx >= 4).any():
                raise bad_index_error(idx, int(np.argmax((idx >= 4).reshape(-1))), 2, 4)
            row, p = divmod(int(bad), width)
            pair = [int(i) for i in indices[row, p - 1: p + 1]]
            raise ValueError(
                f"indices of block {p // 2} of row {row} are {pair}; a 2:4 block's indices "
                f"must be strictly increasing in [0, 4)"
            )
        return Interleaved2of4(vt, codes)

    def fits(view: Interleaved2of4) -> bool:
        return view.vt.shape == (width, rows) and view.vt.dtype == acc

    return view_cache.cached("interleaved2of4", values, indices, fits, build)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dot(vt, codes, x, out):  # type: ignore[no-untyped-def]
    """``out[o] = sum_s vt[s, o] * x[4*(s//2) + index(s, o)]``, blocks in pairs."""
    stored, rows = vt.shape
    groups = stored // 2
    for o in range(rows):
        out[o] = 0
    for h in range(groups // 2):
        b = 8 * h
        a0, a1, a2, a3 = x[b], x[b + 1], x[b + 2], x[b + 3]
        c0, c1, c2, c3 = x[b + 4], x[b + 5], x[b + 6], x[b + 7]
        v0, v1, v2, v3 = vt[4 * h], vt[4 * h + 1], vt[4 * h + 2], vt[4 * h + 3]
        code = codes[h]
        for o in range(rows):
            c = code[o]
            i, j, k, l = c & 3, (c >> 2) & 3, (c >> 4) & 3, c >> 6
            xa = a0 if i == 0 else (a1 if i == 1 else a2)
            xb = a1 if j == 1 else (a2 if j == 2 else a3)
            xc = c0 if k == 0 else (c1 if k == 1 else c2)
            xd = c1 if l == 1 else (c2 if l == 2 else c3)
            out[o] += (v0[o] * xa + v1[o] * xb) + (v2[o] * xc + v3[o] * xd)
    if groups % 2:
        g = groups - 1
        b = 4 * g
        a0, a1, a2, a3 = x[b], x[b + 1], x[b + 2], x[b + 3]
        v0, v1 = vt[2 * g], vt[2 * g + 1]
        code = codes[g >> 1]
        for o in range(rows):
            c = code[o]
            i, j = c & 3, (c >> 2) & 3
            xa = a0 if i == 0 else (a1 if i == 1 else a2)
            xb = a1 if j == 1 else (a2 if j == 2 else a3)
            out[o] += v0[o] * xa + v1[o] * xb


def spmm_vector(values: np.ndarray, indices: np.ndarray, x: np.ndarray,
                acc: type[np.generic]) -> np.ndarray:
    """``unpack(values, indices) @ x`` for 2:4 ``(O, G*2)`` packed arrays and 1-D ``x``
    ``(G*4,)``, in the accumulator dtype ``acc`` (float32 or float64).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[5.0, 7.0, 1.0, 2.0]])
    >>> i = np.array([[1, 3, 0, 2]], dtype=np.uint8)
    >>> spmm_vector(v, i, np.arange(8.0), np.float64)
    array([42.])
    """
    view = interleaved_view(values, indices, acc)
    out = np.empty(values.shape[0], dtype=acc)
    _dot(view.vt, view.codes, np.ascontiguousarray(x, dtype=acc), out)
    return out
