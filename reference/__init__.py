"""The NumPy + Numba reference backend: the numerical truth of spikenm (SPEC.md).

Every protocol function (`spikenm.protocol.Backend`) is here, working on the last axis
of already-validated NumPy arrays, plus the hand-written vector-Jacobian products that
the other backends' autodiff is checked against.  The module itself is the backend
object (``BACKEND``).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .arrays import all_finite, dtype_name, from_numpy, moveaxis, to_numpy
from .eid import credit_scores, eid_loss, eid_loss_vjp, eid_targets, eligibility_credit
from .packing import block_nnz, pack, unpack
from .random import gumbel_like
from .spmm_kernels import spmm
from .sampler import (
    block_probs,
    relaxed_topn,
    relaxed_topn_vjp,
    sample_mask,
    sample_mask_vjp,
    topn_mask,
)

name = "numpy"
differentiable = True
spmm_bool_input = True
"""`spmm` takes bool spikes for ``x`` (its event-driven kernel, SPEC S3.6)."""
pack_checks_blocks = True
"""`pack` raises ``ValueError`` itself on a block keeping more than ``n`` (its fused pass,
S3.3), so the api checks the block counts only after such an error."""


def owns(x: Any) -> bool:
    """The registry's type test (`spikenm.registry`): NumPy arrays and scalars, including
    subclasses of ``np.ndarray``."""
    return isinstance(x, (np.ndarray, np.generic))


__all__ = [
    "all_finite", "dtype_name", "from_numpy", "moveaxis", "to_numpy",
    "gumbel_like", "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
    "eligibility_credit", "eid_targets", "eid_loss", "eid_loss_vjp", "credit_scores",
    "block_nnz", "pack", "unpack", "spmm", "name", "owns", "spmm_bool_input", "pack_checks_blocks",
    "BACKEND",
]

BACKEND = sys.modules[__name__]
