"""JAX model backend of the trainer: a spiking MLP / conv net trained by BPTT with
autodiff (SPEC S4), implementing `spikenm.train.model_backend.ModelBackend`.

Pure functions of ``(params, x, y)``: the whole training step -- forward pass, loss,
gradients, EID credits and firing rates -- is one ``jax.jit``-compiled function per
static configuration ``(arch, lif, EID layers, input kind)`` (built once and kept in
`step_function`'s cache; JAX adds one compilation per shape and dtype).  Activations are
time-major ``[T, B, ...]`` channels-first, so a Linear layer after a conv layer sees
``(C, H, W)``-ordered features by a plain reshape (S4.2).  Per layer, the currents of all
``T`` steps are one product (a static, direct-encoded input is multiplied once and
broadcast over ``T``):

    I_t = x_t W^T + b                          (Linear)
    I_t = conv2d(x_t, W, stride, padding) + b  (Conv2d, cross-correlation, NCHW/OIHW)

then the LIF recurrence of `spikenm.backends.jax.snn_lif` runs as a ``lax.scan`` over
``t``.  The readout returns ``logits = (1/T) sum_t I_t``; the loss is the batch-mean
cross-entropy (S4.8).  The EID learning signals ``d_t = dL/dI_t`` are gradients w.r.t.
zero *probes* added to the currents of the requested layers (``I_t + 0``), taken in the
same ``jax.value_and_grad`` call as the parameter gradients.

float64 needs JAX's 64-bit mode (``jax.config.update("jax_enable_x64", True)`` or
``with jax.enable_x64(True):``); `from_numpy` refuses float64 without it and stores integer
labels as int32 when it is off.  The module itself is the backend object
(``MODEL_BACKEND``).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from spikenm.train.config import LIFConfig
from spikenm.train.model_backend import (
    check_call,
    Arch, EIDRequest, EvalResult, LayerParams, LayerSpec, StepResult,
)

from . import arrays
from .eid import eligibility_credit
from .snn_lif import lif_over_time

__all__ = ["name", "from_numpy", "to_numpy", "forward_backward", "evaluate",
           "conv_credit", "step_function", "eval_function", "MODEL_BACKEND"]

name = "jax"

_HIGHEST = lax.Precision.HIGHEST


def from_numpy(a: np.ndarray) -> jax.Array:
    """``a`` as a JAX array with the same dtype and values.

    Integer arrays (class labels) become int32 when 64-bit types are off and every value
    fits; float64 without 64-bit types is a `TypeError` (see the module docstring).
    """
    a = np.asarray(a)
    if a.dtype.kind in "iu" and not jax.config.jax_enable_x64 and a.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise ValueError(f"a {a.dtype} array with values in [{a.min()}, {a.max()}] does "
                             f"not fit int32 and JAX 64-bit types are off")
        a = a.astype(np.int32)
    return arrays.from_numpy(a)


def to_numpy(x: jax.Array) -> np.ndarray:
    """A NumPy copy of ``x``."""
    return arrays.to_numpy(x)






def _conv(a: jax.Array, weight: jax.Array, spec: LayerSpec) -> jax.Array:
    """Cross-correlation of ``a`` ``(N, C, H, W)`` with ``weight`` ``(O, C, k, k)``."""
    p = spec.padding
    return lax.conv_general_dilated(
        a, weight, window_strides=(spec.stride, spec.stride), padding=((p, p), (p, p)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=_HIGHEST)


def _current(spec: LayerSpec, p: LayerParams, a: jax.Array, lead: int) -> jax.Array:
    """Synaptic current (S4.2) of input ``a`` ``(*lead, ...)``, leading axes kept."""
    if spec.kind == "linear":
        return jnp.matmul(a, p.weight.T, precision=_HIGHEST) + p.bias
    merged = a.reshape((-1,) + a.shape[lead:])
    out = _conv(merged, p.weight, spec) + p.bias[:, None, None]
    return out.reshape(a.shape[:lead] + out.shape[1:])



def _pool(s: jax.Array, q: int) -> jax.Array:
    """``q x q`` average pooling (stride ``q``, no padding) of ``(T, B, C, H, W)`` (S4.6)."""
    *lead, c, h, w = s.shape
    return s.reshape(*lead, c, h // q, q, w // q, q).mean(axis=(-3, -1))


class _Pass(NamedTuple):
    """One forward pass: logits, spikes per LIF layer (before pooling), layer inputs and
    per-layer currents ``(T, B, ...)``."""

    logits: jax.Array
    spikes: tuple[jax.Array, ...]
    inputs: tuple[jax.Array, ...]
    currents: tuple[jax.Array, ...]


def _forward(arch: Arch, lif: LIFConfig, params: tuple[LayerParams, ...], x: jax.Array,
             static: bool, probes: dict[int, jax.Array]) -> _Pass:
    """The network of S4 on ``x``; ``probes[l]`` (zeros) is added to layer ``l``'s current."""
    t_steps = lif.time_steps
    last = len(arch.layers) - 1
    a = x
    spikes: list[jax.Array] = []
    inputs: list[jax.Array] = []
    currents: list[jax.Array] = []
    for index, (spec, p) in enumerate(zip(arch.layers, params)):
        lead = 1 if static else 2
        if spec.kind == "linear":
            a = a.reshape(a.shape[:lead] + (-1,))  # (C, H, W) order (S4.2)
        elif a.ndim != lead + 3:
            raise ValueError(f"conv layer {index} needs (C, H, W) inputs; it gets shape "
                             f"{a.shape[lead:]}")
        inputs.append(a)
        current = _current(spec, p, a, lead)
        if static:  # x_t = x at every step (S4.7)
            current = jnp.broadcast_to(current, (t_steps,) + current.shape)
        if index in probes:
            current = current + probes[index]
        currents.append(current)
        if index == last:
            return _Pass(current.mean(axis=0), tuple(spikes), tuple(inputs), tuple(currents))
        s = lif_over_time(current, lif)
        spikes.append(s)
        if spec.kind == "conv" and spec.pool > 1:
            s = _pool(s, spec.pool)
        a = s
        static = False
    raise ValueError("arch has no layers")


