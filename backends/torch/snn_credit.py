"""EID credits of a graph's layers on torch tensors (SPEC S2.1-S2.3, S2.9, S5.5).

For a layer with input ``x_t`` and learning signal ``d_t = dL/dI_t`` (from autograd),
``e_t = lam e_{t-1} + x_t`` (``e_0 = 0``) and

    c[o, j] = |W[o, j]| * sum_t | sum_b d_t[b, o] e_t[b, j] |       (S2.3)
    c[o, j] = |W[o, j]| * | sum_t sum_b d_t[b, o] e_t[b, j] |       (S2.9, signed)

with the dense ``W``.  A linear layer uses the torch backend's `eligibility_credit`; for
a conv layer the inner sum over the unfolded input is the conv weight gradient of
``(e_t, d_t)`` (of the stacked steps in the signed case;
`spikenm.backends.torch.credit.conv_credit`, shared with the PyTorch module path),
returned in block layout ``(out, k, k, in)`` (`spikenm.api.to_block_layout`).

Data-parallel training (S5.14) splits the batch ``b`` over workers, so the inner sums
must be summed over the workers before the absolute value: `step_sums` gives a worker's
inner sums ``S_t = sum_b d_t[b] e_t[b]`` per step (one time-summed ``S`` when signed),
the caller all-reduces them, and `credit_from_sums` applies ``|W| * sum_t |S_t|`` (or
``|W| * |S|``).
"""

from __future__ import annotations

import torch

from spikenm.snn.graph import Node

from . import credit
from .eid import eligibility_credit

__all__ = ["conv_credit", "layer_credit", "step_sums", "credit_from_sums"]


def conv_credit(x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, stride: int,
                padding: int, decay: float, signed: bool = False) -> torch.Tensor:
    """EID credit of a conv layer (S2.3, or S2.9 with ``signed``) in block layout
    ``(O, k, k, C)``.

    ``c = |W| * sum_t | conv_weight_grad(e_t, d_t) |`` where
    ``conv_weight_grad(e, d)[o, c, a, b] = sum_{n, i, j} d[n, o, i, j]
    epad[n, c, i s + a, j s + b]``; signed: ``c = |W| * | conv_weight_grad(e, d) |`` over
    the ``T * B`` stacked steps (`spikenm.backends.torch.credit.conv_credit`).

    Parameters
    ----------
    x : ``(T, B, C, H, W)`` layer input
    d : ``(T, B, O, Ho, Wo)`` ``dL/dI_t``
    weight : ``(O, C, k, k)`` dense weight
    stride, padding : the layer's geometry (zero padding)
    decay : trace decay in ``[0, 1]``
    signed : sum over time before the absolute value (S2.9)

    Examples
    --------
    >>> x = torch.ones(2, 1, 1, 3, 3); d = torch.ones(2, 1, 1, 3, 3)
    >>> conv_credit(x, d, torch.ones(1, 1, 3, 3), 1, 1, 0.0)[0, 1, 1].tolist()
    [18.0]
    """
    c = credit.conv_credit(x, d, weight, decay, stride=stride, padding=padding,
                           signed=signed)
    return c.permute(0, 2, 3, 1).contiguous()


def layer_credit(node: Node, x: torch.Tensor, static: bool, d: torch.Tensor,
                 weight: torch.Tensor, decay: float, signed: bool = False) -> torch.Tensor:
    """EID credit of one ``linear``/``conv`` node from its input ``x`` (static ``(B, ...)``
    stands for its repetition over the ``T = d.shape[0]`` steps), ``d_t`` ``(T, B, ...)``
    and the dense weight (S2.3; S2.9 with ``signed``)."""
    if static:
        x = x.expand((d.shape[0],) + tuple(x.shape))
    weight = weight.detach()
    if node.op == "linear":
        return eligibility_credit(x, d, weight, decay, signed)
    return conv_credit(x, d, weight, node.stride, node.padding, decay, signed)


def step_sums(node: Node, x: torch.Tensor, static: bool, d: torch.Tensor,
              weight: torch.Tensor, decay: float, signed: bool = False) -> torch.Tensor:
    """The inner sums of S2.3 of one ``linear``/``conv`` node on this worker's samples:
    ``S_t = sum_b d_t[b]^T e_t[b]`` ``(T, O, K)`` (conv: the conv weight gradient of
    ``(e_t, d_t)``, ``(T, O, C, k, k)``), or with ``signed`` the time sum
    ``(1, *weight.shape)`` (S2.9).  Summed over the workers, `credit_from_sums` turns
    them into the credit of the global batch (S5.14).

    Examples
    --------
    >>> from spikenm.snn import mlp
    >>> node = mlp((4,), 3, (2,)).layer_node(0)
    >>> x = torch.ones(2, 3, 4); d = torch.ones(2, 3, 2); w = torch.ones(2, 4)
    >>> half = step_sums(node, x[:, :1], False, d[:, :1], w, 0.5)
    >>> rest = step_sums(node, x[:, 1:], False, d[:, 1:], w, 0.5)
    >>> bool(torch.equal(credit_from_sums(node, half + rest, w),
    ...                  layer_credit(node, x, False, d, w, 0.5)))
    True
    """
    if static:
        x = x.expand((d.shape[0],) + tuple(x.shape))
    geometry = (None if node.op == "linear"
                else dict(stride=node.stride, padding=node.padding))
    return credit.step_sums(x, d, weight, decay, signed, geometry)


def credit_from_sums(node: Node, sums: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The credit ``|W| * sum_t |S_t|`` (S2.3; signed, S2.9: ``|W| * |S|`` of the one
    time-summed ``S``) from the inner sums of `step_sums` summed over the workers; a conv
    credit in block layout ``(O, k, k, C)``."""
    c = credit.credit_from_sums(sums, weight)
    return c if node.op == "linear" else c.permute(0, 2, 3, 1).contiguous()
