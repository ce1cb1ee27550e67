"""Schedules (SPEC S5.6): a value that goes from ``a`` to ``b`` over a phase of ``P`` steps.

At phase step ``j`` with ``u = j / max(1, P - 1)`` (clipped to ``[0, 1]``):

* ``constant``: ``a``
* ``linear``:   ``a + (b - a) u``
* ``cosine``:   ``b + (a - b) (1 + cos(pi u)) / 2``
* ``exp``:      ``a (b / a)^u``  (geometric; ``a, b > 0``)

Examples
--------
>>> schedule_value("linear", 1.0, 3.0, 4, 9)
2.0
>>> round(schedule_value("exp", 1.0, 0.01, 1, 3), 6)
0.1
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine", "exp")
"""The schedule kinds of S5.6."""


def schedule_value(kind: str, start: float, end: float, step: int, length: int) -> float:
    """The value of schedule ``kind`` at phase step ``step`` of a phase of ``length`` steps.

    Raises
    ------
    ValueError
        Unknown ``kind``; negative ``step``; ``length < 1``; ``exp`` with a bound ``<= 0``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    if length < 1:
        raise ValueError(f"schedule length must be >= 1, got {length}")
    if step < 0:
        raise ValueError(f"schedule step must be >= 0, got {step}")
    u = min(1.0, step / max(1, length - 1))
    if kind == "constant":
        return float(start)
    if kind == "linear":
        return float(start + (end - start) * u)
    if kind == "cosine":
        return float(end + (start - end) * (1.0 + math.cos(math.pi * u)) / 2.0)
    if start <= 0 or end <= 0:
        raise ValueError(f"an exp schedule needs start and end > 0, got {start}, {end}")
    return float(start * (end / start) ** u)


def warmup_factor(step: int, warmup_steps: float) -> float:
    """``min(1, (step + 1) / warmup_steps)``, and 1 when ``warmup_steps <= 0`` (S5.5).

    Examples
    --------
    >>> warmup_factor(0, 4), warmup_factor(3, 4), warmup_factor(10, 0)
    (0.25, 1.0, 1.0)
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)
