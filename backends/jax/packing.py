"""The packed N:M format on JAX arrays (SPEC S3.1-S3.3): block counts, pack, unpack and
the sparse-times-dense product.

Every function is pure ``jax.numpy`` with static shapes, so it runs under ``jax.jit``
and ``jax.vmap``.  Values are moved by gathers and scatters, never by arithmetic, so
they come back bit for bit (``-0.0`` and NaN payloads of kept entries included) for
every real dtype.  `unpack` and `spmm` check on concrete input that every index is in
``[0, m)`` (XLA would otherwise drop or clamp an out-of-range index silently); traced
indices cannot be checked and are trusted, as they come from `pack` or a validated
container.  The array work is compiled once per shape, dtype and pattern (``n`` and
``m`` static) and inlined inside a caller's ``jax.jit``.

Concrete arrays on the CPU take the reference backend's fused Numba kernels instead
(`block_nnz`, `pack`, `unpack`: the NumPy view of the array, the kernel, one copy back
into a JAX array), which give the same bits in one pass per block; traced arrays and
arrays on other devices take the compiled path above and stay where they are.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from spikenm.reference import packing as host

from .arrays import is_traced
from .blocks import from_blocks, to_blocks

__all__ = ["block_nnz", "pack", "unpack", "spmm"]


_UNSIGNED = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def nonzero(x: jax.Array) -> jax.Array:
    """``x != 0`` as SPEC S3.3 means it, also where XLA flushes subnormals to zero.

    XLA on CPU compares floats with subnormals flushed, so ``1.4e-45 != 0`` would be
    False and a subnormal weight would be dropped.  Floats are therefore tested on their
    bits with the sign bit cleared: ``-0.0`` is zero, NaN and subnormals are non-zero.

    Examples
    --------
    >>> nonzero(jnp.array([0.0, -0.0, 1e-45, jnp.nan], dtype=jnp.float32))
    Array([False, False,  True,  True], dtype=bool)
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return x != 0
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize])
    magnitude = np.array((1 << (8 * x.dtype.itemsize - 1)) - 1).astype(bits.dtype)
    return (bits & magnitude) != 0


def _on_host(*arrays: jax.Array) -> bool:
    """Whether every array is concrete and lives on the CPU (then the reference kernels
    run on its memory)."""
    for a in arrays:
        if is_traced(a):
            return False
        try:
            if any(d.platform != "cpu" for d in a.devices()):
                return False
        except AttributeError:  # not a jax.Array (a NumPy array handed in directly)
            pass
    return True


def _to_jax(a: np.ndarray) -> jax.Array:
    """A fresh NumPy result as a JAX array: through DLPack where the dtype allows it
    (no extra pass on the CPU), else `jnp.asarray` (bfloat16, which DLPack lacks)."""
    if a.dtype.name != "bfloat16":
        try:
            return jnp.from_dlpack(a)
        except (BufferError, TypeError, RuntimeError, ValueError):
            pass
    return jnp.asarray(a)


def block_nnz(x: jax.Array, m: int) -> jax.Array:
    """Number of non-zero entries in each block of ``m`` along the last axis.

    ``nnz[..., g] = #{i < m : x[..., g*m + i] != 0}``; ``-0.0`` counts as zero and NaN
    as non-zero.

    Returns
    -------
    int64 array ``(..., K // m)``; int32 when 64-bit types are disabled (JAX's default)

    Examples
    --------
    >>> block_nnz(jnp.array([[0.0, 1.0, 2.0, 0.0, 3.0, 0.0, 0.0, 0.0]]), 4)
    Array([[2, 1]], dtype=int32)
    """
    count = jax.dtypes.canonicalize_dtype(np.int64)
    if _on_host(x):
        return _to_jax(host.block_nnz(np.asarray(x), m).astype(count, copy=False))
    return _block_nnz(x, m)


