"""Gumbel noise of the array-API backend (SPEC S1.6).

The standard has no random numbers.  The noise is drawn on the host by the NumPy
reference generator (``np.random.default_rng(seed)``) and copied to the device of ``x``
with ``xp.asarray``: a host round trip (SPEC S0.7), and the same numbers as the
reference backend for the same seed, shape and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import dtype_name
from .namespace import device_of, namespace_of


def gumbel_like(x: Any, seed: int) -> Any:
    """Standard Gumbel noise ``g = -log(-log u)``, ``u ~ U(0, 1)`` open, shaped like ``x``.

    Drawn by ``spikenm.reference.gumbel_like`` on a NumPy array of ``x``'s shape and dtype
    (float32 or float64), then ``xp.asarray(g, device=x.device)``.

    Parameters
    ----------
    x : float32 or float64 array-API array
        Gives shape, dtype, namespace and device; its values are not used.
    seed : int
        Non-negative seed of ``np.random.default_rng``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> g = gumbel_like(xp.zeros((2, 4), dtype=xp.float32), seed=0)
    >>> g.shape, g.dtype
    ((2, 4), array_api_strict.float32)
    """
    from spikenm.reference import gumbel_like as host_gumbel_like

    host = host_gumbel_like(np.empty(tuple(x.shape), dtype=dtype_name(x)), seed)
    return namespace_of(x).asarray(host, device=device_of(x))
