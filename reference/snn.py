"""The NumPy/Numba reference model backend: a spiking `Graph` with hand-written BPTT.

Implements `spikenm.snn.model.ModelBackend` (SPEC S4) on NumPy arrays; `model_backend`
creates it (``"cpu"`` only, S4.16).  The forward pass runs the nodes in order and keeps
what each backward step needs; the backward pass runs them in reverse, summing the
gradients of a node read by several nodes (S4.14).

Activations carry one merged leading axis: ``T * B`` rows in time-major order, so every
matmul and conv covers all time steps in one BLAS product, or ``B`` rows while an
activation is constant in time (a direct-encoded input, S4.7, and everything computed from
it before the first ``lif``).  A time-constant activation stands for its repetition over
``T``: a ``lif`` or ``add`` that meets it repeats it, and its gradient is the sum over
``t`` of the per-step gradients.  Batch norm over it has the statistics of the repetition
and counts ``n = T * B * H * W`` (S4.13).  Per-sample maps are channels-last (see
`spikenm.reference.snn_ops`).  The LIF recurrence and its surrogate backward are the
Numba kernels of `spikenm.reference.snn_lif`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from spikenm import api
from spikenm.snn.graph import Graph
from spikenm.snn.model import EIDRequest, EvalResult, StepResult, check_call
from spikenm.snn.neuron import LIFParams

from .snn_conv import conv_weight_block, pool_backward, pool_forward
from .snn_lif import lif_backward, lif_forward
from .snn_ops import (
    bn_backward, bn_eval_forward, bn_running, bn_train_forward, conv_backward, conv_forward,
    flatten_backward, flatten_forward, linear_backward, linear_forward,
)

__all__ = ["NumpyModelBackend", "model_backend", "forward_backward", "evaluate",
           "from_numpy", "to_numpy", "lif_forward", "lif_backward", "name"]

name = "numpy"


def from_numpy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` (same dtype and values)."""
    return np.array(a, copy=True, order="C")


def to_numpy(x: np.ndarray) -> np.ndarray:
    """A copy of ``x``."""
    return np.array(x, copy=True)


def _dtype_name(a: Any) -> str:
    return np.dtype(a.dtype).name


@dataclass
class _Forward:
    """One forward pass: logits, what the backward pass needs, spikes and new buffers."""

    logits: np.ndarray
    static: list[bool]            # per node: activation constant in time (B rows)
    caches: list[Any]             # per node, see `_forward`
    spike_sums: list[float]
    spike_counts: list[int]
    buffers: dict[str, np.ndarray]


def _static_flags(graph: Graph, static_input: bool) -> list[bool]:
    """Per node, whether its activation is constant in time (no ``lif`` upstream)."""
    flags: list[bool] = []
    for node in graph.nodes:
        ins = [static_input if j < 0 else flags[j] for j in node.inputs]
        flags.append(node.op != "lif" and all(ins))
    return flags


def _internal_input(graph: Graph, x: np.ndarray, static: bool, t_steps: int) -> np.ndarray:
    """``x`` with the merged leading axis and the channel axis last."""
    rows = x.shape[0] if static else t_steps * x.shape[1]
    a = x.reshape((rows,) + graph.input_shape)
    if len(graph.input_shape) >= 2:
        a = np.moveaxis(a, 1, -1)
    return np.ascontiguousarray(a)


def _repeat_steps(a: np.ndarray, t_steps: int) -> np.ndarray:
    """A time-constant activation ``(B, ...)`` as ``(T * B, ...)``."""
    return np.broadcast_to(a, (t_steps,) + a.shape).reshape((t_steps * a.shape[0],)
                                                            + a.shape[1:])


