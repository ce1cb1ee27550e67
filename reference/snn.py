"""Reference model backend of the trainer: a spiking MLP / conv net with hand-written BPTT.

Implements `spikenm.train.model_backend.ModelBackend` on NumPy arrays (SPEC S4): the LIF
recurrence and its surrogate backward run in Numba kernels (`lif_forward`,
`lif_backward`); currents and weight gradients are single BLAS matrix products with the
time axis merged into the batch axis (conv layers via im2col in block layout
``(kh, kw, in)``, see `spikenm.reference.snn_conv`).

Inside a layer stack activations are time-major ``[T, B, ...]``; conv activations are
kept channels-last ``[T, B, H, W, C]`` and flattened in ``(C, H, W)`` order before a
Linear layer (S4.2).  A first layer that sees a static (direct-encoded) input computes its
current once, ``I = x W^T + b``, and repeats it over ``T``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from spikenm import api
from spikenm.train.config import LIFConfig
from spikenm.train.model_backend import (
    check_call,
    Arch, EIDRequest, EvalResult, LayerParams, LayerSpec, StepResult,
)

from .snn_conv import col2im, conv_weight_block, conv_weight_unblock, im2col, pool_backward, pool_forward

name = "numpy"

_HALF_PI = math.pi / 2.0


@numba.njit(cache=True)
def lif_forward(current, beta, theta, soft):  # type: ignore[no-untyped-def]
    """LIF over time (S4.3) for currents ``(T, N)``; returns spikes and ``H``, ``(T, N)``.

    ``H_t = beta V_{t-1} + I_t``, ``S_t = [H_t >= theta]``, ``V_t = H_t (1 - S_t)`` (hard)
    or ``H_t - theta S_t`` (soft), ``V_0 = 0``.
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


@dataclass
class _Cache:
    """What the backward pass of one layer needs."""

    inputs: np.ndarray          # linear: (T|, B, K); conv: im2col (T|*B*P, k*k*in)
    static: bool                # input without a time axis (first layer, direct encoding)
    h: np.ndarray | None        # LIF layers: (T, rest)
    spikes: np.ndarray | None   # LIF layers: (T, rest), before pooling
    out_shape: tuple[int, ...]  # shape of the current per step (B, ...)
    in_shape: tuple[int, ...]   # conv: input shape (N, H, W, C) per merged batch


def from_numpy(a: np.ndarray) -> np.ndarray:
    """A contiguous copy of ``a``."""
    return np.array(a, copy=True, order="C")


def to_numpy(x: np.ndarray) -> np.ndarray:
    """A copy of ``x``."""
    return np.array(x, copy=True)


