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
    return torch.softmax(v, dim=-1)


def log_softmax_block(v: torch.Tensor) -> torch.Tensor:
    """``log softmax_block(v)_i = v_i - max v - log sum_j exp(v_j - max v)`` over the
    last axis of a ``(..., G, m)`` block tensor.

    Examples
    --------
    >>> log_softmax_block(torch.zeros(1, 2))
    tensor([[-0.6931, -0.6931]])
    """
    return torch.log_softmax(v, dim=-1)
