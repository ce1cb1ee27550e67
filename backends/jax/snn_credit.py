"""EID credits of a graph's weighted layers on JAX arrays (SPEC S2.1-S2.3, S2.9, S5.5).

For layer input ``x_t``, presynaptic trace ``e_t = lam e_{t-1} + x_t`` (``e_0 = 0``),
learning signal ``d_t = dL/dI_t`` and dense weight ``W``:

    c[o, j] = |W[o, j]| * sum_t | sum_b d_t[b, o] e_t[b, j] |       (S2.3)
    c[o, j] = |W[o, j]| * | sum_t sum_b d_t[b, o] e_t[b, j] |       (S2.9, signed)

Linear layers use the backend's `spikenm.backends.jax.eid.eligibility_credit`.  For a conv
layer the inner sum over the unfolded input is the conv weight gradient of
``(e_t, d_t)``; `conv_credit` takes it for all ``t`` at once (`weight_grad_credit`:
``jax.vmap`` over ``t`` of the convolution's VJP w.r.t. its weight, one batched
convolution; signed: the VJP of the convolution mapped over ``t``, which sums over ``t``
inside one weight gradient of the ``T * B`` stacked steps) and returns the credit in block
layout ``(out, k, k, in)``.  `weight_grad_credit` also serves the JAX method path
(`spikenm.backends.jax.method_path_credit.op_credit`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from spikenm.snn.graph import Node

from .eid import eligibility_credit
from .snn_ops import conv2d

__all__ = ["presynaptic_trace", "weight_grad_credit", "conv_credit", "layer_credit"]


def presynaptic_trace(x: jax.Array, decay: jax.Array | float) -> jax.Array:
    """``e_t = decay e_{t-1} + x_t`` with ``e_0 = 0`` for ``x`` ``(T, ...)`` (S2.1).

    Examples
    --------
    >>> presynaptic_trace(jnp.ones((3, 1)), 0.5).ravel().tolist()
    [1.0, 1.5, 1.75]
    """

    def step(trace: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        trace = decay * trace + x_t
        return trace, trace

    _, traces = lax.scan(step, jnp.zeros_like(x[0]), x)
    return traces


def weight_grad_credit(op: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array,
                       d: jax.Array, weight: jax.Array, decay: jax.Array | float,
                       signed: bool = False) -> jax.Array:
    """EID credit (S2.3, or S2.9 with ``signed``) of a layer whose current is
    ``I_t = op(x_t, weight)``, shaped like ``weight``; the inputs are not checked.

    ``c = |W| * sum_t |g_t|`` with ``g_t`` the VJP of ``w -> op(e_t, w)`` at ``weight``
    applied to ``d_t`` (cast to the dtype of ``op``'s output): the layer's weight gradient
    at the trace ``e_t``, for all ``t`` at once (``jax.vmap`` over ``t``).  Signed:
    ``c = |W| * |sum_t g_t|``, where ``sum_t g_t`` is the VJP of
    ``w -> vmap_t op(e_t, w)`` applied to ``d``: one weight gradient over the ``T * B``
    stacked steps (for a convolution JAX merges the mapped axis into the batch).

    Parameters
    ----------
    op : callable ``(x_t, weight) -> I_t``, without bias
    x : ``(T, B, ...)`` layer input
    d : ``(T, ...)`` ``dL/dI_t``, each step of ``op``'s output shape
    weight : the dense weight, in ``op``'s layout
    decay : trace decay in ``[0, 1]``
    signed : bool
        Sum over time before the absolute value (S2.9); a Python bool (static).

    Examples
    --------
    >>> x = jnp.ones((2, 1, 4)); d = jnp.ones((2, 1, 1)); w = jnp.full((1, 4), -2.0)
    >>> weight_grad_credit(lambda x_t, w: x_t @ w.T, x, d, w, 0.5).tolist()
    [[5.0, 5.0, 5.0, 5.0]]
    >>> d2 = jnp.array([[[1.0]], [[-1.0]]])   # |1 - 1.5| instead of 1 + 1.5
    >>> weight_grad_credit(lambda x_t, w: x_t @ w.T, x, d2, w, 0.5, signed=True).tolist()
    [[1.0, 1.0, 1.0, 1.0]]
    """
    traces = presynaptic_trace(x, decay)
    if signed:
        out, pullback = jax.vjp(lambda w: jax.vmap(op, in_axes=(0, None))(traces, w), weight)
        total = pullback(d if d.dtype == out.dtype else d.astype(out.dtype))[0]
        return jnp.abs(weight) * jnp.abs(total)

    def weight_grad(e_t: jax.Array, d_t: jax.Array) -> jax.Array:
        out, pullback = jax.vjp(lambda w: op(e_t, w), weight)
        return pullback(d_t if d_t.dtype == out.dtype else d_t.astype(out.dtype))[0]

    per_step = jax.vmap(weight_grad)(traces, d)
    return jnp.abs(weight) * jnp.sum(jnp.abs(per_step), axis=0)


def conv_credit(x: jax.Array, d: jax.Array, weight: jax.Array, node: Node,
                decay: jax.Array | float, signed: bool = False) -> jax.Array:
    """EID credit of a conv layer (S2.3, or S2.9 with ``signed``) in block layout
    ``(out, k, k, in)``.

    ``c = |W| * sum_t |g_t|`` with ``g_t[o, c, a, b] = sum_{n, i, j} d_t[n, o, i, j]
    epad_t[n, c, i s + a, j s + b]``, the weight gradient of the convolution at input
    ``e_t`` and output gradient ``d_t``; signed ``c = |W| * |sum_t g_t|``, one weight
    gradient of the stacked steps (`weight_grad_credit` of `snn_ops.conv2d`).

    Parameters
    ----------
    x : ``(T, B, C, H, W)`` layer input
    d : ``(T, B, O, Ho, Wo)`` ``dL/dI_t``
    weight : ``(O, C, k, k)`` dense weight
    node : the layer (stride, padding)
    decay : trace decay in ``[0, 1]``
    signed : sum over time before the absolute value (S2.9)
    """
    credit = weight_grad_credit(lambda e_t, w: conv2d(e_t, w, node), x, d, weight, decay,
                                signed)
    return jnp.transpose(credit, (0, 2, 3, 1))


def layer_credit(node: Node, x: jax.Array, static: bool, d: jax.Array, weight: jax.Array,
                 decay: jax.Array | float, signed: bool = False) -> jax.Array:
    """EID credit of one weighted layer from its input ``x`` (``static``: ``(B, ...)``, the
    same at every step), ``d`` ``(T, B, ...)`` and the dense ``weight`` (S2.3; S2.9 with
    ``signed``)."""
    if static:
        x = jnp.broadcast_to(x, (d.shape[0],) + x.shape)
    if node.op == "linear":
        return eligibility_credit(x, d, weight, decay, signed)
    return conv_credit(x, d, weight, node, decay, signed)
