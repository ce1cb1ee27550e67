"""Argument validation shared by every entry point (SPEC S0.5 lists the errors).

Every check raises with the offending value and what was expected.  Checks that need
array values (finiteness, block counts) are skipped only when the backend reports that
values are unavailable (e.g. inside ``jax.jit``); they never silently pass otherwise.
"""

from __future__ import annotations

import math
import numbers
import weakref
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
    """A temperature or scale for backend ``be``: what `normal_in_dtype` accepts, or,
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
        return normal_in_dtype(name, value, dtype)
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
    return normal_in_dtype(name, float(value), dtype)


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


def path(name: str, value: Any) -> Any:
    """A file path: a ``str`` or an ``os.PathLike`` (``TypeError`` naming it otherwise)."""
    import os

    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {value!r}")
    return value


def present(**arrays: Any) -> None:
    """Required array arguments are not ``None`` (a ``TypeError`` naming the argument:
    `spikenm.dispatch.backend_for` skips ``None``, the value of an omitted optional
    array)."""
    for name, value in arrays.items():
        if value is None:
            raise TypeError(
                f"{name} must be an array (NumPy, PyTorch, JAX or an array-API array); "
                f"got None"
            )


# -- S0.8: numerical range of temperatures, scales and values ------------------------------

MARGIN = 16.0
"""Values and scaled values are kept below ``F / MARGIN`` (SPEC S0.8)."""

TEMPERATURE_FACTOR = 1024.0
"""Temperatures are kept at or above ``TEMPERATURE_FACTOR * count / F`` (SPEC S0.8)."""


def float_range(dtype: str) -> tuple[float, float]:
    """``(tiny, F)``: the smallest positive normal and the largest finite number of the
    float dtype ``dtype``."""
    info = np.finfo(np.dtype(dtype))
    return float(info.tiny), float(info.max)


def in_dtype(value: float, dtype: str) -> str:
    """``value`` rounded to ``dtype``, printed as that dtype prints it (shortest form)."""
    return str(np.dtype(dtype).type(value))


def normal_in_dtype(name: str, value: Any, dtype: str) -> float:
    """A finite number ``> 0`` that is a normal number of the float dtype ``dtype``
    (SPEC S0.8 rule 1): it neither overflows to inf nor underflows to 0 or to a
    subnormal number when it meets an array of ``dtype``.

    Examples
    --------
    >>> normal_in_dtype("temperature", 0.5, "float32")
    0.5
    >>> normal_in_dtype("temperature", 1e-40, "float32")
    Traceback (most recent call last):
    ...
    ValueError: temperature=1e-40 underflows float32 (smallest normal number 1.1754944e-38); expected a normal number of float32 (SPEC S0.8)
    """
    value = positive_in_dtype(name, value, dtype)
    tiny, _ = float_range(dtype)
    if value < tiny:
        raise ValueError(
            f"{name}={value!r} underflows {dtype} (smallest normal number "
            f"{in_dtype(tiny, dtype)}); expected a normal number of {dtype} (SPEC S0.8)"
        )
    return value


def temperature_floor(name: str, value: Any, dtype: str, count: int, meaning: str) -> None:
    """``value >= TEMPERATURE_FACTOR * count / F`` (SPEC S0.8 rule 2); a traced value
    (not a Python number) is not checked."""
    if not isinstance(value, float):
        return
    _, big = float_range(dtype)
    floor = TEMPERATURE_FACTOR * count / big
    if value < floor:
        raise ValueError(
            f"{name}={value!r} is below {in_dtype(floor, dtype)}, the smallest {name} that "
            f"keeps {meaning} finite in {dtype} ({TEMPERATURE_FACTOR:g} * {count} / "
            f"{in_dtype(big, dtype)}, SPEC S0.8)"
        )


DETACHED = ("torch",)
"""Backends whose arrays record every operation for autograd: `bounded` multiplies a
detached view (``stop_gradient``)."""


def bounded(be: Backend, name: str, x: Any, limit: float, dtype: str, meaning: str,
            factor: Any = 1.0, label: str | None = None) -> None:
    """No NaN or inf in ``x`` and ``factor * max|x| <= limit`` (SPEC S0.5, S0.8 rule 3).

    One pass over ``x``: ``x * c`` with ``c = F * factor / limit`` (``F`` the dtype's
    largest finite number) overflows exactly where ``factor * |x|`` exceeds ``limit`` (up
    to the one rounding of the product, the same on every backend), so
    ``all_finite(x * c)`` replaces the plain finiteness check.  When ``c`` is not
    representable, or the arrays have no arithmetic (the protocol does not require it), or
    the product is staged into a trace while ``x`` has values, the values are read on the
    host and judged by the same rule.  Skipped when values are unavailable (inside
    ``jax.jit``) or when ``factor`` is traced.

    Raises
    ------
    ValueError
        Naming the first NaN/inf, else the first entry out of range, the limit and what
        it protects (``meaning``).
    """
    if not isinstance(factor, float):
        finite(be, name, x)
        return
    _, big = float_range(dtype)
    c = big * factor / limit
    if c <= 1.0:
        finite(be, name, x)
        return
    ok: bool | None = None
    if c <= big:
        probe = be.stop_gradient(x) if be.name in DETACHED else x  # not recorded by autograd
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # NumPy warns on the overflow
                product = probe * c
        except TypeError:  # arrays without arithmetic: the protocol does not promise it
            product = None
        if product is not None:
            ok = be.all_finite(product)
            if ok:
                return
    if ok is None and be.all_finite(x) is None:
        return  # no values (traced); else the product was unavailable or staged: read values
    finite(be, name, x)
    values = be.to_numpy(x).astype(np.float64)
    with np.errstate(over="ignore"):
        scaled = np.abs(values) * (factor / limit)
        over = ~np.isfinite(values.astype(dtype) * np.dtype(dtype).type(c)) if c <= big \
            else scaled > 1.0
    if not over.any():
        return
    bad = tuple(int(i) for i in np.argwhere(over)[0])
    shown = label or f"|{name}|"
    size = float(abs(values[bad])) * float(factor)  # a Python float: inf, not a warning
    raise ValueError(
        f"{shown} is {size:.7g} at index {bad}, above "
        f"{in_dtype(limit, dtype)}, the largest that keeps {meaning} finite in {dtype} "
        f"(SPEC S0.8)"
    )


# -- S3.10: packed objects -------------------------------------------------------------------

PACK_DTYPES = ("bool", "float16", "bfloat16", "float32", "float64", "int8", "int16", "int32",
               "int64", "uint8", "uint16", "uint32", "uint64")
"""Value dtypes a `spikenm.packed.Packed` may hold (SPEC S0.4, S3.1)."""

_VALIDATED: dict[int, tuple[Any, int, int, Any]] = {}
"""Index arrays that passed the S3.10 check: ``id -> (weak reference, n, m, token)``."""


_PACKED: dict[int, tuple[Any, Backend, Any, Any]] = {}
"""`Packed` objects that passed `packed`: ``id -> (weak reference, backend, token of the
indices, shape of the values)``; a hit skips every check of `packed`."""


def _forget(key: int) -> None:
    _VALIDATED.pop(key, None)


def _token(be: Backend, indices: Any) -> Any:
    """What proves that ``indices`` did not change since it was checked, or None when
    nothing can (then it is checked on every call).  NumPy arrays are made read-only
    (`_remember`); torch tensors carry a version counter that every in-place change
    increments; JAX arrays are immutable."""
    if isinstance(indices, np.ndarray):
        return "read-only" if not indices.flags.writeable else None
    if be.name == "torch":
        try:
            return ("version", int(indices._version))  # noqa: SLF001
        except (AttributeError, RuntimeError):  # inference tensors have no version
            return None
    if be.name == "jax":
        return "immutable"
    return None


def _remember(be: Backend, indices: Any, n: int, m: int) -> None:
    if isinstance(indices, np.ndarray):
        indices.flags.writeable = False
    token = _token(be, indices)
    if token is None:
        return
    key = id(indices)
    try:
        ref = weakref.ref(indices, lambda _r: _forget(key))
    except TypeError:  # not weakly referenceable: checked on every call
        return
    _VALIDATED[key] = (ref, n, m, token)


def _is_validated(be: Backend, indices: Any, n: int, m: int) -> bool:
    hit = _VALIDATED.get(id(indices))
    return (hit is not None and hit[0]() is indices and hit[1] == n and hit[2] == m
            and hit[3] == _token(be, indices))


def packed_indices(be: Backend, indices: Any, n: int, m: int) -> None:
    """Every block of ``n`` consecutive packed indices is ``n`` strictly increasing
    indices in ``[0, m)`` (SPEC S3.2, S3.10), checked in one fused pass
    (`spikenm.reference.packing.first_bad_block`) on the host copy of the uint8 indices.

    The verdict is remembered per index array while it is alive and provably unchanged
    (`_token`), so a `Packed` used again (e.g. `spikenm.api.spmm` at every step) is
    checked once.  Skipped when values are unavailable (inside ``jax.jit``).

    Raises
    ------
    ValueError
        Naming the first bad block (its position in ``indices``) and its indices.
    """
    if _is_validated(be, indices, n, m):
        return
    if be.all_finite(indices) is None:
        return
    from .reference.packing import first_bad_block

    host = indices if isinstance(indices, np.ndarray) else be.to_numpy(indices)
    bad = first_bad_block(host, n, m)
    if bad >= 0:
        raise _bad_block_error(host, bad, n, m)
    _remember(be, indices, n, m)


_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
          8: "eight"}


def _bad_block_error(host: np.ndarray, bad: int, n: int, m: int) -> ValueError:
    """The error for flat block ``bad`` of the indices ``host``: its first index ``>= m``
    if it has one, else the block's indices that are not strictly increasing.  Rows are
    the flattened leading axes, as in `spikenm.reference.packing.bad_index_error`."""
    width = host.shape[-1] if host.ndim else 1
    row, g = divmod(bad, width // n)
    block = [int(i) for i in host.reshape(-1, n)[bad]]
    for j, i in enumerate(block):
        if i >= m:
            return ValueError(
                f"packed indices[{row}, {g * n + j}] (block {g} of row {row}) is {i}; "
                f"expected a value in [0, {m}) (SPEC S3.1, S3.10)"
            )
    return ValueError(
        f"packed indices of row {row}, block {g} are {block}; expected "
        f"{_WORDS.get(n, str(n))} strictly increasing indices in [0, {m}) (indices[{row}, "
        f"{g * n}:{g * n + n}], SPEC S3.2, S3.10)"
    )


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"Packed shape must be a non-empty tuple of integers, got {shape!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(
                f"Packed shape must hold non-negative integers, got {tuple(shape)!r}"
            )
    return tuple(int(s) for s in shape)


def real_dtype(be: Backend, name: str, x: Any) -> str:
    """``x`` has one of the real dtypes of the packed format (`PACK_DTYPES`, SPEC S0.4,
    S3.1); returns the dtype name."""
    dt = be.dtype_name(x)
    if dt not in PACK_DTYPES:
        raise TypeError(f"{name} must have a real dtype ({', '.join(PACK_DTYPES)}), got {dt}")
    return dt


def packed(value: Any) -> Backend:
    """Validate a `spikenm.packed.Packed` wherever one enters the API (SPEC S3.10):
    its type, its fields' types, the pattern, the dense shape and axis, the shapes and
    dtypes of ``values`` and ``indices`` (one framework), and the indices
    (`packed_indices`).  Returns the backend of its arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from spikenm.packed import Packed
    >>> bad = Packed(np.ones((1, 2)), np.array([[1, 1]], dtype=np.uint8), 2, 4, (1, 4), 1)
    >>> packed(bad)
    Traceback (most recent call last):
    ...
    ValueError: packed indices of row 0, block 0 are [1, 1]; expected two strictly increasing indices in [0, 4) (indices[0, 0:2], SPEC S3.2, S3.10)
    """
    from .dispatch import backend_for
    from .packed import Packed

    hit = _PACKED.get(id(value))
    if hit is not None and hit[0]() is value and hit[2] == _token(hit[1], value.indices) \
            and hit[3] == value.values.shape:
        return hit[1]
    if not isinstance(value, Packed):
        raise TypeError(f"expected a spikenm Packed, got {type(value).__name__}")
    present(**{"Packed values": value.values, "Packed indices": value.indices})
    be = backend_for(**{"Packed values": value.values, "Packed indices": value.indices})
    n, m = pattern(value.n, value.m)
    if m > 256:
        raise ValueError(f"Packed m={m} does not fit uint8 indices; expected m <= 256")
    shape = _shape_tuple(value.shape)
    axis = value.axis
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"Packed axis must be an integer, got {axis!r}")
    if not 0 <= axis < len(shape) or shape[axis] == 0 or shape[axis] % m:
        raise ValueError(f"Packed axis={axis} does not fit shape {shape} with m={m}; "
                         f"expected 0 <= axis < {len(shape)} and a positive multiple of m "
                         f"along it")
    lead = shape[:axis] + shape[axis + 1:]
    expected = lead + (shape[axis] // m * n,)
    for name, arr in (("values", value.values), ("indices", value.indices)):
        if tuple(arr.shape) != expected:
            raise ValueError(
                f"Packed {name} has shape {tuple(arr.shape)}, expected {expected} for dense "
                f"shape {shape}, axis {axis} and {n}:{m}"
            )
    if be.dtype_name(value.indices) != "uint8":
        raise TypeError(f"Packed indices must be uint8, got {be.dtype_name(value.indices)}")
    real_dtype(be, "Packed values", value.values)
    packed_indices(be, value.indices, n, m)
    token = _token(be, value.indices)
    if token is not None and _is_validated(be, value.indices, n, m):
        key = id(value)
        try:
            ref = weakref.ref(value, lambda _r: _PACKED.pop(key, None))
        except TypeError:  # pragma: no cover - Packed instances are weakly referenceable
            return be
        _PACKED[key] = (ref, be, token, value.values.shape)
    return be
