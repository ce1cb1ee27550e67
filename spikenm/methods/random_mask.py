"""``random``: a fixed random ``n:m`` mask drawn before training (SPEC S6.7).

Registry name ``random``; the module is called ``random_mask`` so that it does not shadow
the standard library's `random`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from spikenm import api, seeds

from .base import MethodDefaults, MethodSetup, MethodState, StepMasks
from .common import FIXED, block_shape, fixed_masks

__all__ = ["RandomMask", "from_config"]

Array = Any


@dataclass(frozen=True)
class RandomMask(MethodDefaults):
    """``mask = topn(g)`` per block with ``g = gumbel_like(zeros, seed_of(seed, 3, 0, k))``
    drawn in NumPy, so every backend gets the same mask; ``dL/dW = G * mask``."""

    name: str = "random"

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        arrays = {}
        for k in setup.layers:
            zeros = np.zeros(block_shape(setup.weight_shapes[k]), setup.dtype)
            noise = api.gumbel_like(zeros, seeds.seed_of(setup.seed, seeds.RANDOM_MASK, 0, k))
            block = api.topn_mask(noise, setup.n, setup.m)
            arrays[f"{FIXED}{k}"] = setup.from_numpy(
                np.ascontiguousarray(api.from_block_layout(block)))
        return MethodState(arrays)

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        return state, StepMasks("fixed", fixed_masks(state))

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        return fixed_masks(state)


def from_config(cfg: Any = None) -> RandomMask:
    """The random-mask method (it has no settings)."""
    return RandomMask()
