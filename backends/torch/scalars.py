"""Python scalars (temperatures, scales) as the tensor dtype will hold them.

torch rounds a Python float to the tensor's dtype before it multiplies or divides a
float32 tensor.  A temperature of ``1e-50`` is a valid Python float but 0 in float32,
and dividing by it would fill the mask with NaN; `in_dtype` refuses such values, as the
reference backend does, instead of returning NaN silently.
"""

from __future__ import annotations

import torch

__all__ = ["in_dtype"]

_FLOAT32_ZERO_AT = 2.0**-150
"""Half the smallest float32 subnormal: Python floats ``<= 2**-150`` round to 0."""

_FLOAT32_INF_AT = 2.0**128 - 2.0**103
"""Half-way between the largest float32 and ``2**128``: floats ``>=`` it round to inf."""


def in_dtype(name: str, value: float, dtype: torch.dtype) -> float:
    """``value`` (finite, ``> 0``) after checking it stays finite and ``> 0`` in ``dtype``.

    Only float32 can lose such a value (a Python float is a float64): it rounds to 0 for
    ``value <= 2**-150`` and to inf for ``value >= 2**128 - 2**103``.

    Raises
    ------
    ValueError
        Naming the value and the dtype.

    Examples
    --------
    >>> in_dtype("temperature", 0.5, torch.float32)
    0.5
    >>> in_dtype("temperature", 1e-50, torch.float32)
    Traceback (most recent call last):
    ...
    ValueError: temperature=1e-50 is 0.0 in float32; expected a value that stays finite and > 0 in float32
    """
    if dtype == torch.float32 and not _FLOAT32_ZERO_AT < value < _FLOAT32_INF_AT:
        rounded = 0.0 if value <= _FLOAT32_ZERO_AT else float("inf")
        raise ValueError(
            f"{name}={value!r} is {rounded!r} in float32; expected a value that stays "
            f"finite and > 0 in float32"
        )
    return value
