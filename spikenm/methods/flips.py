"""Mask flip counting (SPEC S5.9), shared by the trainer and the PyTorch module path.

A method that samples or recomputes its masks returns their block-layout 0/1 form in
`StepMasks.hard` and keeps the previous step's in its state under ``"previous/k"``
(`remember`, called from its ``update``).  The caller counts the flips of a step before
that update with `step_flips`.  Counts stay arrays on the caller's device: convert them
to a number only when reporting, not every step.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import MethodState, StepMasks

__all__ = ["PREVIOUS", "flip_count", "step_flips", "remember"]

Array = Any

PREVIOUS = "previous/"
"""State-key prefix of the previous step's hard masks."""


def flip_count(previous: Mapping[int, Array], hard: Mapping[int, Array]
               ) -> tuple[Array | None, int]:
    """``(changed, compared)``: entries of ``hard`` that differ from ``previous``, pooled
    over the layers present in both (a 0-d array of their framework, or None when no
    layer has a previous mask), and the number of entries compared.

    Examples
    --------
    >>> a, b = np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 1.0, 0.0]])
    >>> flip_count({}, {1: a})
    (None, 0)
    >>> changed, compared = flip_count({1: a}, {1: b})
    >>> float(changed), compared
    (2.0, 4)
    """
    changed: Array | None = None
    compared = 0
    for layer, h in hard.items():
        prev = previous.get(layer)
        if prev is None:
            continue
        diff = abs(h - prev).sum()
        changed = diff if changed is None else changed + diff
        compared += int(np.prod(tuple(h.shape)))
    return changed, compared


def step_flips(state: MethodState, sm: StepMasks) -> tuple[Array | None, int]:
    """Flips of the step whose masks are ``sm``, against the masks ``state`` remembers
    (call it before the method's ``update`` of that step)."""
    if not sm.hard:
        return None, 0
    return flip_count(state.group(PREVIOUS), sm.hard)


def remember(state: MethodState, sm: StepMasks) -> MethodState:
    """``state`` remembering ``sm.hard`` as the previous masks (unchanged when the step
    has no hard masks)."""
    if not sm.hard:
        return state
    arrays = {k: v for k, v in state.arrays.items() if not k.startswith(PREVIOUS)}
    arrays.update({f"{PREVIOUS}{k}": h for k, h in sm.hard.items()})
    return MethodState(arrays, dict(state.meta))
