"""``asp``: dense training, one magnitude prune, then fine-tuning with a fresh weight
optimizer and a restarted learning-rate schedule (SPEC S6.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import blocks
from .base import MethodDefaults, MethodSetup, MethodState, StepMasks
from .common import check_fraction, fix_masks, fixed_masks, phase_steps

__all__ = ["ASP", "from_config"]

Array = Any


@dataclass(frozen=True)
class ASP(MethodDefaults):
    """Dense for ``S_dense = max(1, round(dense_fraction * S))`` steps, then
    ``mask = topn(|W|)`` once; ``reset_optimizer`` on that step and learning-rate windows
    ``(0, S_dense)`` and ``(S_dense, S - S_dense)``.

    Attributes
    ----------
    dense_fraction : float
        ``baselines.asp_dense_fraction``, in ``(0, 1)``.
    """

    dense_fraction: float = 0.5
    name: str = "asp"

    def __post_init__(self) -> None:
        check_fraction("asp dense_fraction", self.dense_fraction, high_open=True)

    def dense_steps(self, total_steps: int) -> int:
        """``S_dense``."""
        return phase_steps(self.dense_fraction, total_steps)

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        if self.dense_steps(setup.total_steps) >= setup.total_steps:
            raise ValueError(
                f"asp needs fine-tuning steps after the dense phase; {setup.total_steps} "
                f"steps with asp_dense_fraction={self.dense_fraction} leave none")
        return MethodState()

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        total = setup.total_steps
        dense = self.dense_steps(total)
        if step < dense:
            return state, StepMasks("dense", lr_window=(0, dense))
        state, entered = fix_masks(setup, state, lambda k: blocks.magnitude_mask(
            weights[k], setup.n, setup.m))
        return state, StepMasks("fixed", fixed_masks(state), reset_optimizer=entered,
                                lr_window=(dense, total - dense))

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        fixed = fixed_masks(state)
        return {k: fixed[k] if k in fixed else blocks.magnitude_mask(weights[k], setup.n,
                                                                      setup.m)
                for k in setup.layers}


def from_config(cfg: Any = None) -> ASP:
    """ASP with ``cfg.baselines.asp_dense_fraction`` (defaults without ``cfg``)."""
    return ASP() if cfg is None else ASP(dense_fraction=cfg.baselines.asp_dense_fraction)
