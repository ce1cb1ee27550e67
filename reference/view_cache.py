"""Derived layouts of packed arrays, cached by the arrays' identity (SPEC S3.6).

The spmm kernels read packed weights in layouts other than S3.1's row-major one (the
transposed dense weights of the event kernel, the interleaved 2-bit layout of the 2:4
float kernel).  Each is built on first use and kept while the ``(values, indices)`` pair
is alive: keyed by ``(kind, id(values), id(indices))`` with weak references to both
arrays, which are made read-only when a view is cached, so changing them in place
afterwards raises instead of leaving a stale view (`spikenm.packed.Packed` is immutable
by contract anyway; a change through another array sharing the memory is not detected).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

V = TypeVar("V")

VIEWS: dict[tuple[str, int, int], tuple[Any, Any, Any]] = {}
"""``(kind, id(values), id(indices)) -> (weak ref, weak ref, view)``."""


def _forget(key: tuple[str, int, int]) -> None:
    VIEWS.pop(key, None)


def cached(kind: str, values: np.ndarray, indices: np.ndarray, fits: Callable[[V], bool],
           build: Callable[[], V]) -> V:
    """The ``kind`` view of ``(values, indices)``: the cached one if both arrays are the
    same objects and ``fits(view)`` (shape and pattern still match), else ``build()``,
    cached for next time."""
    key = (kind, id(values), id(indices))
    hit = VIEWS.get(key)
    if hit is not None and hit[0]() is values and hit[1]() is indices and fits(hit[2]):
        return hit[2]
    view = build()
    try:
        refs = (weakref.ref(values, lambda _r: _forget(key)),
                weakref.ref(indices, lambda _r: _forget(key)))
    except TypeError:  # not weakly referenceable: not cached
        return view
    values.flags.writeable = False
    indices.flags.writeable = False
    VIEWS[key] = (refs[0], refs[1], view)
    return view