@partial(jax.jit, static_argnames=("m",))
def _block_nnz(x: jax.Array, m: int) -> jax.Array:
    """`block_nnz` compiled per shape (traced or non-CPU arrays)."""
    count = jax.dtypes.canonicalize_dtype(np.int64)
    return jnp.sum(nonzero(to_blocks(x, m)), axis=-1, dtype=count)


def pack(w: jax.Array, keep: jax.Array, n: int, m: int) -> tuple[jax.Array, jax.Array]:
    """Packed ``(values, indices)`` of the entries of ``w`` where ``keep != 0``.

    Per block, with ``c`` kept entries (``c <= n``, checked by the caller), the selected
    positions are the kept ones plus the ``n - c`` smallest unkept ones (SPEC S3.2):

    ``sel_i = kept_i or #{j <= i : not kept_j} <= n - c``.

    The ``n`` selected positions in ascending order are the first ``n`` entries of
    ``sort(where(sel, i, m))``; ``values`` gathers ``w`` there, with 0 at padded positions,
    and ``indices`` holds the positions as uint8 (SPEC S3.1).  A block keeping more than
    ``n`` entries is not detected under ``jit`` (no values): `spikenm.api.pack` refuses
    it beforehand; concrete CPU arrays go through the reference kernel, which raises
    ``ValueError`` on it.

    Examples
    --------
    >>> v, i = pack(jnp.array([0.0, 5.0, 0.0, 0.0]), jnp.array([0, 1, 0, 0]), 2, 4)
    >>> v, i
    (Array([0., 5.], dtype=float32), Array([0, 1], dtype=uint8))
    """
    if _on_host(w, keep):
        values, indices = host.pack(np.asarray(w), np.asarray(keep), n, m)
        return _to_jax(values), _to_jax(indices)
    return _pack(w, keep, n, m)


@partial(jax.jit, static_argnames=("n", "m"))
def _pack(w: jax.Array, keep: jax.Array, n: int, m: int) -> tuple[jax.Array, jax.Array]:
    """`pack` compiled per shape and pattern (traced or non-CPU arrays)."""
    kept = nonzero(to_blocks(keep, m))
    count = jnp.sum(kept, axis=-1, keepdims=True, dtype=jnp.int32)
    unkept_so_far = jnp.cumsum(~kept, axis=-1, dtype=jnp.int32)
    selected = kept | (unkept_so_far <= n - count)
    position = jnp.arange(m, dtype=jnp.int32)
    idx = jnp.sort(jnp.where(selected, position, m), axis=-1)[..., :n]
    floating = jnp.issubdtype(w.dtype, jnp.floating)
    source = jax.lax.bitcast_convert_type(w, _UNSIGNED[w.dtype.itemsize]) if floating else w
    taken = jnp.take_along_axis(to_blocks(source, m), idx, axis=-1)
    values = jnp.where(jnp.take_along_axis(kept, idx, axis=-1), taken,
                       jnp.zeros((), source.dtype))
    if floating:  # selected as bits: XLA's select would flush subnormals to zero
        values = jax.lax.bitcast_convert_type(values, w.dtype)
    return from_blocks(values), from_blocks(idx.astype(jnp.uint8))


def _check_indices(indices: jax.Array, n: int, m: int) -> None:
    """Raise ``ValueError`` at the first index ``>= m`` of concrete ``indices``."""
    if is_traced(indices):
        return
    bad = np.argwhere(np.asarray(indices).astype(np.int64) >= m)
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"indices[{', '.join(map(str, where))}] (block {where[-1] // n}) is "
            f"{int(np.asarray(indices)[where])}; expected a value in [0, {m})"
        )


