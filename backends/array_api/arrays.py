"""Array plumbing of the array-API backend: dtype names, axes, finiteness, host copies."""

from __future__ import annotations

from typing import Any

import numpy as np

from .namespace import default_namespace, device_of, namespace_of

DTYPE_NAMES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
)
"""Canonical names, looked up as attributes of the namespace.  ``float16`` and
``bfloat16`` are not in the standard; a namespace that has them is recognised."""


def dtype_name(x: Any) -> str:
    """Canonical name of ``x``'s dtype (``'float32'``, ``'uint8'``, ``'bool'``, ...).

    The name is the attribute of the array's namespace whose dtype equals ``x.dtype``.

    Raises
    ------
    TypeError
        When the dtype is none of `DTYPE_NAMES`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> dtype_name(xp.asarray([1.0], dtype=xp.float32))
    'float32'
    """
    xp = namespace_of(x)
    for name in DTYPE_NAMES:
        candidate = getattr(xp, name, None)
        if candidate is not None and x.dtype == candidate:
            return name
    raise TypeError(
        f"array dtype {x.dtype!r} is not one spikenm knows; expected one of {DTYPE_NAMES}"
    )


def moveaxis(x: Any, source: int, destination: int) -> Any:
    """``x`` with axis ``source`` moved to ``destination`` (``xp.moveaxis``).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> moveaxis(xp.zeros((2, 3, 4)), 0, 2).shape
    (3, 4, 2)
    """
    return namespace_of(x).moveaxis(x, source, destination)


def all_finite(x: Any) -> bool:
    """``bool(xp.all(xp.isfinite(x)))`` for floating arrays; True for integer/bool ones.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> all_finite(xp.asarray([1.0, float("nan")])), all_finite(xp.asarray([1, 2]))
    (False, True)
    """
    xp = namespace_of(x)
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return True
    return bool(xp.all(xp.isfinite(x)))


def to_numpy(x: Any) -> np.ndarray:
    """A writable NumPy copy of ``x``, from any device.

    The copy goes through DLPack with ``device="cpu"`` (``np.from_dlpack``), the
    standard's way to reach host memory; a library without DLPack falls back to
    ``np.asarray``.  bfloat16 (not in the standard) arrives as its uint16 bit pattern.

    Raises
    ------
    TypeError
        When neither route can produce a NumPy array.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> to_numpy(xp.asarray([1.0, 2.0]))
    array([1., 2.])
    """
    try:
        host = np.from_dlpack(x, device="cpu")
    except (AttributeError, BufferError, NotImplementedError, RuntimeError, TypeError,
            ValueError) as dlpack_error:
        try:
            host = np.asarray(x)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot copy a {type(x).__module__}.{type(x).__qualname__} to NumPy: "
                f"DLPack failed ({dlpack_error}) and np.asarray failed ({exc})"
            ) from exc
    copy = np.array(host, copy=True)
    if copy.dtype.name == "bfloat16":
        return copy.view(np.uint16)
    return copy


def from_numpy(a: np.ndarray, like: Any = None, xp: Any = None) -> Any:
    """``a`` as an array of ``like``'s namespace, on ``like``'s device.

    Parameters
    ----------
    a : np.ndarray
    like : array-API array, optional
        Gives namespace and device.  When None, the namespace is ``xp`` if given, else
        ``array_api_strict`` (`default_namespace`), on its default device.
    xp : namespace, optional
        Namespace used when ``like`` is None (`make_backend` binds it).

    Examples
    --------
    >>> import numpy as np
    >>> type(from_numpy(np.ones(2))).__module__
    'array_api_strict._array_object'
    """
    if like is not None:
        return namespace_of(like).asarray(a, device=device_of(like))
    namespace = default_namespace() if xp is None else xp
    return namespace.asarray(a)
