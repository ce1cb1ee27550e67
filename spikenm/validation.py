"""Argument validation shared by every entry point (SPEC S0.5 lists the errors).

Every check raises with the offending value and what was expected.  Checks that need
array values (finiteness, block counts) are skipped only when the backend reports that
values are unavailable (e.g. inside ``jax.jit``); they never silently pass otherwise.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .protocol import Backend

FLOAT_DTYPES = ("float32", "float64")
"""dtypes the differentiable math functions accept (SPEC S0.4)."""


def pattern(n: Any, m: Any) -> tuple[int, int]:
    """Validate an N:M pattern: integers with ``m >= 2`` and ``1 <= n <= m``."""
    m = block_size(m)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {n!r} ({type(n).__name__})")
    n = int(n)
    if not 1 <= n <= m:
        raise ValueError(f"n must satisfy 1 <= n <= m={m}, got n={n}")
    return n, m


def block_size(m: Any) -> int:
    """Validate a block size ``m >= 2``."""
    if isinstance(m, bool) or not isinstance(m, numbers.Integral):
        raise TypeError(f"m must be an integer, got {m!r} ({type(m).__name__})")
    m = int(m)
    if m < 2:
        raise ValueError(f"m must be >= 2, got m={m}")
    return m


def positive(name: str, value: Any) -> float:
    """A finite Python float ``> 0`` (temperatures and scales)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


def positive_in_dtype(name: str, value: Any, dtype: str) -> float:
    """A finite number ``> 0`` that stays finite and ``> 0`` in the float dtype ``dtype``.

    A Python scalar meets an array in the array's dtype, so a temperature of ``1e-50`` is
    0 in float32 and would fill the result with NaN: it is refused instead.

    Examples
    --------
    >>> positive_in_dtype("temperature", 0.5, "float32")
    0.5
    >>> positive_in_dtype("temperature", 1e-50, "float32")
    Traceback (most recent call last):
    ...
    ValueError: temperature=1e-50 is 0.0 in float32; expected a value that stays finite and > 0 in float32
    """
    value = positive(name, value)
    with np.errstate(over="ignore", under="ignore"):
        converted = float(np.dtype(dtype).type(value))
    if not (math.isfinite(converted) and converted > 0.0):
        raise ValueError(
            f"{name}={value!r} is {converted!r} in {dtype}; expected a value that stays "
            f"finite and > 0 in {dtype}"
        )
    return value


TRACED_SCALARS = ("jax",)
"""Backends whose sampler and loss take a temperature or scale as a 0-d array, so a
caller's ``jax.jit`` can trace it (SPEC S0.5)."""


def positive_scalar(be: Backend, name: str, value: Any, dtype: str) -> Any:
    """A temperature or scale for backend ``be``: what `positive_in_dtype` accepts, or,
    for the backends of `TRACED_SCALARS`, a 0-d real array of that framework.

    A 0-d array with values (outside ``jax.jit``) is checked like a Python number and
    returned as a Python float.  A traced one (``be.all_finite`` says ``None``: no
    values) cannot be checked for ``> 0`` and finiteness, so only its shape and dtype
    are; it is returned cast to ``dtype``, so that the result keeps the arrays' dtype
    (S0.4) and annealing it inside ``jax.jit`` does not recompile.

    Examples
    --------
    >>> import numpy as np
    >>> from spikenm.dispatch import backend_named
    >>> positive_scalar(backend_named("numpy"), "scale", 2, "float64")
    2.0
    """
    if isinstance(value, numbers.Real) or be.name not in TRACED_SCALARS:
        return positive_in_dtype(name, value, dtype)
    from .dispatch import framework_of

    kind = None if not hasattr(value, "shape") else framework_of(value, name)
    if kind != be.name:
        raise TypeError(
            f"{name} must be a real number or a 0-d {be.name} array, got {value!r} "
            f"({type(value).__name__})"
        )
    if tuple(value.shape) != ():
        raise ValueError(f"{name} must be a 0-d array (a scalar), got shape "
                         f"{tuple(value.shape)}")
    kind_dt = np.dtype(value.dtype)
    if kind_dt.kind not in "fiu":
        raise TypeError(f"{name} must be a real number, got a {kind_dt.name} array")
    if be.all_finite(value) is None:
        return value.astype(dtype)
    return positive_in_dtype(name, float(value), dtype)


def unit_interval(name: str, value: Any) -> float:
    """A Python float in ``[0, 1]`` (decays)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def seed(value: Any) -> int:
    """A non-negative integer seed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def normalize_axis(name: str, x: Any, axis: Any) -> int:
    """``axis`` as a non-negative index into ``x.shape``."""
    ndim = len(x.shape)
    if ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for {name} with shape {tuple(x.shape)}")
    return int(axis) % ndim


def blocks_fit(name: str, x: Any, m: int, axis: int) -> None:
    """The length of ``x`` along ``axis`` is a positive multiple of ``m``."""
    k = x.shape[axis]
    if k == 0 or k % m:
        raise ValueError(
            f"{name} has {k} entries along axis {axis} (shape {tuple(x.shape)}); "
            f"expected a positive multiple of m={m}"
        )


def float_dtype(be: Backend, name: str, x: Any) -> str:
    """``x`` is float32 or float64 (SPEC S0.4); returns the dtype name."""
    dt = be.dtype_name(x)
    if dt not in FLOAT_DTYPES:
        hint = " (cast to float32 first)" if dt in ("float16", "bfloat16") else ""
        raise TypeError(f"{name} must be float32 or float64, got {dt}{hint}")
    return dt


def same_dtype(be: Backend, **arrays: Any) -> None:
    """All named arrays share one dtype."""
    dts = {k: be.dtype_name(v) for k, v in arrays.items()}
    if len(set(dts.values())) > 1:
        parts = ", ".join(f"{k}: {v}" for k, v in dts.items())
        raise TypeError(f"dtypes must match ({parts})")


def same_shape(**arrays: Any) -> None:
    """All named arrays share one shape."""
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        parts = ", ".join(f"{k}: {v}" for k, v in shapes.items())
        raise ValueError(f"shapes must match ({parts})")


def rank(name: str, x: Any, expected: int, meaning: str) -> None:
    """``x`` has exactly ``expected`` axes."""
    if len(x.shape) != expected:
        raise ValueError(
            f"{name} must have {expected} axes {meaning}, got shape {tuple(x.shape)}"
        )


def finite(be: Backend, name: str, x: Any) -> None:
    """No NaN or inf in ``x`` (skipped only when values are unavailable)."""
    ok = be.all_finite(x)
    if ok is False:
        values = be.to_numpy(x)
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)}: "
            f"{values[tuple(bad)].item()!r}); expected finite values"
        )


def nonnegative(be: Backend, name: str, x: Any) -> None:
    """No negative entry in ``x`` (skipped only when values are unavailable)."""
    if be.all_finite(x) is None:
        return
    values = be.to_numpy(x)
    if (values < 0).any():
        bad = np.argwhere(values < 0)[0]
        raise ValueError(
            f"{name} has a negative entry at index {tuple(int(i) for i in bad)} "
            f"({values[tuple(bad)].item()!r}); expected values >= 0"
        )


def concrete(be: Backend, name: str, x: Any, what: str) -> np.ndarray:
    """NumPy values of ``x``; raises when they are unavailable (e.g. under ``jax.jit``)."""
    if be.all_finite(x) is None:
        raise ValueError(
            f"{what} needs the values of {name}, which are not available here "
            f"(traced under jit?); call it outside the traced function"
        )
    return be.to_numpy(x)
