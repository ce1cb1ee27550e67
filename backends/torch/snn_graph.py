"""The forward pass of a spiking `spikenm.snn.graph.Graph` on torch tensors (SPEC S4).

Every node's output is either *static*, ``(B, *shape)`` -- the same at every time step,
as long as only a direct-encoded input (S4.7) and the stateless ops above it are involved
-- or time-major ``(T, B, *shape)`` (S4.1).  A static activation is computed once and
stands for its repetition over ``T``; it becomes time-major at the first ``lif`` node (or
at an ``add`` that also reads a time-major input), so a direct-encoded input gives the
numbers of the time-major input repeated ``T`` times at ``1/T`` of the first layers' cost.
The time axis is merged into the batch axis for every linear/conv/pool product.

Ops (S4.2, S4.6, S4.13, S4.14)::

    linear   I = x W^T + b
    conv     I = conv2d(x, W, stride, padding) + b          (cross-correlation)
    bn       y = gamma (a - mu) / sqrt(var + eps) + beta    per channel, statistics over
             the n = T * B * H * W entries (train) or the running statistics (eval)
    pool     q x q average pooling, stride q; window 0: mean over H and W
    flatten  (C, H, W) -> (C * H * W,) in C, H, W order
    add      elementwise sum of the inputs
    lif      spikes of `spikenm.backends.torch.snn_lif.lif_over_time`

With a `Shard` (data-parallel training, S5.14) the batch ``a`` is this worker's part of
the global batch, and the train-mode batch-norm statistics are those of the global batch:
``mu = sum_workers(sum a) / n`` and then ``var = sum_workers(sum (a - mu)^2) / n`` with
``n`` the global entry count, each sum a differentiable all-reduce inside the graph (its
backward is the all-reduce of the gradients), so every worker normalizes, differentiates
and updates its running statistics exactly as one process on the global batch would.

The readout (last ``linear`` node) gives ``logits = (1/T) sum_t I_t`` (S4.8).  Autograd
through these ops is the backward pass of S4.5, S4.6 and S4.13 (the batch-norm
statistics are differentiated, giving ``gamma / sqrt(var + eps) (gy - mean(gy) - xhat
mean(gy xhat))``); a node read by several nodes receives the sum of their gradients.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from spikenm.snn.graph import BN_EPS, BN_MOMENTUM, Graph, Node
from spikenm.snn.neuron import LIFParams

from .snn_lif import lif_over_time

__all__ = ["Pass", "Shard", "graph_forward", "batch_norm"]


@dataclass
class Pass:
    """One forward pass of a graph.

    Attributes
    ----------
    logits : ``(B, classes)``
    spikes : list of ``(T, B, *shape)``, one per ``lif`` node in node order
    buffers : dict
        Running statistics after the batch (train mode); empty in eval mode.
    inputs : dict layer ordinal -> (tensor, static)
        Input of every layer listed in ``keep``.
    currents : dict layer ordinal -> tensor ``(T, B, *shape)``
        Output (the current ``I_t``, before any batch norm) of every layer in ``keep``,
        always time-major so that its gradient is ``d_t = dL/dI_t`` per step (S2.2).
    """

    logits: torch.Tensor
    spikes: list[torch.Tensor]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    inputs: dict[int, tuple[torch.Tensor, bool]] = field(default_factory=dict)
    currents: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Shard:
    """This worker's part of a batch split over data-parallel workers (S5.14).

    Attributes
    ----------
    local : int
        Samples of the batch on this worker (``>= 1``).
    total : int
        Samples of the global batch (the sum of ``local`` over the workers).
    sum : callable tensor -> tensor
        The elementwise sum of a tensor over the workers, differentiable (its backward
        is the same sum of the gradients), with a result identical on every worker.
    """

    local: int
    total: int
    sum: Callable[[torch.Tensor], torch.Tensor]


def _lead(static: bool) -> int:
    """Number of leading (time, batch) axes."""
    return 1 if static else 2


def _repeat(a: torch.Tensor, t_steps: int) -> torch.Tensor:
    """A static ``(B, ...)`` activation as its time-major repetition ``(T, B, ...)``."""
    return a.expand((t_steps,) + tuple(a.shape))


def _weighted(node: Node, a: torch.Tensor, static: bool, weight: torch.Tensor,
              bias: torch.Tensor | None) -> torch.Tensor:
    """The current of a ``linear``/``conv`` node (S4.2), leading axes kept."""
    if node.op == "linear":
        return F.linear(a, weight, bias)
    lead = _lead(static)
    merged = a.reshape((-1,) + tuple(a.shape[lead:]))
    out = F.conv2d(merged, weight, bias, stride=node.stride, padding=node.padding)
    return out.reshape(tuple(a.shape[:lead]) + tuple(out.shape[1:]))


def batch_norm(a: torch.Tensor, static: bool, t_steps: int, gamma: torch.Tensor,
               beta: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
               train: bool, where: str, shard: Shard | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Batch norm over batch and time (S4.13) of ``a`` ``(T, B, C, ...)`` or, static,
    ``(B, C, ...)`` (counted as repeated over ``T``).

    Returns ``(y, new_running_mean, new_running_var)``; the running statistics are
    ``None`` in eval mode, where ``(running_mean, running_var)`` normalize.  With
    ``shard`` the train-mode statistics are those of the global batch (module docstring,
    S5.14).

    Raises
    ------
    ValueError
        In train mode, when a channel has fewer than 2 entries (``n = T B H W``).
    """
    lead = _lead(static)
    channels = a.shape[lead]
    view = (channels,) + (1,) * (a.ndim - lead - 1)
    if not train:
        scale = gamma / torch.sqrt(running_var + BN_EPS)
        return (a - running_mean.reshape(view)) * scale.reshape(view) + beta.reshape(view), \
            None, None
    entries = a.numel() // channels  # per channel, without the repetition over T
    if shard is not None:
        entries = entries // shard.local * shard.total
    n = entries * (t_steps if static else 1)
    if n < 2:
        raise ValueError(f"{where} normalizes n={n} entries per channel in train mode; "
                         f"batch norm needs n = T * B * H * W >= 2 (SPEC S4.13)")
    dims = tuple(d for d in range(a.ndim) if d != lead)
    if shard is None:
        mu = a.mean(dim=dims)
        centred = a - mu.reshape(view)
        var = (centred * centred).mean(dim=dims)
    else:  # the global batch's statistics (S5.14), two passes as above
        mu = shard.sum(a.sum(dim=dims)) / entries
        centred = a - mu.reshape(view)
        var = shard.sum((centred * centred).sum(dim=dims)) / entries
    xhat = centred / torch.sqrt(var + BN_EPS).reshape(view)
    y = gamma.reshape(view) * xhat + beta.reshape(view)
    with torch.no_grad():
        keep = 1.0 - BN_MOMENTUM
        new_mean = keep * running_mean + BN_MOMENTUM * mu.detach()
        new_var = keep * running_var + BN_MOMENTUM * var.detach() * (n / (n - 1))
    return y, new_mean, new_var


