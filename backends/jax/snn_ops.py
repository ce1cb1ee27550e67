"""The layer operations of a spiking `spikenm.snn.Graph` on JAX arrays (SPEC S4.2, S4.6,
S4.13, S4.14), one function per formula.

Every function takes an activation with ``lead`` leading axes -- ``lead = 2`` for a
time-major ``(T, B, *shape)`` activation, ``lead = 1`` for a *static* ``(B, *shape)`` one
(a direct-encoded input and what is computed from it before the first LIF node: the same
at every step, S4.7) -- and keeps them.  Products use ``Precision.HIGHEST`` (no reduced
precision on accelerators).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from spikenm.snn.graph import BN_EPS, BN_MOMENTUM, Node

__all__ = ["linear", "conv2d", "conv", "batch_norm_train", "batch_norm_eval", "pool",
           "flatten"]

HIGHEST = lax.Precision.HIGHEST


def linear(a: jax.Array, weight: jax.Array, bias: jax.Array | None) -> jax.Array:
    """``I = a W^T + b`` over the last axis (S4.2); ``weight`` is ``(out, in)``."""
    out = jnp.matmul(a, weight.T, precision=HIGHEST)
    return out if bias is None else out + bias


def conv2d(a: jax.Array, weight: jax.Array, node: Node) -> jax.Array:
    """Cross-correlation of ``a`` ``(N, C, H, W)`` with ``weight`` ``(O, C, k, k)``,
    ``node``'s stride and zero padding, no bias."""
    p = node.padding
    return lax.conv_general_dilated(
        a, weight, window_strides=(node.stride, node.stride), padding=((p, p), (p, p)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=HIGHEST)


def conv(a: jax.Array, weight: jax.Array, bias: jax.Array | None, node: Node, lead: int
         ) -> jax.Array:
    """``I = conv2d(a, W) + b`` of ``(*lead, C, H, W)`` (S4.2); the leading axes are merged
    into one batch of images for a single convolution."""
    merged = a.reshape((-1,) + a.shape[lead:])
    out = conv2d(merged, weight, node)
    if bias is not None:
        out = out + bias[:, None, None]
    return out.reshape(a.shape[:lead] + out.shape[1:])


def _per_channel(v: jax.Array, rank: int) -> jax.Array:
    """A ``(C,)`` vector shaped to broadcast over a sample of ``rank`` axes ``(C, ...)``."""
    return v.reshape(v.shape + (1,) * (rank - 1))


def batch_norm_train(a: jax.Array, gamma: jax.Array, beta: jax.Array,
                     running_mean: jax.Array, running_var: jax.Array, lead: int,
                     repeats: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Train-mode batch norm over batch and time together (S4.13).

    Per channel (axis ``lead``), over the ``n`` entries of every other axis:
    ``mu = mean(a)``, ``var = mean((a - mu)^2)``,
    ``y = gamma (a - mu) / sqrt(var + eps) + beta``; autodiff of these lines is the
    backward pass of S4.13.  ``repeats`` is the number of time steps a static activation
    stands for (``T``; 1 for a time-major one): its mean and biased variance are those of
    the repeated array and ``n`` counts the repeats.  Returns ``y`` and the new running
    statistics ``0.9 rm + 0.1 mu`` and ``0.9 rv + 0.1 var n / (n - 1)`` (no gradient).

    Raises
    ------
    ValueError
        ``n < 2`` (the unbiased variance is undefined).
    """
    axes = tuple(i for i in range(a.ndim) if i != lead)
    n = repeats * math.prod(a.shape[i] for i in axes)
    if n < 2:
        raise ValueError(f"batch norm of an activation of shape {tuple(a.shape)} has "
                         f"n = {n} entries per channel; train mode needs n >= 2 (S4.13)")
    mu = jnp.mean(a, axis=axes)
    centered = a - jnp.expand_dims(mu, axes)
    var = jnp.mean(centered * centered, axis=axes)
    rank = a.ndim - lead
    y = (_per_channel(gamma / jnp.sqrt(var + BN_EPS), rank) * centered
         + _per_channel(beta, rank))
    mu_c, var_c = lax.stop_gradient(mu), lax.stop_gradient(var)
    new_mean = (1.0 - BN_MOMENTUM) * running_mean + BN_MOMENTUM * mu_c
    new_var = (1.0 - BN_MOMENTUM) * running_var + BN_MOMENTUM * var_c * (n / (n - 1))
    return y, new_mean, new_var


def batch_norm_eval(a: jax.Array, gamma: jax.Array, beta: jax.Array,
                    running_mean: jax.Array, running_var: jax.Array, lead: int
                    ) -> jax.Array:
    """Eval-mode batch norm: ``gamma (a - rm) / sqrt(rv + eps) + beta`` per channel
    (S4.13)."""
    rank = a.ndim - lead
    scale = _per_channel(gamma / jnp.sqrt(running_var + BN_EPS), rank)
    return scale * (a - _per_channel(running_mean, rank)) + _per_channel(beta, rank)


def pool(a: jax.Array, window: int) -> jax.Array:
    """``q x q`` average pooling, stride ``q``, of ``(..., C, H, W)`` (S4.6); ``window = 0``
    is global average pooling to ``(..., C, 1, 1)`` (S4.14)."""
    if window == 0:
        return jnp.mean(a, axis=(-2, -1), keepdims=True)
    *lead, c, h, w = a.shape
    q = window
    return a.reshape(*lead, c, h // q, q, w // q, q).mean(axis=(-3, -1))


def flatten(a: jax.Array, lead: int) -> jax.Array:
    """``(*lead, C, H, W) -> (*lead, C * H * W)`` in ``C, H, W`` order (S4.2)."""
    return a.reshape(a.shape[:lead] + (-1,))
