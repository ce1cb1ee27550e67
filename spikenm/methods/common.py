"""Pieces several methods share: schedules over a phase, phase lengths, the mask-logit
optimizer kept inside a `MethodState`, and fixed masks (SPEC S5.6-S5.8).

State keys used by the built-in methods (layer ordinal ``k``):

==================  ===================================================================
``logits/k``        mask parameters (block layout)
``logit_m/k``       first Adam moment of ``logits/k``
``logit_v/k``       second Adam moment of ``logits/k``
``credit/k``        running EID credit (S2.4)
``fixed/k``         the fixed mask (framework layout) once a fixed phase began
``previous/k``      the previous step's hard mask for the flip rate (`spikenm.methods.flips`)
==================  ===================================================================

``meta["logit_steps"]`` counts the Adam updates of the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from spikenm.optim import OptHyper, OptState, opt_update
from spikenm.schedules import SCHEDULES, schedule_value

from .base import MethodSetup, MethodState
from .flips import PREVIOUS

__all__ = ["Ramp", "phase_steps", "block_shape", "check_fraction", "check_positive",
           "adam_arrays", "adam_step", "with_arrays", "fixed_masks", "enter_fixed"]

Array = Any

LOGITS, MOMENT1, MOMENT2 = "logits/", "logit_m/", "logit_v/"
CREDIT, FIXED = "credit/", "fixed/"


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite float ``> 0``; a `ValueError` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number > 0")
    return float(value)


def check_fraction(name: str, value: Any, low_open: bool = True, high_open: bool = False
                   ) -> float:
    """``value`` in ``(0, 1]`` (or the interval given by the flags)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (0.0 < value if low_open else 0.0 <= value)
        and (value < 1.0 if high_open else value <= 1.0))
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name}={value!r} is invalid; expected a number in {interval}")
    return float(value)


@dataclass(frozen=True)
class Ramp:
    """A value going from ``start`` to ``end`` over a phase with schedule ``kind`` (S5.6).

    Examples
    --------
    >>> Ramp(1.0, 10.0, "linear").at(2, 5)
    5.5
    """

    start: float
    end: float
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule {self.kind!r} is unknown; expected one of {SCHEDULES}")
        check_positive("schedule start", self.start)
        check_positive("schedule end", self.end)

    def at(self, step: int, length: int) -> float:
        """The value at phase step ``step`` of a phase of ``length`` steps."""
        return schedule_value(self.kind, self.start, self.end, step, length)


def phase_steps(fraction: float, total_steps: int) -> int:
    """``max(1, round(fraction * S))``: the length of a method's first phase (S5.8, S6.5)."""
    return max(1, round(fraction * total_steps))


def block_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Block-layout shape of a framework-layout weight shape (S0.2)."""
    shape = tuple(shape)
    return shape if len(shape) == 2 else (shape[0],) + shape[2:] + (shape[1],)


def with_arrays(state: MethodState, changes: Mapping[str, Array], drop: str = "",
                **meta: Any) -> MethodState:
    """``state`` with ``changes`` set, keys starting with ``drop`` removed (when given)
    and ``meta`` entries updated."""
    arrays = {k: v for k, v in state.arrays.items() if not (drop and k.startswith(drop))}
    arrays.update(changes)
    return MethodState(arrays, {**state.meta, **meta})


def adam_arrays(setup: MethodSetup, shapes: Mapping[int, tuple[int, ...]]
                ) -> dict[str, Array]:
    """Zero logits and zero Adam moments of the given block-layout shapes (S5.7)."""
    out: dict[str, Array] = {}
    for k, shape in shapes.items():
        for prefix in (LOGITS, MOMENT1, MOMENT2):
            out[f"{prefix}{k}"] = setup.from_numpy(np.zeros(shape, setup.dtype))
    return out


def adam_step(state: MethodState, grads: Mapping[int, Array], lr: float) -> MethodState:
    """One Adam step (``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-8``, no decay, S5.7) on
    every ``logits/k``, all layers sharing the update count ``meta["logit_steps"]``."""
    keys = sorted(grads)
    opt = OptState("adam", int(state.meta.get("logit_steps", 0)),
                   tuple((state.arrays[f"{MOMENT1}{k}"], state.arrays[f"{MOMENT2}{k}"])
                         for k in keys))
    new, opt = opt_update([state.arrays[f"{LOGITS}{k}"] for k in keys],
                          [grads[k] for k in keys], opt, OptHyper(lr=lr))
    changes: dict[str, Array] = {}
    for k, p, (m1, m2) in zip(keys, new, opt.slots):
        changes[f"{LOGITS}{k}"], changes[f"{MOMENT1}{k}"], changes[f"{MOMENT2}{k}"] = p, m1, m2
    return with_arrays(state, changes, logit_steps=opt.count)


def fixed_masks(state: MethodState) -> dict[int, Array]:
    """The fixed masks (framework layout) in ``state``, by layer."""
    return state.group(FIXED)


def enter_fixed(state: MethodState, masks: Mapping[int, Array]) -> MethodState:
    """``state`` with ``masks`` fixed and the flip-rate history dropped (S5.8)."""
    return with_arrays(state, {f"{FIXED}{k}": v for k, v in masks.items()}, drop=PREVIOUS)


def fix_masks(setup: MethodSetup, state: MethodState,
              final_of: Callable[[int], Array]) -> tuple[MethodState, bool]:
    """``state`` with every masked layer's mask fixed, the missing ones to ``final_of(k)``
    (framework layout), and whether this call fixed any (the fixed phase begins, S5.8)."""
    fixed = fixed_masks(state)
    missing = [k for k in setup.layers if k not in fixed]
    if missing:
        state = enter_fixed(state, {k: final_of(k) for k in missing})
    return state, bool(missing)
