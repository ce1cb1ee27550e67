"""Reference mask sampler (SPEC S1): hard top-n, successive-softmax relaxation, VJPs.

Every function takes NumPy arrays that `spikenm.api` has already validated: float32
or float64, blocks of ``m`` along the last axis (any leading axes), paired arrays of
one shape and dtype.  Blocks are contiguous along the last axis, so each array is seen
as a 2-D C-contiguous ``(blocks, m)`` array and handed to a Numba kernel that walks the
blocks one by one; inputs of at least `PARALLEL_MIN_ENTRIES` entries are split into one
span of blocks per Numba thread (same block kernels, bit-identical results).

The kernels compute in the dtype of their input: scalars (temperature, scale, 1)
are converted to that dtype before the call, so float32 results are float32
arithmetic.  Softmax subtracts the block maximum before ``exp``.
"""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np

from spikenm import validation as check

# -- scalars and layout ------------------------------------------------------------------


def _blocks(x: np.ndarray, m: int) -> np.ndarray:
    """``x`` as a writable, native-byte-order, C-contiguous ``(blocks, m)`` array."""
    native = np.dtype(x.dtype.name)
    return np.require(x, dtype=native, requirements=("C", "W")).reshape(-1, m)


def positive_in_dtype(name: str, value: float, dtype: np.dtype) -> np.floating:
    """``value`` as a scalar of ``dtype``, checked by `spikenm.validation.positive_in_dtype`
    (finite and ``> 0`` after the conversion), for callers that bypass `spikenm.api`.

    Examples
    --------
    >>> positive_in_dtype("temperature", 0.5, np.dtype("float32"))
    np.float32(0.5)
    """
    return dtype.type(check.positive_in_dtype(name, value, dtype.name))


