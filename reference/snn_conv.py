"""Conv and pooling pieces of the reference model backend (SPEC S4.2, S4.6), channels-last.

A conv layer is a matrix product on im2col columns in *block layout* ``(kh, kw, in)``
(SPEC S0.2), so the same columns give the current, the weight gradient and the EID credit:

    cols[(n, i, j), (a, b, c)] = xpad[n, i*s + a, j*s + b, c]
    I[(n, i, j), o] = sum_{a, b, c} cols[(n, i, j), (a, b, c)] * Wb[o, (a, b, c)]

with ``Wb = W.transpose(0, 2, 3, 1)`` flattened (``W`` in ``(out, in, k, k)``).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv_weight_block", "conv_weight_unblock", "conv_out_size", "im2col", "col2im",
           "pool_forward", "pool_backward"]


def conv_weight_block(weight: np.ndarray) -> np.ndarray:
    """``(out, in, k, k)`` -> ``(out, k*k*in)`` in block layout ``(kh, kw, in)``."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def conv_weight_unblock(blocks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `conv_weight_block` for a weight of ``shape`` ``(out, in, k, k)``."""
    o, c, k, _ = shape
    return np.ascontiguousarray(blocks.reshape(o, k, k, c).transpose(0, 3, 1, 2))


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output height (width) of a conv over ``size`` rows (columns)."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int
           ) -> tuple[np.ndarray, tuple[int, int]]:
    """Columns ``(N * Ho * Wo, k * k * C)`` of channels-last ``x`` ``(N, H, W, C)``.

    Examples
    --------
    >>> cols, (ho, wo) = im2col(np.arange(9.0).reshape(1, 3, 3, 1), 3, 1, 1)
    >>> cols.shape, (ho, wo), cols[4].tolist() == list(range(9))
    ((9, 9), (3, 3), True)
    """
    n, h, w, c = x.shape
    p = padding
    if kernel == 1 and p == 0:  # a 1x1 conv reads every stride-th pixel
        sub = x[:, ::stride, ::stride]
        ho, wo = sub.shape[1], sub.shape[2]
        return np.ascontiguousarray(sub).reshape(n * ho * wo, c), (ho, wo)
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    win = sliding_window_view(xp, (kernel, kernel), axis=(1, 2))  # (N, H', W', C, k, k)
    win = win[:, ::stride, ::stride]
    ho, wo = win.shape[1], win.shape[2]
    cols = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * ho * wo, -1)
    return cols, (ho, wo)


@numba.njit(cache=True)
def _col2im_kernel(g, out, kernel, stride):  # type: ignore[no-untyped-def]
    n, ho, wo = g.shape[0], g.shape[1], g.shape[2]
    c = g.shape[5]
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for a in range(kernel):
                    for e in range(kernel):
                        row, col = i * stride + a, j * stride + e
                        for ch in range(c):
                            out[b, row, col, ch] += g[b, i, j, a, e, ch]


def col2im(cols: np.ndarray, in_shape: tuple[int, ...], kernel: int, stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of `im2col`: sums column gradients back into ``(N, H, W, C)``
    (a Numba loop over the columns in their memory order)."""
    n, h, w, c = in_shape
    p = padding
    ho = conv_out_size(h, kernel, stride, p)
    wo = conv_out_size(w, kernel, stride, p)
    if kernel == 1 and p == 0:
        out = np.zeros((n, h, w, c), cols.dtype)
        out[:, ::stride, ::stride] = cols.reshape(n, ho, wo, c)
        return out
    g = np.ascontiguousarray(cols).reshape(n, ho, wo, kernel, kernel, c)
    out = np.zeros((n, h + 2 * p, w + 2 * p, c), cols.dtype)
    _col2im_kernel(g, out, kernel, stride)
    return out[:, p:p + h, p:p + w] if p else out


def pool_forward(x: np.ndarray, q: int) -> np.ndarray:
    """Average pooling of channels-last ``(N, H, W, C)`` (S4.6): ``q x q`` windows with
    stride ``q`` (H, W multiples of ``q``), or over the whole map for ``q = 0``.

    Examples
    --------
    >>> pool_forward(np.arange(16.0).reshape(1, 4, 4, 1), 2)[0, :, :, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    >>> pool_forward(np.arange(16.0).reshape(1, 4, 4, 1), 0).shape
    (1, 1, 1, 1)
    """
    n, h, w, c = x.shape
    if q == 0:
        return x.mean(axis=(1, 2), keepdims=True)
    return x.reshape(n, h // q, q, w // q, q, c).mean(axis=(2, 4))


def pool_backward(g: np.ndarray, q: int, in_shape: tuple[int, ...]) -> np.ndarray:
    """Gradient of `pool_forward` for an input of ``in_shape``: each pooled gradient
    spread as ``1/q^2`` on its window (``1/(H W)`` on the whole map for ``q = 0``)."""
    n, h, w, c = in_shape
    if q == 0:
        return np.broadcast_to(g / g.dtype.type(h * w), in_shape).copy()
    spread = np.repeat(np.repeat(g, q, axis=1), q, axis=2)
    return spread / g.dtype.type(q * q)
