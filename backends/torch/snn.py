"""PyTorch model backend of the trainer: a spiking MLP / conv net trained by BPTT with
autograd (SPEC S4), implementing `spikenm.train.model_backend.ModelBackend`.

Activations are time-major ``[T, B, ...]`` in torch's channels-first layout, so a Linear
layer after a conv layer sees ``(C, H, W)``-ordered features by a plain reshape (S4.2).
Per layer, the currents of all ``T`` steps are one product (the time axis merged into the
batch axis; a static, direct-encoded input is multiplied once and broadcast over ``T``):

    I_t = x_t W^T + b                      (Linear)
    I_t = conv2d(x_t, W, stride, padding) + b   (Conv2d, cross-correlation)

then the LIF recurrence of `spikenm.backends.torch.snn_lif` runs over ``t``.  The readout
returns ``logits = (1/T) sum_t I_t`` and the loss is the batch-mean cross-entropy (S4.8).
One ``torch.autograd.grad`` call gives ``dL/dW_eff``, ``dL/db`` and, for EID, the learning
signals ``d_t = dL/dI_t`` of the requested layers (the gradient w.r.t. their current
tensors).  Everything stays on the tensors' device; only the loss, the correct count and
the firing rates are copied to the host, in one transfer.

The module itself is the backend object (``MODEL_BACKEND``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikenm.train.config import LIFConfig
from spikenm.train.model_backend import (
    check_call,
    Arch, EIDRequest, EvalResult, LayerParams, LayerSpec, StepResult,
)

from . import arrays
from .eid import eligibility_credit
from .snn_lif import lif_over_time

__all__ = ["name", "from_numpy", "to_numpy", "forward_backward", "evaluate",
           "conv_credit", "MODEL_BACKEND"]

name = "torch"


def from_numpy(a: np.ndarray) -> torch.Tensor:
    """``a`` as a CPU torch tensor with the same dtype and values (a copy)."""
    return arrays.from_numpy(a)


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A NumPy copy of ``x``."""
    return arrays.to_numpy(x)






def _current(spec: LayerSpec, p: LayerParams, a: torch.Tensor, lead: int) -> torch.Tensor:
    """Synaptic current (S4.2) of input ``a`` ``(*lead, ...)``, leading axes kept."""
    if spec.kind == "linear":
        return F.linear(a, p.weight, p.bias)
    merged = a.reshape((-1,) + tuple(a.shape[lead:]))
    out = F.conv2d(merged, p.weight, p.bias, stride=spec.stride, padding=spec.padding)
    return out.reshape(tuple(a.shape[:lead]) + tuple(out.shape[1:]))



def _pool(s: torch.Tensor, q: int) -> torch.Tensor:
    """``q x q`` average pooling (stride ``q``) of spikes ``(T, B, C, H, W)`` (S4.6)."""
    pooled = F.avg_pool2d(s.reshape((-1,) + tuple(s.shape[2:])), q)
    return pooled.reshape(tuple(s.shape[:2]) + tuple(pooled.shape[1:]))


@dataclass
class _Pass:
    """One forward pass: logits, spikes and, per layer, its input and its currents."""

    logits: torch.Tensor
    spikes: list[torch.Tensor]        # (T, B, ...) per LIF layer, before pooling
    inputs: list[torch.Tensor]        # layer input, (B, ...) when static else (T, B, ...)
    static: list[bool]
    currents: list[torch.Tensor]      # (T, B, ...) per layer


def _forward(arch: Arch, params: tuple[LayerParams, ...], x: torch.Tensor, lif: LIFConfig,
             static: bool) -> _Pass:
    """The network of S4 on ``x`` (``static``: ``(B, ...)`` shown at every step)."""
    t_steps = lif.time_steps
    last = len(arch.layers) - 1
    a = x
    spikes: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    statics: list[bool] = []
    currents: list[torch.Tensor] = []
    for index, (spec, p) in enumerate(zip(arch.layers, params)):
        lead = 1 if static else 2
        if spec.kind == "linear":
            a = a.reshape(tuple(a.shape[:lead]) + (-1,))  # (C, H, W) order (S4.2)
        elif a.ndim != lead + 3:
            raise ValueError(f"conv layer {index} needs (C, H, W) inputs; it gets shape "
                             f"{tuple(a.shape[lead:])}")
        inputs.append(a)
        statics.append(static)
        current = _current(spec, p, a, lead)
        if static:  # x_t = x at every step (S4.7)
            current = current.expand((t_steps,) + tuple(current.shape))
        currents.append(current)
        if index == last:
            return _Pass(current.mean(dim=0), spikes, inputs, statics, currents)
        s = lif_over_time(current, lif)
        spikes.append(s)
        if spec.kind == "conv" and spec.pool > 1:
            s = _pool(s, spec.pool)
        a = s
        static = False
    raise ValueError("arch has no layers")


def _traced_input(a: torch.Tensor, static: bool, t_steps: int) -> torch.Tensor:
    """The layer input as ``(T, B, ...)`` (a static input repeated over ``t``)."""
    return a.expand((t_steps,) + tuple(a.shape)) if static else a


