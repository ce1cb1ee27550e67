"""Gumbel noise from JAX's counter-based generator (SPEC S1.6).

The noise is drawn from a ``jax.random`` key: `prng_key` turns an integer seed into
one (the host-seeded stream of S5.2), and `as_key` accepts a key the caller made
(``jax.random.key``, ``jax.random.fold_in`` ..., also inside ``jax.jit``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["prng_key", "as_key", "gumbel_like"]

_MAX_SEED = 2**64 - 1


def prng_key(seed: int) -> jax.Array:
    """The threefry2x32 key of ``seed``: key data ``[seed >> 32, seed & 0xFFFFFFFF]``.

    This is ``jax.random.key(seed)`` (``PRNGKey``) for every seed below ``2**63`` with
    64-bit types enabled, and for every seed below ``2**32`` in any configuration.  It is
    built explicitly so that the numbers depend on the seed only: neither the
    ``jax_enable_x64`` flag (which otherwise truncates seeds to 32 bits) nor the
    ``jax_default_prng_impl`` flag changes them.

    Raises
    ------
    ValueError
        ``seed`` does not fit 64 bits.

    Examples
    --------
    >>> jax.random.key_data(prng_key(2**32 + 5))
    Array([1, 5], dtype=uint32)
    """
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**64 - 1] for the JAX backend, got {seed}")
    words = np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)
    return jax.random.wrap_key_data(jnp.asarray(words), impl="threefry2x32")


def is_key(seed: Any) -> bool:
    """``seed`` is a ``jax.Array`` (a tracer too): a candidate key, checked by `as_key`."""
    return isinstance(seed, jax.Array)


def as_key(seed: Any) -> jax.Array:
    """A typed ``jax.random`` key from ``seed`` (S1.6).

    ``seed`` is a Python integer (`prng_key`), a typed key of shape ``()``
    (``jax.random.key``, any implementation; returned as it is) or a legacy raw key, a
    ``uint32`` array of shape ``(2,)`` (``jax.random.PRNGKey``), read as threefry2x32
    key data, so that ``as_key(jax.random.key_data(prng_key(s)))`` draws what the seed
    ``s`` draws.  Works on traced keys inside ``jax.jit``.

    Raises
    ------
    TypeError
        A ``jax.Array`` that is neither kind of key (e.g. an ``int32`` step number).
    ValueError
        An array of several typed keys, or an integer outside ``[0, 2**64 - 1]``.

    Examples
    --------
    >>> k = jax.random.key(3)
    >>> as_key(k) is k, as_key(jax.random.PRNGKey(3)).shape
    (True, ())
    """
    if not is_key(seed):
        return prng_key(seed)
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        if seed.shape != ():
            raise ValueError(f"seed is an array of keys of shape {tuple(seed.shape)}; "
                             f"expected one key (shape ()): index or split it first")
        return seed
    if seed.dtype == jnp.uint32 and tuple(seed.shape) == (2,):
        return jax.random.wrap_key_data(seed, impl="threefry2x32")
    raise TypeError(f"seed is a jax.Array of shape {tuple(seed.shape)} and dtype "
                    f"{seed.dtype}; expected an int, a typed jax.random key of shape () "
                    f"(jax.random.key) or a legacy uint32 key of shape (2,) "
                    f"(jax.random.PRNGKey)")


def gumbel_like(x: jax.Array, seed: Any) -> jax.Array:
    """Standard Gumbel noise of ``x``'s shape and dtype (SPEC S1.6).

    ``g = -log(-log u)`` with ``u ~ U(tiny, 1)`` drawn by ``jax.random.uniform`` from
    the key `as_key` ``(seed)``: `prng_key` of an integer seed, or the caller's
    ``jax.random`` key (typed, or a legacy ``uint32 (2,)`` key).  ``tiny`` is the
    smallest normal number, so ``u`` lies in the open interval ``(0, 1)`` (its largest
    value is ``1 - 2**-23`` in float32) and ``g`` is always finite.  float64 ``x`` is
    drawn in float64 (64-bit types must be enabled to hold such an ``x`` at all); every
    other dtype is drawn in float32 and cast, so 16-bit noise keeps its full range.
    Works under ``jax.jit`` (an integer ``seed`` is a Python int there; a key may be
    traced).

    Examples
    --------
    >>> g = gumbel_like(jnp.zeros((3, 4)), seed=7)
    >>> g.shape, g.dtype
    ((3, 4), dtype('float32'))
    >>> bool((gumbel_like(jnp.zeros(4), jax.random.key(7)) == gumbel_like(jnp.zeros(4), 7)).all())
    True
    """
    draw = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    tiny = jnp.finfo(draw).tiny
    # drawn flat and reshaped: the same numbers as drawing x.shape directly (threefry
    # counters run in row-major order), but XLA compiles a rank-4 draw ~6x slower
    u = jax.random.uniform(as_key(seed), (x.size,), draw, minval=tiny, maxval=1.0)
    return (-jnp.log(-jnp.log(u))).reshape(x.shape).astype(x.dtype)