def unpack(values: jax.Array, indices: jax.Array, n: int, m: int) -> jax.Array:
    """Dense array from packed ``(values, indices)`` (inverse of `pack`, SPEC S3.1).

    ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``, every other entry
    0, by one scatter into zeros.

    Raises
    ------
    ValueError
        A concrete index is ``>= m``.

    Examples
    --------
    >>> unpack(jnp.array([5.0, 7.0]), jnp.array([1, 3], dtype=jnp.uint8), 2, 4)
    Array([0., 5., 0., 7.], dtype=float32)
    """
    if _on_host(values, indices):
        vals, idx = np.asarray(values), np.asarray(indices)
        width = vals.shape[-1]
        dense, bad = host.unpack_bits(host._bits(vals).reshape(-1),  # noqa: SLF001
                                      np.ascontiguousarray(idx).reshape(-1), n, m)
        if bad >= 0:
            _check_indices(indices, n, m)  # raises, naming the first bad index
        return _to_jax(dense.view(vals.dtype).reshape(*vals.shape[:-1], width // n * m))
    _check_indices(indices, n, m)
    return _unpack(values, indices, n, m)


@partial(jax.jit, static_argnames=("n", "m"))
def _unpack(values: jax.Array, indices: jax.Array, n: int, m: int) -> jax.Array:
    """`unpack` without the index check, compiled per shape and pattern."""
    idx = to_blocks(indices, n).astype(jnp.int32)
    dense = jnp.zeros((*idx.shape[:-1], m), values.dtype)
    dense = jnp.put_along_axis(dense, idx, to_blocks(values, n), axis=-1, inplace=False)
    return from_blocks(dense)


def _accumulator(dtype: np.dtype) -> np.dtype:
    """dtype `spmm` accumulates in: float32 for 16-bit floats, the widest enabled integer
    for integers (wrapping on the cast back), the values' own dtype otherwise."""
    if jnp.issubdtype(dtype, jnp.integer) or dtype == np.bool_:
        wide = np.uint64 if jnp.issubdtype(dtype, jnp.unsignedinteger) else np.int64
        return jax.dtypes.canonicalize_dtype(wide)
    if jnp.finfo(dtype).bits < 32:
        return np.dtype(np.float32)
    return np.dtype(dtype)


def spmm(values: jax.Array, indices: jax.Array, n: int, m: int, x: jax.Array) -> jax.Array:
    """``unpack(values, indices) @ x`` without building the dense ``(O, K)`` matrix.

    ``y[o, :] = sum_c values[o, c] * x[col[o, c], :]`` with
    ``col[o, g*n + j] = g*m + indices[o, g*n + j]``: one gather of the rows of ``x`` the
    stored entries touch, then a contraction over ``c`` at ``Precision.HIGHEST``.  The
    gather holds ``O * G * n * P`` numbers.  float16/bfloat16 accumulate in float32 and
    integers in the widest enabled integer type, then the result is cast to the values'
    dtype (integers wrap, as NumPy's matmul does).

    Parameters
    ----------
    values, indices : arrays ``(O, G * n)``
    x : array ``(K,)`` or ``(K, P)``, ``K = G * m``

    Returns
    -------
    array ``(O,)`` or ``(O, P)`` of the values' dtype

    Examples
    --------
    >>> v, i = jnp.array([[5.0, 7.0]]), jnp.array([[1, 3]], dtype=jnp.uint8)
    >>> spmm(v, i, 2, 4, jnp.array([1.0, 1.0, 0.0, 2.0]))
    Array([19.], dtype=float32)
    """
    _check_indices(indices, n, m)
    return _spmm(values, indices, n, m, x)


@partial(jax.jit, static_argnames=("n", "m"))
def _spmm(values: jax.Array, indices: jax.Array, n: int, m: int, x: jax.Array) -> jax.Array:
    """`spmm` without the index check, compiled per shape and pattern."""
    width = values.shape[-1]
    base = jnp.repeat(jnp.arange(width // n, dtype=jnp.int32) * m, n)
    col = base + indices.astype(jnp.int32)
    acc = _accumulator(np.dtype(values.dtype))
    gathered = x.astype(acc)[col]
    spec = "oc,oc->o" if x.ndim == 1 else "oc,ocp->op"
    y = jnp.einsum(
        spec, values.astype(acc), gathered,
        precision=lax.Precision.HIGHEST, preferred_element_type=acc,
    )
    return y.astype(values.dtype)
