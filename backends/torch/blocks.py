"""Block views of the last axis and the block softmax (SPEC notation) for torch tensors."""

from __future__ import annotations

import torch

__all__ = ["to_blocks", "from_blocks", "softmax_block", "log_softmax_block"]


def to_blocks(x: torch.Tensor, m: int) -> torch.Tensor:
    """View ``(..., K)`` as ``(..., G, m)`` with ``K = G * m``: block ``g`` is
    ``x[..., g*m : (g+1)*m]``.

    Examples
    --------
    >>> to_blocks(torch.arange(8), 4).shape
    torch.Size([2, 4])
    """
    return x.reshape(*x.shape[:-1], x.shape[-1] // m, m)


def from_blocks(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_blocks`: ``(..., G, w)`` back to ``(..., G * w)``.

    Examples
    --------
    >>> from_blocks(torch.zeros(3, 2, 4)).shape
    torch.Size([3, 8])
    """
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def softmax_block(v: torch.Tensor) -> torch.Tensor:
    """``softmax_block(v)_i = exp(v_i - max v) / sum_j exp(v_j - max v)`` over the last
    axis of a ``(..., G, m)`` block tensor.

    Examples
    --------
    >>> softmax_block(torch.zeros(1, 4))
    tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    m = v.shape[-1]
    if m > _ROWS_UP_TO or v.numel() == 0:
        return torch.softmax(v, dim=-1)
    rows = _rows(v)
    top = _row_max(rows)
    e = torch.exp(rows - top)
    return _unrows(e / _row_sum(e), v)


def log_softmax_block(v: torch.Tensor) -> torch.Tensor:
    """``log softmax_block(v)_i = v_i - max v - log sum_j exp(v_j - max v)`` over the
    last axis of a ``(..., G, m)`` block tensor.

    Examples
    --------
    >>> log_softmax_block(torch.zeros(1, 2))
    tensor([[-0.6931, -0.6931]])
    """
    m = v.shape[-1]
    if m > _ROWS_UP_TO or v.numel() == 0:
        return torch.log_softmax(v, dim=-1)
    rows = _rows(v)
    shifted = rows - _row_max(rows)
    return _unrows(shifted - torch.log(_row_sum(torch.exp(shifted))), v)


_ROWS_UP_TO = 16
"""Blocks of at most this many entries are computed in the ``(m, blocks)`` layout: a
reduction over a last axis of 4 or 8 is several times slower in torch than the same
reduction as ``m - 1`` elementwise operations across rows; the sums go in index order,
as the reference adds them."""


def _rows(v: torch.Tensor) -> torch.Tensor:
    """``(..., G, m)`` as a contiguous ``(m, blocks)`` tensor."""
    return v.reshape(-1, v.shape[-1]).t().contiguous()


def _unrows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return rows.t().reshape(like.shape)


def _row_max(rows: torch.Tensor) -> torch.Tensor:
    top = rows[0]
    for i in range(1, rows.shape[0]):
        top = torch.maximum(top, rows[i])
    return top


def _row_sum(rows: torch.Tensor) -> torch.Tensor:
    total = rows[0]
    for i in range(1, rows.shape[0]):
        total = total + rows[i]
    return total