def _lif(lif: LIFConfig, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = current.shape[0]
    flat = np.ascontiguousarray(current.reshape(t, -1))
    dt = flat.dtype.type
    return lif_forward(flat, dt(lif.beta), dt(lif.theta), lif.reset == "soft")


def _to_internal(arch: Arch, x: np.ndarray, static: bool) -> np.ndarray:
    """Input as the first layer wants it: flat features, or channels-last images."""
    lead = x.shape[:1] if static else x.shape[:2]
    if arch.layers[0].kind == "linear":
        return x.reshape(lead + (-1,))
    if len(arch.input_shape) != 3:
        raise ValueError(f"a conv first layer needs (C, H, W) inputs, got {arch.input_shape}")
    return np.moveaxis(x, -3, -1)


def _flatten_for_linear(a: np.ndarray, from_conv: bool, lead: int) -> np.ndarray:
    if from_conv:  # (lead..., H, W, C) -> (lead..., C, H, W) -> flat (S4.2)
        a = np.moveaxis(a, -1, -3)
    return np.ascontiguousarray(a).reshape(a.shape[:lead] + (-1,))


def _forward(arch: Arch, params: tuple[LayerParams, ...], x: np.ndarray, lif: LIFConfig,
             keep: bool) -> tuple[np.ndarray, list[_Cache], list[np.ndarray]]:
    """Logits ``(B, classes)``, per-layer caches (when ``keep``) and spikes per LIF layer."""
    t_steps = lif.time_steps
    static = x.ndim == len(arch.input_shape) + 1
    a = _to_internal(arch, x, static)
    caches: list[_Cache] = []
    spike_list: list[np.ndarray] = []
    prev_conv = False
    last = len(arch.layers) - 1
    for index, (spec, p) in enumerate(zip(arch.layers, params)):
        lead = 1 if static else 2
        if spec.kind == "linear":
            a = _flatten_for_linear(a, prev_conv, lead)
            current = a @ p.weight.T + p.bias
            inputs, in_shape = a, a.shape
        else:
            merged = a.reshape((-1,) + a.shape[lead:])
            cols, (ho, wo) = im2col(merged, spec.kernel, spec.stride, spec.padding)
            current = cols @ conv_weight_block(p.weight).T + p.bias
            current = current.reshape(a.shape[:lead] + (ho, wo, spec.out_features))
            inputs, in_shape = cols, merged.shape
        if index == last:
            logits = current if static else current.mean(axis=0)
            if keep:
                caches.append(_Cache(inputs, static, None, None, current.shape[lead - 1:],
                                     in_shape))
            return logits, caches, spike_list
        if static:
            current = np.broadcast_to(current, (t_steps,) + current.shape)
        spikes, h = _lif(lif, current)
        step_shape = current.shape[1:]
        if keep:
            caches.append(_Cache(inputs, static, h, spikes, step_shape, in_shape))
        out = spikes.reshape((t_steps,) + step_shape)
        spike_list.append(out)
        if spec.kind == "conv" and spec.pool > 1:
            out = pool_forward(out, spec.pool)
        a = out
        static = False
        prev_conv = spec.kind == "conv"
    raise ValueError("arch has no layers")  # pragma: no cover


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, int, np.ndarray]:
    """Batch-mean cross-entropy, correct count and ``dL/dlogits`` (S4.8)."""
    b = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    expd = np.exp(shifted)
    total = expd.sum(axis=1, keepdims=True)
    log_p = shifted - np.log(total)
    loss = float(-log_p[np.arange(b), y].mean())
    correct = int((np.argmax(logits, axis=1) == y).sum())
    grad = expd / total
    grad[np.arange(b), y] -= 1.0
    return loss, correct, grad / logits.dtype.type(b)


def _layer_grads(spec: LayerSpec, p: LayerParams, cache: _Cache, g_current: np.ndarray,
                 need_input_grad: bool) -> tuple[LayerParams, np.ndarray | None]:
    """Weight/bias gradient of one layer and ``dL/d(input)`` from ``dL/dI`` ``(T|, B, ...)``."""
    o = spec.out_features
    if cache.static and g_current.ndim == len(cache.out_shape) + 1:
        g_current = g_current.sum(axis=0)  # same input at every step
    g2 = g_current.reshape(-1, o)
    if spec.kind == "linear":
        x2 = cache.inputs.reshape(-1, cache.inputs.shape[-1])
        gw = g2.T @ x2
        g_in = (g_current @ p.weight) if need_input_grad else None
    else:
        wb = conv_weight_block(p.weight)
        gw = conv_weight_unblock(g2.T @ cache.inputs, p.weight.shape)
        g_in = None
        if need_input_grad:
            g_cols = g2 @ wb
            g_in = col2im(g_cols, cache.in_shape, spec.kernel, spec.stride, spec.padding)
            g_in = g_in.reshape(g_current.shape[:-3] + g_in.shape[1:])
    return LayerParams(gw, g2.sum(axis=0)), g_in


def _credit(spec: LayerSpec, cache: _Cache, g_current: np.ndarray, weight: np.ndarray,
            decay: float, t_steps: int) -> np.ndarray:
    """EID credit in block layout (S2.3) via `spikenm.api.eligibility_credit`."""
    o = spec.out_features
    d = g_current.reshape(t_steps, -1, o)
    if spec.kind == "linear":
        x = cache.inputs
        x = np.broadcast_to(x, (t_steps,) + x.shape) if cache.static else x
        return api.eligibility_credit(x, np.ascontiguousarray(d), weight, decay=decay)
    cols = cache.inputs
    x = (np.broadcast_to(cols, (t_steps,) + cols.shape) if cache.static
         else cols.reshape(t_steps, -1, cols.shape[-1]))
    wb = np.ascontiguousarray(conv_weight_block(weight))
    credit = api.eligibility_credit(x, np.ascontiguousarray(d), wb, decay=decay)
    return credit.reshape(o, spec.kernel, spec.kernel, spec.in_features)


