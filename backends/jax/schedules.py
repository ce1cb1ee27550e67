"""The schedules of SPEC S5.5 and S5.6 at a traced step, for code inside ``jax.jit``.

`spikenm.schedules` computes them from a Python step on the host; these take the step
as a JAX integer array (a tracer inside ``jax.jit``) with ``jnp`` operations, so a
jitted training step that reads its schedules from a step counter compiles once for the
whole run.  The kind, the bounds and the phase length are static Python values.  The
values are computed in JAX's default float dtype (float64 with ``jax_enable_x64``,
else float32); they equal `spikenm.schedules.schedule_value` up to that dtype's
rounding.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from spikenm.schedules import SCHEDULES

__all__ = ["traced_schedule", "traced_warmup"]


def _float(step: Any) -> jax.Array:
    return jnp.asarray(step).astype(jnp.result_type(float))


def traced_schedule(kind: str, start: float, end: float, step: Any, length: int
                    ) -> jax.Array:
    """The value of schedule ``kind`` at phase step ``step`` (traced) of a phase of
    ``length`` steps (S5.6): ``u = min(1, j / max(1, P - 1))``; constant ``a``, linear
    ``a + (b - a) u``, cosine ``b + (a - b) (1 + cos(pi u)) / 2``, exp ``a (b / a)^u``.
    A negative ``step`` is read as 0 (a traced value cannot be refused, S0.5).

    Raises
    ------
    ValueError
        Unknown ``kind``, ``length < 1``, an exp schedule with a bound ``<= 0``.

    Examples
    --------
    >>> float(traced_schedule("linear", 1.0, 3.0, jnp.int32(4), 9))
    2.0
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"schedule length must be an int >= 1, got {length!r}")
    if kind == "exp" and (start <= 0 or end <= 0):
        raise ValueError(f"an exp schedule needs start and end > 0, got {start}, {end}")
    u = jnp.clip(_float(step) / max(1, length - 1), 0.0, 1.0)
    if kind == "constant":
        return jnp.full_like(u, float(start))
    if kind == "linear":
        return start + (end - start) * u
    if kind == "cosine":
        return end + (start - end) * (1.0 + jnp.cos(math.pi * u)) / 2.0
    return start * (end / start) ** u


def traced_warmup(step: Any, warmup_steps: float) -> jax.Array:
    """``min(1, (step + 1) / warmup_steps)`` at a traced ``step``, 1 when
    ``warmup_steps <= 0`` (static): the EID weight's warm-up of S5.5.

    Examples
    --------
    >>> float(traced_warmup(jnp.int32(1), 4.0)), float(traced_warmup(jnp.int32(9), 0))
    (0.5, 1.0)
    """
    one = jnp.ones((), jnp.result_type(float))
    if warmup_steps <= 0:
        return one
    return jnp.minimum(one, (_float(step) + 1.0) / float(warmup_steps))