def _sum_steps(g: np.ndarray, t_steps: int) -> np.ndarray:
    """``(T * B, ...)`` -> ``(B, ...)``: the gradient of a time-constant activation."""
    return g.reshape((t_steps, g.shape[0] // t_steps) + g.shape[1:]).sum(axis=0)


def _forward(graph: Graph, params: Mapping[str, np.ndarray],
             buffers: Mapping[str, np.ndarray], x: np.ndarray, static_input: bool,
             lif: LIFParams, train: bool, keep: bool) -> _Forward:
    """Run every node; with ``keep`` also store what `_backward` needs.

    Caches: ``linear`` its input; ``conv`` ``(cols, input shape)``; ``bn`` ``(xhat,
    inv)``; ``pool``/``flatten`` the input shape; ``lif`` ``(H, S)`` as ``(T, N)``.
    """
    t_steps = lif.time_steps
    dt = np.dtype(_dtype_name(next(iter(params.values())))).type
    static = _static_flags(graph, static_input)
    consumers = graph.consumers()
    left = [len(c) for c in consumers]
    acts: list[np.ndarray | None] = [None] * len(graph.nodes)
    caches: list[Any] = [None] * len(graph.nodes)
    spike_sums: list[float] = []
    spike_counts: list[int] = []
    new_buffers: dict[str, np.ndarray] = {}
    a_in = _internal_input(graph, x, static_input, t_steps)
    layer_of = {i: k for k, i in enumerate(graph.layers)}
    norm_of = {i: j for j, i in enumerate(graph.norms)}

    def in_static(j: int) -> bool:
        return static_input if j < 0 else static[j]

    out = a_in
    for i, node in enumerate(graph.nodes):
        ins = [a_in if j < 0 else acts[j] for j in node.inputs]
        a = ins[0]
        if node.op in ("linear", "conv"):
            k = layer_of[i]
            w = params[f"layer{k}.weight"]
            b = params.get(f"layer{k}.bias")
            if node.op == "linear":
                out = linear_forward(a, w, b)
                cache: Any = a
            else:
                out, cols = conv_forward(a, w, b, node.stride, node.padding)
                cache = (cols, a.shape)
        elif node.op == "bn":
            j = norm_of[i]
            gamma, beta = params[f"bn{j}.gamma"], params[f"bn{j}.beta"]
            rm, rv = buffers[f"bn{j}.running_mean"], buffers[f"bn{j}.running_var"]
            if train:
                count = a.size // a.shape[-1] * (t_steps if static[i] else 1)
                if count < 2:
                    raise ValueError(f"bn{j} (node {i}) normalizes over n = T * B * H * W "
                                     f"= {count} entry per channel in train mode; batch "
                                     f"norm needs n >= 2 (S4.13): use a larger batch")
                out, xhat, inv, mu, var = bn_train_forward(a, gamma, beta)
                new_buffers[f"bn{j}.running_mean"], new_buffers[f"bn{j}.running_var"] = (
                    bn_running(rm, rv, mu, var, count))
                cache = (xhat, inv)
            else:
                out = bn_eval_forward(a, gamma, beta, rm, rv)
                cache = None
        elif node.op == "pool":
            out, cache = pool_forward(a, node.window), a.shape
        elif node.op == "flatten":
            out, cache = flatten_forward(a), a.shape
        elif node.op == "add":
            parts = ins if static[i] else [
                _repeat_steps(p, t_steps) if in_static(j) else p
                for p, j in zip(ins, node.inputs)]
            out = parts[0] + parts[1]
            for p in parts[2:]:
                out = out + p
            cache = None
        else:  # lif
            if in_static(node.inputs[0]):
                a = _repeat_steps(a, t_steps)
            flat = np.ascontiguousarray(a.reshape(t_steps, -1))
            spikes, h = lif_forward(flat, dt(lif.beta), dt(lif.theta), lif.reset == "soft")
            out = spikes.reshape(a.shape)
            spike_sums.append(float(spikes.sum(dtype=np.float64)))
            spike_counts.append(int(spikes.size))
            cache = (h, spikes)
        acts[i] = out
        if keep:
            caches[i] = cache
        for j in node.inputs:
            if j >= 0:
                left[j] -= 1
                if left[j] == 0:
                    acts[j] = None
    classes = graph.num_classes
    logits = out if static[-1] else out.reshape(t_steps, -1, classes).mean(axis=0)
    return _Forward(logits, static, caches, spike_sums, spike_counts, new_buffers)


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Per-sample cross-entropy, correct count and ``dL/dlogits`` of the batch mean (S4.8)."""
    b = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    expd = np.exp(shifted)
    total = expd.sum(axis=1, keepdims=True)
    losses = np.log(total[:, 0]) - shifted[np.arange(b), y]
    correct = int((np.argmax(logits, axis=1) == y).sum())
    grad = expd / total
    grad[np.arange(b), y] -= 1.0
    return losses, correct, grad / logits.dtype.type(b)


def _requires_grad(graph: Graph) -> list[bool]:
    """Per node, whether a parameter lies at or before it (its gradient is needed)."""
    flags: list[bool] = []
    for node in graph.nodes:
        flags.append(node.op in ("linear", "conv", "bn")
                     or any(j >= 0 and flags[j] for j in node.inputs))
    return flags


def _backward(graph: Graph, params: Mapping[str, np.ndarray], fw: _Forward,
              g_logits: np.ndarray, lif: LIFParams, credit_for: Mapping[int, np.ndarray],
              decay: float, signed: bool = False
              ) -> tuple[dict[str, np.ndarray], dict[int, np.ndarray]]:
    """Gradients of every parameter and the EID credits of ``credit_for`` (S4.5, S2.3;
    the signed credit of S2.9 with ``signed``)."""
    t_steps = lif.time_steps
    dtype = g_logits.dtype
    dt = dtype.type
    static = fw.static
    needs = _requires_grad(graph)
    grads = {key: np.zeros(shape, dtype) for key, shape in graph.param_shapes().items()}
    credits: dict[int, np.ndarray] = {}
    layer_of = {i: k for k, i in enumerate(graph.layers)}
    norm_of = {i: j for j, i in enumerate(graph.norms)}
    g: list[np.ndarray | None] = [None] * len(graph.nodes)
    g[-1] = g_logits if static[-1] else _repeat_steps(g_logits / dt(t_steps), t_steps)

    def accumulate(j: int, contrib: np.ndarray, contrib_static: bool) -> None:
        if j < 0 or not needs[j]:
            return
        if static[j] and not contrib_static:
            contrib = _sum_steps(contrib, t_steps)
        g[j] = contrib if g[j] is None else g[j] + contrib

    for i in range(len(graph.nodes) - 1, -1, -1):
        node, gi, cache = graph.nodes[i], g[i], fw.caches[i]
        if gi is None:
            continue
        g[i] = None
        src = node.inputs[0]
        need_in = src >= 0 and needs[src]
        if node.op in ("linear", "conv"):
            k = layer_of[i]
            w = params[f"layer{k}.weight"]
            if node.op == "linear":
                gw, gb, ga = linear_backward(gi, cache, w, need_in)
                inputs = cache
            else:
                inputs, in_shape = cache
                gw, gb, ga = conv_backward(gi, inputs, in_shape, w, node.stride,
                                           node.padding, need_in)
            grads[f"layer{k}.weight"] = gw
            if node.bias:
                grads[f"layer{k}.bias"] = gb
            if k in credit_for:
                credits[k] = _credit(node, inputs, gi, credit_for[k], decay, t_steps, signed)
        elif node.op == "bn":
            j = norm_of[i]
            xhat, inv = cache
            dgamma, dbeta, ga = bn_backward(gi, xhat, inv, params[f"bn{j}.gamma"])
            grads[f"bn{j}.gamma"], grads[f"bn{j}.beta"] = dgamma, dbeta
        elif node.op == "pool":
            ga = pool_backward(gi, node.window, cache)
        elif node.op == "flatten":
            ga = flatten_backward(gi, cache)
        elif node.op == "add":
            for j in node.inputs:
                accumulate(j, gi, static[i])
            continue
        else:  # lif
            h, spikes = cache
            gs = np.ascontiguousarray(gi.reshape(t_steps, -1))
            gc = lif_backward(gs, h, spikes, dt(lif.beta), dt(lif.theta), dt(lif.alpha),
                              lif.reset == "soft", lif.detach_reset)
            ga = gc.reshape(gi.shape) if need_in else None
        if need_in and ga is not None:
            accumulate(src, ga, static[i])
    for k, weight in credit_for.items():
        if k not in credits:  # the layer does not reach the readout: d_t = 0
            credits[k] = np.zeros(api.to_block_layout(weight).shape, dtype)
    return grads, credits


def _credit(node: Any, inputs: np.ndarray, d: np.ndarray, weight: np.ndarray, decay: float,
            t_steps: int, signed: bool) -> np.ndarray:
    """EID credit of one layer in block layout (S2.3, or S2.9 with ``signed``) via
    `spikenm.api.eligibility_credit`: the layer's input (conv: its im2col columns, whose
    rows of all ``t`` together give the stacked weight gradient of S2.9) and
    ``d_t = dL/dI_t``, time-major."""
    o = node.out_features
    x = inputs.reshape(t_steps, -1, inputs.shape[-1])
    d = np.ascontiguousarray(d.reshape(t_steps, -1, o))
    if node.op == "linear":
        return api.eligibility_credit(x, d, weight, decay=decay, signed=signed)
    credit = api.eligibility_credit(x, d, conv_weight_block(weight), decay=decay,
                                    signed=signed)
    return credit.reshape(o, node.kernel, node.kernel, node.in_features)


def _check(graph: Graph, params: Mapping[str, Any], buffers: Mapping[str, Any], x: Any,
           y: Any, lif: Any) -> bool:
    """Validate a call (types here, shapes and dtypes by `check_call`); return whether
    ``x`` is direct-encoded."""
    if not isinstance(graph, Graph):
        raise TypeError(f"graph is {type(graph).__name__}; expected a spikenm.snn.Graph")
    if not isinstance(lif, LIFParams):
        raise TypeError(f"lif is {type(lif).__name__}; expected spikenm.snn.LIFParams")
    for kind, table in (("parameter", params), ("buffer", buffers)):
        for key, value in table.items():
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{kind} {key} is {type(value).__name__}; the numpy model "
                                f"backend takes numpy.ndarray")
    for label, value in (("input x", x), ("labels y", y)):
        if value is None and label == "labels y":
            continue
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{label} is {type(value).__name__}; the numpy model backend "
                            f"takes numpy.ndarray")
    static, batch = check_call(graph, params, buffers, x, y, lif, _dtype_name)
    if batch < 1:
        raise ValueError(f"input x of shape {x.shape} holds no samples; expected a batch "
                         f"of at least 1")
    if y is not None and (int(y.min()) < 0 or int(y.max()) >= graph.num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"label {bad} is out of range; expected class indices in "
                         f"[0, {graph.num_classes})")
    return static


def _check_eid(graph: Graph, eid: Any) -> dict[int, np.ndarray]:
    if eid is None:
        return {}
    if not isinstance(eid, EIDRequest):
        raise TypeError(f"eid is {type(eid).__name__}; expected a spikenm.snn.EIDRequest")
    if not isinstance(eid.signed, bool):
        raise ValueError(f"eid.signed={eid.signed!r} is invalid; expected True or False")
    if len(eid.layers) != len(eid.weights):
        raise ValueError(f"eid names {len(eid.layers)} layers but gives {len(eid.weights)} "
                         f"weights; expected one dense weight per layer")
    out: dict[int, np.ndarray] = {}
    for k, w in zip(eid.layers, eid.weights):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
                0 <= k < len(graph.layers)):
            raise ValueError(f"eid layer {k!r} is not a layer ordinal; expected an integer "
                             f"in [0, {len(graph.layers)})")
        if int(k) in out:
            raise ValueError(f"eid layer {int(k)} is requested twice")
        shape = graph.layer_node(int(k)).weight_shape()
        if not isinstance(w, np.ndarray) or w.shape != shape:
            raise ValueError(f"eid weight of layer {int(k)} is "
                             f"{getattr(w, 'shape', type(w).__name__)}; expected a numpy "
                             f"array of shape {shape}")
        out[int(k)] = w
    return out


def forward_backward(graph: Graph, params: Mapping[str, np.ndarray],
                     buffers: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                     lif: LIFParams, eid: EIDRequest | None = None) -> StepResult:
    """Train-mode step: loss, correct count, ``dL/dparam``, new running statistics, EID
    credits (S2.3, or S2.9 with ``eid.signed``) and firing rates (S4, S4.13).

    A direct-encoded ``x`` is computed once up to the first ``lif``; when credits are
    requested for a layer there (it needs ``d_t`` per step), ``x`` is repeated over ``T``
    first, which gives the same results.
    """
    static = _check(graph, params, buffers, x, y, lif)
    credit_for = _check_eid(graph, eid)
    if static and credit_for and any(_static_flags(graph, True)[graph.layers[k]]
                                     for k in credit_for):
        x = np.broadcast_to(x, (lif.time_steps,) + x.shape)
        static = False
    fw = _forward(graph, params, buffers, x, static, lif, train=True, keep=True)
    losses, correct, g_logits = _cross_entropy(fw.logits, y)
    grads, credits = _backward(graph, params, fw, g_logits, lif, credit_for,
                               eid.decay if eid is not None else 0.0,
                               eid.signed if eid is not None else False)
    rates = tuple(s / c for s, c in zip(fw.spike_sums, fw.spike_counts))
    return StepResult(float(losses.mean()), correct, grads, fw.buffers, credits, rates)


def evaluate(graph: Graph, params: Mapping[str, np.ndarray], buffers: Mapping[str, np.ndarray],
             x: np.ndarray, y: np.ndarray, lif: LIFParams) -> EvalResult:
    """Eval-mode forward pass (batch norm with the running statistics; nothing changes):
    summed loss, correct count and spike sums (S4.8, S4.9, S4.13)."""
    static = _check(graph, params, buffers, x, y, lif)
    fw = _forward(graph, params, buffers, x, static, lif, train=False, keep=False)
    losses, correct, _ = _cross_entropy(fw.logits, y)
    return EvalResult(float(losses.sum()), correct, int(y.shape[0]), tuple(fw.spike_sums),
                      tuple(fw.spike_counts))


def logits(graph: Graph, params: Mapping[str, np.ndarray], buffers: Mapping[str, np.ndarray],
           x: np.ndarray, lif: LIFParams) -> np.ndarray:
    """Eval-mode logits ``(B, classes)``: the readout averaged over time (S4.8), batch
    norm with the running statistics (S4.13); ``x`` as for `evaluate`."""
    static = _check(graph, params, buffers, x, None, lif)
    return _forward(graph, params, buffers, x, static, lif, train=False, keep=False).logits


class NumpyModelBackend:
    """The reference `spikenm.snn.ModelBackend` (NumPy arrays on the host, S4.16)."""

    name = "numpy"
    device = "cpu"

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return from_numpy(a)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return to_numpy(x)

    def forward_backward(self, graph: Graph, params: Mapping[str, np.ndarray],
                         buffers: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                         lif: LIFParams, eid: EIDRequest | None = None) -> StepResult:
        return forward_backward(graph, params, buffers, x, y, lif, eid)

    def evaluate(self, graph: Graph, params: Mapping[str, np.ndarray],
                 buffers: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                 lif: LIFParams) -> EvalResult:
        return evaluate(graph, params, buffers, x, y, lif)

    def __repr__(self) -> str:
        return "NumpyModelBackend(device='cpu')"


def model_backend(device: str = "cpu") -> NumpyModelBackend:
    """The reference model backend; it runs on ``"cpu"`` only (S4.16).

    Examples
    --------
    >>> model_backend().name, model_backend("cpu").device
    ('numpy', 'cpu')
    >>> model_backend("cuda")
    Traceback (most recent call last):
    ...
    ValueError: device 'cuda' is not available to the numpy model backend; it runs on "cpu" only
    """
    if device != "cpu":
        raise ValueError(f"device {device!r} is not available to the numpy model backend; "
                         f"it runs on \"cpu\" only")
    return NumpyModelBackend()
