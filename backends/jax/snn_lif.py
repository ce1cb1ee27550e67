"""LIF neurons on JAX arrays (SPEC S4.3-S4.5): the spike with its ATan surrogate
derivative (``jax.custom_jvp``) and the LIF recurrence as one ``lax.scan`` over time.

The equations are those of `spikenm.snn.neuron` (its docstring has them): the forward
step is `spikenm.snn.neuron.lif_step` and the derivative is
`spikenm.snn.neuron.surrogate`, so reverse-mode autodiff through the scan gives exactly
S4.5, ``dV_t/dH_t = (1 - S_t) - H_t sigma'(H_t)`` (hard) or ``1 - theta sigma'(H_t)``
(soft), without the ``sigma'`` term when the reset is detached (``lax.stop_gradient`` on
the reset's ``S_t``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from spikenm.snn.neuron import LIFParams, lif_step, surrogate

__all__ = ["spike", "lif_over_time"]


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def spike(h: jax.Array, p: LIFParams) -> jax.Array:
    """``[h >= theta]`` in ``h``'s dtype, differentiated with the ATan surrogate
    ``sigma'(h)`` of `spikenm.snn.neuron.surrogate` (S4.3, S4.4).

    Examples
    --------
    >>> p = LIFParams()
    >>> spike(jnp.array([0.5, 1.0, 1.5]), p).tolist()
    [0.0, 1.0, 1.0]
    >>> float(jax.grad(lambda h: spike(h, p))(1.0))
    1.0
    """
    h = jnp.asarray(h)
    return (h >= p.theta).astype(h.dtype)


@spike.defjvp
def _spike_jvp(p: LIFParams, primals: tuple[jax.Array], tangents: tuple[jax.Array]
               ) -> tuple[jax.Array, jax.Array]:
    (h,), (h_dot,) = primals, tangents
    h = jnp.asarray(h)
    return spike(h, p), h_dot * surrogate(h, p)


def lif_over_time(current: jax.Array, p: LIFParams) -> jax.Array:
    """Spikes ``S`` ``(T, B, ...)`` of LIF neurons driven by currents ``I`` ``(T, B, ...)``.

    One ``lax.scan`` step of `spikenm.snn.neuron.lif_step` per ``t`` from ``V_0 = 0``
    (S4.3); ``p`` is static (Python floats).

    Examples
    --------
    >>> p = LIFParams(beta=0.5, theta=1.0, time_steps=3)
    >>> lif_over_time(jnp.full((3, 1), 0.7), p).ravel().tolist()
    [0.0, 1.0, 0.0]
    """

    def step(v: jax.Array, i_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        _, s, v = lif_step(v, i_t, p, lambda h: spike(h, p), lax.stop_gradient)
        return v, s

    _, spikes = lax.scan(step, jnp.zeros_like(current[0]), current)
    return spikes
