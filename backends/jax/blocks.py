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
    """``v - max v`` over the last axis, forced to ``<= 0`` and to exactly 0 at the
    maximum; the shift carries no gradient (it cancels).

    In exact arithmetic (and in any evaluation that rounds ``v`` once) both guards are
    no-ops.  XLA may fuse the producer of ``v`` into the subtraction, e.g.
    ``scale * logits - max`` into one fused multiply-add that subtracts the maximum of
    the *rounded* products from the *exact* product: the maximum's entry is then off
    by up to half an ulp of ``v`` (600 at ``v = 1e10`` in float32), and ``exp`` of it
    overflows (``inf / inf = NaN``) or every entry underflows (``0 / 0``).  The guards
    keep the largest term ``exp(0) = 1``, so the softmax stays finite for every finite
    ``v`` (SPEC S0.8).
    """
    top = lax.stop_gradient(jnp.max(v, axis=-1, keepdims=True))
    z = v - top
    return jnp.where(v == top, jnp.zeros((), z.dtype), jnp.minimum(z, jnp.zeros((), z.dtype)))


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


@jax.custom_jvp
def log_softmax_block(v: jax.Array) -> jax.Array:
    """``log softmax_block(v)_i = v_i - max v - log sum_j exp(v_j - max v)`` over the
    last axis of a ``(..., G, m)`` block tensor (finite even where the softmax
    underflows to 0).  Derivative (a custom JVP): ``v_dot - sum_block(a * v_dot)`` with
    ``a = softmax_block(v)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> log_softmax_block(jnp.zeros((1, 2)))
    Array([[-0.6931472, -0.6931472]], dtype=float32)
    """
    z = _shifted(v)
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))


@log_softmax_block.defjvp
def _log_softmax_block_jvp(
    primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Tangent ``v_dot - sum_block(softmax_block(v) * v_dot)`` (the guards of `_shifted`
    carry no derivative)."""
    (v,), (v_dot,) = primals, tangents
    return log_softmax_block(v), v_dot - jnp.sum(softmax_block(v) * v_dot, axis=-1, keepdims=True)
