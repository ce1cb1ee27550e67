"""The forward pass of a spiking `spikenm.snn.Graph` on JAX arrays (SPEC S4.1-S4.9,
S4.13, S4.14), written once for autodiff: `forward` is traced inside the model backend's
compiled step (`spikenm.backends.jax.snn`), and ``jax.value_and_grad`` of its loss gives
BPTT through the LIF scans, batch norm, pooling and residual joins (the gradient of a node
read by several nodes is the sum of theirs).

Activations are time-major ``(T, B, *shape)`` channels-first.  A direct-encoded input
``(B, *input_shape)`` is shown at every step (S4.7), so it stays *static* -- one copy
without the time axis -- through every node that acts on each step alone (``linear``,
``conv``, ``pool``, ``flatten``, ``add`` of static inputs, and ``bn``, whose statistics
over the repeated array equal those over one copy, with ``n`` counting the ``T``
repeats); the first ``lif`` node, an ``add`` with a time-major input, or an EID probe
broadcasts it over ``T``.  The numbers are those of the input repeated ``T`` times.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp

from spikenm.snn.graph import WEIGHTED, Graph
from spikenm.snn.neuron import LIFParams

from . import snn_ops as ops
from .snn_lif import lif_over_time

__all__ = ["Pass", "forward", "cross_entropy", "correct_count"]


class Pass(NamedTuple):
    """One forward pass.

    Attributes
    ----------
    logits : ``(B, classes)``, ``(1/T) sum_t I_t`` of the readout (S4.8)
    spikes : ``(T, B, *shape)`` spikes of every ``lif`` node, in node order
    buffers : running statistics after a train-mode pass (empty in eval mode)
    inputs : layer ordinal -> ``(input, static)`` of the layers asked for in ``keep``
    """

    logits: jax.Array
    spikes: tuple[jax.Array, ...]
    buffers: dict[str, jax.Array]
    inputs: dict[int, tuple[jax.Array, bool]]


def _over_time(a: jax.Array, static: bool, t_steps: int) -> jax.Array:
    """``a`` as ``(T, B, ...)``: a static activation repeated over ``t``."""
    return jnp.broadcast_to(a, (t_steps,) + a.shape) if static else a


def forward(graph: Graph, lif: LIFParams, params: Mapping[str, jax.Array],
            buffers: Mapping[str, jax.Array], x: jax.Array, static: bool, train: bool,
            probes: Mapping[int, jax.Array], keep: tuple[int, ...] = ()) -> Pass:
    """Run ``graph`` on ``x`` (``static``: direct-encoded ``(B, *input_shape)``).

    ``train`` selects the batch-norm mode (S4.13).  ``probes[k]`` (zeros of the shape
    ``(T, B, *out)`` of layer ``k``'s current) is added to the current of weighted layer
    ``k``, before any batch norm, so the gradient w.r.t. it is ``d_t = dL/dI_t`` (S2.2).
    The inputs of the layers in ``keep`` are returned for their EID credits.
    """
    t_steps = lif.time_steps
    layer_of = {node: k for k, node in enumerate(graph.layers)}
    norm_of = {node: j for j, node in enumerate(graph.norms)}
    values: list[jax.Array] = []
    statics: list[bool] = []
    spikes: list[jax.Array] = []
    new_buffers: dict[str, jax.Array] = {}
    inputs: dict[int, tuple[jax.Array, bool]] = {}

    def source(j: int) -> tuple[jax.Array, bool]:
        return (x, static) if j < 0 else (values[j], statics[j])

    for i, node in enumerate(graph.nodes):
        a, s = source(node.inputs[0])
        lead = 1 if s else 2
        if node.op in WEIGHTED:
            k = layer_of[i]
            weight = params[f"layer{k}.weight"]
            bias = params.get(f"layer{k}.bias") if node.bias else None
            if k in keep:
                inputs[k] = (a, s)
            out = (ops.linear(a, weight, bias) if node.op == "linear"
                   else ops.conv(a, weight, bias, node, lead))
            if k in probes:
                out, s = _over_time(out, s, t_steps) + probes[k], False
        elif node.op == "bn":
            j = norm_of[i]
            gamma, beta = params[f"bn{j}.gamma"], params[f"bn{j}.beta"]
            rm, rv = buffers[f"bn{j}.running_mean"], buffers[f"bn{j}.running_var"]
            if train:
                out, new_buffers[f"bn{j}.running_mean"], new_buffers[f"bn{j}.running_var"] = \
                    ops.batch_norm_train(a, gamma, beta, rm, rv, lead, t_steps if s else 1)
            else:
                out = ops.batch_norm_eval(a, gamma, beta, rm, rv, lead)
        elif node.op == "pool":
            out = ops.pool(a, node.window)
        elif node.op == "flatten":
            out = ops.flatten(a, lead)
        elif node.op == "add":
            terms = [source(j) for j in node.inputs]
            s = all(st for _, st in terms)
            out = terms[0][0] if s else _over_time(*terms[0], t_steps)
            for value, st in terms[1:]:
                out = out + (value if s else _over_time(value, st, t_steps))
        elif node.op == "lif":
            out, s = lif_over_time(_over_time(a, s, t_steps), lif), False
            spikes.append(out)
        else:  # Graph construction refuses unknown ops
            raise ValueError(f"node {i} has unknown op {node.op!r}")
        values.append(out)
        statics.append(s)
    readout = values[-1]
    logits = readout if statics[-1] else jnp.mean(readout, axis=0)
    return Pass(logits, tuple(spikes), new_buffers, inputs)


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample ``logsumexp(logits_b) - logits_b[y_b]`` (S4.8)."""
    picked = jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - picked


def correct_count(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Samples whose first largest logit is the label (S4.8)."""
    return jnp.sum(jnp.argmax(logits, axis=1) == y)
