"""Block views of the last axis and the block softmax (SPEC notation) for torch tensors."""

from __future__ import annotations

import torch

__all__ = ["to_blocks", "from_blocks", "softmax_block", "log_softmax_block", "to_rows",
           "from_rows", "row_max", "row_sum"]


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
    if m > ROWS_UP_TO or v.numel() == 0:
        return torch.softmax(v, dim=-1)
    rows = to_rows(v, m)
    e = torch.exp(rows - row_max(rows))
    return from_rows(e / row_sum(e), v)


def log_softmax_block(v: torch.Tensor) -> torch.Tensor:
    """``log softmax_block(v)_i = v_i - max v - log sum_j exp(v_j - max v)`` over the
    last axis of a ``(..., G, m)`` block tensor.

    Examples
    --------
    >>> log_softmax_block(torch.zeros(1, 2))
    tensor([[-0.6931, -0.6931]])
    """
    m = v.shape[-1]
    if m > ROWS_UP_TO or v.numel() == 0:
        return torch.log_softmax(v, dim=-1)
    rows = to_rows(v, m)
    shifted = rows - row_max(rows)
    return from_rows(shifted - torch.log(row_sum(torch.exp(shifted))), v)


ROWS_UP_TO = 16
"""Blocks of at most this many entries are computed in the ``(m, blocks)`` layout: a
reduction over a last axis of 4 or 8 is several times slower in torch than the same
reduction as ``m - 1`` elementwise operations across rows; the sums go in index order,
as the reference adds them."""


def to_rows(x: torch.Tensor, m: int) -> torch.Tensor:
    """``(..., K)`` as the contiguous ``(m, B)`` layout: column ``b`` is block ``b`` (of
    all ``B = numel / m`` blocks in C order), row ``i`` its entry ``i``.  A reduction over
    a block is then an elementwise operation across ``m`` rows of length ``B``, which
    vectorizes; a last axis of length ``m`` does not.

    Examples
    --------
    >>> to_rows(torch.arange(8), 4)
    tensor([[0, 4],
            [1, 5],
            [2, 6],
            [3, 7]])
    """
    return x.reshape(-1, m).t().contiguous()


def from_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_rows`: ``(m, B)`` back to the shape of ``like``."""
    return rows.t().reshape(like.shape)


def row_max(rows: torch.Tensor) -> torch.Tensor:
    """The maximum over the ``m`` rows, shape ``(1, B)``."""
    top = rows[0:1]
    for i in range(1, rows.shape[0]):
        top = torch.maximum(top, rows[i : i + 1])
    return top


def row_sum(rows: torch.Tensor) -> torch.Tensor:
    """``((t_0 + t_1) + t_2) + ...`` over the ``m`` rows, shape ``(1, B)``: the
    reference's order of summation, elementwise across the columns."""
    total = rows[0:1]
    for i in range(1, rows.shape[0]):
        total = total + rows[i : i + 1]
    return total