def _cotangent(cotangent: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The cotangent of an output shaped like ``like``, in ``like``'s dtype."""
    cot = np.asarray(cotangent)
    if cot.shape != like.shape:
        raise ValueError(
            f"cotangent has shape {cot.shape}; expected the output shape {like.shape}"
        )
    return cot.astype(like.dtype.name, copy=False)


def _keys(logits: np.ndarray, noise: np.ndarray, scale: float) -> np.ndarray:
    """Keys ``r = scale * logits + noise`` (SPEC S1.1), in the logits' dtype."""
    dtype = np.dtype(logits.dtype.name)
    kappa = positive_in_dtype("scale", scale, dtype)
    return kappa * logits.astype(dtype, copy=False) + noise


# -- one block (1-D views of length m) ---------------------------------------------------


@numba.njit(cache=True)
def _topn_block(v: np.ndarray, n: int, one: np.floating, out: np.ndarray) -> None:
    """``out_i = 1`` iff ``#{j: v_j > v_i} + #{j < i: v_j == v_i} < n`` (S1.2)."""
    m = v.shape[0]
    zero = one - one
    for i in range(m):
        vi = v[i]
        ahead = 0
        for j in range(m):
            if v[j] > vi or (j < i and v[j] == vi):
                ahead += 1
                if ahead >= n:
                    break
        out[i] = one if ahead < n else zero


@numba.njit(cache=True)
def _softmax_block(u: np.ndarray, one: np.floating, out: np.ndarray) -> None:
    """``out_i = exp(u_i - max u) / sum_j exp(u_j - max u)``."""
    m = u.shape[0]
    top = u[0]
    for i in range(1, m):
        if u[i] > top:
            top = u[i]
    total = one - one
    for i in range(m):
        e = np.exp(u[i] - top)
        out[i] = e
        total += e
    for i in range(m):
        out[i] = out[i] / total


@numba.njit(cache=True)
def _successive_softmax_block(
    r: np.ndarray, n: int, tau: np.floating, one: np.floating,
    alpha: np.ndarray, u: np.ndarray, steps: np.ndarray, s: np.ndarray,
) -> None:
    """Soft mask of one block (S1.3); ``steps[j]`` receives ``a_{j+1}`` for the VJP.

    ``alpha_1 = r``; ``a_j = softmax(alpha_j / tau)``;
    ``alpha_{j+1} = alpha_j + log(1 - a_j)`` (``-inf`` where ``a_j == 1``); ``s = sum_j a_j``.
    """
    m = r.shape[0]
    zero = one - one
    for i in range(m):
        alpha[i] = r[i]
        s[i] = zero
    for j in range(n):
        for i in range(m):
            u[i] = alpha[i] / tau
        a = steps[j]
        _softmax_block(u, one, a)
        for i in range(m):
            s[i] += a[i]
        if j + 1 < n:  # alpha_{n+1} is never used
            for i in range(m):
                rest = one - a[i]
                if rest > zero:
                    alpha[i] += np.log(rest)
                else:  # a_j == 1: the entry is picked for good and leaves the block
                    alpha[i] = -np.inf


@numba.njit(cache=True)
def _successive_softmax_vjp_block(
    steps: np.ndarray, n: int, tau: np.floating, one: np.floating,
    cot: np.ndarray, factor: np.floating, galpha: np.ndarray, ga: np.ndarray, out: np.ndarray,
) -> None:
    """``out = factor * galpha_1``, the exact reverse of S1.3 given in S1.5.

    ``galpha_{n+1} = 0``; for ``j = n..1``:
    ``ga_j = G - galpha_{j+1} * [1 - a_j > 0] / (1 - a_j)``,
    ``galpha_j = galpha_{j+1} + a_j * (ga_j - sum(ga_j * a_j)) / tau``.
    """
    m = cot.shape[0]
    zero = one - one
    for i in range(m):
        galpha[i] = zero
    for j in range(n - 1, -1, -1):
        a = steps[j]
        dot = zero
        for i in range(m):
            g = cot[i]
            rest = one - a[i]
            if rest > zero:
                g = g - galpha[i] / rest
            ga[i] = g
            dot += g * a[i]
        for i in range(m):
            galpha[i] += a[i] * (ga[i] - dot) / tau
    for i in range(m):
        out[i] = factor * galpha[i]


# -- spans of blocks [start, stop) of 2-D (blocks, m) arrays ----------------------------


@numba.njit(cache=True)
def _topn_span(
    v: np.ndarray, n: int, one: np.floating, out: np.ndarray, start: int, stop: int,
) -> None:
    for b in range(start, stop):
        _topn_block(v[b], n, one, out[b])


@numba.njit(cache=True)
def _softmax_span(
    u: np.ndarray, one: np.floating, out: np.ndarray, start: int, stop: int,
) -> None:
    for b in range(start, stop):
        _softmax_block(u[b], one, out[b])


@numba.njit(cache=True)
def _relaxed_span(
    r: np.ndarray, n: int, tau: np.floating, one: np.floating,
    s: np.ndarray, start: int, stop: int,
) -> None:
    m = r.shape[1]
    alpha = np.empty(m, r.dtype)
    u = np.empty(m, r.dtype)
    steps = np.empty((n, m), r.dtype)
    for b in range(start, stop):
        _successive_softmax_block(r[b], n, tau, one, alpha, u, steps, s[b])


@numba.njit(cache=True)
def _relaxed_vjp_span(
    r: np.ndarray, n: int, tau: np.floating, one: np.floating,
    cot: np.ndarray, factor: np.floating, out: np.ndarray, start: int, stop: int,
) -> None:
    m = r.shape[1]
    alpha = np.empty(m, r.dtype)
    u = np.empty(m, r.dtype)
    s = np.empty(m, r.dtype)
    steps = np.empty((n, m), r.dtype)
    galpha = np.empty(m, r.dtype)
    ga = np.empty(m, r.dtype)
    for b in range(start, stop):
        _successive_softmax_block(r[b], n, tau, one, alpha, u, steps, s)
        _successive_softmax_vjp_block(steps, n, tau, one, cot[b], factor, galpha, ga, out[b])


# -- the same spans split into `chunks` parallel pieces (large inputs only) -------------


@numba.njit(cache=True, parallel=True)
def _topn_parallel(
    v: np.ndarray, n: int, one: np.floating, out: np.ndarray, chunks: int,
) -> None:
    size = (v.shape[0] + chunks - 1) // chunks
    for c in numba.prange(chunks):
        _topn_span(v, n, one, out, c * size, min(v.shape[0], (c + 1) * size))


@numba.njit(cache=True, parallel=True)
def _softmax_parallel(u: np.ndarray, one: np.floating, out: np.ndarray, chunks: int) -> None:
    size = (u.shape[0] + chunks - 1) // chunks
    for c in numba.prange(chunks):
        _softmax_span(u, one, out, c * size, min(u.shape[0], (c + 1) * size))


@numba.njit(cache=True, parallel=True)
def _relaxed_parallel(
    r: np.ndarray, n: int, tau: np.floating, one: np.floating,
    s: np.ndarray, chunks: int,
) -> None:
    size = (r.shape[0] + chunks - 1) // chunks
    for c in numba.prange(chunks):
        _relaxed_span(r, n, tau, one, s, c * size, min(r.shape[0], (c + 1) * size))


@numba.njit(cache=True, parallel=True)
def _relaxed_vjp_parallel(
    r: np.ndarray, n: int, tau: np.floating, one: np.floating,
    cot: np.ndarray, factor: np.floating, out: np.ndarray, chunks: int,
) -> None:
    size = (r.shape[0] + chunks - 1) // chunks
    for c in numba.prange(chunks):
        _relaxed_vjp_span(
            r, n, tau, one, cot, factor, out, c * size, min(r.shape[0], (c + 1) * size)
        )


PARALLEL_MIN_ENTRIES = 1 << 17
"""Inputs with at least this many entries run on all Numba threads (the parallel
kernels are compiled on first use, so small inputs never pay for their compilation)."""


def _run(
    span: Callable[..., None], parallel: Callable[..., None], blocks: np.ndarray, *args: Any,
) -> None:
    """Run ``span(*args, 0, rows)`` serially, or ``parallel(*args, chunks)`` on the Numba
    threads when ``blocks`` is large; both give bit-identical results."""
    rows = blocks.shape[0]
    chunks = min(numba.get_num_threads(), rows)
    if blocks.size >= PARALLEL_MIN_ENTRIES and chunks > 1:
        parallel(*args, chunks)
    else:
        span(*args, 0, rows)


# -- public functions (the protocol's sampler members) -----------------------------------


def topn_mask(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Hard top-n mask of every block of ``m`` along the last axis (SPEC S1.2).

    Entry ``i`` of a block is 1 iff ``#{j : v_j > v_i} + #{j < i : v_j == v_i} < n``
    (ties go to the lower index), else 0; exactly ``n`` ones per block.

    Parameters
    ----------
    scores : float32 or float64 array ``(..., K)``, ``K % m == 0``
    n, m : int

    Returns
    -------
    np.ndarray
        0/1 array of the shape and dtype of ``scores``.

    Examples
    --------
    >>> topn_mask(np.array([0.3, 0.1, 0.3, 0.2]), 2, 4)
    array([1., 0., 1., 0.])
    """
    v = _blocks(scores, m)
    out = np.empty_like(v)
    _run(_topn_span, _topn_parallel, v, v, n, v.dtype.type(1), out)
    return out.reshape(scores.shape)


def block_softmax(values: np.ndarray, m: int) -> np.ndarray:
    """``softmax_block(v)_i = exp(v_i - max v) / sum_j exp(v_j - max v)`` per block.

    The single softmax of the reference backend: `block_probs` (S1.7), the soft mask
    (S1.3) and the EID targets (S2.5) all go through it.

    Examples
    --------
    >>> block_softmax(np.array([0.0, 0.0, np.log(2.0), 0.0]), 2)
    array([0.5       , 0.5       , 0.66666667, 0.33333333])
    """
    u = _blocks(values, m)
    out = np.empty_like(u)
    _run(_softmax_span, _softmax_parallel, u, u, u.dtype.type(1), out)
    return out.reshape(values.shape)


def block_probs(logits: np.ndarray, m: int, scale: float) -> np.ndarray:
    """Block probabilities ``p = softmax_block(scale * logits)`` (SPEC S1.7).

    Examples
    --------
    >>> block_probs(np.array([0.0, np.log(3.0)]), 2, 1.0)
    array([0.25, 0.75])
    """
    dtype = np.dtype(logits.dtype.name)
    kappa = positive_in_dtype("scale", scale, dtype)
    return block_softmax(kappa * logits.astype(dtype, copy=False), m)


def relaxed_topn(scores: np.ndarray, n: int, m: int, temperature: float) -> np.ndarray:
    """Successive-softmax relaxation of top-n in every block (SPEC S1.3).

    ``alpha_1 = v``; for ``j = 1..n``: ``a_j = softmax_block(alpha_j / tau)``,
    ``alpha_{j+1} = alpha_j + log(1 - a_j)`` (``-inf`` where ``a_j == 1``); returns ``s = sum_j a_j``.

    Examples
    --------
    >>> s = relaxed_topn(np.array([3.0, 0.0, 2.0, -1.0]), 2, 4, 0.1)
    >>> np.round(s, 3)
    array([1., 0., 1., 0.])
    """
    r = _blocks(scores, m)
    dtype = r.dtype
    tau = positive_in_dtype("temperature", temperature, dtype)
    s = np.empty_like(r)
    _run(
        _relaxed_span, _relaxed_parallel, r,
        r, n, tau, dtype.type(1), s,
    )
    return s.reshape(scores.shape)


def sample_mask(
    logits: np.ndarray, noise: np.ndarray, n: int, m: int,
    temperature: float, scale: float, hard: bool,
) -> np.ndarray:
    """N:M mask from logits and Gumbel noise (SPEC S1.1-S1.4).

    Keys ``r = scale * logits + noise``.  ``hard=True`` returns ``topn(r)`` (its gradient
    is the soft mask's, see `sample_mask_vjp`); ``hard=False`` returns the soft mask
    ``relaxed_topn(r, temperature)``.

    Examples
    --------
    >>> logits = np.array([0.0, 1.0, 2.0, 3.0])
    >>> sample_mask(logits, np.zeros(4), 2, 4, 1.0, 1.0, True)
    array([0., 0., 1., 1.])
    """
    r = _keys(logits, noise, scale)
    if hard:
        return topn_mask(r, n, m)
    return relaxed_topn(r, n, m, temperature)


def relaxed_topn_vjp(
    scores: np.ndarray, n: int, m: int, temperature: float, cotangent: np.ndarray,
) -> np.ndarray:
    """Gradient of ``sum(cotangent * relaxed_topn(scores))`` w.r.t. ``scores`` (S1.5).

    With ``galpha_{n+1} = 0``, for ``j = n..1``:
    ``ga_j = G - galpha_{j+1} * [1 - a_j > 0] / (1 - a_j)`` and
    ``galpha_j = galpha_{j+1} + a_j * (ga_j - sum_block(ga_j * a_j)) / tau``;
    the result is ``galpha_1``.

    Examples
    --------
    >>> v = np.array([0.0, np.log(3.0)])
    >>> relaxed_topn_vjp(v, 1, 2, 1.0, np.array([1.0, 0.0]))   # p0 * (1 - p0)
    array([ 0.1875, -0.1875])
    """
    return _successive_softmax_vjp(scores, n, m, temperature, cotangent, 1.0)


def sample_mask_vjp(
    logits: np.ndarray, noise: np.ndarray, n: int, m: int,
    temperature: float, scale: float, hard: bool, cotangent: np.ndarray,
) -> np.ndarray:
    """Gradient of ``sum(cotangent * sample_mask(...))`` w.r.t. ``logits`` (S1.5).

    ``scale * VJP_s(cotangent)`` at the keys ``r = scale * logits + noise``, for
    ``hard=True`` (straight-through) and ``hard=False`` alike; ``hard`` does not change
    the result.  The noise receives no gradient.

    Examples
    --------
    >>> logits = np.array([0.0, np.log(3.0)])
    >>> sample_mask_vjp(logits, np.zeros(2), 1, 2, 1.0, 2.0, True, np.array([1.0, 0.0]))
    array([ 0.18, -0.18])
    """
    r = _keys(logits, noise, scale)
    return _successive_softmax_vjp(r, n, m, temperature, cotangent, scale)


def _successive_softmax_vjp(
    keys: np.ndarray, n: int, m: int, temperature: float,
    cotangent: np.ndarray, factor: float,
) -> np.ndarray:
    """``factor * VJP_s(cotangent)`` at ``keys``: the backward pass of S1.5."""
    r = _blocks(keys, m)
    dtype = r.dtype
    cot = _blocks(_cotangent(cotangent, keys), m)
    tau = positive_in_dtype("temperature", temperature, dtype)
    out = np.empty_like(r)
    _run(
        _relaxed_vjp_span, _relaxed_vjp_parallel, r,
        r, n, tau, dtype.type(1), cot,
        positive_in_dtype("scale", factor, dtype), out,
    )
    return out.reshape(keys.shape)
