"""``srste``: magnitude masks every step with straight-through gradients and the
sparse-refined decay (SPEC S6.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from spikenm.api import from_block_layout, to_block_layout

from . import blocks
from .base import MethodDefaults, MethodSetup, MethodState, StepMasks
from .flips import remember

__all__ = ["SRSTE", "from_config"]

Array = Any


@dataclass(frozen=True)
class SRSTE(MethodDefaults):
    """``mask = topn(|W|)`` per block every step; ``dL/dW = G + decay * (1 - mask) * W``.

    Attributes
    ----------
    decay : float
        ``lambda_w`` (``baselines.srste_decay``), ``>= 0``.
    """

    decay: float = 2e-4
    name: str = "srste"

    def __post_init__(self) -> None:
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) \
                or not self.decay >= 0:
            raise ValueError(f"srste decay={self.decay!r} is invalid; expected a number >= 0")

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        return MethodState()

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        hard = {k: blocks.topn(abs(to_block_layout(weights[k])), setup.n, setup.m)
                for k in setup.layers}
        masks = {k: from_block_layout(h) for k, h in hard.items()}
        return state, StepMasks("srste", masks, hard)

    def weight_grads(self, setup: MethodSetup, sm: StepMasks, weights: Mapping[int, Array],
                     grads: Mapping[int, Array]) -> dict[int, Array]:
        return {k: g + self.decay * (1.0 - sm.masks[k]) * weights[k] for k, g in grads.items()}

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        return remember(state, sm)

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        return {k: blocks.magnitude_mask(weights[k], setup.n, setup.m) for k in setup.layers}


def from_config(cfg: Any = None) -> SRSTE:
    """SR-STE with ``cfg.baselines.srste_decay`` (defaults without ``cfg``)."""
    return SRSTE() if cfg is None else SRSTE(decay=cfg.baselines.srste_decay)
