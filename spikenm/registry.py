"""The one registry of backends: array backends (`spikenm.api` dispatch, the conformance
suite) and model backends (the trainer), by name or by import path.

Every entry (`BackendInfo`) names modules that are imported only when used:

* ``array_module`` implements `spikenm.protocol.Backend`: the module's ``BACKEND`` (or
  the module itself), or the object named by ``package.module:OBJECT``.  Its ``owns(x)``
  is the backend's own, subclass-aware type test (an ``isinstance`` check).
* ``model_module`` implements `spikenm.snn.ModelBackend`: the module's
  ``model_backend(device)``, or the factory named by ``package.module:FACTORY``.
* ``framework`` is the top-level module of the backend's array type.  `owner_of` asks a
  backend's ``owns(x)`` only when that module is already in ``sys.modules``: an array of
  a framework that was never imported cannot exist.  So dispatching NumPy arrays imports
  neither PyTorch nor JAX, and still ``torch.nn.Parameter``, a user's subclass of
  ``torch.Tensor`` and JAX tracers find their backend.  A backend without a framework
  (the generic array-API backend) is asked last, and only about objects that have
  ``__array_namespace__`` (the array API standard's mark).

The built-in backends are ``numpy`` (alias ``reference``), ``torch``, ``jax`` and
``array_api`` (alias ``array_api_strict``, the conformance suite's name for it).
Types are asked in this order: numpy, torch, jax, the backends added with `register`
(in the order they were added), array_api.

A third party adds its backend once, by import path, and then uses it like a built-in
one (``--backend NAME``, ``--model-backend NAME``, `spikenm.api` on its arrays)::

    from spikenm import registry
    registry.register("cupy", array_module="mypkg.cupy_backend", framework="cupy")

Anything else that contains a ``.`` or ``:`` is an import path used directly, without
registration: ``package.module:ATTRIBUTE`` (without ``:ATTRIBUTE`` the module's
``BACKEND`` / ``model_backend`` is taken).
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["BackendInfo", "BUILTIN", "register", "unregister", "info", "names",
           "array_backend", "owner_of", "import_path", "model_factory", "model_backend",
           "model_backend_names"]


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend: name, framework, and the modules that implement it.

    Attributes
    ----------
    name : str
    framework : str or None
        Top-level module of the framework (``numpy``, ``torch``, ``jax``); ``None`` for a
        generic array-API backend.
    array_module : str or None
        ``package.module`` (its ``BACKEND``, else the module) or ``package.module:OBJECT``
        implementing `spikenm.protocol.Backend`, with the type test ``owns(x)``.
    model_module : str or None
        ``package.module`` (its ``model_backend``) or ``package.module:FACTORY``; the
        factory's ``factory(device)`` implements `spikenm.snn.ModelBackend`.
    aliases : tuple of str
        Other names selecting this backend.
    extra : str or None
        The ``pip install 'spikenm[EXTRA]'`` extra that brings the framework (built-ins).
    """

    name: str
    framework: str | None
    array_module: str | None
    model_module: str | None
    aliases: tuple[str, ...] = ()
    extra: str | None = None


BUILTIN: dict[str, BackendInfo] = {
    "numpy": BackendInfo("numpy", "numpy", "spikenm.reference", "spikenm.reference.snn",
                         aliases=("reference",)),
    "torch": BackendInfo("torch", "torch", "spikenm.backends.torch",
                         "spikenm.backends.torch.snn", extra="torch"),
    "jax": BackendInfo("jax", "jax", "spikenm.backends.jax", "spikenm.backends.jax.snn",
                       extra="jax"),
    "array_api": BackendInfo("array_api", None, "spikenm.backends.array_api", None,
                             aliases=("array_api_strict",), extra="array-api"),
}
"""The built-in backends (`register` adds others)."""

_FALLBACK = "array_api"
_ADDED: dict[str, BackendInfo] = {}
_LOADED: dict[str, Any] = {}
_ORDER: list[BackendInfo] = []
_ALIASES: dict[str, str] = {}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _entries() -> tuple[BackendInfo, ...]:
    """Every backend in the order `owner_of` asks them (cached until `register`)."""
    if not _ORDER:
        builtin = [i for n, i in BUILTIN.items() if n != _FALLBACK]
        _ORDER.extend(builtin + list(_ADDED.values()) + [BUILTIN[_FALLBACK]])
    return tuple(_ORDER)


