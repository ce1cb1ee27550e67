"""Copy-pasteable reproduction snippets for conformance failures.

A `Script` records, statement by statement, what a check did to the backend: the NumPy
arrays it built (as literals with full precision and dtype), how it converted them with
``from_numpy``, and each call.  `Script.render` turns that into Python code that a
backend author can paste into a shell to see the failing call again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_BITS_TYPE = {1: "np.uint8", 2: "np.uint16", 4: "np.uint32", 8: "np.uint64"}


def dtype_expr(dtype: np.dtype) -> str:
    """Python expression of a NumPy dtype (``np.float32``, ``ml_dtypes.bfloat16``)."""
    return "ml_dtypes.bfloat16" if dtype.name == "bfloat16" else f"np.{dtype.name}"


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "np.nan"
        if math.isinf(value):
            return "np.inf" if value > 0 else "-np.inf"
        return repr(value)
    return repr(value)


def _nested(values: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return _scalar_text(values)


def array_literal(a: np.ndarray) -> str:
    """An expression that rebuilds ``a`` exactly: values, shape and dtype.

    Floats are written with ``repr`` of their exact float64 value, so float16/float32
    literals round-trip.  Arrays holding NaN (whose payload a literal would lose) and
    bfloat16 arrays are written as their bit pattern and viewed back.
    """
    a = np.asarray(a)
    if a.dtype.name == "bfloat16" or (a.dtype.kind == "f" and bool(np.isnan(a).any())):
        raw = np.ascontiguousarray(a).view(np.dtype(_BITS_TYPE[a.dtype.itemsize][3:]))
        return f"np.array({_nested(raw.tolist())}, dtype={_BITS_TYPE[a.dtype.itemsize]}).view({dtype_expr(a.dtype)})"
    return f"np.array({_nested(a.tolist())}, dtype={dtype_expr(a.dtype)})"


def value_text(value: Any) -> str:
    """Literal of a Python scalar, tuple or NumPy array argument."""
    if isinstance(value, np.ndarray):
        return array_literal(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _scalar_text(value.item())
    if isinstance(value, tuple):
        inner = ", ".join(value_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return _scalar_text(value)


ARRAY_IMPORTS = ("from spikenm import api", "from spikenm.conformance import load_backend")
"""Imports of a snippet for an array backend (``be = load_backend(...)``)."""


class Script:
    """The statements of one reproduction, in order."""

    def __init__(self, backend_expr: str, imports: tuple[str, ...] = ARRAY_IMPORTS) -> None:
        self.backend_expr = backend_expr
        self.imports = imports
        self.lines: list[str] = []
        self.needs_ml_dtypes = False

    def clear(self) -> None:
        """Forget the statements so far (a fixed check starting a new case)."""
        self.lines.clear()
        self.needs_ml_dtypes = False

    def add(self, line: str) -> None:
        """Append one statement."""
        if "ml_dtypes." in line:
            self.needs_ml_dtypes = True
        self.lines.append(line)

    def render(self, comment: str) -> str:
        """The complete snippet, ending with ``comment`` lines (what went wrong)."""
        head = ["import numpy as np"]
        if self.needs_ml_dtypes:
            head.append("import ml_dtypes")
        head += [*self.imports, self.backend_expr]
        tail = ["# " + line if line else "#" for line in comment.splitlines()]
        return "\n".join(head + self.lines + tail)
