"""Python scalars (temperatures, scales) as numbers of an array's dtype."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["positive_in"]


def positive_in(name: str, value: float, dtype: Any) -> float:
    """``value`` after rounding to ``dtype``; it must stay finite and ``> 0`` there.

    A temperature of ``1e-50`` is a valid Python float but 0 in float32, and a scale of
    ``1e300`` is inf; either would fill the result with NaN, so both are refused.  The
    check reads Python floats only, so it works under ``jax.jit``.

    Raises
    ------
    ValueError
        ``value`` rounds to 0 or overflows in ``dtype``.

    Examples
    --------
    >>> positive_in("temperature", 0.5, np.float32)
    0.5
    >>> positive_in("temperature", 1e-50, np.float32)
    Traceback (most recent call last):
    ...
    ValueError: temperature=1e-50 is 0.0 in float32; expected a value that stays finite and > 0 in float32
    """
    dt = np.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        converted = float(dt.type(value))
    if not (math.isfinite(converted) and converted > 0):
        raise ValueError(
            f"{name}={value!r} is {converted!r} in {dt.name}; expected a value that stays "
            f"finite and > 0 in {dt.name}"
        )
    return value
