"""Which array-API namespace an array belongs to, and the default one.

The backend never imports an array library on its own account: the namespace of the
arrays it is given comes from ``array_api_compat.array_namespace``.  Only
`from_numpy` without a ``like`` array needs a namespace chosen in advance; the
module-level backend uses ``array_api_strict`` for that (imported on first use), and
`spikenm.backends.array_api.make_backend` binds any other namespace.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat

FORWARD_ONLY = (
    "the array-API backend is forward-only; use the torch or jax backend for gradients"
)
"""Message of the ``NotImplementedError`` raised by every ``*_vjp`` member."""


def namespace_of(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays``.

    Parameters
    ----------
    *arrays : arrays of one array-API library

    Returns
    -------
    namespace
        What ``array_api_compat.array_namespace(*arrays)`` returns (for
        ``array_api_strict`` arrays: the ``array_api_strict`` module itself).

    Raises
    ------
    TypeError
        When the arrays come from different libraries or are not arrays.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> namespace_of(xp.asarray([1.0])) is xp
    True
    """
    return array_api_compat.array_namespace(*arrays)


def device_of(x: Any) -> Any:
    """The device of ``x`` (``x.device`` in the standard).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> device_of(xp.asarray([1.0]))
    array_api_strict.Device('CPU_DEVICE')
    """
    return array_api_compat.device(x)


def default_namespace() -> ModuleType:
    """``array_api_strict``, the namespace of `from_numpy` when no ``like`` is given.

    Imported on first use only, so that a caller holding CuPy or Dask arrays never
    imports it.

    Raises
    ------
    ImportError
        When ``array_api_strict`` is not installed (pass ``like=`` or use
        `make_backend` with the namespace you want).

    Examples
    --------
    >>> default_namespace().__name__
    'array_api_strict'
    """
    try:
        import array_api_strict
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "from_numpy(a) without like= builds array_api_strict arrays, but "
            f"array_api_strict could not be imported ({exc}); pass like=<an array of your "
            "library> or use spikenm.backends.array_api.make_backend(xp)"
        ) from exc
    return array_api_strict
