"""Choose a backend from the caller's array types, importing no framework the caller lacks.

The owner of an array is found by `spikenm.registry.owner_of`: each backend's own
``owns(x)`` (an ``isinstance`` test, so subclasses such as ``torch.nn.Parameter`` and
JAX tracers count), asked only when the backend's framework is already imported.  Any
other object with ``__array_namespace__`` goes to the generic array-API backend.  A NumPy
masked array is refused (its mask would be ignored), and mixing frameworks in one call
is a ``TypeError`` (SPEC S0.5).
"""

from __future__ import annotations

import sys
from typing import Any

from . import registry
from .protocol import Backend


def framework_of(x: Any, argname: str = "array") -> str:
    """Registry name of the backend that owns ``x``: ``'numpy'``, ``'torch'``, ``'jax'``,
    ``'array_api'`` or a registered third party's name.

    Raises
    ------
    TypeError
        When ``x`` is a NumPy masked array, or not an array of a known framework (e.g. a
        list or a float).
    ImportError
        When the backend that must be asked about ``x`` cannot be imported.
    """
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(x, ma.MaskedArray):
        raise TypeError(
            f"{argname} is a NumPy masked array, which is not supported; "
            f"pass {argname}.filled(value) or a plain array"
        )
    owner = registry.owner_of(x)
    if owner is not None:
        return owner
    raise TypeError(
        f"{argname} must be an array (NumPy, PyTorch, JAX or an array-API array); "
        f"got {type(x).__module__}.{type(x).__qualname__}"
    )


def backend_named(kind: str) -> Backend:
    """The backend object for a name from ``framework_of`` (any registered name).

    Raises
    ------
    ImportError
        When the backend cannot be imported (the message names the extra to install).
    """
    return registry.array_backend(kind)


def backend_for(**arrays: Any) -> Backend:
    """The single backend for the given named arrays (``None`` values are ignored).

    Raises
    ------
    TypeError
        When an argument is not an array, or arrays come from different frameworks.
    """
    seen: dict[str, str] = {}
    for argname, value in arrays.items():
        if value is None:
            continue
        seen[argname] = framework_of(value, argname)
    kinds = set(seen.values())
    if not kinds:
        raise TypeError("no array argument given")
    if len(kinds) > 1:
        parts = ", ".join(f"{arg}: {kind}" for arg, kind in seen.items())
        raise TypeError(f"arrays from different frameworks cannot be mixed ({parts})")
    return backend_named(kinds.pop())