def _check(arch: Arch, params: tuple[LayerParams, ...], x: np.ndarray, y: np.ndarray,
           lif: LIFConfig) -> None:
    check_call(arch, params, x, y, lif, lambda a: np.dtype(a.dtype).name)


def forward_backward(arch: Arch, params: tuple[LayerParams, ...], x: np.ndarray,
                     y: np.ndarray, lif: LIFConfig, eid: EIDRequest | None = None
                     ) -> StepResult:
    """Loss, correct count, ``dL/dW_eff``, EID credits and firing rates (S4, S2.3)."""
    _check(arch, params, x, y, lif)
    t_steps = lif.time_steps
    logits, caches, spike_list = _forward(arch, params, x, lif, keep=True)
    loss, correct, g_logits = _cross_entropy(logits, y)
    dtype = logits.dtype.type
    credit_for = {} if eid is None else dict(zip(eid.layers, eid.weights))
    grads: list[LayerParams] = [None] * len(arch.layers)  # type: ignore[list-item]
    credits: dict[int, np.ndarray] = {}
    last = len(arch.layers) - 1
    # readout: I_t for every t carries dL/dlogits / T (or dL/dlogits for a static input)
    static_last = caches[last].static
    g_current = g_logits if static_last else np.broadcast_to(
        g_logits / dtype(t_steps), (t_steps,) + g_logits.shape)
    for index in range(last, -1, -1):
        spec, p, cache = arch.layers[index], params[index], caches[index]
        if index in credit_for:
            d = g_current if g_current.ndim > len(cache.out_shape) else np.broadcast_to(
                g_current / dtype(t_steps), (t_steps,) + g_current.shape)  # static readout
            credits[index] = _credit(spec, cache, d, credit_for[index],
                                     eid.decay if eid else 0.0, t_steps)
        grads[index], g_in = _layer_grads(spec, p, cache, g_current, index > 0)
        if index == 0:
            break
        below, below_cache = arch.layers[index - 1], caches[index - 1]
        g_spikes = _spike_grad(below, below_cache, g_in, t_steps, spec.kind == "linear")
        g_cur = lif_backward(
            np.ascontiguousarray(g_spikes.reshape(t_steps, -1)), below_cache.h,
            below_cache.spikes, dtype(lif.beta), dtype(lif.theta), dtype(lif.alpha),
            lif.reset == "soft", lif.detach_reset)
        g_current = g_cur.reshape((t_steps,) + below_cache.out_shape)
    rates = tuple(float(s.mean()) for s in spike_list)
    return StepResult(loss, correct, tuple(grads), credits, rates)


def _pooled_shape(spec: LayerSpec, cache: _Cache) -> tuple[int, ...]:
    """Per-step output shape of a LIF layer after its pooling."""
    shape = cache.out_shape
    if spec.kind == "conv" and spec.pool > 1:
        b, h, w, c = shape
        return (b, h // spec.pool, w // spec.pool, c)
    return shape


def _spike_grad(spec: LayerSpec, cache: _Cache, g_out: np.ndarray, t_steps: int,
                flattened: bool) -> np.ndarray:
    """``dL/dS`` ``(T, ...)`` of a LIF layer from the gradient of its output after pooling
    (and flattening, when the layer above is Linear)."""
    pooled = _pooled_shape(spec, cache)
    if spec.kind == "conv":
        if flattened:  # the layer above is Linear: undo the (C, H, W) flattening
            b, h, w, c = pooled
            g_out = np.moveaxis(g_out.reshape(t_steps, b, c, h, w), 2, -1)
        if spec.pool > 1:
            g_out = pool_backward(g_out, spec.pool)
    return g_out.reshape((t_steps,) + cache.out_shape)


def evaluate(arch: Arch, params: tuple[LayerParams, ...], x: np.ndarray, y: np.ndarray,
             lif: LIFConfig) -> EvalResult:
    """Forward pass only: summed loss, correct count and spike sums (S4.8, S4.9)."""
    _check(arch, params, x, y, lif)
    logits, _, spike_list = _forward(arch, params, x, lif, keep=False)
    loss, correct, _ = _cross_entropy(logits, y)
    return EvalResult(loss * y.shape[0], correct, int(y.shape[0]),
                      tuple(float(s.sum()) for s in spike_list),
                      tuple(int(s.size) for s in spike_list))


MODEL_BACKEND: Any = sys.modules[__name__]
"""This module is the backend object."""
