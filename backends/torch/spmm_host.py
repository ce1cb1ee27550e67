"""`spmm` of CPU tensors by the reference kernels (SPEC S3.6).

The reference backend's event-driven and float kernels (`spikenm.reference.spmm_kernels`)
run on zero-copy NumPy views of CPU tensors.  The event kernel caches a transposed copy
of the weights keyed by the identity of the NumPy arrays it is given, so the views of a
packed pair are themselves cached here, one per tensor, for as long as the tensor lives
and is not changed in place (torch's version counter is part of the key: an in-place
change gives new views and a new transposed copy, never a stale one).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

from spikenm.reference import spmm_kernels as host

HOST_DTYPES = (torch.float32, torch.float64)
"""Value dtypes the host path takes (other dtypes use the device path)."""

_VIEWS: dict[int, tuple[Any, int, np.ndarray]] = {}
"""``id(tensor) -> (weak reference, version, NumPy view)``."""


def _forget(key: int) -> None:
    _VIEWS.pop(key, None)


def host_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of the contiguous CPU tensor ``t``, the same object on every call
    while ``t`` is alive and unchanged (so the reference kernels' caches hit)."""
    key = id(t)
    hit = _VIEWS.get(key)
    version = t._version  # noqa: SLF001 -- bumped by every in-place change
    if hit is not None and hit[0]() is t and hit[1] == version:
        return hit[2]
    view = t.detach().numpy()
    try:
        ref = weakref.ref(t, lambda _r: _forget(key))
    except TypeError:  # pragma: no cover - plain tensors are weakly referenceable
        return view
    _VIEWS[key] = (ref, version, view)
    return view


def runs_on_host(values: torch.Tensor, indices: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether `spmm_on_host` takes these tensors: contiguous packed float32/float64
    arrays and ``x`` of the same dtype or bool."""
    return (values.dtype in HOST_DTYPES and values.is_contiguous() and indices.is_contiguous()
            and x.dtype in (values.dtype, torch.bool))


def spmm_on_host(values: torch.Tensor, indices: torch.Tensor, n: int, m: int,
                 x: torch.Tensor) -> torch.Tensor:
    """``unpack(values, indices) @ x`` by `spikenm.reference.spmm_kernels.spmm` (kernel
    chosen by its `choose_kernel`); the result is a new CPU tensor of ``values``' dtype.

    ``x`` may be a transposed view (``(K, P)`` of a ``(P, K)`` batch): the kernels read
    it without a copy where they can.
    """
    xs = x.detach().numpy()
    out = host.spmm(host_view(values), host_view(indices), n, m, xs)
    return torch.from_numpy(np.ascontiguousarray(out))
