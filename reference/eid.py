"""Eligibility-inspired distillation of the reference backend (SPEC S2.1-S2.10).

Functions take validated NumPy arrays (float32 or float64, one dtype per call) and
compute in that dtype; block functions see blocks of ``m`` along the last axis.
"""

from __future__ import annotations

import numpy as np

from .sampler import block_probs, block_softmax, positive_in_dtype

_MEAN_FLOOR = 1e-12
"""Added to ``mean(C)`` in S2.5 so that all-zero credits give uniform targets."""


def eligibility_credit(
    x: np.ndarray, d: np.ndarray, weight: np.ndarray, decay: float, signed: bool = False,
) -> np.ndarray:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3, S2.9).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t`` and
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``; with ``signed=True``
    the time sum comes first: ``c[o, k] = |W[o, k]| * | sum_t sum_b d_t[b, o] e_t[b, k] |``.

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
    np.ndarray ``(O, K)`` of the inputs' dtype, non-negative.

    Examples
    --------
    >>> x = np.ones((2, 1, 2)); d = np.ones((2, 1, 1)); w = np.array([[-2.0, 1.0]])
    >>> eligibility_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    array([[5. , 2.5]])
    >>> eligibility_credit(x, np.array([[[1.0]], [[-1.0]]]), w, 0.5, signed=True)
    array([[1. , 0.5]])
    """
    dtype = np.dtype(x.dtype.name)
    lam = dtype.type(decay)
    trace = np.zeros(x.shape[1:], dtype)
    total = np.zeros(weight.shape, dtype)
    for t in range(x.shape[0]):
        trace = lam * trace + x[t]
        step = d[t].T @ trace
        total += step if signed else np.abs(step)
    if signed:
        total = np.abs(total)
    return np.abs(weight).astype(dtype, copy=False) * total


def eid_targets(credits: np.ndarray, m: int, temperature: float) -> np.ndarray:
    """Block-wise soft targets (SPEC S2.5).

    ``z = C / (mean(C) + 1e-12)`` with the mean over the whole array, then
    ``q_block = softmax_block(z_block / temperature)``.

    Examples
    --------
    >>> eid_targets(np.array([1.0, 1.0, 3.0, 3.0]), 2, 1.0)
    array([0.5, 0.5, 0.5, 0.5])
    """
    dtype = np.dtype(credits.dtype.name)
    c = credits.astype(dtype, copy=False)
    z = c / (c.mean(dtype=dtype) + dtype.type(_MEAN_FLOOR))
    return block_softmax(z / positive_in_dtype("temperature", temperature, dtype), m)


def eid_loss(logits: np.ndarray, targets: np.ndarray, m: int, scale: float) -> np.ndarray:
    """Mean block KL divergence ``KL(q || p)`` with ``p = softmax_block(scale * logits)``
    (SPEC S2.6).

    ``L = (1/G) * sum_blocks sum_i q_i (log q_i - log p_i)`` with ``0 * log 0 = 0``, where
    ``G`` is the number of blocks; ``log p`` is the log-softmax
    ``v_i - max v - log sum_j exp(v_j - max v)`` of ``v = scale * logits``, so it stays
    finite where ``p`` underflows.  A negative target makes the loss NaN.

    Returns
    -------
    np.ndarray
        0-d array of the logits' dtype.

    Examples
    --------
    >>> float(eid_loss(np.zeros(2), np.array([1.0, 0.0]), 2, 1.0))   # log 2
    0.6931471805599453
    """
    dtype = np.dtype(logits.dtype.name)
    kappa = positive_in_dtype("scale", scale, dtype)
    v = (kappa * logits.astype(dtype, copy=False)).reshape(-1, m)
    q = targets.astype(dtype, copy=False).reshape(-1, m)
    shifted = v - v.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    zero = q == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = q * (np.log(np.where(zero, dtype.type(1), q)) - log_p)
    terms[zero] = 0
    return np.asarray(terms.sum(dtype=dtype) / dtype.type(v.shape[0]), dtype=dtype)


def eid_loss_vjp(
    logits: np.ndarray, targets: np.ndarray, m: int, scale: float, cotangent: np.ndarray,
) -> np.ndarray:
    """Gradient of ``cotangent * eid_loss(logits, targets)`` w.r.t. ``logits`` (S2.7).

    ``scale * (p * sum_block(q) - q) / G * cotangent``, which is
    ``scale * (p - q) / G * cotangent`` for targets that sum to 1 per block.  The
    targets receive no gradient.

    Parameters
    ----------
    cotangent : 0-d array or real number

    Examples
    --------
    >>> eid_loss_vjp(np.zeros(2), np.array([1.0, 0.0]), 2, 1.0, np.array(1.0))
    array([-0.5,  0.5])
    """
    dtype = np.dtype(logits.dtype.name)
    if np.shape(cotangent) != ():
        raise ValueError(
            f"cotangent of the 0-d loss must be a scalar or 0-d array, got shape "
            f"{np.shape(cotangent)}"
        )
    cot = np.asarray(cotangent).astype(dtype)
    p = block_probs(logits, m, scale).reshape(-1, m)
    q = targets.astype(dtype, copy=False).reshape(-1, m)
    blocks = dtype.type(p.shape[0])
    kappa = positive_in_dtype("scale", scale, dtype)
    grad = kappa * (p * q.sum(axis=1, keepdims=True) - q) / blocks * cot
    return grad.reshape(logits.shape)


def credit_scores(credits: np.ndarray, m: int, gated: bool) -> np.ndarray:
    """Scale-free block scores of a running credit, optionally gated (SPEC S2.10).

    ``z_i = C_i / mean_block(C)`` (0 in an all-zero block); with ``gated`` every entry is
    multiplied by ``g_b = E_b / (E_b + E_med)``, ``E_b = sum_block(C)`` and ``E_med`` the
    lower median of ``E`` over all blocks (``g_b = 0`` where ``E_b + E_med = 0``).

    Examples
    --------
    >>> credit_scores(np.array([1.0, 3.0, 0.0, 0.0, 2e-9, 0.0]), 2, False)
    array([0.5, 1.5, 0. , 0. , 2. , 0. ])
    >>> credit_scores(np.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0]), 2, True)  # E_med = 4
    array([0.25, 0.75, 0.  , 0.  , 0.5 , 0.5 ])
    """
    dtype = np.dtype(credits.dtype.name)
    c = credits.astype(dtype, copy=False).reshape(-1, m)
    mass = c.sum(axis=1, keepdims=True, dtype=dtype)
    mean = mass / dtype.type(m)
    live = mean > 0
    z = np.where(live, c / np.where(live, mean, dtype.type(1)), dtype.type(0))
    if gated:
        e = mass[:, 0]
        rank = (e.shape[0] - 1) // 2
        median = np.partition(e, rank)[rank] if e.size else dtype.type(0)
        total = mass + median
        z = z * np.where(total > 0, mass / np.where(total > 0, total, dtype.type(1)),
                         dtype.type(0))
    return z.astype(dtype, copy=False).reshape(credits.shape)

