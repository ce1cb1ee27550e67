"""Choosing the backend under test by name, and what the suite learns about it.

Names come from the one backend registry, `spikenm.registry`: ``numpy`` (alias
``reference``), ``torch``, ``jax``, ``array_api_strict`` (alias of ``array_api``: the
generic array-API backend, whose ``from_numpy`` builds array-api-strict arrays), any
backend registered with `spikenm.registry.register`, or an import path
``package.module:OBJECT`` / ``package.module`` of a third-party object implementing
`spikenm.protocol.Backend` (a module is used as the backend unless it has a
``BACKEND`` attribute).  An empty, unknown or unimportable name raises
`BackendSelectionError`; there is no default backend.

Selecting a backend registered with the ``jax`` framework turns on ``jax_enable_x64``
before the backend is imported: float64 is part of the contract (SPEC S0.4) and JAX
silently computes in float32 without it.  The note is recorded in the report.
"""

from __future__ import annotations

import abc
import importlib.metadata
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from spikenm import registry
from spikenm.protocol import missing_members

from .repro import ARRAY_IMPORTS

GRADIENT_MEMBERS = ("sample_mask_vjp", "relaxed_topn_vjp", "eid_loss_vjp")
"""Protocol members a forward-only backend (``differentiable = False``) need not have."""

REQUIRED_DTYPES = ("float32", "float64")
OPTIONAL_DTYPES = (
    "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "bool",
)
"""Real dtypes the packed format must keep (SPEC S0.4, S3.1) when the framework has them."""


class BackendSelectionError(Exception):
    """The backend named for the suite cannot be used (unknown, missing, incomplete)."""


def numpy_dtype(name: str) -> np.dtype:
    """NumPy dtype of a canonical name; ``bfloat16`` comes from ml_dtypes."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def framework_version(framework: str) -> str:
    """Version of the top-level module ``framework``, or ``"unknown"``."""
    module = sys.modules.get(framework)
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(framework.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


class SubjectFacts(abc.ABC):
    """What a subject of the suite (`Subject`, `model_selection.ModelSubject`) says about
    itself, from its ``backend``, ``spec`` and ``array_type`` attributes.

    A subclass sets ``SNIPPET_IMPORTS`` (the imports of its reproduction snippets), ``KIND``
    (how a snippet names the object) and `loader_call`.
    """

    backend: Any
    spec: str | None
    array_type: type
    SNIPPET_IMPORTS: ClassVar[tuple[str, ...]]
    KIND: ClassVar[str]

    @property
    def name(self) -> str:
        """The backend's own ``name``."""
        return str(getattr(self.backend, "name", "?"))

    @property
    def label(self) -> str:
        """How reports refer to it."""
        return self.spec if self.spec is not None else f"<object {self.name}>"

    @property
    def framework(self) -> str:
        """Top-level module of the array type (``torch``, ``jax``, ``numpy``, ...)."""
        root = self.array_type.__module__.split(".", 1)[0]
        return "jax" if root == "jaxlib" else root

    @property
    def framework_version(self) -> str:
        """Version of `framework`, or ``"unknown"``."""
        return framework_version(self.framework)

    def snippet_imports(self) -> tuple[str, ...]:
        """Imports of a reproduction snippet besides NumPy."""
        return self.SNIPPET_IMPORTS

    @abc.abstractmethod
    def loader_call(self) -> str:
        """Expression that loads the object by its ``spec`` in a reproduction snippet."""

    def backend_expr(self) -> str:
        """Statement that defines ``be`` in a reproduction snippet."""
        if self.spec is not None:
            return f"be = {self.loader_call()}"
        return (f"be = ...  # the {self.KIND} object under test (name {self.name!r}); "
                f"not loadable by name")


@dataclass
class Subject(SubjectFacts):
    """The backend under test and the facts the checks need about it.

    Attributes
    ----------
    backend : object
        The object implementing `spikenm.protocol.Backend`.
    spec : str or None
        The name it was selected by (``None`` for an object handed over directly); the
        reproduction snippets load it with ``load_backend(spec)``.
    array_type : type
        Type of ``backend.from_numpy(np.zeros(1))``: every result must be one.
    differentiable : bool
        False for forward-only backends (gradient checks are then not applicable).
    dispatches : bool
        True when `spikenm.api` sends this backend's arrays to this very backend, so the
        API-level checks apply.
    pack_dtypes : tuple of str
        Real dtypes the framework can hold (probed with ``from_numpy``): drawn by the
        packed-format checks.
    unsupported : dict
        Optional dtypes it cannot hold, with the reason.
    notes : list of str
        Things the suite did to run the backend (e.g. enabling float64 in JAX).
    """

    backend: Any
    spec: str | None
    array_type: type
    differentiable: bool
    dispatches: bool
    pack_dtypes: tuple[str, ...]
    unsupported: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    SNIPPET_IMPORTS = ARRAY_IMPORTS
    KIND = "backend"

    def loader_call(self) -> str:
        """Expression that loads the backend by `spec` in a reproduction snippet."""
        return f"load_backend({self.spec!r})"


