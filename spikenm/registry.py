"""The one registry of backends: array backends (`spikenm.api` dispatch, conformance) and
model backends (the trainer), by name or by import path.

A built-in name maps to modules that are imported only when used.  Anything else that
contains a ``.`` or ``:`` is an import path ``package.module:ATTRIBUTE`` (without
``:ATTRIBUTE`` the module's ``BACKEND`` / ``model_backend`` is taken), so a third party's
backend is used exactly like a built-in one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["BackendInfo", "BUILTIN", "import_path", "model_backend", "model_backend_names"]


@dataclass(frozen=True)
class BackendInfo:
    """A built-in backend: registry name, framework, and the modules that implement it.

    Attributes
    ----------
    name : str
    framework : str
        Top-level module of the framework (``numpy``, ``torch``, ``jax``).
    array_module : str or None
        Module whose ``BACKEND`` implements `spikenm.protocol.Backend`.
    model_module : str or None
        Module whose ``model_backend(device)`` implements `spikenm.snn.ModelBackend`.
    """

    name: str
    framework: str
    array_module: str | None
    model_module: str | None


BUILTIN: dict[str, BackendInfo] = {
    "numpy": BackendInfo("numpy", "numpy", "spikenm.reference", "spikenm.reference.snn"),
    "torch": BackendInfo("torch", "torch", "spikenm.backends.torch",
                         "spikenm.backends.torch.snn"),
    "jax": BackendInfo("jax", "jax", "spikenm.backends.jax", "spikenm.backends.jax.snn"),
    "array_api": BackendInfo("array_api", "", "spikenm.backends.array_api", None),
}


def import_path(spec: str, default_attr: str, what: str) -> Any:
    """The object named by ``package.module:ATTRIBUTE`` (``default_attr`` without one).

    Raises
    ------
    ValueError
        When the module cannot be imported or has no such attribute (the message names
        ``spec`` and ``what`` was looked for).
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: module {module_name!r} could not be imported "
                         f"({exc})") from exc
    target: Any = module
    for part in (attr or default_attr).split("."):
        if not hasattr(target, part):
            raise ValueError(f"{what} {spec!r}: module {module_name!r} has no attribute "
                             f"{(attr or default_attr)!r}")
        target = getattr(target, part)
    return target


def model_backend_names() -> tuple[str, ...]:
    """Names of the built-in model backends."""
    return tuple(name for name, info in BUILTIN.items() if info.model_module)


def model_backend(spec: str, device: str = "cpu") -> Any:
    """The model backend ``spec`` (a built-in name or an import path of a factory
    ``factory(device) -> ModelBackend``) created for ``device``.

    Only the chosen backend's framework is imported.

    Raises
    ------
    ValueError
        Unknown name, an import path that does not resolve, a backend lacking members of
        `spikenm.snn.ModelBackend`, or a device the backend does not have.
    ImportError
        When a built-in backend's framework is not installed (the message says which
        extra to install).
    """
    from spikenm.snn.model import MEMBERS

    info = BUILTIN.get(spec)
    if info is not None and info.model_module:
        try:
            module = importlib.import_module(info.model_module)
        except ImportError as exc:
            raise ImportError(f"the {spec} model backend ({info.model_module}) could not be "
                              f"imported: {exc}; install it with pip install "
                              f"'spikenm[{spec}]'") from exc
        factory = getattr(module, "model_backend")
    elif "." in spec or ":" in spec:
        factory = import_path(spec, "model_backend", "model backend")
    else:
        raise ValueError(f"unknown model backend {spec!r}; expected one of "
                         f"{list(model_backend_names())} or an import path "
                         f"package.module:FACTORY")
    backend = factory(device) if callable(factory) else factory
    missing = [m for m in MEMBERS if not hasattr(backend, m)]
    if missing:
        raise ValueError(f"model backend {spec!r} lacks {', '.join(missing)} "
                         f"(see spikenm.snn.ModelBackend)")
    return backend
