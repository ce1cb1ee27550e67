"""Block views of the last axis and the block softmax (SPEC notation) for JAX arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["to_blocks", "from_blocks", "softmax_block", "log_softmax_block"]


def to_blocks(x: jax.Array, m: int) -> jax.Array:
    """View ``(..., K)`` as ``(..., G, m)`` with ``K = G * m``: block ``g`` is
    ``x[..., g*m : (g+1)*m]``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> to_blocks(jnp.arange(8), 4).shape
    (2, 4)
    """
    return x.reshape(*x.shape[:-1], x.shape[-1] // m, m)


def from_blocks(x: jax.Array) -> jax.Array:
    """Inverse of `to_blocks`: ``(..., G, w)`` back to ``(..., G * w)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from_blocks(jnp.zeros((3, 2, 4))).shape
    (3, 8)
    """
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def _shifted(v: jax.Array) -> jax.Array:
    """``v - max v`` over the last axis; the shift carries no gradient (it cancels)."""
    return v - lax.stop_gradient(jnp.max(v, axis=-1, keepdims=True))


@jax.custom_jvp
def softmax_block(v: jax.Array) -> jax.Array:
    """``softmax_block(v)_i = exp(v_i - max v) / sum_j exp(v_j - max v)`` over the last
    axis of a ``(..., G, m)`` block tensor.

    Derivative (a custom JVP): with ``a = softmax_block(v)`` and ``t = a * v_dot``, the
    tangent is ``t - a * sum_block(t)``.  Its transpose, the reverse-mode gradient, is
    ``a * (g - sum_block(g * a))``, grouped exactly as SPEC S1.5 writes it: in a
    saturated float32 block ``g - sum(g * a)`` cancels, and the grouping decides the
    rounding.  Forward mode (``jax.jvp``, ``jax.jacfwd``) keeps working.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> softmax_block(jnp.zeros((1, 4)))
    Array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """
    e = jnp.exp(_shifted(v))
    return e / jnp.sum(e, axis=-1, keepdims=True)


@softmax_block.defjvp
def _softmax_block_jvp(
    primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    (v,), (v_dot,) = primals, tangents
    a = softmax_block(v)
    t = a * v_dot
    return a, t - a * jnp.sum(t, axis=-1, keepdims=True)


def log_softmax_block(v: jax.Array) -> jax.Array:
    """``log softmax_block(v)_i = v_i - max v - log sum_j exp(v_j - max v)`` over the
    last axis of a ``(..., G, m)`` block tensor (finite even where the softmax
    underflows to 0).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> log_softmax_block(jnp.zeros((1, 2)))
    Array([[-0.6931472, -0.6931472]], dtype=float32)
    """
    z = _shifted(v)
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
