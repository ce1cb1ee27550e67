"""Eligibility-inspired distillation of the array-API backend (SPEC S2.1-S2.10), forward
only (no autodiff, so no ``stop_gradient`` is needed for S2.11)."""

from __future__ import annotations

from typing import Any

from .blocks import log_softmax_block, merge_blocks, softmax_block, split_blocks
from .namespace import device_of, namespace_of


def eligibility_credit(x: Any, d: Any, weight: Any, decay: float, signed: bool = False) -> Any:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3, S2.9).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t`` and
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``, the inner sum being
    ``matmul(d_t^T, e_t)``; with ``signed`` the time sum comes first (S2.9):
    ``c[o, k] = |W[o, k]| * | sum_t sum_b d_t[b, o] * e_t[b, k] |``.

    Parameters
    ----------
    x : array ``(T, B, K)``
    d : array ``(T, B, O)``
    weight : array ``(O, K)``
    decay : float in [0, 1]
    signed : bool
        Sum over time before the absolute value (S2.9).

    Returns
    -------
    array ``(O, K)`` of the inputs' namespace, device and dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> x = xp.ones((2, 1, 4)); d = xp.ones((2, 1, 1)); w = xp.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    Array([[5., 5., 5., 5.]], dtype=array_api_strict.float64)
    >>> eligibility_credit(x, xp.asarray([[[1.0]], [[-1.0]]]), w, 0.5, signed=True)
    Array([[1., 1., 1., 1.]], dtype=array_api_strict.float64)
    """
    xp = namespace_of(x, d, weight)
    trace = xp.zeros(x.shape[1:], dtype=x.dtype, device=device_of(x))
    total = xp.zeros_like(weight)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t, ...]
        step = xp.matmul(xp.matrix_transpose(d[t, ...]), trace)
        total = total + (step if signed else xp.abs(step))
    if signed:
        total = xp.abs(total)
    return xp.abs(weight) * total


def credit_scores(credits: Any, m: int, gated: bool) -> Any:
    """Scale-free block scores of a running credit, optionally gated (SPEC S2.10).

    ``z_i = C_i / mean_b`` with ``mean_b = sum_block(C) / m`` (0 in an all-zero block);
    with ``gated`` every entry is multiplied by ``g_b = E_b / (E_b + E_med)``,
    ``E_b = sum_block(C)`` and ``E_med`` the lower median of ``E`` over every block,
    element ``(G - 1) // 2`` of ``xp.sort(E)``; ``g_b = 0`` where ``E_b + E_med = 0``.

    Parameters
    ----------
    credits : array ``(..., K)``, non-negative
    m : int
    gated : bool

    Returns
    -------
    array of ``credits``' namespace, device, shape and dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> credit_scores(xp.asarray([1.0, 3.0, 0.0, 0.0, 2e-9, 0.0]), 2, False)
    Array([0.5, 1.5, 0. , 0. , 2. , 0. ], dtype=array_api_strict.float64)
    >>> credit_scores(xp.asarray([1.0, 3.0, 0.0, 0.0, 2.0, 2.0]), 2, True)  # E_med = 4
    Array([0.25, 0.75, 0.  , 0.  , 0.5 , 0.5 ], dtype=array_api_strict.float64)
    """
    xp = namespace_of(credits)
    c = split_blocks(credits, m)
    mass = xp.sum(c, axis=-1, keepdims=True)
    mean = mass / float(m)
    live = mean > 0.0
    z = xp.where(live, c / xp.where(live, mean, xp.ones_like(mean)), xp.zeros_like(c))
    blocks = _count(mass.shape)
    if gated and blocks > 0:
        median = xp.sort(xp.reshape(mass, (blocks,)))[(blocks - 1) // 2]
        total = mass + median
        positive = total > 0.0
        gate = xp.where(positive, mass / xp.where(positive, total, xp.ones_like(total)),
                        xp.zeros_like(total))
        z = z * gate
    return merge_blocks(z)


def eid_targets(credits: Any, m: int, temperature: float) -> Any:
    """Block-wise soft targets ``q_block = softmax_block(z_block / tau_e)`` (SPEC S2.5).

    ``z = C / (mean(C) + 1e-12)`` with the mean over every entry of ``credits``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> eid_targets(xp.asarray([1.0, 1.0, 1.0, 1.0]), 4, 1.0)
    Array([0.25, 0.25, 0.25, 0.25], dtype=array_api_strict.float64)
    """
    xp = namespace_of(credits)
    tau = float(temperature)
    z = credits / (xp.mean(credits) + 1e-12)
    return merge_blocks(softmax_block(split_blocks(z, m) / tau))


def eid_loss(logits: Any, targets: Any, m: int, scale: float) -> Any:
    """``L_eid = (1/G) sum_blocks sum_i q_i (log q_i - log p_i)`` (SPEC S2.6).

    ``p_block = softmax_block(scale * logits)``, taken in log space so ``log p`` stays
    finite where ``p`` underflows; ``0 * log 0 = 0``; ``G`` is the number of blocks of
    the whole array.  A negative target makes the loss NaN.

    Returns
    -------
    0-d array of the logits' namespace, device and dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> float(eid_loss(xp.zeros(4), xp.full(4, 0.25), 4, 1.0))
    0.0
    """
    xp = namespace_of(logits, targets)
    kappa = float(scale)
    log_p = log_softmax_block(split_blocks(kappa * logits, m))
    q = split_blocks(targets, m)
    empty = q == 0.0
    log_q = xp.log(xp.where(empty, xp.ones_like(q), q))
    terms = xp.where(empty, xp.zeros_like(q), q * (log_q - log_p))
    blocks = q.shape[-2] * _count(q.shape[:-2])
    return xp.sum(terms) / float(blocks)


def _count(shape: tuple[int, ...]) -> int:
    """Number of entries of an array of ``shape``."""
    total = 1
    for size in shape:
        total *= int(size)
    return total
