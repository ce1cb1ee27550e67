"""The comparison rules of SPEC S0.6, applied to NumPy copies of results.

* Masks, indices, counts, packed values and bytes: exact equality (`exact`, `same_bits`).
* Floating results of order one (masks, probabilities, losses):
  ``|got - expected| <= atol + rtol * |expected|`` with ``rtol = atol = 4 * sqrt(eps)``
  of the compared dtype (`close`).
* Gradients: compared after scaling by their largest magnitude (`close_scaled`).
* Sums (credits, losses, ``spmm``): the absolute part of the tolerance is scaled by the
  magnitude of the summands, the rule S3.6 states for ``spmm`` (`close` with ``scale=``).

Every function returns ``None`` when the arrays agree, else a short description of the
first disagreement (index, expected, got, allowed) for the failure message.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_FLOAT_EPS = {
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
    "float32": 2.0**-23,
    "float64": 2.0**-52,
}


def eps(dtype: str) -> float:
    """Machine epsilon of a float dtype name (``float16``, ``bfloat16``, ``float32``, ``float64``)."""
    try:
        return _FLOAT_EPS[dtype]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}; expected one of {tuple(_FLOAT_EPS)}") from None


def rtol(dtype: str) -> float:
    """``4 * sqrt(eps(dtype))`` (SPEC S0.6): float32 1.38e-3, float64 5.96e-8."""
    return 4.0 * math.sqrt(eps(dtype))


def tiny(dtype: str) -> float:
    """Smallest positive normal number of a float dtype (the ``eps`` of SPEC S1.3)."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def _where(shape: tuple[int, ...], flat: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (np.integer, np.bool_)):
        return repr(value.item())
    return repr(value)


def exact(expected: np.ndarray, got: np.ndarray) -> str | None:
    """Equal values (``==``; ``-0.0 == 0.0``); NaN equals NaN at the same place."""
    if expected.shape != got.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    equal = expected == got
    if expected.dtype.kind == "f" or got.dtype.kind == "f":
        equal = equal | (np.isnan(expected.astype(np.float64)) & np.isnan(got.astype(np.float64)))
    if bool(np.all(equal)):
        return None
    bad = np.flatnonzero(~equal.reshape(-1))
    first = _where(expected.shape, int(bad[0]))
    return (
        f"{bad.size} of {expected.size} entries differ; first at index {first}: "
        f"expected {_fmt(expected[first])}, got {_fmt(got[first])}"
    )


def bits(a: np.ndarray) -> np.ndarray:
    """The unsigned-integer view of ``a``'s bytes (bool and 1-byte types as uint8)."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def same_bits(expected: np.ndarray, got: np.ndarray, where: np.ndarray | None = None) -> str | None:
    """Bit-for-bit equality (NaN payloads, ``-0.0``) at the entries where ``where`` is True."""
    if expected.shape != got.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if expected.dtype.itemsize != got.dtype.itemsize:
        return f"item size {got.dtype.itemsize}, expected {expected.dtype.itemsize}"
    equal = bits(expected) == bits(got)
    if where is not None:
        equal = equal | ~where
    if bool(np.all(equal)):
        return None
    bad = np.flatnonzero(~equal.reshape(-1))
    first = _where(expected.shape, int(bad[0]))
    return (
        f"{bad.size} of {expected.size} entries differ in their bits; first at index {first}: "
        f"expected {_fmt(expected[first])} (bits {int(bits(expected)[first]):#x}), "
        f"got {_fmt(got[first])} (bits {int(bits(got)[first]):#x})"
    )


def close(
    expected: np.ndarray, got: np.ndarray, dtype: str, *,
    scale: float | np.ndarray = 1.0, where: np.ndarray | None = None,
) -> str | None:
    """``|got - expected| <= tol * (scale + |expected|)`` with ``tol = rtol(dtype)``.

    ``scale = 1`` is S0.6's rule for quantities of order one (``atol = rtol``); a larger
    ``scale`` (a number or an array broadcastable to the shape) is the magnitude of the
    summands of a sum.  ``where`` restricts the comparison to some entries (the
    well-conditioned blocks).  Non-finite values must match exactly.
    """
    if expected.shape != got.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    tol = rtol(dtype)
    e = expected.astype(np.float64)
    g = got.astype(np.float64)
    limit = tol * (np.asarray(scale, dtype=np.float64) + np.abs(e))
    with np.errstate(invalid="ignore"):
        err = np.abs(g - e)
        ok = err <= limit
    same_special = (~np.isfinite(e)) & ((e == g) | (np.isnan(e) & np.isnan(g)))
    ok = ok | same_special
    if where is not None:
        ok = ok | ~np.broadcast_to(where, ok.shape)
    if bool(np.all(ok)):
        return None
    bad = np.flatnonzero(~ok.reshape(-1))
    first = _where(expected.shape, int(bad[0]))
    worst = _where(expected.shape, int(np.nanargmax(np.where(ok, 0.0, np.nan_to_num(err, nan=np.inf)))))
    return (
        f"{bad.size} of {expected.size} entries outside the {dtype} tolerance "
        f"(rtol = atol = {tol:.3g}, absolute part scaled by {float(np.max(scale)):.3g}); first at "
        f"index {first}: expected {_fmt(e[first])}, got {_fmt(g[first])}, "
        f"|diff| = {float(err[first]):.3g} > allowed {float(np.broadcast_to(limit, e.shape)[first]):.3g}; "
        f"worst at {worst}: |diff| = {float(err[worst]):.3g}"
    )


def close_scaled(
    expected: np.ndarray, got: np.ndarray, dtype: str, *, where: np.ndarray | None = None,
    floor: float = 0.0,
) -> str | None:
    """Gradients (S0.6): both divided by ``max |expected|`` (over the compared entries, at
    least ``floor``), then `close` with ``scale = 1``.

    ``floor`` is the magnitude below which a gradient is rounding-dominated: a model
    backend's parameter gradient far smaller than the step's largest one (cancellation,
    e.g. through batch norm over few entries) is compared relative to a fraction of that
    largest gradient rather than to itself."""
    e = expected.astype(np.float64)
    sel = np.ones(e.shape, bool) if where is None else np.broadcast_to(where, e.shape)
    top = max(float(np.max(np.abs(e[sel]), initial=0.0)), float(floor))
    top = top if top > 0.0 and math.isfinite(top) else 1.0
    problem = close(e / top, got.astype(np.float64) / top, dtype, where=where)
    return None if problem is None else f"after scaling both by max|expected| = {top:.6g}: {problem}"
