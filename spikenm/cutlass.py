"""2:4 hardware export in PyTorch's CUTLASS layout (SPEC S3.4).

The export only re-encodes the packed indices; it is framework-neutral: the metadata is
computed on the host (one Numba pass over the ``uint8`` indices, words stored at the
positions `meta_offsets` gives, cached per shape) and handed back as an array of the
caller's framework, next to the packed values (unchanged, or cast through the caller's
framework when ``dtype=`` asks for a 16-bit float).

Layout, for a ``(rows, k)`` 2:4 matrix:

* block ``b`` of row ``r`` (dense columns ``4b .. 4b+3``) stores its two indices
  ``i0 < i1`` as the nibble ``i0 | i1 << 2``; the six valid nibbles are
  4 (0,1), 8 (0,2), 12 (0,3), 9 (1,2), 13 (1,3) and 14 (2,3);
* ``Q`` nibbles form one metadata word, first block in the lowest bits:
  ``word[r, c] = sum_q nibble[r, c*Q + q] << 4q`` with ``Q = 4`` (int16 words, for
  float16/bfloat16 values) or ``Q = 8`` (int32 words, for int8 values);
* the ``(rows, k / (4Q))`` word matrix is scattered to the CUTLASS interleaved order:
  ``meta.flat[offset(r, c)] = word[r, c]`` with `meta_offsets`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numba
import numpy as np

from . import validation as check
from .dispatch import backend_for, framework_of
from .container import numpy_bfloat16
from .packed import Packed
from .protocol import Backend

VALID_NIBBLES = (4, 8, 9, 12, 13, 14)
"""``i0 | i1 << 2`` for the six index pairs ``i0 < i1`` of a block of four."""

_WORDS: dict[str, tuple[type[np.signedinteger], int, int]] = {
    # values dtype: (meta word type, rows multiple, k multiple)
    "float16": (np.int16, 32, 32),
    "bfloat16": (np.int16, 32, 32),
    "int8": (np.int32, 16, 64),
}
_CAST_TARGETS = ("float16", "bfloat16")
_FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38}


def meta_offsets(rows: int, ncols: int, word_bytes: int) -> np.ndarray:
    """Flat positions of the metadata words in CUTLASS's interleaved layout.

    Word ``(r, c)`` of the ``(rows, ncols)`` word matrix goes to ``flat[offset]`` of the
    reordered ``(rows, ncols)`` matrix.  With ``(G, W) = (32, 4)`` for 2-byte words and
    ``(16, 2)`` for 4-byte words:
    ``r' = r // G * G + (r % 8) * W + (r % G) // 8``; inside each 2x2 tile of
    ``(r', c)`` the off-diagonal pair is swapped (``s = [r' even, c odd] - [r' odd,
    c even]``, ``r' += s``, ``c' = c - s``); then
    ``offset = (c' // 2) * 2 * rows + 2 * r' + c' % 2`` (column-major, interleave 2).
    Needs ``rows % G == 0`` and an even ``ncols``; it is then a permutation.

    Examples
    --------
    >>> meta_offsets(32, 2, 2)[:6]
    array([ 0,  2,  8, 10, 16, 18])
    """
    group, weave = (32, 4) if word_bytes == 2 else (16, 2)
    r = np.arange(rows, dtype=np.int64)[:, None]
    c = np.arange(ncols, dtype=np.int64)[None, :]
    r = np.broadcast_to(r // group * group + (r % 8) * weave + (r % group) // 8, (rows, ncols))
    swap = ((r % 2 == 0) & (c % 2 == 1)).astype(np.int64) - ((r % 2 == 1) & (c % 2 == 0))
    r, c = r + swap, c - swap
    return ((c // 2) * 2 * rows + 2 * r + c % 2).reshape(-1)


@lru_cache(maxsize=8)
def _offsets(rows: int, ncols: int, word_bytes: int) -> np.ndarray:
    """`meta_offsets`, computed once per shape (read-only)."""
    out = meta_offsets(rows, ncols, word_bytes)
    out.flags.writeable = False
    return out


_VALID = np.zeros(16, dtype=bool)
_VALID[list(VALID_NIBBLES)] = True
"""``_VALID[nibble]``: whether a nibble is one of `VALID_NIBBLES`."""


@numba.njit(cache=True, nogil=True)
def _encode(idx, q, offsets, meta):  # type: ignore[no-untyped-def]
    """Words of the ``(rows, k // 2)`` uint8 indices into ``meta.flat[offsets]``: word
    ``(r, c)`` holds the nibbles ``i0 | i1 << 2`` of blocks ``c*q .. c*q+q-1`` of row
    ``r``, first block lowest.  Returns the flat ``(row, block)`` position of the first
    block whose indices are not strictly increasing in ``[0, 4)``, or -1."""
    rows, half = idx.shape
    blocks = half // 2
    ncols = blocks // q
    for r in range(rows):
        for c in range(ncols):
            word = 0
            for j in range(q):
                b = c * q + j
                i0 = idx[r, 2 * b]
                i1 = idx[r, 2 * b + 1]
                if i0 >= i1 or i1 > 3:
                    return r * blocks + b
                word |= (np.int64(i0) | np.int64(i1) << 2) << (4 * j)
            meta[offsets[r * ncols + c]] = word
    return -1


@numba.njit(cache=True, nogil=True)
def _decode(stored, q, offsets, valid, idx):  # type: ignore[no-untyped-def]
    """Inverse of `_encode`: the index pairs of the words ``stored[offsets]`` into
    ``idx`` ``(rows, k // 2)``; returns the flat ``(row, block)`` position of the first
    nibble that is not in `VALID_NIBBLES`, or -1."""
    rows, half = idx.shape
    blocks = half // 2
    ncols = blocks // q
    for r in range(rows):
        for c in range(ncols):
            word = np.int64(stored[offsets[r * ncols + c]])
            for j in range(q):
                b = c * q + j
                nib = (word >> (4 * j)) & 0xF
                if not valid[nib]:
                    return r * blocks + b
                idx[r, 2 * b] = nib & 3
                idx[r, 2 * b + 1] = nib >> 2
    return -1


def _layout(dtype: str, what: str) -> tuple[type[np.signedinteger], int, int]:
    """Metadata word type and shape multiples for values of ``dtype``."""
    if dtype == "float32":
        raise TypeError(
            f"{what} are float32: in PyTorch's CUTLASS layout float32 is a 1:2 format, not "
            f"2:4; pass dtype='float16' or dtype='bfloat16' to export through a 16-bit type"
        )
    if dtype not in _WORDS:
        raise TypeError(
            f"{what} have dtype {dtype}; the 2:4 CUTLASS export takes float16, bfloat16 or "
            f"int8 (float32/float64 via dtype='float16' or 'bfloat16')"
        )
    return _WORDS[dtype]


def _check_shape(rows: int, k: int, dtype: str) -> None:
    _, row_mult, k_mult = _WORDS[dtype]
    if rows % row_mult or k % k_mult or k == 0 or rows == 0:
        raise ValueError(
            f"the 2:4 CUTLASS layout for {dtype} needs rows % {row_mult} == 0 and "
            f"k % {k_mult} == 0 (both positive), got a ({rows}, {k}) matrix"
        )


def _target_name(dtype: Any) -> str:
    """Canonical name of a ``dtype=`` argument: 'float16' or 'bfloat16'."""
    if isinstance(dtype, str):
        name = dtype
    elif str(dtype).startswith("torch."):
        name = str(dtype)[len("torch."):]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
    if name not in _CAST_TARGETS:
        raise ValueError(
            f"dtype must be 'float16' or 'bfloat16' (the 16-bit float types of the 2:4 "
            f"layout), got {dtype!r}"
        )
    return name


def _float_values(be: Backend, x: Any) -> np.ndarray:
    """float64 NumPy values of a float array (bfloat16 bits decoded)."""
    a = be.to_numpy(x)
    if be.dtype_name(x) == "bfloat16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float64)


def _cast(be: Backend, values: Any, target: str) -> Any:
    """``values`` cast to ``target`` through the caller's own framework.

    Rounding is what the framework's cast does; a finite value that overflows the
    target's range raises instead of turning into inf.
    """
    source = be.dtype_name(values)
    if source not in ("float16", "bfloat16", "float32", "float64"):
        raise TypeError(
            f"dtype={target!r} casts float weights for export; packed values are {source} "
            f"(int8 values are exported as they are, with dtype=None)"
        )
    if source == target:
        return values
    kind = framework_of(values, "values")
    if kind == "numpy":
        if target == "bfloat16":
            bfloat16 = numpy_bfloat16("exporting NumPy values as bfloat16")
            with np.errstate(over="ignore"):  # overflow is reported below
                out = values.astype(bfloat16)
        else:
            with np.errstate(over="ignore"):
                out = values.astype(np.float16)
    elif kind == "torch":
        import torch

        out = values.to(getattr(torch, target))
    elif kind == "jax":
        import jax.numpy as jnp

        out = values.astype(getattr(jnp, target))
    else:
        xp = values.__array_namespace__()
        if not hasattr(xp, target):
            raise TypeError(f"{xp.__name__} has no {target} dtype to export through")
        out = xp.astype(values, getattr(xp, target))
    if be.all_finite(values) and be.all_finite(out) is False:
        before, after = _float_values(be, values), _float_values(be, out)
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(after))[0])
        raise ValueError(
            f"values{list(where)} = {float(before[where])!r} does not fit {target} (largest finite "
            f"{_FLOAT_MAX[target]:g}); rescale the weights or use another dtype"
        )
    return out


def _check_packed(packed: Any) -> Backend:
    """The S3.10 checks of every `Packed` (`spikenm.validation.packed`), then S3.4's."""
    be = check.packed(packed)
    if (packed.n, packed.m) != (2, 4):
        raise ValueError(
            f"the CUTLASS export is for the 2:4 pattern, got {packed.n}:{packed.m}"
        )
    if len(packed.shape) != 2:
        raise ValueError(
            f"the CUTLASS export needs a 2-D (rows, k) matrix, got shape {packed.shape}"
        )
    if packed.axis != 1:
        raise ValueError(
            f"the CUTLASS export needs blocks along the last axis (axis=1) of the (rows, k) "
            f"matrix, got axis={packed.axis}; pack the transposed weight instead"
        )
    return be


def to_cutlass(packed: Packed, *, dtype: Any = None) -> tuple[Any, Any]:
    """Export a 2:4 `Packed` matrix as CUTLASS ``(values, meta)`` (SPEC S3.4).

    ``values`` are the packed values ``(rows, k / 2)``, unchanged (or cast to ``dtype``
    through the caller's framework).  ``meta`` holds the nibble ``i0 | i1 << 2`` of every
    block, ``Q`` per word (``Q = 4``: int16 ``(rows, k / 16)`` for float16/bfloat16;
    ``Q = 8``: int32 ``(rows, k / 32)`` for int8), first block in the lowest bits, in
    CUTLASS's interleaved order (`meta_offsets`).  On blocks with two non-zeros this is
    PyTorch's ``sparse_semi_structured_from_dense_cutlass`` bit for bit; other blocks
    keep the S3.2 padding indices and decode to the same dense matrix.

    Parameters
    ----------
    packed : Packed
        2:4, 2-D ``(rows, k)``, blocks along axis 1; float16/bfloat16 need
        ``rows % 32 == 0`` and ``k % 32 == 0``, int8 ``rows % 16 == 0`` and
        ``k % 64 == 0``.
    dtype : None, 'float16' or 'bfloat16'
        Cast float values first (float32 is a 1:2 format in this layout and is refused
        without it).

    Returns
    -------
    values, meta : arrays of the caller's framework

    Examples
    --------
    >>> import numpy as np
    >>> from spikenm.api import pack
    >>> w = np.tile(np.array([0, 0, 1, 1], dtype=np.float16), (32, 8))
    >>> values, meta = to_cutlass(pack(w, 2, 4))
    >>> values.shape, meta.shape, int(meta[0, 0])
    ((32, 16), (32, 2), -4370)
    """
    be = _check_packed(packed)
    values = packed.values
    if dtype is not None:
        values = _cast(be, values, _target_name(dtype))
    name = be.dtype_name(values)
    word, _, _ = _layout(name, "packed values")
    rows, k = packed.shape
    _check_shape(rows, k, name)
    if tuple(values.shape) != (rows, k // 2):
        raise ValueError(
            f"packed values must have shape {(rows, k // 2)}, got {tuple(values.shape)}"
        )
    idx = check.concrete(be, "indices", packed.indices, "to_cutlass")
    if idx.shape != (rows, k // 2) or idx.dtype != np.uint8:
        raise ValueError(
            f"packed indices must be uint8 of shape {(rows, k // 2)}, got {idx.dtype} "
            f"{idx.shape}"
        )
    q = 2 * np.dtype(word).itemsize
    ncols = k // (4 * q)
    unsigned = np.dtype(f"u{np.dtype(word).itemsize}")
    meta = np.empty(rows * ncols, dtype=unsigned)
    bad = _encode(np.ascontiguousarray(idx), q, _offsets(rows, ncols, unsigned.itemsize),
                  meta)
    if bad >= 0:
        r, b = divmod(int(bad), k // 4)
        pair = idx[r, 2 * b:2 * b + 2].tolist()
        raise ValueError(
            f"packed indices of row {r}, block {b} are {pair}; expected two "
            f"strictly increasing indices in [0, 4)"
        )
    meta = meta.view(word)
    return values, be.from_numpy(meta.reshape(rows, ncols), like=values)


def from_cutlass(values: Any, meta: Any) -> Packed:
    """Decode CUTLASS ``(values, meta)`` back to a 2:4 `Packed` (SPEC S3.4).

    Inverse of `to_cutlass`: undoes the interleaving, splits every word into its
    nibbles and every nibble into the index pair ``(nibble & 3, nibble >> 2)``.  The
    indices are those stored in ``meta`` (for PyTorch's own output on blocks with fewer
    than two non-zeros they are not the S3.2 padding, but decode to the same dense).

    Parameters
    ----------
    values : array ``(rows, k / 2)``, float16/bfloat16 (with int16 meta) or int8 (with
        int32 meta)
    meta : array ``(rows, k / 16)`` int16 or ``(rows, k / 32)`` int32

    Returns
    -------
    Packed
        ``n:m = 2:4``, shape ``(rows, k)``, axis 1, arrays of the caller's framework.

    Raises
    ------
    ValueError
        Shapes that do not fit, or a nibble that is not one of 4, 8, 9, 12, 13, 14.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.ones((32, 16), dtype=np.float16)
    >>> p = from_cutlass(values, np.full((32, 2), -4370, dtype=np.int16))
    >>> p.indices[0, :4]
    array([2, 3, 2, 3], dtype=uint8)
    """
    check.present(values=values, meta=meta)
    be = backend_for(values=values, meta=meta)
    if len(values.shape) != 2 or len(meta.shape) != 2:
        raise ValueError(
            f"values and meta must be 2-D, got shapes {tuple(values.shape)} and "
            f"{tuple(meta.shape)}"
        )
    name = be.dtype_name(values)
    word, _, _ = _layout(name, "values")
    if be.dtype_name(meta) != np.dtype(word).name:
        raise TypeError(
            f"meta for {name} values must be {np.dtype(word).name}, got {be.dtype_name(meta)}"
        )
    rows, half = (int(s) for s in values.shape)
    q = 2 * np.dtype(word).itemsize
    k = 2 * half
    if tuple(meta.shape) != (rows, k // (4 * q)) or k % (4 * q):
        raise ValueError(
            f"meta for values of shape {(rows, half)} must have shape "
            f"({rows}, {half} / {2 * q}), got {tuple(meta.shape)}"
        )
    _check_shape(rows, k, name)
    ncols = k // (4 * q)
    unsigned = np.dtype(f"u{np.dtype(word).itemsize}")
    stored = check.concrete(be, "meta", meta, "from_cutlass").view(unsigned).reshape(-1)
    idx = np.empty((rows, half), dtype=np.uint8)
    bad = _decode(np.ascontiguousarray(stored), q,
                  _offsets(rows, ncols, unsigned.itemsize), _VALID, idx)
    if bad >= 0:
        r, b = divmod(int(bad), k // 4)
        c, j = divmod(b, q)
        offset = _offsets(rows, ncols, unsigned.itemsize)[r * ncols + c]
        nibble = int(stored[offset]) >> (4 * j) & 0xF
        raise ValueError(
            f"meta holds nibble {nibble} for row {r}, block {b} (dense columns "
            f"{4 * b}:{4 * b + 4}); expected one of {VALID_NIBBLES}"
        )
    return Packed(values, be.from_numpy(idx, like=values), 2, 4, (rows, k), 1)
