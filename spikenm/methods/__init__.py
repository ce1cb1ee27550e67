"""Mask methods (SPEC S6): one object per method, one module per built-in method.

`BUILTIN` maps registry names to modules; each module has its method class and
``from_config(cfg) -> Method`` reading the trainer configuration (``cfg.sparsity``,
``cfg.sampler``, ``cfg.eid``, ``cfg.baselines``).  A new built-in method is one new file
and one line here.  Any other name of the form ``package.module:ATTRIBUTE`` is an import
path (``ATTRIBUTE`` defaults to ``METHOD``): a `Method` object, or a callable taking the
`spikenm.train.TrainConfig` and returning one.

Examples
--------
>>> load_method("spikenm").eid, load_method("srste").name
(True, 'srste')
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Method, MethodDefaults, MethodSetup, MethodState, StepMasks

__all__ = ["BUILTIN", "Method", "MethodDefaults", "MethodSetup", "MethodState", "StepMasks",
           "load_method", "method_names", "is_import_path", "check_method", "MEMBERS"]

BUILTIN: dict[str, str] = {
    "dense": "spikenm.methods.dense",
    "spikenm": "spikenm.methods.spikenm",
    "srste": "spikenm.methods.srste",
    "asp": "spikenm.methods.asp",
    "maskllm": "spikenm.methods.maskllm",
    "random": "spikenm.methods.random_mask",
}
"""Registry name -> module with ``from_config``."""

MEMBERS = ("init", "masks", "weight_grads", "update", "eid_targets", "final_masks")
"""Callables every method has (`spikenm.methods.base.Method`)."""


def method_names() -> tuple[str, ...]:
    """Names of the built-in methods."""
    return tuple(BUILTIN)


def is_import_path(spec: str) -> bool:
    """True for ``package.module:ATTRIBUTE`` or ``package.module`` (a dotted name whose
    parts are identifiers)."""
    module, _, attr = spec.partition(":")
    parts = module.split(".")
    return ("." in module or bool(attr)) and all(p.isidentifier() for p in parts) and (
        not attr or all(p.isidentifier() for p in attr.split(".")))


def check_method(obj: Any, spec: str) -> Method:
    """``obj`` if it has a ``name`` and the callables of `MEMBERS`.

    Raises
    ------
    TypeError
        Naming ``spec`` and the missing members.
    """
    missing = [m for m in MEMBERS if not callable(getattr(obj, m, None))]
    if not isinstance(getattr(obj, "name", None), str):
        missing.insert(0, "name (a str)")
    if missing or isinstance(obj, type):
        what = "a class, not an instance" if isinstance(obj, type) and not missing else \
            f"lacking {', '.join(missing)}"
        raise TypeError(f"method {spec!r} gave {type(obj).__name__} object {obj!r}, "
                        f"{what}; expected a spikenm.methods.Method")
    return obj


def load_method(spec: str, cfg: Any = None) -> Method:
    """The method ``spec`` for the configuration ``cfg`` (a `spikenm.train.TrainConfig`;
    None: the method's defaults).

    ``spec`` is a name of `BUILTIN` or an import path ``package.module:ATTRIBUTE`` naming
    a method object or a callable ``f(cfg) -> Method``.

    Raises
    ------
    ValueError
        An unknown name, or an import path whose module or attribute does not exist.
    TypeError
        When the object (or what the callable returns) is not a method.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a method is named by a string, got {spec!r}")
    if spec in BUILTIN:
        return check_method(importlib.import_module(BUILTIN[spec]).from_config(cfg), spec)
    if not is_import_path(spec):
        raise ValueError(f"unknown method {spec!r}; expected one of {list(BUILTIN)} or an "
                         f"import path package.module:ATTRIBUTE")
    from spikenm.registry import import_path

    obj = import_path(spec, "METHOD", "method")
    if not isinstance(obj, type) and callable(getattr(obj, "init", None)):
        return check_method(obj, spec)
    if not callable(obj):
        return check_method(obj, spec)
    try:
        made = obj(cfg)
    except TypeError as exc:
        raise TypeError(f"method {spec!r}: calling {obj!r} with the configuration failed "
                        f"({exc}); expected a spikenm.methods.Method or a callable "
                        f"f(cfg) -> Method") from exc
    return check_method(made, spec)
