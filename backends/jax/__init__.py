"""The JAX backend of spikenm: N:M masks, EID and the packed format on ``jax.Array``.

Every protocol function (`spikenm.protocol.Backend`) is a pure ``jax.numpy``/``lax``
function of arrays whose block axis is last: it traces under ``jax.jit``, and
``jax.grad`` and ``jax.vmap`` go through it (also through `spikenm.api`, which skips
its value checks on tracers).  The gradients are JAX's autodiff of the forward
formulas; the ``*_vjp`` methods are ``jax.vjp`` over the same functions.  Importing
this module registers `spikenm.packed.Packed` as a pytree.  The module itself is the
backend object (``BACKEND``).

Beside it: `spikenm.backends.jax.functional` runs SpikeNM (sampler, EID, schedules) as
pure pytree functions inside one ``jax.jit`` with ``jax.random`` keys (S5.15);
`spikenm.backends.jax.method_path` wraps any mask method around a params pytree; the
model backend of the trainer is `spikenm.backends.jax.snn` (sharded over devices by
`spikenm.backends.jax.snn_shard`, S4.16).  `spikenm.api.gumbel_like` takes a
``jax.random`` key as its seed for JAX arrays (S1.6).

float64
    JAX computes in 32 bits unless 64-bit types are enabled; this module does not change
    that global setting.  To keep float64 inputs in float64, enable it yourself::

        import jax
        jax.config.update("jax_enable_x64", True)     # for the whole program, or
        with jax.enable_x64(True):                     # for a block of code
            ...

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from spikenm import api
>>> logits = jnp.zeros((2, 8))
>>> noise = api.gumbel_like(logits, seed=0)
>>> mask = jax.jit(lambda l, g: api.sample_mask(l, 2, 4, noise=g))(logits, noise)
>>> mask.reshape(2, 2, 4).sum(-1)
Array([[2., 2.],
       [2., 2.]], dtype=float32)
"""

from __future__ import annotations

import sys
from typing import Any

import jax

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
from .pytree import register_packed
from .random import gumbel_like
from .sampler import (
    block_probs,
    relaxed_topn,
    relaxed_topn_vjp,
    sample_mask,
    sample_mask_vjp,
    topn_mask,
)

name = "jax"
differentiable = True


def owns(x: Any) -> bool:
    """The registry's type test (`spikenm.registry`): ``jax.Array``, which tracers inside
    ``jax.jit``/``jax.grad`` are instances of too."""
    return isinstance(x, jax.Array)


__all__ = [
    "all_finite", "dtype_name", "from_numpy", "moveaxis", "to_numpy",
    "gumbel_like", "topn_mask", "relaxed_topn", "sample_mask", "block_probs",
    "relaxed_topn_vjp", "sample_mask_vjp",
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss", "eid_loss_vjp",
    "stop_gradient",
    "block_nnz", "pack", "unpack", "spmm", "name", "differentiable", "owns", "BACKEND",
]

register_packed()

BACKEND = sys.modules[__name__]
