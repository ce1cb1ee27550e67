"""The generic array-API backend: the spikenm forward core for any compliant library.

Every protocol function (`spikenm.protocol.Backend`) is written with the functions of
the Python array API standard (2023.12) only, on the namespace that
``array_api_compat.array_namespace`` returns for the arrays given, so that any compliant
library (array-api-strict, CuPy, Dask, ndonnx, ...) runs the sampler (S1), EID (S2) and
the packed format (S3) and gets results in its own namespace, device and dtype.  What
the standard cannot express is listed in SPEC S0.7: no gradients (``differentiable`` is
False and the ``*_vjp`` members raise), Gumbel noise drawn on the host, and a dense
``spmm``.

The module itself is the backend object (``BACKEND``); ``from_numpy(a)`` without
``like`` builds ``array_api_strict`` arrays.  `make_backend` binds another namespace.
"""

from __future__ import annotations

import sys
from typing import Any

from .arrays import all_finite, dtype_name, from_numpy, moveaxis, to_numpy
from .bound import NamespaceBackend, make_backend
from .eid import credit_scores, eid_loss, eid_targets, eligibility_credit
from .gradients import eid_loss_vjp, relaxed_topn_vjp, sample_mask_vjp
from .packing import block_nnz, pack, spmm, unpack
from .random import gumbel_like
from .sampler import block_probs, relaxed_topn, sample_mask, topn_mask

name = "array_api"
differentiable = False


def owns(x: Any) -> bool:
    """The registry's type test (`spikenm.registry`): any object with
    ``__array_namespace__`` (asked after every framework-specific backend)."""
    return hasattr(x, "__array_namespace__")


__all__ = [
    "all_finite", "dtype_name", "from_numpy", "moveaxis", "to_numpy",
    "gumbel_like", "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss", "eid_loss_vjp",
    "block_nnz", "pack", "unpack", "spmm",
    "make_backend", "NamespaceBackend", "name", "differentiable", "owns", "BACKEND",
]

BACKEND = sys.modules[__name__]