def _aliases() -> dict[str, str]:
    if not _ALIASES:
        for entry in _entries():
            _ALIASES.setdefault(entry.name, entry.name)
            for alias in entry.aliases:
                _ALIASES.setdefault(alias, entry.name)
    return _ALIASES


def _changed() -> None:
    _ORDER.clear()
    _ALIASES.clear()


def names() -> tuple[str, ...]:
    """Every registered name and alias, built-ins first."""
    return tuple(_aliases())


def info(name: str) -> BackendInfo | None:
    """The entry registered as ``name`` (a name or an alias), or None."""
    canonical = _aliases().get(name)
    if canonical is None:
        return None
    return BUILTIN.get(canonical) or _ADDED[canonical]


def _check_target(key: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a str 'package.module' or 'package.module:OBJECT', "
                        f"got {value!r}")
    module, _, attr = value.partition(":")
    if not _MODULE.match(module) or (":" in value and not _MODULE.match(attr)):
        raise ValueError(f"{key}={value!r} is not an import path; expected "
                         f"'package.module' or 'package.module:OBJECT'")


def register(name: str, *, array_module: str | None = None, model_module: str | None = None,
             framework: str | None = None, replace: bool = False) -> BackendInfo:
    """Add a third-party backend under ``name``; nothing is imported until it is used.

    Parameters
    ----------
    name : str
        Letters, digits, ``_`` and ``-`` (no ``.`` or ``:``, which mark import paths).
    array_module, model_module : str, optional
        Import paths (`BackendInfo`); at least one.
    framework : str, optional
        Top-level module of the array type; required for `spikenm.api` to dispatch to
        the backend's ``owns(x)`` (without it the backend is asked last, like the
        array-API backend, about objects with ``__array_namespace__``).
    replace : bool
        Replace an earlier registration of ``name`` (built-ins cannot be replaced).

    Raises
    ------
    ValueError
        A malformed name or import path, no module given, or a name (or alias) that is
        taken.
    TypeError
        Arguments that are not strings.

    Examples
    --------
    >>> from spikenm import registry
    >>> entry = registry.register("mine", model_module="mypkg.snn:factory", framework="numpy")
    >>> registry.info("mine").model_module
    'mypkg.snn:factory'
    >>> registry.unregister("mine")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"backend name {name!r} is invalid; expected letters, digits, '_' "
                         f"and '-' (an import path is used without registering it)")
    _check_target("array_module", array_module)
    _check_target("model_module", model_module)
    if array_module is None and model_module is None:
        raise ValueError(f"register({name!r}): give array_module, model_module or both")
    if framework is not None and (not isinstance(framework, str)
                                  or not _MODULE.match(framework) or "." in framework):
        raise ValueError(f"framework={framework!r} is invalid; expected the top-level module "
                         f"name of the array type (e.g. 'cupy')")
    taken = _aliases().get(name)
    if taken is not None and (taken in BUILTIN or not replace):
        what = "a built-in backend" if taken in BUILTIN else "registered already"
        raise ValueError(f"backend name {name!r} is {what}"
                         + ("" if taken in BUILTIN else "; pass replace=True to replace it"))
    entry = BackendInfo(name, framework, array_module, model_module)
    _ADDED.pop(name, None)
    _LOADED.pop(name, None)
    _ADDED[name] = entry
    _changed()
    return entry


def unregister(name: str) -> None:
    """Remove a backend added with `register`.

    Raises
    ------
    ValueError
        ``name`` is a built-in backend or not registered.
    """
    entry = info(name)
    if entry is not None and entry.name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in backend; it cannot be removed")
    if name not in _ADDED:
        raise ValueError(f"no backend {name!r} was registered")
    del _ADDED[name]
    _LOADED.pop(name, None)
    _changed()


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


def _array_object(spec: str) -> Any:
    """``BACKEND`` of a module (else the module), or the object of ``module:OBJECT``."""
    if ":" in spec:
        return import_path(spec, "BACKEND", "backend")
    try:
        module = importlib.import_module(spec)
    except ImportError as exc:
        raise ValueError(f"backend {spec!r}: module {spec!r} could not be imported "
                         f"({exc})") from exc
    return getattr(module, "BACKEND", module)


def _install_hint(entry: BackendInfo) -> str:
    extra = entry.extra
    return f"; install it with pip install 'spikenm[{extra}]'" if extra else ""


def array_backend(spec: str) -> Any:
    """The array backend (`spikenm.protocol.Backend`) registered as ``spec``, or at the
    import path ``spec``.  Completeness is not checked here (see
    `spikenm.protocol.missing_members`).

    Raises
    ------
    ValueError
        An unknown name, a registered backend without an array module, or an import
        path that does not resolve.
    ImportError
        A registered backend whose module (or framework) cannot be imported.
    """
    loaded = _LOADED.get(spec)
    if loaded is not None:
        return loaded
    entry = info(spec)
    if entry is None:
        if "." in spec or ":" in spec:
            return _array_object(spec)
        raise ValueError(f"unknown backend {spec!r}; expected one of {list(names())} or an "
                         f"import path package.module:OBJECT")
    if entry.name in _LOADED:
        return _LOADED[entry.name]
    if entry.array_module is None:
        raise ValueError(f"backend {spec!r} has no array backend (it registers only a model "
                         f"backend, {entry.model_module})")
    _import_entry(entry, entry.array_module, "backend")
    backend = _array_object(entry.array_module)
    _LOADED[entry.name] = backend
    return backend


def _import_entry(entry: BackendInfo, spec: str, what: str) -> None:
    """Import the module of ``spec`` (``module[:ATTR]``) of a registered backend; a missing
    framework is an ImportError naming the backend and the extra to install."""
    try:
        importlib.import_module(spec.partition(":")[0])
    except ImportError as exc:
        raise ImportError(f"the {entry.name} {what} ({spec}) could not be imported: "
                          f"{exc}{_install_hint(entry)}") from exc


def owner_of(x: Any) -> str | None:
    """Name of the backend whose type test ``owns(x)`` claims ``x``, or None.

    A backend is asked only when its framework is in ``sys.modules`` (generic array-API
    backends: when ``x`` has ``__array_namespace__``); backends are imported on first
    use.  A backend without ``owns`` claims nothing.

    Raises
    ------
    ImportError
        A backend that has to be asked cannot be imported (its framework is loaded, so
        its arrays may be around: this is not silently skipped).
    """
    for entry in _entries():
        if entry.array_module is None:
            continue
        if entry.framework is None:
            if not hasattr(x, "__array_namespace__"):
                continue
        elif entry.framework not in sys.modules:
            continue
        try:
            backend = array_backend(entry.name)
        except ValueError as exc:  # a registered import path that does not resolve
            raise ImportError(str(exc)) from exc
        owns = getattr(backend, "owns", None)
        if owns is not None and owns(x):
            return entry.name
    return None


def model_backend_names() -> tuple[str, ...]:
    """Names of the registered model backends (built-ins first)."""
    return tuple(entry.name for entry in _entries() if entry.model_module)


def model_factory(spec: str) -> Any:
    """The factory of the model backend ``spec`` (a registered name or an import path),
    imported but not called; `model_backend` calls it.

    Raises
    ------
    ValueError
        Unknown name or an import path that does not resolve.
    ImportError
        When a registered backend's module or framework cannot be imported (the message
        says which extra to install).
    """
    entry = info(spec)
    if entry is not None and entry.model_module:
        _import_entry(entry, entry.model_module, "model backend")
        return import_path(entry.model_module, "model_backend", "model backend")
    if "." in spec or ":" in spec:
        return import_path(spec, "model_backend", "model backend")
    raise ValueError(f"unknown model backend {spec!r}; expected one of "
                     f"{list(model_backend_names())} or an import path "
                     f"package.module:FACTORY")


def model_backend(spec: str, device: str = "cpu") -> Any:
    """The model backend ``spec`` (a registered name or an import path of a factory
    ``factory(device) -> ModelBackend``) created for ``device``.

    Only the chosen backend's framework is imported.

    Raises
    ------
    ValueError
        Unknown name, an import path that does not resolve, a backend lacking members of
        `spikenm.snn.ModelBackend`, or a device the backend does not have.
    ImportError
        When a registered backend's module or framework cannot be imported (the message
        says which extra to install).
    """
    from spikenm.snn.model import MEMBERS

    factory = model_factory(spec)
    backend = factory(device) if callable(factory) else factory
    missing = [m for m in MEMBERS if not hasattr(backend, m)]
    if missing:
        raise ValueError(f"model backend {spec!r} lacks {', '.join(missing)} "
                         f"(see spikenm.snn.ModelBackend)")
    return backend