def _cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample ``logsumexp(logits_b) - logits_b[y_b]`` (S4.8)."""
    picked = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def _correct(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Samples whose first largest logit is the label."""
    return jnp.sum(jnp.argmax(logits, axis=1) == y)


def _traced_input(a: jax.Array, static: bool, t_steps: int) -> jax.Array:
    """The layer input as ``(T, B, ...)`` (a static input repeated over ``t``)."""
    return jnp.broadcast_to(a, (t_steps,) + a.shape) if static else a


def conv_credit(x: jax.Array, d: jax.Array, weight: jax.Array, spec: LayerSpec,
                decay: jax.Array | float) -> jax.Array:
    """EID credit of a conv layer (SPEC S2.3) in block layout ``(out, k, k, in)``.

    ``e_t = decay e_{t-1} + x_t`` (``e_0 = 0``) on the input images, and

        c = |W| * sum_t | conv_weight_grad(e_t, d_t) |

    where ``conv_weight_grad(e, d)[o, c, a, b] = sum_{n, i, j} d[n, o, i, j]
    epad[n, c, i s + a, j s + b]`` (the VJP of the convolution w.r.t. its weight) is the
    inner sum ``sum_b d_t[b, o] e_t[b, k]`` of S2.3 over im2col columns ``k = (a, b, c)``.
    One ``lax.scan`` over ``t`` carries ``(e_t, running sum)``.

    Parameters
    ----------
    x : ``(T, B, C, H, W)`` layer input
    d : ``(T, B, O, Ho, Wo)`` ``dL/dI_t``
    weight : ``(O, C, k, k)`` dense weight
    spec : the layer's geometry
    decay : trace decay in ``[0, 1]``
    """

    def step(carry: tuple[jax.Array, jax.Array], xd: tuple[jax.Array, jax.Array]
             ) -> tuple[tuple[jax.Array, jax.Array], None]:
        trace, total = carry
        x_t, d_t = xd
        trace = decay * trace + x_t
        _, pullback = jax.vjp(lambda w: _conv(trace, w, spec), weight)
        return (trace, total + jnp.abs(pullback(d_t)[0])), None

    (_, total), _ = lax.scan(step, (jnp.zeros_like(x[0]), jnp.zeros_like(weight)), (x, d))
    return jnp.transpose(jnp.abs(weight) * total, (0, 2, 3, 1))


def _credit(spec: LayerSpec, a: jax.Array, static: bool, d: jax.Array, weight: jax.Array,
            decay: jax.Array) -> jax.Array:
    """EID credit (S2.3) of one layer from its input, ``d_t`` and the dense weight."""
    x = _traced_input(a, static, d.shape[0])
    if spec.kind == "linear":
        return eligibility_credit(x, d, weight, decay)
    return conv_credit(x, d, weight, spec, decay)


