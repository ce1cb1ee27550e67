"""``dense``: no masks (SPEC S6.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .base import MethodSetup, MethodState, StepMasks

__all__ = ["Dense", "from_config"]

Array = Any


@dataclass(frozen=True)
class Dense:
    """Trains every weight; masks nothing (``uses_masks = False``)."""

    name: str = "dense"
    uses_masks = False
    eid = False

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        return MethodState()

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        return state, StepMasks("dense")

    def weight_grads(self, setup: MethodSetup, sm: StepMasks, weights: Mapping[int, Array],
                     grads: Mapping[int, Array]) -> dict[int, Array]:
        return dict(grads)

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        return state

    def eid_targets(self, setup: MethodSetup, state: MethodState, step: int
                    ) -> dict[int, tuple[Array, float, float]]:
        return {}

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        return {}


def from_config(cfg: Any = None) -> Dense:
    """The dense method (it has no settings)."""
    return Dense()
