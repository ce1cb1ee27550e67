"""Gumbel noise from JAX's counter-based generator (SPEC S1.6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["prng_key", "gumbel_like"]

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


def gumbel_like(x: jax.Array, seed: int) -> jax.Array:
    """Standard Gumbel noise of ``x``'s shape and dtype (SPEC S1.6).

    ``g = -log(-log u)`` with ``u ~ U(tiny, 1)`` drawn by ``jax.random.uniform`` from
    `prng_key` ``(seed)``; ``tiny`` is the smallest normal number, so ``u`` lies in the
    open interval ``(0, 1)`` (its largest value is ``1 - 2**-23`` in float32) and ``g``
    is always finite.  float64 ``x`` is drawn in float64 (64-bit types must be enabled to
    hold such an ``x`` at all); every other dtype is drawn in float32 and cast, so 16-bit
    noise keeps its full range.  Works under ``jax.jit`` (``seed`` is a Python int).

    Examples
    --------
    >>> g = gumbel_like(jnp.zeros((3, 4)), seed=7)
    >>> g.shape, g.dtype
    ((3, 4), dtype('float32'))
    """
    draw = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    tiny = jnp.finfo(draw).tiny
    u = jax.random.uniform(prng_key(seed), x.shape, draw, minval=tiny, maxval=1.0)
    return (-jnp.log(-jnp.log(u))).astype(x.dtype)
