"""LIF kernels of the reference model backend (SPEC S4.3-S4.5), compiled with Numba.

Both kernels work on currents flattened to ``(T, N)`` (time-major, every unit of every
sample in one row) and compute in the currents' dtype; the equations are those of
`spikenm.snn.neuron`.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["lif_forward", "lif_backward"]


@numba.njit(cache=True)
def lif_forward(current, beta, theta, soft):  # type: ignore[no-untyped-def]
    """LIF over time (S4.3) for currents ``(T, N)``; returns spikes and ``H``, ``(T, N)``.

    ``H_t = beta V_{t-1} + I_t``, ``S_t = [H_t >= theta]``, ``V_t = H_t (1 - S_t)`` (hard)
    or ``H_t - theta S_t`` (soft), ``V_0 = 0``.

    Examples
    --------
    >>> s, h = lif_forward(np.array([[0.6], [0.6]]), 0.5, 1.0, False)
    >>> s[:, 0].tolist(), h[:, 0].tolist()
    ([0.0, 0.0], [0.6, 0.8999999999999999])
    """
    t_steps, n = current.shape
    spikes = np.empty_like(current)
    h = np.empty_like(current)
    v = np.zeros(n, current.dtype)
    for t in range(t_steps):
        for i in range(n):
            ht = beta * v[i] + current[t, i]
            s = 1.0 if ht >= theta else 0.0
            h[t, i] = ht
            spikes[t, i] = s
            v[i] = ht - theta * s if soft else ht * (1.0 - s)
    return spikes, h


@numba.njit(cache=True)
def lif_backward(grad_spikes, h, spikes, beta, theta, alpha, soft, detach):  # type: ignore[no-untyped-def]
    """BPTT through the LIF recurrence (S4.4, S4.5): ``dL/dI_t`` from ``dL/dS_t``.

    ``sigma'(H) = (alpha/2) / (1 + (pi/2 alpha (H - theta))^2)``;
    ``gH_t = gS_t sigma'(H_t) + gV_t dV_t/dH_t``, ``gV_{t-1} = beta gH_t``, ``gI_t = gH_t``
    with ``dV/dH = (1 - S) - H sigma'(H)`` (hard), ``1 - theta sigma'(H)`` (soft), and the
    ``sigma'`` term dropped when ``detach``.
    """
    t_steps, n = h.shape
    grad_current = np.empty_like(h)
    gv = np.zeros(n, h.dtype)
    half_alpha = alpha / 2.0
    k = 1.5707963267948966 * alpha
    for t in range(t_steps - 1, -1, -1):
        for i in range(n):
            ht = h[t, i]
            u = k * (ht - theta)
            sg = half_alpha / (1.0 + u * u)
            if soft:
                dvdh = 1.0 if detach else 1.0 - theta * sg
            else:
                dvdh = 1.0 - spikes[t, i]
                if not detach:
                    dvdh -= ht * sg
            gh = grad_spikes[t, i] * sg + gv[i] * dvdh
            grad_current[t, i] = gh
            gv[i] = beta * gh
    return grad_current
