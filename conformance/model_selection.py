"""Choosing the model backend under test (`spikenm.snn.ModelBackend`, SPEC S4).

Names come from the one backend registry, `spikenm.registry`: ``numpy`` (alias
``reference``), ``torch``, ``jax``, a backend registered with
`spikenm.registry.register` (``model_module=``), or an import path
``package.module:FACTORY`` of a factory ``factory(device) -> ModelBackend``.  The
backend is created for ``device`` (``cpu`` by default).  An empty, unknown or
unimportable name, an incomplete backend or a device it refuses raises
`BackendSelectionError`; there is no default backend.

Selecting a backend registered with the ``jax`` framework turns on ``jax_enable_x64``
first: the checks run in float64 (SPEC S4.11).  For a JAX backend given by import path,
turn it on before running the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from spikenm import registry

from .selection import BackendSelectionError, SubjectFacts, enable_x64_for

MODEL_IMPORTS = (
    "from spikenm.conformance.model_cases import Case",
    "from spikenm.registry import model_backend",
    "from spikenm.snn import EIDRequest, Graph, LIFParams, Node",
)
"""Imports of a reproduction snippet for a model backend."""


@dataclass
class ModelSubject(SubjectFacts):
    """The model backend under test and the facts the checks need about it.

    Attributes
    ----------
    backend : object
        The object implementing `spikenm.snn.ModelBackend`.
    spec : str or None
        The name it was selected by (``None`` for an object handed over directly).
    device : str
        The device it was created for.
    factory : callable or None
        ``factory(device)`` that created it (the S4.16 check calls it with a device that
        does not exist); None for an object handed over directly.
    array_type : type
        Type of ``backend.from_numpy(np.zeros(1))``: every array result must be one.
    notes : list of str
        Things the suite did to run the backend (e.g. enabling float64 in JAX).
    """

    backend: Any
    spec: str | None
    device: str
    factory: Callable[[str], Any] | None
    array_type: type
    notes: list[str] = field(default_factory=list)
    differentiable: bool = True
    dispatches: bool = False

    SNIPPET_IMPORTS = MODEL_IMPORTS
    KIND = "model backend"

    def loader_call(self) -> str:
        """Expression that creates the backend by `spec` in a reproduction snippet."""
        return f"model_backend({self.spec!r}, device={self.device!r})"


def describe_model(backend: Any, spec: str | None = None, device: str | None = None,
                   factory: Callable[[str], Any] | None = None,
                   notes: list[str] | None = None) -> ModelSubject:
    """The `ModelSubject` for a model-backend object.

    Raises
    ------
    BackendSelectionError
        The object lacks members of `spikenm.snn.ModelBackend`, or ``from_numpy`` fails.
    """
    from spikenm.snn.model import MEMBERS

    label = spec if spec is not None else repr(getattr(backend, "name", backend))
    missing = [m for m in MEMBERS if not hasattr(backend, m)]
    if missing:
        raise BackendSelectionError(
            f"model backend {label!r} does not implement spikenm.snn.ModelBackend; missing: "
            f"{', '.join(missing)}")
    if not isinstance(getattr(backend, "name"), str):
        raise BackendSelectionError(f"model backend {label!r}: name must be a str, got "
                                    f"{backend.name!r}")
    try:
        sample = backend.from_numpy(np.zeros(2, dtype=np.float64))
    except Exception as exc:  # noqa: BLE001 - any failure makes the backend unusable
        raise BackendSelectionError(f"model backend {label!r}: from_numpy of a float64 array "
                                    f"raised {type(exc).__name__}: {exc}") from exc
    return ModelSubject(backend, spec, str(device if device is not None else backend.device),
                        factory, type(sample), list(notes or []))


def select_model(spec: str | None, device: str = "cpu") -> ModelSubject:
    """Create the model backend named ``spec`` for ``device`` and describe it.

    Raises
    ------
    BackendSelectionError
        See the module docstring.
    """
    if spec is None or not str(spec).strip():
        raise BackendSelectionError(
            "no model backend selected: pass --model-backend NAME (python -m "
            "spikenm.conformance), --spikenm-model-backend NAME (pytest) or set "
            f"SPIKENM_MODEL_BACKEND; NAME is one of {', '.join(registry.model_backend_names())} "
            f"or an import path package.module:FACTORY")
    spec = str(spec).strip()
    notes: list[str] = []
    enable_x64_for(spec, notes)
    try:
        factory = registry.model_factory(spec)
        backend = registry.model_backend(spec, device)
    except ImportError as exc:
        raise BackendSelectionError(f"model backend {spec!r} could not be imported: {exc}"
                                    ) from exc
    except ValueError as exc:
        raise BackendSelectionError(str(exc)) from exc
    except TypeError as exc:  # a factory that does not take the device
        raise BackendSelectionError(f"model backend {spec!r}: creating it for device "
                                    f"{device!r} raised TypeError: {exc}; expected a factory "
                                    f"factory(device) -> ModelBackend") from exc
    return describe_model(backend, spec, device, factory if callable(factory) else None, notes)
