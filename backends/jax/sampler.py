"""The N:M mask sampler on JAX arrays (SPEC S1.1-S1.5, S1.7).

The forward functions are pure ``jax.numpy``/``lax`` code without Python control flow
on values, so they trace under ``jax.jit``, ``jax.grad`` and ``jax.vmap``; JAX's
autodiff gives the gradients of SPEC S1.5.  The ``*_vjp`` functions are ``jax.vjp``
over the same forward functions: one formula.

The block functions and the VJPs are compiled once per shape, dtype and pattern by
``jax.jit`` with ``n``, ``m`` and ``hard`` static; temperature and scale are traced
arguments, so annealing them does not recompile.  Inside a caller's ``jax.jit`` they are
simply inlined.  `sample_mask` computes its keys ``scale * logits + noise`` operation by
operation, outside any compiled block, so that outside ``jit`` they round exactly as the
reference's do.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from .arrays import cotangent_like
from .blocks import from_blocks, softmax_block, to_blocks

__all__ = [
    "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
]


_FULL_UNROLL = 16
"""Loops of at most this many steps are unrolled (faster to compile and to run); longer
ones (``m`` or ``n`` up to 256) stay loops, unrolled by 8, so programs stay small."""


def _unroll(steps: int) -> bool | int:
    return True if steps <= _FULL_UNROLL else 8


@partial(jax.jit, static_argnames=("n", "m"))
def topn_mask(scores: jax.Array, n: int, m: int) -> jax.Array:
    """Hard top-n mask of every block of ``m`` along the last axis (SPEC S1.2).

    Entry ``i`` of a block ``v`` is kept iff

    ``rank_i = #{j : v_j > v_i} + #{j < i : v_j == v_i} < n``

    so ties go to the lower index (``-0.0 == 0.0`` is a tie, as IEEE comparison says) and
    every block keeps exactly ``n`` entries.  The rank is accumulated by a
    ``lax.fori_loop`` over ``j``, one comparison of the block against its ``j``-th entry
    per step: memory ``O(K)``, ``m`` steps (unrolled for ``m <= 16``), no sort.  The
    result has the dtype of ``scores`` (values 0 and 1) and carries no gradient.

    Examples
    --------
    >>> topn_mask(jnp.array([0.3, 0.1, 0.3, 0.2]), 2, 4)
    Array([1., 0., 1., 0.], dtype=float32)
    """
    v = to_blocks(lax.stop_gradient(scores), m)
    position = jnp.arange(m)

    def count(j: jax.Array, rank: jax.Array) -> jax.Array:
        vj = lax.dynamic_index_in_dim(v, j, axis=v.ndim - 1, keepdims=True)
        before = (vj > v) | ((vj == v) & (position > j))
        return rank + before.astype(jnp.int32)

    rank = lax.fori_loop(0, m, count, jnp.zeros(v.shape, jnp.int32), unroll=_unroll(m))
    return from_blocks((rank < n).astype(scores.dtype))


@partial(jax.jit, static_argnames=("n", "m"))
def relaxed_topn(scores: jax.Array, n: int, m: int, temperature: float) -> jax.Array:
    """Successive-softmax relaxation of top-n per block (SPEC S1.3).

    ``alpha_1 = v``; for ``j = 1..n``: ``a_j = softmax_block(alpha_j / tau)``,
    ``alpha_{j+1} = alpha_j + log(1 - a_j)``, or ``-inf`` where ``a_j`` rounds to 1 (the
    entry is picked for good and leaves the later softmaxes); returns ``s = sum_j a_j``.
    A ``jax.custom_vjp`` (`_successive`): the forward keeps ``a_1..a_n``, the backward
    is the exact reverse recursion of SPEC S1.5 (and the temperature's cotangent, so
    a traced temperature can be differentiated too).  The block maximum of ``alpha_j``
    is subtracted before the division by ``tau`` (`_shift_to_zero`), so the "rounds to
    1" test sees the reference's ``a_j`` under ``jax.jit`` too.  ``temperature`` may be
    a traced 0-d array: it is an argument of the compiled function, not a constant.

    Examples
    --------
    >>> s = relaxed_topn(jnp.array([3.0, 0.0, 2.0, -1.0]), 2, 4, 0.1)
    >>> jnp.round(s, 3)
    Array([1., 0., 1., 0.], dtype=float32)
    """
    v = to_blocks(scores, m)
    tau = jnp.asarray(temperature, v.dtype)
    return from_blocks(_successive(v, tau, n))


def _steps(v: jax.Array, tau: jax.Array, n: int) -> list[jax.Array]:
    """``a_1..a_n`` of S1.3 for the blocks ``v`` (``(..., G, m)``), a Python loop of
    ``n`` steps (traced once: ``n`` is static).  ``alpha_{j+1}`` takes the log of 1 where
    ``a_j == 1`` and is ``-inf`` there; ``alpha_{n+1}`` is not computed."""
    alpha = v
    steps = []
    for j in range(n):
        a = softmax_block(_shift_to_zero(alpha) / tau)
        steps.append(a)
        if j + 1 < n:
            rest = 1.0 - a
            alive = rest > 0
            lowered = alpha + jnp.log(jnp.where(alive, rest, jnp.ones_like(rest)))
            alpha = jnp.where(alive, lowered, -jnp.inf)
    return steps


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _successive(v: jax.Array, tau: jax.Array, n: int) -> jax.Array:
    """``s = sum_j a_j`` (S1.3) of the blocks ``v`` with its exact VJP (S1.5)."""
    return _successive_fwd(v, tau, n)[0]


def _successive_fwd(
    v: jax.Array, tau: jax.Array, n: int
) -> tuple[jax.Array, tuple[tuple[jax.Array, ...], jax.Array]]:
    steps = _steps(v, tau, n)
    s = steps[0]
    for a in steps[1:]:
        s = s + a
    return s, (tuple(steps), tau)


def _successive_bwd(
    n: int, res: tuple[tuple[jax.Array, ...], jax.Array], cot: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """SPEC S1.5: ``galpha_{n+1} = 0``; for ``j = n..1``:
    ``ga_j = G - galpha_{j+1} * [1 - a_j > 0] / (1 - a_j)``,
    ``gz_j = a_j * (ga_j - sum_block(ga_j * a_j))``, ``galpha_j = galpha_{j+1} + gz_j / tau``.

    The temperature's cotangent is ``-sum_j <gz_j, z_j> / tau`` with
    ``z_j = (alpha_j - max) / tau``; since ``gz_j`` sums to 0 over a block and
    ``z_j = log a_j + const``, it is ``-sum_j <gz_j, log a_j> / tau`` (0 where
    ``a_j = 0``, where ``gz_j`` is 0 too).
    """
    steps, tau = res
    galpha = jnp.zeros_like(cot)
    gtau = jnp.zeros((), cot.dtype)
    for j in range(n - 1, -1, -1):
        a = steps[j]
        rest = 1.0 - a
        alive = rest > 0
        ga = cot - jnp.where(alive, galpha / jnp.where(alive, rest, 1.0), 0.0)
        gz = a * (ga - jnp.sum(ga * a, axis=-1, keepdims=True))
        galpha = galpha + gz / tau
        positive = a > 0
        gtau = gtau - jnp.sum(gz * jnp.where(positive, jnp.log(jnp.where(positive, a, 1.0)), 0.0))
    return galpha, (gtau / tau).astype(tau.dtype)


_successive.defvjp(_successive_fwd, _successive_bwd)


def _shift_to_zero(alpha: jax.Array) -> jax.Array:
    """``alpha - max alpha`` per block: the largest entry becomes exactly 0 before the
    division by the temperature.

    ``softmax_block(alpha / tau)`` is unchanged in exact arithmetic, but XLA computes
    ``alpha / tau - max(alpha / tau)`` as one fused multiply-add of the unrounded
    quotient, so the largest entry's exponent could be ``6e-7`` instead of 0, its
    ``a_j`` lands just off 1, and S1.3's "``a_j`` rounds to exactly 1" test give the other
    answer than the reference's (the entry is then picked again).  A difference of two
    stored numbers has no product to fuse: the largest entry gets ``exp(0) = 1`` and
    ``a_j = 1 / sum`` exactly, as in the reference.
    """
    return alpha - lax.stop_gradient(jnp.max(alpha, axis=-1, keepdims=True))


def sample_mask(
    logits: jax.Array, noise: jax.Array, n: int, m: int,
    temperature: float, scale: float, hard: bool,
) -> jax.Array:
    """N:M mask from logits and Gumbel noise (SPEC S1.1, S1.3, S1.4).

    Keys ``r = scale * logits + stop_gradient(noise)``; soft mask
    ``s = relaxed_topn(r)``.  With ``hard=True`` the result is
    ``h + (s - stop_gradient(s))`` with ``h = topn_mask(r)``: the bracket is exactly 0,
    so the values are exactly ``h``, and the gradient is that of ``s``
    (straight-through); with ``hard=False`` it is ``s``.  Autodiff then gives
    ``scale * VJP_s`` to the logits (SPEC S1.5) and nothing to the noise.

    Under ``jax.jit`` XLA may fuse ``scale * logits + noise`` into one fused multiply-add
    when ``scale != 1``, which rounds once instead of twice: keys that agree to the last
    bit elsewhere can then differ by one unit in the last place, and a block whose two
    candidates are that close may keep the other one.  Outside ``jit``, and for
    ``scale == 1`` everywhere, the keys are bit-identical to the reference's.

    Examples
    --------
    >>> logits = jnp.zeros((2, 8))
    >>> noise = jnp.linspace(-1.0, 1.0, 16).reshape(2, 8)
    >>> sample_mask(logits, noise, 2, 4, 1.0, 1.0, True)
    Array([[0., 0., 1., 1., 0., 0., 1., 1.],
           [0., 0., 1., 1., 0., 0., 1., 1.]], dtype=float32)
    """
    keys = scale * logits + lax.stop_gradient(noise)
    s = relaxed_topn(keys, n, m, temperature)
    if not hard:
        return s
    return topn_mask(keys, n, m) + (s - lax.stop_gradient(s))


@partial(jax.jit, static_argnames=("m",))
def block_probs(logits: jax.Array, m: int, scale: float) -> jax.Array:
    """Per-block probabilities ``p = softmax_block(scale * logits)`` (SPEC S1.7).

    Examples
    --------
    >>> block_probs(jnp.zeros(4), 4, 1.0)
    Array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    return from_blocks(softmax_block(to_blocks(scale * logits, m)))


