"""Gumbel noise of the reference backend (SPEC S1.6)."""

from __future__ import annotations

import numpy as np

_GRID = 2**52
"""``u = (k + 1/2) / 2**52`` with integer ``k`` in ``[0, 2**52)``: every such ``u`` is an
exact float64 strictly inside ``(0, 1)`` (``2**-53 <= u <= 1 - 2**-53``)."""


def gumbel_like(x: np.ndarray, seed: int) -> np.ndarray:
    """Standard Gumbel noise ``g = -log(-log u)`` of ``x``'s shape and dtype (SPEC S1.6).

    ``u = (k + 1/2) / 2**52`` where ``k = np.random.default_rng(seed).integers(0, 2**52,
    size=x.shape)``, so ``u`` lies on the open interval ``(0, 1)`` and ``g`` is finite;
    ``g`` is computed in float64 and then cast to ``x.dtype``.

    Parameters
    ----------
    x : np.ndarray
        Gives the shape and dtype (float32 or float64).
    seed : int
        Non-negative seed of ``np.random.default_rng``.

    Returns
    -------
    np.ndarray
        Noise with ``P(g <= t) = exp(-exp(-t))``.

    Examples
    --------
    >>> g = gumbel_like(np.zeros((2, 4), dtype=np.float32), seed=0)
    >>> g.shape, g.dtype, bool(np.all(np.isfinite(g)))
    ((2, 4), dtype('float32'), True)
    """
    k = np.random.default_rng(seed).integers(0, _GRID, size=x.shape, dtype=np.int64)
    u = (k + 0.5) / _GRID
    return (-np.log(-np.log(u))).astype(np.dtype(x.dtype.name))
