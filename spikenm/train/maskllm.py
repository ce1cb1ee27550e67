"""MaskLLM-style mask learning: Gumbel-softmax over the C(m, n) candidate masks (SPEC S6.6).

A block of ``m`` weights has ``C = C(m, n)`` logits ``phi``, one per candidate mask
(rows of ``M``, ``(C, m)``, ones at ``itertools.combinations(range(m), n)``).  With Gumbel
noise ``g``, temperature ``tau`` and scale ``kappa``:

    y = softmax_C((kappa phi + g) / tau),    mask_block = y M
    dL/dy = (dL/dmask)_block M^T
    dL/dphi = (kappa / tau) y (dL/dy - sum_C(y dL/dy))

Logit arrays have the block layout of the weight with the last axis ``G * m`` replaced by
``G * C``.  Only operators, ``.reshape``, ``@`` and `spikenm.api` are used, so every array
framework works.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import numpy as np

from spikenm import api

Array = Any


def candidates(n: int, m: int) -> np.ndarray:
    """The ``(C(m, n), m)`` candidate matrix (float64 0/1).

    Examples
    --------
    >>> candidates(1, 3)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    rows = list(itertools.combinations(range(m), n))
    out = np.zeros((len(rows), m))
    for r, idx in enumerate(rows):
        out[r, list(idx)] = 1.0
    return out


def logits_shape(block_shape: tuple[int, ...], n: int, m: int) -> tuple[int, ...]:
    """Shape of the candidate logits for a weight whose block layout is ``block_shape``."""
    c = math.comb(m, n)
    return tuple(block_shape[:-1]) + (block_shape[-1] // m * c,)


class CandidateMatrices:
    """``M``, ``M^T`` and a ``(C, 1)`` ones column as arrays of one framework."""

    def __init__(self, n: int, m: int, convert: Callable[[np.ndarray], Array], dtype: str):
        base = candidates(n, m).astype(dtype)
        self.n, self.m, self.count = n, m, base.shape[0]
        self.matrix = convert(base)
        self.transposed = convert(np.ascontiguousarray(base.T))
        self.ones = convert(np.ones((base.shape[0], 1), dtype))


def soft_mask(phi: Array, noise: Array, cands: CandidateMatrices, temperature: float,
              scale: float) -> tuple[Array, Array]:
    """``(mask, y)``: the soft mask (block layout) and the candidate weights ``y``."""
    c, m = cands.count, cands.m
    y = api.block_probs(phi + noise * (1.0 / scale), c, scale=scale / temperature)
    lead = tuple(y.shape[:-1])
    g = y.shape[-1] // c
    mask = (y.reshape(lead + (g, c)) @ cands.matrix).reshape(lead + (g * m,))
    return mask, y


def soft_mask_vjp(y: Array, grad_mask: Array, cands: CandidateMatrices, temperature: float,
                  scale: float) -> Array:
    """``dL/dphi`` from ``dL/dmask`` (block layout) for the ``y`` of `soft_mask`."""
    c, m = cands.count, cands.m
    lead = tuple(y.shape[:-1])
    g = y.shape[-1] // c
    gy = grad_mask.reshape(lead + (g, m)) @ cands.transposed
    yb = y.reshape(lead + (g, c))
    inner = (yb * gy) @ cands.ones
    return ((scale / temperature) * (yb * (gy - inner))).reshape(lead + (g * c,))


def hard_mask(scores: Array, cands: CandidateMatrices) -> Array:
    """``M[argmax]`` per block (first maximum): the mask of the best candidate."""
    c, m = cands.count, cands.m
    onehot = api.topn_mask(scores, 1, c)
    lead = tuple(onehot.shape[:-1])
    g = onehot.shape[-1] // c
    return (onehot.reshape(lead + (g, c)) @ cands.matrix).reshape(lead + (g * m,))
