"""EID credit of a convolution on torch tensors (SPEC S2.1-S2.3, S2.9), shared by the torch
model backend (`spikenm.backends.torch.snn_credit`) and the PyTorch module path
(`spikenm.backends.torch.nn_credit`).

For a conv layer with input ``x_t``, presynaptic trace ``e_t = lam e_{t-1} + x_t``
(``e_0 = 0``), learning signal ``d_t = dL/dI_t`` and dense weight ``W``:

    c = |W| * sum_t | conv_weight_grad(e_t, d_t) |        (S2.3)
    c = |W| * | conv_weight_grad(e, d) |                   (S2.9, signed)

where the conv weight gradient is S2.3's inner sum ``sum_b d_t[b, o] e_t[b, j]`` over the
unfolded input, and in the signed case ``e``, ``d`` are the traces and signals of all
``t`` stacked along the batch axis (``T * B`` samples): the time sum comes before the
absolute value, so one weight gradient replaces ``T`` of them.  The credit has the
framework layout ``(O, C / groups, *kernel)``.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["conv_weight_grad", "conv_credit", "step_sums", "credit_from_sums"]

Conv = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A layer's own convolution ``(input, weight) -> output``, without bias."""

_WEIGHT_GRAD = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight,
                3: torch.nn.grad.conv3d_weight}


def conv_weight_grad(e: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, *,
                     stride: int | tuple[int, ...], padding: int | tuple[int, ...] | str,
                     dilation: int | tuple[int, ...] = 1, groups: int = 1,
                     conv: Conv | None = None) -> torch.Tensor:
    """Weight gradient of a convolution at input ``e`` and output gradient ``d``:
    ``sum_{b, positions} d[b, o, ...] * patch(e)[b, c, ...]`` (the inner sum of S2.3 over
    the unfolded input), for 1-3 spatial axes.

    Parameters
    ----------
    e : ``(B, C, *space)`` input (a presynaptic trace)
    d : ``(B, O, *space_out)`` output gradient
    weight : ``(O, C / groups, *kernel)``
        The weight the gradient is taken at (only its shape matters for a convolution).
    stride, padding, dilation, groups : the convolution's geometry
    conv : callable ``(input, weight) -> output``, optional
        The layer's own convolution without bias, for padding that is not zeros given as
        numbers (``"same"``, ``"valid"``, a ``padding_mode`` other than ``"zeros"``): the
        result is then the vector-Jacobian product of ``W -> conv(e, W)``.  Without it,
        ``padding`` is zero padding and ``torch.nn.grad.conv{N}d_weight`` gives the
        gradient with no forward pass.
    """
    if conv is None:
        grad_fn = _WEIGHT_GRAD[weight.dim() - 2]
        return grad_fn(e, tuple(weight.shape), d, stride=stride, padding=padding,
                       dilation=dilation, groups=groups)
    w = weight.detach().requires_grad_(True)
    with torch.enable_grad():
        out = conv(e, w)
        (grad,) = torch.autograd.grad(out, w, d)
    return grad