def _pool(a: torch.Tensor, static: bool, window: int) -> torch.Tensor:
    """``q x q`` average pooling, stride ``q`` (S4.6); ``window = 0``: global (S4.14)."""
    if window == 0:
        return a.mean(dim=(-2, -1), keepdim=True)
    lead = _lead(static)
    pooled = F.avg_pool2d(a.reshape((-1,) + tuple(a.shape[lead:])), window)
    return pooled.reshape(tuple(a.shape[:lead]) + tuple(pooled.shape[1:]))


def graph_forward(graph: Graph, params: Mapping[str, torch.Tensor],
                  buffers: Mapping[str, torch.Tensor], x: torch.Tensor, lif: LIFParams, *,
                  train: bool, static: bool, keep: Collection[int] = (),
                  potentials: list[torch.Tensor] | None = None,
                  shard: Shard | None = None) -> Pass:
    """Run ``graph`` on ``x`` (``static``: direct-encoded ``(B, *input_shape)``, else
    time-major ``(T, B, *input_shape)``), see the module docstring.

    ``keep`` lists the layer ordinals whose input and current are returned (for EID,
    S2.3).  With ``potentials`` (a list), every ``lif`` node appends its membrane
    potentials ``H_t`` to it.  ``shard``: ``x`` is this worker's part of a global batch
    whose batch-norm statistics are reduced over the workers (S5.14).  The inputs are
    assumed checked
    (`spikenm.snn.model.check_call`).
    """
    t_steps = lif.time_steps
    layer_of = {node_index: k for k, node_index in enumerate(graph.layers)}
    norm_of = {node_index: j for j, node_index in enumerate(graph.norms)}
    outs: list[tuple[torch.Tensor, bool]] = []
    result = Pass(logits=x, spikes=[])
    for i, node in enumerate(graph.nodes):
        ins = [(x, static) if j < 0 else outs[j] for j in node.inputs]
        a, st = ins[0]
        if node.op in ("linear", "conv"):
            k = layer_of[i]
            out = _weighted(node, a, st, params[f"layer{k}.weight"],
                            params.get(f"layer{k}.bias"))
            if k in keep:
                result.inputs[k] = (a, st)
                if st:
                    out, st = _repeat(out, t_steps), False
                result.currents[k] = out
        elif node.op == "bn":
            j = norm_of[i]
            out, mean, var = batch_norm(
                a, st, t_steps, params[f"bn{j}.gamma"], params[f"bn{j}.beta"],
                buffers[f"bn{j}.running_mean"], buffers[f"bn{j}.running_var"], train,
                f"{graph.name_of(i)} (node {i})", shard)
            if mean is not None and var is not None:
                result.buffers[f"bn{j}.running_mean"] = mean
                result.buffers[f"bn{j}.running_var"] = var
        elif node.op == "pool":
            out = _pool(a, st, node.window)
        elif node.op == "flatten":
            out = a.reshape(tuple(a.shape[:_lead(st)]) + (-1,))
        elif node.op == "add":
            if not all(s for _, s in ins):
                ins = [(_repeat(b, t_steps) if s else b, False) for b, s in ins]
                st = False
            out = functools.reduce(operator.add, [b for b, _ in ins])
        elif node.op == "lif":
            current = _repeat(a, t_steps) if st else a
            out, st = lif_over_time(current, lif, potentials), False
            result.spikes.append(out)
        else:  # pragma: no cover - Graph validates the ops
            raise ValueError(f"node {i}: unknown op {node.op!r}")
        outs.append((out, st))
    logits, st = outs[-1]
    result.logits = logits if st else logits.mean(dim=0)
    return result