@lru_cache(maxsize=64)
def step_function(arch: Arch, lif: LIFConfig, eid_layers: tuple[int, ...], static: bool
                  ) -> Callable[..., Any]:
    """The compiled training step for one static configuration.

    ``f(params, x, y, eid_weights, decay) -> (loss, correct, grads, credits, rates)``:
    batch-mean loss, correct count, ``LayerParams`` gradients, one credit per layer of
    ``eid_layers`` (block layout) and the firing rate of every LIF layer, all arrays.
    """

    def step(params: tuple[LayerParams, ...], x: jax.Array, y: jax.Array,
             eid_weights: tuple[jax.Array, ...], decay: jax.Array) -> tuple[Any, ...]:
        def loss_fn(ps: tuple[LayerParams, ...], probes: tuple[jax.Array, ...]
                    ) -> tuple[jax.Array, _Pass]:
            run = _forward(arch, lif, ps, x, static, dict(zip(eid_layers, probes)))
            return jnp.mean(_cross_entropy(run.logits, y)), run

        shapes = jax.eval_shape(lambda ps: _forward(arch, lif, ps, x, static, {}).currents,
                                params)
        probes = tuple(jnp.zeros(shapes[i].shape, shapes[i].dtype) for i in eid_layers)
        (loss, run), (grads, signals) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(params, probes)
        credits = tuple(
            _credit(arch.layers[layer], run.inputs[layer], static and layer == 0, d, w, decay)
            for layer, d, w in zip(eid_layers, signals, eid_weights))
        rates = tuple(jnp.mean(s) for s in run.spikes)
        return loss, _correct(run.logits, y), grads, credits, rates

    return jax.jit(step)


@lru_cache(maxsize=64)
def eval_function(arch: Arch, lif: LIFConfig, static: bool) -> Callable[..., Any]:
    """The compiled forward pass: ``f(params, x, y) -> (loss_sum, correct, spike_sums)``."""

    def run(params: tuple[LayerParams, ...], x: jax.Array, y: jax.Array) -> tuple[Any, ...]:
        out = _forward(arch, lif, params, x, static, {})
        return (jnp.sum(_cross_entropy(out.logits, y)), _correct(out.logits, y),
                tuple(jnp.sum(s) for s in out.spikes))

    return jax.jit(run)


@lru_cache(maxsize=256)
def _spike_counts(arch: Arch, lif: LIFConfig, static: bool, x_shape: tuple[int, ...],
                  dtype: str) -> tuple[int, ...]:
    """Number of ``(t, b, unit)`` entries of every LIF layer's spikes (shape inference)."""
    params = tuple(LayerParams(jax.ShapeDtypeStruct(s.weight_shape(), dtype),
                               jax.ShapeDtypeStruct((s.out_features,), dtype))
                   for s in arch.layers)
    shapes = jax.eval_shape(
        lambda ps, xs: _forward(arch, lif, ps, xs, static, {}).spikes,
        params, jax.ShapeDtypeStruct(x_shape, dtype))
    return tuple(int(np.prod(s.shape)) for s in shapes)


def _prepare(arch: Arch, params: tuple[LayerParams, ...], x: jax.Array, y: jax.Array,
             lif: LIFConfig) -> tuple[tuple[LayerParams, ...], bool, int]:
    params = tuple(LayerParams(p.weight, p.bias) for p in params)
    static, batch = check_call(arch, params, x, y, lif, arrays.dtype_name)
    return params, static, batch


def forward_backward(arch: Arch, params: tuple[LayerParams, ...], x: jax.Array,
                     y: jax.Array, lif: LIFConfig, eid: EIDRequest | None = None
                     ) -> StepResult:
    """Loss, correct count, ``dL/dW_eff``, EID credits and firing rates (S4, S2.3)."""
    params, static, _ = _prepare(arch, params, x, y, lif)
    eid_layers = () if eid is None else tuple(int(i) for i in eid.layers)
    for layer in eid_layers:
        if not 0 <= layer < len(arch.layers):
            raise ValueError(f"EID layer {layer} does not exist; the arch has "
                             f"{len(arch.layers)} layers")
    weights = () if eid is None else tuple(eid.weights)
    decay = jnp.asarray(0.0 if eid is None else eid.decay, params[0].weight.dtype)
    fn = step_function(arch, lif, eid_layers, static)
    loss, correct, grads, credits, rates = fn(params, x, y, weights, decay)
    host_loss, host_correct, host_rates = jax.device_get((loss, correct, rates))
    return StepResult(float(host_loss), int(host_correct),
                      tuple(LayerParams(g.weight, g.bias) for g in grads),
                      dict(zip(eid_layers, credits)), tuple(float(r) for r in host_rates))


def evaluate(arch: Arch, params: tuple[LayerParams, ...], x: jax.Array, y: jax.Array,
             lif: LIFConfig) -> EvalResult:
    """Forward pass only: summed loss, correct count and spike sums (S4.8, S4.9)."""
    params, static, batch = _prepare(arch, params, x, y, lif)
    loss_sum, correct, sums = jax.device_get(eval_function(arch, lif, static)(params, x, y))
    counts = _spike_counts(arch, lif, static, tuple(x.shape), np.dtype(x.dtype).name)
    return EvalResult(float(loss_sum), int(correct), batch, tuple(float(s) for s in sums),
                      counts)


MODEL_BACKEND: Any = sys.modules[__name__]
"""This module is the backend object."""
