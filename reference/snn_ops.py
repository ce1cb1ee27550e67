"""Smooth layers of the reference model backend and their hand-written VJPs (SPEC S4.2,
S4.6, S4.13, S4.14).

Activations carry a merged leading axis ``M`` (``T * B`` rows in time-major order, or
``B`` rows for a direct-encoded, time-constant activation) followed by the per-sample
shape with the channel axis moved last: ``(M, F)`` features, ``(M, H, W, C)`` maps.  The
channels-last layout makes every matmul and conv one BLAS product over all time steps,
and batch norm a reduction over the leading axes.
"""

from __future__ import annotations

import numpy as np

from spikenm.snn.graph import BN_EPS, BN_MOMENTUM

from .snn_conv import col2im, conv_weight_block, conv_weight_unblock, im2col

__all__ = ["linear_forward", "linear_backward", "conv_forward", "conv_backward",
           "bn_train_forward", "bn_backward", "bn_running", "bn_eval_forward",
           "flatten_forward", "flatten_backward"]


def linear_forward(a: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``I = a W^T + b`` for ``a`` ``(M, in)`` (S4.2)."""
    out = a @ weight.T
    return out if bias is None else out + bias


def linear_backward(g: np.ndarray, a: np.ndarray, weight: np.ndarray, need_input: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dL/dW, dL/db, dL/da)`` from ``g = dL/dI`` ``(M, out)`` (S4.5)."""
    return g.T @ a, g.sum(axis=0), (g @ weight) if need_input else None


def conv_forward(a: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int,
                 padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Current ``(M, Ho, Wo, out)`` of channels-last maps ``a`` ``(M, H, W, in)`` and the
    im2col columns (block layout) it was computed from (S4.2)."""
    o, _, k, _ = weight.shape
    cols, (ho, wo) = im2col(a, k, stride, padding)
    out = cols @ conv_weight_block(weight).T
    if bias is not None:
        out += bias
    return out.reshape(a.shape[0], ho, wo, o), cols


def conv_backward(g: np.ndarray, cols: np.ndarray, in_shape: tuple[int, ...],
                  weight: np.ndarray, stride: int, padding: int, need_input: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dL/dW, dL/db, dL/da)`` of `conv_forward` from ``g`` ``(M, Ho, Wo, out)``."""
    o, _, k, _ = weight.shape
    g2 = g.reshape(-1, o)
    gw = conv_weight_unblock(g2.T @ cols, weight.shape)
    ga = None
    if need_input:
        ga = col2im(g2 @ conv_weight_block(weight), in_shape, k, stride, padding)
    return gw, g2.sum(axis=0), ga


def bn_train_forward(a: np.ndarray, gamma: np.ndarray, beta: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train-mode batch norm over every axis but the last (the channel), S4.13.

    Returns ``(y, xhat, inv, mu, var)`` with ``xhat`` flattened to ``(rows, C)`` and
    ``inv = 1 / sqrt(var + eps)``.  A time-constant activation gives the statistics of
    its repetition over ``T`` (the mean and the biased variance do not change).
    """
    c = a.shape[-1]
    flat = a.reshape(-1, c)
    mu = flat.mean(axis=0)
    diff = flat - mu
    var = (diff * diff).mean(axis=0)
    inv = 1.0 / np.sqrt(var + BN_EPS)
    xhat = diff * inv
    return (gamma * xhat + beta).reshape(a.shape), xhat, inv, mu, var


def bn_backward(g: np.ndarray, xhat: np.ndarray, inv: np.ndarray, gamma: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dL/dgamma, dL/dbeta, dL/dx)`` of `bn_train_forward` (S4.13)::

        dx = gamma / sqrt(var + eps) * (gy - mean(gy) - xhat * mean(gy * xhat))

    For a time-constant activation ``g`` is the gradient summed over ``t``; the formula
    over its ``B`` rows then equals the sum over ``t`` of the per-step formula over the
    ``T * B`` rows.
    """
    c = xhat.shape[-1]
    gy = g.reshape(-1, c)
    rows = gy.dtype.type(gy.shape[0])
    dbeta = gy.sum(axis=0)
    dgamma = (gy * xhat).sum(axis=0)
    dx = (gamma * inv) * (gy - dbeta / rows - xhat * (dgamma / rows))
    return dgamma, dbeta, dx.reshape(g.shape)


def bn_running(running_mean: np.ndarray, running_var: np.ndarray, mu: np.ndarray,
               var: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``rm <- 0.9 rm + 0.1 mu``, ``rv <- 0.9 rv + 0.1 var n / (n - 1)`` (S4.13) for
    ``n = count >= 2`` entries per channel."""
    keep = 1.0 - BN_MOMENTUM
    return (keep * running_mean + BN_MOMENTUM * mu,
            keep * running_var + BN_MOMENTUM * (var * (count / (count - 1))))


def bn_eval_forward(a: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                    running_mean: np.ndarray, running_var: np.ndarray) -> np.ndarray:
    """Eval-mode batch norm: ``gamma (a - rm) / sqrt(rv + eps) + beta`` (S4.13)."""
    return (a - running_mean) * (gamma / np.sqrt(running_var + BN_EPS)) + beta


def flatten_forward(a: np.ndarray) -> np.ndarray:
    """Channels-last ``(M, *spatial, C)`` -> ``(M, C * prod(spatial))`` in ``(C, H, W)``
    order (S4.14); ``(M, F)`` is returned as it is."""
    if a.ndim == 2:
        return a
    return np.ascontiguousarray(np.moveaxis(a, -1, 1)).reshape(a.shape[0], -1)


def flatten_backward(g: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of `flatten_forward` for an input of ``in_shape`` (channels-last)."""
    if len(in_shape) == 2:
        return g
    m, c = in_shape[0], in_shape[-1]
    return np.ascontiguousarray(np.moveaxis(g.reshape((m, c) + tuple(in_shape[1:-1])), 1, -1))
