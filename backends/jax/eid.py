"""Eligibility-inspired distillation on JAX arrays (SPEC S2.1-S2.7).

Pure functions that trace under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.  The loss's
gradient comes from autodiff with the targets behind ``stop_gradient``; `eid_loss_vjp`
is ``jax.vjp`` over `eid_loss` itself.  Each function is compiled once per shape and
dtype (``m`` static, scalars traced) and inlined inside a caller's ``jax.jit``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import xlogy

from .arrays import cotangent_like
from .blocks import from_blocks, log_softmax_block, softmax_block, to_blocks

__all__ = ["eligibility_credit", "eid_targets", "eid_loss", "eid_loss_vjp"]

_MEAN_FLOOR = 1e-12
"""Added to the mean credit before dividing (SPEC S2.5)."""


@jax.jit
def eligibility_credit(
    x: jax.Array, d: jax.Array, weight: jax.Array, decay: float,
) -> jax.Array:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t`` and

    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``,

    one ``lax.scan`` over ``t`` carrying ``(e_t, sum of |d_t^T e_t|)``, so memory stays
    ``O(B K + O K)`` for any ``T``.  The products use ``Precision.HIGHEST`` (no reduced
    precision on accelerators).

    Parameters
    ----------
    x : array ``(T, B, K)``
    d : array ``(T, B, O)``
    weight : array ``(O, K)``
    decay : float in ``[0, 1]``

    Returns
    -------
    array ``(O, K)`` of ``x``'s dtype, non-negative

    Examples
    --------
    >>> x = jnp.ones((2, 1, 4)); d = jnp.ones((2, 1, 1)); w = jnp.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    Array([[5., 5., 5., 5.]], dtype=float32)
    """

    def step(
        carry: tuple[jax.Array, jax.Array], xd: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], None]:
        trace, total = carry
        x_t, d_t = xd
        trace = decay * trace + x_t
        total = total + jnp.abs(jnp.matmul(d_t.T, trace, precision=lax.Precision.HIGHEST))
        return (trace, total), None

    start = (jnp.zeros_like(x[0]), jnp.zeros_like(weight))
    (_, total), _ = lax.scan(step, start, (x, d))
    return jnp.abs(weight) * total


@partial(jax.jit, static_argnames=("m",))
def eid_targets(credits: jax.Array, m: int, temperature: float) -> jax.Array:
    """Block-wise soft targets (SPEC S2.5).

    ``z = C / (mean(C) + 1e-12)`` with the mean over every entry of ``credits``, then
    ``q_block = softmax_block(z_block / tau_e)``.

    Examples
    --------
    >>> eid_targets(jnp.array([1.0, 1.0, 1.0, 1.0]), 4, 1.0)
    Array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    z = credits / (jnp.mean(credits) + _MEAN_FLOOR)
    return from_blocks(softmax_block(to_blocks(z / temperature, m)))


@partial(jax.jit, static_argnames=("m",))
def eid_loss(logits: jax.Array, targets: jax.Array, m: int, scale: float) -> jax.Array:
    """Mean block KL divergence ``KL(q || p)`` with ``p = softmax_block(scale * logits)``
    (SPEC S2.6).

    ``L = (1/G) * sum_blocks sum_i (xlogy(q_i, q_i) - q_i * log p_i)``, ``G`` the number
    of blocks in the array; ``xlogy`` makes ``0 * log 0 = 0`` and ``log p`` is a log-softmax,
    finite even where ``p`` underflows.  The targets pass through ``stop_gradient``, so
    autodiff gives ``scale * (p * sum_block(q) - q) / G`` to the logits only (SPEC S2.7).

    Returns
    -------
    0-d array of the logits' dtype

    Examples
    --------
    >>> eid_loss(jnp.zeros(4), jnp.full(4, 0.25), 4, 1.0)
    Array(0., dtype=float32)
    """
    q = to_blocks(lax.stop_gradient(targets), m)
    log_p = log_softmax_block(to_blocks(scale * logits, m))
    blocks = logits.size // m
    return jnp.sum(xlogy(q, q) - q * log_p) / blocks


@partial(jax.jit, static_argnames=("m",))
def eid_loss_vjp(
    logits: jax.Array, targets: jax.Array, m: int, scale: float, cotangent: jax.Array,
) -> jax.Array:
    """``cotangent * dL_eid / d logits`` by ``jax.vjp`` over `eid_loss` (SPEC S2.7).

    ``cotangent`` is a 0-d array or a Python number.

    Examples
    --------
    >>> g = eid_loss_vjp(jnp.zeros(4), jnp.array([1.0, 0.0, 0.0, 0.0]), 4, 1.0,
    ...                  jnp.array(1.0))
    >>> g   # (p - q) / G with p = 1/4
    Array([-0.75,  0.25,  0.25,  0.25], dtype=float32)
    """
    out, pullback = jax.vjp(lambda l: eid_loss(l, targets, m, scale), logits)
    return pullback(cotangent_like(cotangent, out))[0]
