"""The LIF neuron of the spiking networks (SPEC S4.3-S4.5), shared by every backend.

For ``t = 1..T`` with ``V_0 = 0``::

    H_t = beta * V_{t-1} + I_t
    S_t = [H_t >= theta]                     (a spike at equality)
    V_t = H_t * (1 - S_t)                    (hard reset, default)
    V_t = H_t - theta * S_t                  (soft reset)

Backward: ``dS_t/dH_t`` is replaced by the ATan surrogate::

    sigma'(H) = (alpha / 2) / (1 + (pi / 2 * alpha * (H - theta))^2)

and, with ``gV_T = 0``, for ``t = T..1``::

    gH_t = gS_t * sigma'(H_t) + gV_t * dV_t/dH_t,   gV_{t-1} = beta * gH_t,   gI_t = gH_t
    dV_t/dH_t = (1 - S_t) - H_t * sigma'(H_t)        (hard)
    dV_t/dH_t = 1 - theta * sigma'(H_t)              (soft)

With ``detach_reset`` the ``sigma'`` term of ``dV_t/dH_t`` is dropped.  Defaults
``beta = 0.5`` (time constant 2), ``theta = 1``, ``alpha = 2``, ``T = 4``.

`lif_step` is the forward step written with operators only, so it runs on NumPy, PyTorch
and JAX arrays alike; backends with autodiff wrap the spike in their own surrogate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LIFParams", "surrogate", "lif_step"]

HALF_PI = math.pi / 2.0


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is invalid; expected {expected}")


@dataclass(frozen=True)
class LIFParams:
    """LIF neuron and time steps (SPEC S4.3-S4.5; the module docstring has the equations).

    Attributes
    ----------
    beta : float
        Membrane decay in ``[0, 1]``.
    theta : float
        Firing threshold, ``> 0``.
    alpha : float
        Sharpness of the ATan surrogate, ``> 0``.
    reset : ``"hard"`` or ``"soft"``
    detach_reset : bool
        Treat the reset as a constant in the backward pass.
    time_steps : int
        ``T``, the number of time steps of one sample.

    Examples
    --------
    >>> LIFParams(beta=0.9).time_steps
    4
    >>> LIFParams(beta=1.5)
    Traceback (most recent call last):
    ...
    ValueError: lif.beta=1.5 is invalid; expected a number in [0, 1]
    """

    beta: float = 0.5
    theta: float = 1.0
    alpha: float = 2.0
    reset: Literal["hard", "soft"] = "hard"
    detach_reset: bool = False
    time_steps: int = 4

    def __post_init__(self) -> None:
        for key in ("beta", "theta", "alpha"):
            value = getattr(self, key)
            _require(not isinstance(value, bool) and isinstance(value, (int, float)),
                     f"lif.{key}", value, "a number")
        _require(0.0 <= self.beta <= 1.0, "lif.beta", self.beta, "a number in [0, 1]")
        _require(self.theta > 0 and math.isfinite(self.theta), "lif.theta", self.theta, "> 0")
        _require(self.alpha > 0 and math.isfinite(self.alpha), "lif.alpha", self.alpha, "> 0")
        _require(self.reset in ("hard", "soft"), "lif.reset", self.reset, "'hard' or 'soft'")
        _require(isinstance(self.time_steps, int) and not isinstance(self.time_steps, bool)
                 and self.time_steps >= 1, "lif.time_steps", self.time_steps,
                 "an integer >= 1")


def surrogate(h: Any, p: LIFParams) -> Any:
    """``sigma'(H) = (alpha / 2) / (1 + (pi / 2 * alpha * (H - theta))^2)`` (S4.4)."""
    u = (HALF_PI * p.alpha) * (h - p.theta)
    return (p.alpha / 2.0) / (1.0 + u * u)


def lif_step(v: Any, current: Any, p: LIFParams, spike_fn: Any = None,
             stop_gradient: Any = None) -> tuple[Any, Any, Any]:
    """One forward step: ``(H_t, S_t, V_t)`` from ``V_{t-1}`` and ``I_t`` (S4.3).

    ``spike_fn(H)`` gives ``S_t``; the default is ``(H >= theta) * 1.0`` (no gradient),
    a backend passes its surrogate-gradient spike.  ``stop_gradient`` (the framework's
    ``detach``) is applied to the spike inside the reset when ``p.detach_reset``.

    Examples
    --------
    >>> import numpy as np
    >>> h, s, v = lif_step(np.zeros(2), np.array([0.5, 1.5]), LIFParams())
    >>> s.tolist(), v.tolist()
    ([0.0, 1.0], [0.5, 0.0])
    """
    h = p.beta * v + current
    s = (h >= p.theta) * 1.0 if spike_fn is None else spike_fn(h)
    r = s if not p.detach_reset or stop_gradient is None else stop_gradient(s)
    v_new = h - p.theta * r if p.reset == "soft" else h * (1.0 - r)
    return h, s, v_new
