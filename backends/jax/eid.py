"""Eligibility-inspired distillation on JAX arrays (SPEC S2.1-S2.10).

Pure functions that trace under ``jax.jit``, ``jax.grad`` and ``jax.vmap``.  The loss's
gradient comes from autodiff with the targets behind ``stop_gradient``; `eid_loss_vjp`
is ``jax.vjp`` over `eid_loss` itself.  Each function is compiled once per shape and
dtype (``m`` static, scalars traced) and inlined inside a caller's ``jax.jit``.
`credit_scores` (S2.10) and `stop_gradient` are the primitives the target variants of
S2.11 are built from (`spikenm.eid_variants`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import xlogy

from .arrays import cotangent_like
from .blocks import from_blocks, log_softmax_block, softmax_block, to_blocks

__all__ = [
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss", "eid_loss_vjp",
    "stop_gradient",
]

_MEAN_FLOOR = 1e-12
"""Added to the mean credit before dividing (SPEC S2.5)."""


@partial(jax.jit, static_argnames=("signed",))
def eligibility_credit(
    x: jax.Array, d: jax.Array, weight: jax.Array, decay: float, signed: bool = False,
) -> jax.Array:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3, S2.9).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t`` and

    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``,

    or with ``signed`` (S2.9) ``c[o, k] = |W[o, k]| * | sum_t sum_b d_t[b, o] e_t[b, k] |``:
    one ``lax.scan`` over ``t`` carrying ``(e_t, sum of |d_t^T e_t|)`` (or of
    ``d_t^T e_t``), so memory stays ``O(B K + O K)`` for any ``T``.  ``signed`` is
    static.  The products use ``Precision.HIGHEST`` (no reduced precision on
    accelerators).

    Parameters
    ----------
    x : array ``(T, B, K)``
    d : array ``(T, B, O)``
    weight : array ``(O, K)``
    decay : float in ``[0, 1]``
    signed : bool
        Sum over time before the absolute value (S2.9).

    Returns
    -------
    array ``(O, K)`` of ``x``'s dtype, non-negative

    Examples
    --------
    >>> x = jnp.ones((2, 1, 4)); d = jnp.ones((2, 1, 1)); w = jnp.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    Array([[5., 5., 5., 5.]], dtype=float32)
    >>> eligibility_credit(x, jnp.array([[[1.0]], [[-1.0]]]), w, 0.5, signed=True)
    Array([[1., 1., 1., 1.]], dtype=float32)
    """

    def step(
        carry: tuple[jax.Array, jax.Array], xd: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], None]:
        trace, total = carry
        x_t, d_t = xd
        trace = decay * trace + x_t
        product = jnp.matmul(d_t.T, trace, precision=lax.Precision.HIGHEST)
        total = total + (product if signed else jnp.abs(product))
        return (trace, total), None

    start = (jnp.zeros_like(x[0]), jnp.zeros_like(weight))
    (_, total), _ = lax.scan(step, start, (x, d))
    if signed:
        total = jnp.abs(total)
    return jnp.abs(weight) * total


@partial(jax.jit, static_argnames=("m", "gated"))
def credit_scores(credits: jax.Array, m: int, gated: bool) -> jax.Array:
    """Scale-free block scores of a running credit, optionally gated (SPEC S2.10).

    ``z_i = C_i / mean_b`` with ``mean_b = sum_block(C) / m`` (0 in an all-zero block);
    with ``gated`` every entry is multiplied by ``g_b = E_b / (E_b + E_med)``,
    ``E_b = sum_block(C)`` and ``E_med`` the lower median of ``E`` over every block:
    element ``(G - 1) // 2`` of ``jnp.sort(E)`` (``G`` is static, so this traces
    under ``jax.jit``); ``g_b = 0`` where ``E_b + E_med = 0``.  ``m`` and ``gated`` are
    static.

    Parameters
    ----------
    credits : array ``(..., K)``, non-negative
    m : int
    gated : bool

    Returns
    -------
    array of ``credits``' shape and dtype

    Examples
    --------
    >>> credit_scores(jnp.array([1.0, 3.0, 0.0, 0.0, 2e-9, 0.0]), 2, False)
    Array([0.5, 1.5, 0. , 0. , 2. , 0. ], dtype=float32)
    >>> credit_scores(jnp.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0]), 2, True)  # E_med = 4
    Array([0.25, 0.75, 0.  , 0.  , 0.5 , 0.5 ], dtype=float32)
    """
    c = to_blocks(credits, m)
    mass = jnp.sum(c, axis=-1, keepdims=True)
    mean = mass / m
    live = mean > 0
    z = jnp.where(live, c / jnp.where(live, mean, 1), 0).astype(c.dtype)
    if gated and mass.size > 0:
        e = jnp.sort(mass.reshape(-1))
        median = e[(e.shape[0] - 1) // 2]
        total = mass + median
        positive = total > 0
        gate = jnp.where(positive, mass / jnp.where(positive, total, 1), 0)
        z = z * gate.astype(c.dtype)
    return from_blocks(z)


def stop_gradient(x: jax.Array) -> jax.Array:
    """``lax.stop_gradient(x)``: the optional protocol member that keeps the targets of
    S2.11 ``gated`` constant.

    Examples
    --------
    >>> jax.grad(lambda v: jnp.sum(stop_gradient(v) * v))(jnp.ones(2))
    Array([1., 1.], dtype=float32)
    """
    return lax.stop_gradient(x)


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
