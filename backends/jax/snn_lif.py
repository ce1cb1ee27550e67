"""LIF neurons on JAX arrays (SPEC S4.3-S4.5): the spike function with its ATan surrogate
derivative (``jax.custom_jvp``) and the LIF recurrence as one ``lax.scan`` over time.

Forward, for ``t = 1..T`` with ``V_0 = 0``:

    H_t = beta * V_{t-1} + I_t
    S_t = [H_t >= theta]
    V_t = H_t * (1 - S_t)          (hard reset)   or   V_t = H_t - theta * S_t   (soft)

Derivative: ``dS_t/dH_t`` is replaced by the ATan surrogate

    sigma'(H) = (alpha / 2) / (1 + (pi / 2 * alpha * (H - theta))^2)

so reverse-mode autodiff gives exactly S4.5: ``dV_t/dH_t = (1 - S_t) - H_t sigma'(H_t)``
(hard) or ``1 - theta sigma'(H_t)`` (soft), without the ``sigma'`` term when the reset is
detached (``lax.stop_gradient`` on the reset's ``S_t``).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from spikenm.train.config import LIFConfig

__all__ = ["spike", "lif_over_time"]

_HALF_PI = math.pi / 2.0


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def spike(h: jax.Array, theta: float, alpha: float) -> jax.Array:
    """``[h >= theta]`` in ``h``'s dtype, differentiated with the ATan surrogate
    ``sigma'(h) = (alpha / 2) / (1 + (pi / 2 * alpha * (h - theta))^2)`` (S4.3, S4.4).

    Examples
    --------
    >>> spike(jnp.array([0.5, 1.0, 1.5]), 1.0, 2.0).tolist()
    [0.0, 1.0, 1.0]
    >>> float(jax.grad(lambda h: spike(h, 1.0, 2.0))(1.0))
    1.0
    """
    h = jnp.asarray(h)
    return (h >= theta).astype(h.dtype)


@spike.defjvp
def _spike_jvp(theta: float, alpha: float, primals: tuple[jax.Array],
               tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (h,), (h_dot,) = primals, tangents
    h = jnp.asarray(h)
    u = (_HALF_PI * alpha) * (h - theta)
    return spike(h, theta, alpha), h_dot * ((alpha / 2.0) / (1.0 + u * u))


def lif_over_time(current: jax.Array, lif: LIFConfig) -> jax.Array:
    """Spikes ``S`` ``(T, B, ...)`` of LIF neurons driven by currents ``I`` ``(T, B, ...)``.

    ``H_t = beta V_{t-1} + I_t``, ``S_t = [H_t >= theta]``, hard reset
    ``V_t = H_t (1 - S_t)`` or soft reset ``V_t = H_t - theta S_t`` (S4.3), one
    ``lax.scan`` step per ``t``.  ``lif`` is static (Python floats).

    Examples
    --------
    >>> lif = LIFConfig(beta=0.5, theta=1.0, time_steps=3)
    >>> lif_over_time(jnp.full((3, 1), 0.7), lif).ravel().tolist()
    [0.0, 1.0, 0.0]
    """
    beta, theta, alpha = lif.beta, lif.theta, lif.alpha
    soft = lif.reset == "soft"
    detach = lif.detach_reset

    def step(v: jax.Array, i_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = beta * v + i_t
        s = spike(h, theta, alpha)
        r = lax.stop_gradient(s) if detach else s
        v = h - theta * r if soft else h * (1.0 - r)
        return v, s

    _, spikes = lax.scan(step, jnp.zeros_like(current[0]), current)
    return spikes
