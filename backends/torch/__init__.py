"""The PyTorch backend of spikenm: every protocol function on torch tensors (SPEC.md).

Results keep the input's device and dtype; nothing leaves the device except in
`to_numpy`.  The math functions are written with differentiable torch ops so that
autograd gives the SPEC's gradients (straight-through sampler, relaxed top-n, EID loss
with detached targets), and the ``*_vjp`` functions are ``torch.func.vjp`` over those
same functions.  The module itself is the backend object (``BACKEND``).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from .arrays import all_finite, dtype_name, from_numpy, moveaxis, to_numpy
from .eid import (
    credit_scores,
    eid_loss,
    eid_loss_vjp,
    eid_targets,
    eligibility_credit,
    stop_gradient,
)
from .packing import block_nnz, pack, spmm, unpack
from .random import gumbel_like
from .sampler import (
    block_probs,
    relaxed_topn,
    relaxed_topn_vjp,
    sample_mask,
    sample_mask_vjp,
    topn_mask,
)

name = "torch"
differentiable = True


def owns(x: Any) -> bool:
    """The registry's type test (`spikenm.registry`): ``torch.Tensor`` and its subclasses
    (``torch.nn.Parameter``, user subclasses)."""
    return isinstance(x, torch.Tensor)


__all__ = [
    "all_finite", "dtype_name", "from_numpy", "moveaxis", "to_numpy",
    "gumbel_like", "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss", "eid_loss_vjp",
    "stop_gradient",
    "block_nnz", "pack", "unpack", "spmm", "name", "differentiable", "owns", "BACKEND",
]

BACKEND = sys.modules[__name__]