def conv_credit(x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, decay: float, *,
                stride: int | tuple[int, ...], padding: int | tuple[int, ...] | str,
                dilation: int | tuple[int, ...] = 1, groups: int = 1,
                conv: Conv | None = None, signed: bool = False) -> torch.Tensor:
    """EID credit (S2.3, or S2.9 with ``signed``) of a conv layer, framework layout
    ``(O, C / groups, *kernel)``.

    ``e_t = decay e_{t-1} + x_t`` (``e_0 = 0``) on the input maps.  S2.3:
    ``c = |W| * sum_t |conv_weight_grad(e_t, d_t)|``, one weight gradient per step,
    accumulated (on CPU faster than one ``torch.func.vmap`` over ``t``).  S2.9
    (``signed``): ``c = |W| * |conv_weight_grad(e, d)|`` with the traces and signals of all
    steps stacked to ``T * B`` samples, one weight gradient in all.

    Parameters
    ----------
    x : ``(T, B, C, *space)`` layer input
    d : ``(T, B, O, *space_out)`` ``dL/dI_t``
    weight : the dense weight ``(O, C / groups, *kernel)``
    decay : trace decay in ``[0, 1]``
    stride, padding, dilation, groups, conv : the convolution, as in `conv_weight_grad`
    signed : bool
        Sum over time before the absolute value (S2.9).

    Examples
    --------
    >>> x = torch.ones(2, 1, 1, 3, 3); d = torch.ones(2, 1, 1, 3, 3)
    >>> conv_credit(x, d, torch.ones(1, 1, 3, 3), 0.0, stride=1, padding=1)[0, 0, 1, 1].item()
    18.0
    >>> d[1] = -1.0   # the two steps cancel in the signed credit
    >>> conv_credit(x, d, torch.ones(1, 1, 3, 3), 0.0, stride=1, padding=1,
    ...             signed=True).abs().max().item()
    0.0
    """
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                    conv=conv)
    if signed:
        traces = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        traces[0] = x[0]
        for t in range(1, x.shape[0]):  # e_t = x_t + decay e_{t-1}, in place
            torch.add(x[t], traces[t - 1], alpha=decay, out=traces[t])
        grad = conv_weight_grad(traces.flatten(0, 1), d.flatten(0, 1), weight, **geometry)
        return torch.abs(weight) * torch.abs(grad)
    trace = torch.zeros_like(x[0])
    total = torch.zeros_like(weight)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t]
        total = total + torch.abs(conv_weight_grad(trace, d[t], weight, **geometry))
    return torch.abs(weight) * total


def step_sums(x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, decay: float,
              signed: bool = False, geometry: dict | None = None) -> torch.Tensor:
    """The inner sums of S2.3 on this worker's samples, before any absolute value:
    ``S_t = sum_b d_t[b]^T e_t[b]`` ``(T, *weight.shape)`` (a conv: the weight gradient of
    ``(e_t, d_t)``), or with ``signed`` the one time-summed ``S`` ``(1, *weight.shape)``
    (S2.9).  Summed over the workers of a data-parallel run, `credit_from_sums` turns them
    into the credit of the global batch (S5.14).

    ``x`` ``(T, B, ...)`` is the layer input, ``d`` ``(T, B, ...)`` ``dL/dI_t``;
    ``geometry`` is None for a linear layer, else the keyword arguments of
    `conv_weight_grad` (stride, padding, dilation, groups, conv).

    Examples
    --------
    >>> x = torch.ones(2, 3, 4); d = torch.ones(2, 3, 2); w = torch.ones(2, 4)
    >>> parts = step_sums(x[:, :1], d[:, :1], w, 0.5) + step_sums(x[:, 1:], d[:, 1:], w, 0.5)
    >>> bool(torch.equal(credit_from_sums(parts, w), credit_from_sums(step_sums(x, d, w, 0.5), w)))
    True
    """
    weight = weight.detach()
    traces = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    traces[0] = x[0]
    for t in range(1, x.shape[0]):  # e_t = x_t + decay e_{t-1} (S2.1)
        torch.add(x[t], traces[t - 1], alpha=decay, out=traces[t])
    if signed:
        traces, d = traces.flatten(0, 1).unsqueeze(0), d.flatten(0, 1).unsqueeze(0)
    if geometry is None:
        return torch.stack([d[t].transpose(0, 1) @ traces[t] for t in range(d.shape[0])])
    return torch.stack([conv_weight_grad(traces[t], d[t], weight, **geometry)
                        for t in range(d.shape[0])])


def credit_from_sums(sums: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The credit ``|W| * sum_t |S_t|`` (S2.3; for the signed sums of `step_sums`, S2.9's
    ``|W| * |S|``) in the weight's framework layout."""
    return torch.abs(weight.detach()) * torch.abs(sums).sum(dim=0)
