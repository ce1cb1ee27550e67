"""Choose a backend from the caller's array types, importing no framework the caller lacks.

The framework of an array is read from the module of its type (``numpy``, ``torch``,
``jax``/``jaxlib``); any other object with ``__array_namespace__`` goes to the generic
array-API backend.  Mixing frameworks in one call is a ``TypeError``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .protocol import Backend

_MODULES = {
    "numpy": "spikenm.reference",
    "torch": "spikenm.backends.torch",
    "jax": "spikenm.backends.jax",
    "array_api": "spikenm.backends.array_api",
}

_FRAMEWORK_ROOTS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "jaxlib": "jax"}


def framework_of(x: Any, argname: str = "array") -> str:
    """Name of the framework that owns ``x``: 'numpy', 'torch', 'jax' or 'array_api'.

    Raises
    ------
    TypeError
        When ``x`` is not an array of a known framework (e.g. a list or a float).
    """
    root = type(x).__module__.split(".", 1)[0]
    if root == "numpy" and type(x).__name__ == "MaskedArray":
        raise TypeError(
            f"{argname} is a NumPy masked array, which is not supported; "
            f"pass {argname}.filled(value) or a plain array"
        )
    kind = _FRAMEWORK_ROOTS.get(root)
    if kind is not None:
        return kind
    if hasattr(x, "__array_namespace__"):
        return "array_api"
    raise TypeError(
        f"{argname} must be an array (NumPy, PyTorch, JAX or an array-API array); "
        f"got {type(x).__module__}.{type(x).__qualname__}"
    )


def backend_named(kind: str) -> Backend:
    """The backend object for a framework name from ``framework_of``."""
    module_name = _MODULES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the spikenm backend for {kind} arrays could not be imported ({exc}); "
            f"install the extra: pip install 'spikenm[{kind.replace('_', '-')}]'"
        ) from exc
    backend = getattr(module, "BACKEND", None)
    if backend is None:
        raise NotImplementedError(
            f"the spikenm backend for {kind} arrays is not implemented yet "
            f"({module_name} has no BACKEND); use NumPy arrays"
        )
    return backend


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
