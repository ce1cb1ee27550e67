"""Which blocks a floating comparison against the reference can judge.

SPEC S0.6 compares floating results within ``rtol = atol = 4 * sqrt(eps)``.  Some inputs
are ill-conditioned in the tested dtype: two correct implementations that round
differently (``alpha / tau`` then the maximum subtracted, or the other way round; a
``1 - a_j`` that rounds to 0 in one and to ``2^-24`` in the other) legitimately
disagree by more than that.  The suite therefore compares values only on blocks where
a first-order estimate of the rounding error, computed here in float64, stays below
``rtol / 8``; other blocks are still checked for type, dtype, shape and the invariants
(probabilities, sums), and the report says how many blocks were judged.  Exact results
(masks, indices, packed values) are always compared everywhere.

For the successive softmax (S1.3) a step ``j < n`` with ``u = 1 - a_j`` is safe when
either ``u >= 64 eps`` (then its rounding error changes the next step's exponent by
about ``4 eps / (tau u)``, damped by ``u^(1/tau - 1)`` when ``tau < 1``), or
``u <= eps / 64`` (then ``a_j`` rounds to exactly 1 in every implementation and S1.3
sends the entry to ``-inf``).  In between the result depends on the last bit of
``a_j``, and the block is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tolerance import eps, rtol

RELEVANT = 40.0
"""Softmax arguments more than this below the block maximum weigh less than e^-40."""


def softmax_blocks_ok(args: np.ndarray, m: int, dtype: str, *, ulps: float = 4.0) -> np.ndarray:
    """Per block of ``m``: is ``softmax_block(args)`` well-conditioned in ``dtype``?

    ``args`` are the softmax arguments in float64 (e.g. ``kappa * pi``); an argument
    carries about ``ulps`` rounding errors of relative size ``eps``, which move the
    result by ``ulps * eps * |arg|`` over the relevant entries of the block.

    Returns
    -------
    bool array of shape ``(..., K // m)``
    """
    z = np.asarray(args, dtype=np.float64)
    blocks = z.reshape(-1, m)
    top = blocks.max(axis=1, keepdims=True)
    relevant = blocks >= top - RELEVANT
    magnitude = np.max(np.where(relevant, np.abs(blocks), 0.0), axis=1)
    ok = ulps * eps(dtype) * magnitude <= rtol(dtype) / 8
    return ok.reshape(*z.shape[:-1], z.shape[-1] // m)


@dataclass
class _Steps:
    """The forward recursion of S1.3 in float64, with the facts the estimates need."""

    a: list[np.ndarray]
    u: list[np.ndarray]
    saturated: list[np.ndarray]
    estimate: np.ndarray
    unsafe: np.ndarray


def _forward(keys: np.ndarray, n: int, m: int, temperature: float, dtype: str) -> _Steps:
    alpha = np.asarray(keys, dtype=np.float64).reshape(-1, m).copy()
    e, tau = eps(dtype), float(temperature)
    steps = _Steps([], [], [], np.zeros(alpha.shape[0]), np.zeros(alpha.shape[0], dtype=bool))
    rows = np.arange(alpha.shape[0])
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        for j in range(n):
            z = alpha / tau
            top = z.max(axis=1, keepdims=True)
            relevant = z >= top - RELEVANT
            steps.estimate += 4 * e * np.max(np.where(relevant, np.abs(z), 0.0), axis=1)
            d = z - top
            w = np.exp(d)
            lse = np.log(w.sum(axis=1, keepdims=True))
            a = np.exp(d - lse)
            log_u = np.log1p(-np.minimum(a, 0.5))
            lead = np.argmax(d, axis=1)
            others = w.sum(axis=1) - w[rows, lead]
            others = np.where(others > 0, others, 0.0)
            log_u[rows, lead] = np.where(
                a[rows, lead] > 0.5, np.log(others) - lse[:, 0], log_u[rows, lead]
            )
            u = np.exp(log_u)
            first_order = u >= 64 * e
            saturated = u <= e / 64
            steps.a.append(a)
            steps.u.append(u)
            steps.saturated.append(saturated)
            if j == n - 1:
                break
            steps.unsafe |= ~np.all(first_order | saturated, axis=1)
            damping = np.exp(np.minimum(0.0, (1.0 / tau - 1.0) * log_u))
            step = np.where(first_order, 4 * e / tau * damping / np.where(first_order, u, 1.0), 0.0)
            steps.estimate += step.max(axis=1)
            alpha = alpha + np.where(saturated, -np.inf, log_u)
    return steps


def successive_blocks_ok(
    keys: np.ndarray, n: int, m: int, temperature: float, dtype: str, *, margin: float = 8.0,
) -> np.ndarray:
    """Per block of ``m``: is the soft mask of S1.3 at ``keys`` well-conditioned in ``dtype``?

    ``keys`` are the (already rounded) keys in float64.  The recursion is followed in
    float64 with ``log(1 - a_j)`` computed accurately, and with S1.3's ``-inf`` where
    ``a_j`` rounds to 1 in ``dtype``.  A block is judged when every step is safe (see the
    module docstring) and the estimated error is at most ``rtol / margin``.

    Returns
    -------
    bool array of shape ``(..., K // m)``
    """
    r = np.asarray(keys)
    steps = _forward(r, n, m, temperature, dtype)
    ok = ~steps.unsafe & (steps.estimate <= rtol(dtype) / margin)
    return ok.reshape(*r.shape[:-1], r.shape[-1] // m)


def vjp_magnitude(
    keys: np.ndarray, n: int, m: int, temperature: float, dtype: str, cotangent: np.ndarray,
) -> np.ndarray:
    """Per entry: the size of the terms the S1.5 gradient of its block is summed from.

    The backward recursion of S1.5 in float64 (no division where ``a_j`` rounds to 1),
    accumulating ``a_j * (|ga_j| + sum_block |ga_j * a_j|) / tau`` instead of the signed
    terms.  A gradient that cancels to almost 0 (``n = m`` gives ``s = 1`` exactly) is
    then compared at the precision its terms allow, not relative to its own rounding noise.

    Returns
    -------
    float64 array of the shape of ``keys`` (the block maximum, repeated over the block)
    """
    r = np.asarray(keys)
    steps = _forward(r, n, m, temperature, dtype)
    g = np.asarray(cotangent, dtype=np.float64).reshape(-1, m)
    tau = float(temperature)
    galpha = np.zeros_like(g)
    bound = np.zeros_like(g)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for j in range(len(steps.a) - 1, -1, -1):
            a, u = steps.a[j], steps.u[j]
            divide = (j < len(steps.a) - 1) & ~steps.saturated[j]
            ga = g - np.where(divide, galpha / np.where(divide, u, 1.0), 0.0)
            dot = (ga * a).sum(axis=1, keepdims=True)
            galpha = galpha + a * (ga - dot) / tau
            bound = bound + a * (np.abs(ga) + np.abs(ga * a).sum(axis=1, keepdims=True)) / tau
    bound = np.nan_to_num(bound, nan=np.inf)
    return np.repeat(bound.max(axis=1, keepdims=True), m, axis=1).reshape(r.shape)


def expand(block_ok: np.ndarray, m: int) -> np.ndarray:
    """Per-entry mask ``(..., K)`` from a per-block mask ``(..., G)``."""
    return np.repeat(block_ok, m, axis=-1)