def _enable_jax_x64(notes: list[str]) -> None:
    import jax

    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
        notes.append("jax_enable_x64 was turned on by the suite (float64 is part of SPEC S0.4)")
    else:
        notes.append("jax_enable_x64 is on (float64 is part of SPEC S0.4)")


def enable_x64_for(spec: str, notes: list[str]) -> None:
    """Turn on ``jax_enable_x64`` when ``spec`` names a registered JAX backend."""
    entry = registry.info(spec)
    if entry is not None and entry.framework == "jax":
        _enable_jax_x64(notes)


def load_backend(spec: str | None, notes: list[str] | None = None) -> Any:
    """The backend object selected by ``spec`` (see the module docstring).

    Raises
    ------
    BackendSelectionError
        ``spec`` is empty, unknown, not importable, or names an incomplete backend.
    """
    notes = [] if notes is None else notes
    if spec is None or not str(spec).strip():
        raise BackendSelectionError(
            "no backend selected: pass --backend NAME (python -m spikenm.conformance), "
            "--spikenm-backend NAME (pytest) or set SPIKENM_BACKEND; NAME is one of "
            f"{', '.join(registry.names())} or an import path package.module:OBJECT (for a "
            f"model backend: --model-backend NAME)"
        )
    spec = str(spec).strip()
    entry = registry.info(spec)
    if entry is None and not ("." in spec or ":" in spec):
        raise BackendSelectionError(
            f"unknown backend {spec!r}; expected one of {', '.join(registry.names())} or an "
            f"import path package.module:OBJECT of an object implementing "
            f"spikenm.protocol.Backend"
        )
    enable_x64_for(spec, notes)
    try:
        backend = registry.array_backend(spec)
    except ImportError as exc:
        raise BackendSelectionError(f"backend {spec!r} could not be imported: {exc}") from exc
    except ValueError as exc:
        raise BackendSelectionError(str(exc)) from exc
    check_members(backend, spec)
    return backend


def check_members(backend: Any, label: str) -> None:
    """Raise `BackendSelectionError` listing every missing protocol member and the checks
    that need it."""
    from .registry import checks_using

    differentiable = bool(getattr(backend, "differentiable", True))
    missing = [
        name for name in missing_members(backend)
        if differentiable or name not in GRADIENT_MEMBERS
    ]
    if missing:
        parts = [f"{name} (needed by {', '.join(checks_using(name)) or 'the protocol'})" for name in missing]
        raise BackendSelectionError(
            f"backend {label!r} does not implement the spikenm protocol "
            f"(spikenm.protocol.Backend); missing: {'; '.join(parts)}"
        )
    name = getattr(backend, "name")
    if not isinstance(name, str):
        raise BackendSelectionError(f"backend {label!r}: name must be a str, got {name!r}")
    flag = getattr(backend, "differentiable", True)
    if not isinstance(flag, bool):
        raise BackendSelectionError(
            f"backend {label!r}: differentiable must be a bool, got {flag!r}"
        )


def _dispatches(backend: Any, sample: Any) -> bool:
    from spikenm.dispatch import backend_named, framework_of

    try:
        return backend_named(framework_of(sample)) is backend
    except (TypeError, ImportError, NotImplementedError, KeyError):
        return False


def _probe(backend: Any, name: str) -> str | None:
    """None when ``backend`` holds dtype ``name``; else why not."""
    try:
        dtype = numpy_dtype(name)
    except ImportError as exc:
        return f"cannot build NumPy input ({exc})"
    sample = np.array([0, 1, 0, 1], dtype=np.uint8).astype(dtype)
    try:
        backend.dtype_name(backend.from_numpy(sample))
    except Exception as exc:  # noqa: BLE001 - any refusal means "not supported"
        return f"from_numpy refused it ({type(exc).__name__}: {exc})"
    return None  # held, possibly wrongly: the S0.4 check compares name and bits


def describe(backend: Any, spec: str | None = None, notes: list[str] | None = None) -> Subject:
    """The `Subject` for a backend object (complete, as `check_members` verifies)."""
    check_members(backend, spec if spec is not None else repr(getattr(backend, "name", backend)))
    sample = backend.from_numpy(np.zeros(2, dtype=np.float64))
    pack_dtypes = list(REQUIRED_DTYPES)
    unsupported: dict[str, str] = {}
    for name in OPTIONAL_DTYPES:
        reason = _probe(backend, name)
        if reason is None:
            pack_dtypes.append(name)
        else:
            unsupported[name] = reason
    return Subject(
        backend=backend,
        spec=spec,
        array_type=type(sample),
        differentiable=bool(getattr(backend, "differentiable", True)),
        dispatches=_dispatches(backend, sample),
        pack_dtypes=tuple(pack_dtypes),
        unsupported=unsupported,
        notes=list(notes or []),
    )


def select(spec: str | None) -> Subject:
    """Load the backend named ``spec`` and describe it."""
    notes: list[str] = []
    backend = load_backend(spec, notes)
    return describe(backend, str(spec).strip(), notes)