@partial(jax.jit, static_argnames=("n", "m"))
def relaxed_topn_vjp(
    scores: jax.Array, n: int, m: int, temperature: float, cotangent: jax.Array,
) -> jax.Array:
    """``G^T d relaxed_topn / d scores`` by ``jax.vjp`` (SPEC S1.5, ``VJP_s``).

    Examples
    --------
    >>> v = jnp.array([3.0, 0.0, 2.0, -1.0])
    >>> relaxed_topn_vjp(v, 2, 4, 1.0, jnp.ones(4)).shape
    (4,)
    """
    out, pullback = jax.vjp(lambda v: relaxed_topn(v, n, m, temperature), scores)
    return pullback(cotangent_like(cotangent, out))[0]


@partial(jax.jit, static_argnames=("n", "m", "hard"))
def sample_mask_vjp(
    logits: jax.Array, noise: jax.Array, n: int, m: int,
    temperature: float, scale: float, hard: bool, cotangent: jax.Array,
) -> jax.Array:
    """``G^T d sample_mask / d logits = scale * VJP_s(G)`` by ``jax.vjp`` (SPEC S1.5).

    Examples
    --------
    >>> logits = jnp.zeros(4)
    >>> noise = jnp.array([0.1, -0.2, 0.3, 0.0])
    >>> sample_mask_vjp(logits, noise, 2, 4, 1.0, 2.0, True, jnp.ones(4)).shape
    (4,)
    """
    out, pullback = jax.vjp(
        lambda l: sample_mask(l, noise, n, m, temperature, scale, hard), logits
    )
    return pullback(cotangent_like(cotangent, out))[0]
