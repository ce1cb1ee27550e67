"""Array plumbing of the JAX backend: dtype names, axes, finiteness, NumPy conversion.

Every function accepts concrete ``jax.Array`` values and tracers (inside ``jax.jit``,
``jax.grad`` or ``jax.vmap``); only `all_finite` and `to_numpy` need values, and
`all_finite` reports ``None`` instead of failing when they are not available.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "dtype_name", "moveaxis", "all_finite", "to_numpy", "from_numpy", "is_traced",
    "cotangent_like",
]


def is_traced(x: Any) -> bool:
    """True when ``x`` is a tracer, i.e. its values are not available (jit, grad, vmap).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> is_traced(jnp.zeros(2))
    False
    >>> jax.jit(lambda v: jnp.asarray(is_traced(v)))(jnp.zeros(2))
    Array(True, dtype=bool)
    """
    return isinstance(x, jax.core.Tracer)


def dtype_name(x: jax.Array) -> str:
    """Canonical dtype name: ``'float32'``, ``'float64'``, ``'bfloat16'``, ``'int8'``, ...

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> dtype_name(jnp.zeros(2, jnp.bfloat16))
    'bfloat16'
    """
    return np.dtype(x.dtype).name


def moveaxis(x: jax.Array, source: int, destination: int) -> jax.Array:
    """``jnp.moveaxis``: axis ``source`` of ``x`` moved to position ``destination``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> moveaxis(jnp.zeros((2, 3, 4)), 0, 2).shape
    (3, 4, 2)
    """
    return jnp.moveaxis(x, source, destination)


def all_finite(x: jax.Array) -> bool | None:
    """Whether ``x`` has no NaN or inf; ``None`` when ``x`` is a tracer (no values).

    Integer and bool arrays are always finite.  Returning ``None`` under tracing lets
    `spikenm.api` skip the value checks of SPEC S0.5 inside ``jax.jit`` (and refuse the
    operations that cannot do without values, such as packing).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> all_finite(jnp.array([1.0, jnp.inf])), all_finite(jnp.arange(3))
    (False, True)
    """
    if is_traced(x):
        return None
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return True
    with jax.ensure_compile_time_eval():  # a concrete constant inside a trace stays concrete
        return bool(jnp.isfinite(x).all())


def to_numpy(x: jax.Array) -> np.ndarray:
    """A writeable NumPy copy of ``x``; bfloat16 comes back as its uint16 bit pattern.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> to_numpy(jnp.ones(2, jnp.bfloat16))
    array([16256, 16256], dtype=uint16)
    """
    a = np.array(x)
    if a.dtype.name == "bfloat16":
        return a.view(np.uint16)
    return a


def from_numpy(a: np.ndarray, like: jax.Array | None = None) -> jax.Array:
    """``a`` as a JAX array, on the device of ``like`` (the default device if None).

    The dtype is kept.  A 64-bit array while 64-bit types are disabled would be
    truncated to 32 bits by JAX; that is refused instead.

    Raises
    ------
    TypeError
        ``a`` is 64-bit and ``jax_enable_x64`` is off.

    Examples
    --------
    >>> import numpy as np
    >>> from_numpy(np.zeros(3, np.float32)).dtype
    dtype('float32')
    """
    a = np.asarray(a)
    if jax.dtypes.canonicalize_dtype(a.dtype) != a.dtype:
        raise TypeError(
            f"a {a.dtype} array needs 64-bit types in JAX, which are disabled; call "
            f"jax.config.update('jax_enable_x64', True) or work inside "
            f"`with jax.enable_x64(True):` (from the command line: set JAX_ENABLE_X64=1)"
        )
    if like is not None and not is_traced(like):
        devices = like.devices()
        if len(devices) == 1:
            return jax.device_put(a, next(iter(devices)))
    return jnp.asarray(a)


def cotangent_like(cotangent: Any, out: jax.Array) -> jax.Array:
    """``cotangent`` as the cotangent of ``out``: same shape (checked), ``out``'s dtype.

    A Python number or a 0-d array is accepted for a 0-d ``out`` (the EID loss); the
    value is converted to ``out``'s dtype, as the reference does.

    Raises
    ------
    ValueError
        The shapes differ.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> cotangent_like(1, jnp.zeros((), jnp.float32))
    Array(1., dtype=float32)
    """
    cot = jnp.asarray(cotangent)
    if cot.shape != out.shape:
        raise ValueError(
            f"cotangent has shape {tuple(cot.shape)}; expected the output shape "
            f"{tuple(out.shape)}"
        )
    return cot.astype(out.dtype)
