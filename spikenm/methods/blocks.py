"""Block-layout operations of the methods' hot path, run by the array backend directly.

The methods call these once per step and layer on arrays that are already in block
layout (blocks along the last axis, `spikenm.api.to_block_layout`) and whose
hyper-parameters were validated when the method was built.  They skip `spikenm.api`'s
value checks (finiteness, non-negative credits), which copy values to the host, so a step
on a GPU makes no host round trip (S4.16).  Each function equals its `spikenm.api`
namesake on valid input.
"""

from __future__ import annotations

from typing import Any

from spikenm import eid_variants
from spikenm.api import from_block_layout, to_block_layout
from spikenm.dispatch import backend_for

__all__ = ["topn", "sample", "sample_vjp", "probs", "gumbel", "targets", "eid_vjp",
           "magnitude_mask"]

Array = Any


def topn(scores: Array, n: int, m: int) -> Array:
    """``spikenm.api.topn_mask`` along the last axis (S1.2)."""
    return backend_for(scores=scores).topn_mask(scores, n, m)


def sample(logits: Array, noise: Array, n: int, m: int, temperature: float, scale: float
           ) -> Array:
    """The hard (straight-through) mask ``spikenm.api.sample_mask(..., hard=True)`` (S1.4)."""
    return backend_for(logits=logits).sample_mask(logits, noise, n, m, temperature, scale,
                                                  True)


def sample_vjp(logits: Array, noise: Array, n: int, m: int, temperature: float,
               scale: float, cotangent: Array) -> Array:
    """``dL/dlogits`` of `sample` for ``dL/dmask = cotangent`` (S1.5, S5.4)."""
    return backend_for(logits=logits).sample_mask_vjp(logits, noise, n, m, temperature,
                                                      scale, True, cotangent)


def probs(logits: Array, m: int, scale: float) -> Array:
    """``spikenm.api.block_probs`` along the last axis (S1.7)."""
    return backend_for(logits=logits).block_probs(logits, m, scale)


def gumbel(x: Array, seed: int) -> Array:
    """``spikenm.api.gumbel_like`` (S1.6), on ``x``'s device."""
    return backend_for(x=x).gumbel_like(x, seed)


def targets(variant: str, credits: Array, n: int, m: int, temperature: float,
            logits: Array, scale: float) -> Array:
    """``spikenm.api.eid_targets(..., variant=)`` along the last axis (S2.5, S2.11)."""
    return eid_variants.targets(backend_for(credits=credits), variant, credits, n, m,
                                temperature, logits, scale)


def eid_vjp(logits: Array, q: Array, m: int, scale: float) -> Array:
    """``d eid_loss(logits, q) / d logits`` (S2.7)."""
    return backend_for(logits=logits).eid_loss_vjp(logits, q, m, scale, 1.0)


def magnitude_mask(weight: Array, n: int, m: int) -> Array:
    """Framework-layout ``topn(|W|)`` per block (S6.4, S6.5)."""
    return from_block_layout(topn(abs(to_block_layout(weight)), n, m))