def conv_credit(x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, spec: LayerSpec,
                decay: float) -> torch.Tensor:
    """EID credit of a conv layer (SPEC S2.3) in block layout ``(out, k, k, in)``.

    ``e_t = decay e_{t-1} + x_t`` (``e_0 = 0``) on the input images, and

        c = |W| * sum_t | conv_weight_grad(e_t, d_t) |

    where ``conv_weight_grad(e, d)[o, c, a, b] = sum_{n, i, j} d[n, o, i, j]
    epad[n, c, i s + a, j s + b]`` is the weight gradient of the convolution -- the inner
    sum ``sum_b d_t[b, o] e_t[b, k]`` of S2.3 over im2col columns ``k = (a, b, c)``.

    Parameters
    ----------
    x : ``(T, B, C, H, W)`` layer input
    d : ``(T, B, O, Ho, Wo)`` ``dL/dI_t``
    weight : ``(O, C, k, k)`` dense weight
    spec : the layer's geometry
    decay : trace decay in ``[0, 1]``
    """
    trace = torch.zeros_like(x[0])
    total = torch.zeros_like(weight)
    shape = tuple(weight.shape)
    for t in range(x.shape[0]):
        trace = decay * trace + x[t]
        total = total + torch.abs(torch.nn.grad.conv2d_weight(
            trace, shape, d[t], stride=spec.stride, padding=spec.padding))
    return (torch.abs(weight) * total).permute(0, 2, 3, 1).contiguous()


def _credit(spec: LayerSpec, a: torch.Tensor, static: bool, d: torch.Tensor,
            weight: torch.Tensor, decay: float) -> torch.Tensor:
    """EID credit (S2.3) of one layer from its input, ``d_t`` and the dense weight."""
    t_steps = d.shape[0]
    x = _traced_input(a, static, t_steps)
    weight = weight.detach()
    if spec.kind == "linear":
        return eligibility_credit(x, d, weight, decay)
    return conv_credit(x, d, weight, spec, decay)


def _host_floats(values: list[torch.Tensor]) -> list[float]:
    """Scalars to Python floats in one device-to-host transfer."""
    return torch.stack([v.detach().to(torch.float64) for v in values]).tolist()


def forward_backward(arch: Arch, params: tuple[LayerParams, ...], x: torch.Tensor,
                     y: torch.Tensor, lif: LIFConfig, eid: EIDRequest | None = None
                     ) -> StepResult:
    """Loss, correct count, ``dL/dW_eff``, EID credits and firing rates (S4, S2.3)."""
    static, _ = check_call(arch, params, x, y, lif, arrays.dtype_name)
    eid_layers = () if eid is None else tuple(eid.layers)
    for layer in eid_layers:
        if not 0 <= layer < len(arch.layers):
            raise ValueError(f"EID layer {layer} does not exist; the arch has "
                             f"{len(arch.layers)} layers")
    leaves = tuple(LayerParams(p.weight.detach().requires_grad_(True),
                               p.bias.detach().requires_grad_(True)) for p in params)
    with torch.enable_grad():
        run = _forward(arch, leaves, x, lif, static)
        loss = F.cross_entropy(run.logits, y.long())
        wrt = [a for p in leaves for a in (p.weight, p.bias)]
        wrt += [run.currents[layer] for layer in eid_layers]
        grads = torch.autograd.grad(loss, wrt)
    n = len(leaves)
    layer_grads = tuple(LayerParams(grads[2 * i], grads[2 * i + 1]) for i in range(n))
    credits: dict[int, torch.Tensor] = {}
    if eid is not None:
        with torch.no_grad():
            for j, (layer, weight) in enumerate(zip(eid.layers, eid.weights)):
                credits[layer] = _credit(arch.layers[layer], run.inputs[layer].detach(),
                                         run.static[layer], grads[2 * n + j], weight,
                                         float(eid.decay))
    correct = (torch.argmax(run.logits.detach(), dim=1) == y).sum()
    host = _host_floats([loss, correct] + [s.detach().mean() for s in run.spikes])
    return StepResult(host[0], int(host[1]), layer_grads, credits, tuple(host[2:]))


def evaluate(arch: Arch, params: tuple[LayerParams, ...], x: torch.Tensor, y: torch.Tensor,
             lif: LIFConfig) -> EvalResult:
    """Forward pass only: summed loss, correct count and spike sums (S4.8, S4.9)."""
    static, batch = check_call(arch, params, x, y, lif, arrays.dtype_name)
    with torch.no_grad():
        run = _forward(arch, params, x, lif, static)
        loss_sum = F.cross_entropy(run.logits, y.long(), reduction="sum")
        correct = (torch.argmax(run.logits, dim=1) == y).sum()
        host = _host_floats([loss_sum, correct] + [s.sum() for s in run.spikes])
    return EvalResult(host[0], int(host[1]), int(batch), tuple(host[2:]),
                      tuple(int(s.numel()) for s in run.spikes))


MODEL_BACKEND: Any = sys.modules[__name__]
"""This module is the backend object."""
