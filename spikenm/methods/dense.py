"""``dense``: no masks (SPEC S6.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .base import MethodDefaults, MethodSetup, MethodState, StepMasks

__all__ = ["Dense", "from_config"]

Array = Any


@dataclass(frozen=True)
class Dense(MethodDefaults):
    """Trains every weight; masks nothing (``uses_masks = False``)."""

    name: str = "dense"
    uses_masks = False

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        return MethodState()

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        return state, StepMasks("dense")

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        return {}


def from_config(cfg: Any = None) -> Dense:
    """The dense method (it has no settings)."""
    return Dense()
