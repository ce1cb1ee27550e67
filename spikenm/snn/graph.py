"""A spiking network as a small graph of layers (SPEC S4.2, S4.6, S4.13-S4.15).

A `Graph` is an input shape and a tuple of `Node` objects in topological order; node
``i`` reads the outputs of ``node.inputs`` (``-1`` is the network input).  The last node
is the readout: a non-spiking ``linear`` node whose output, averaged over time, is the
logits (S4.8).  Per-sample shapes are channels-first: ``(C, H, W)`` for images, ``(F,)``
for features; activations are time-major ``[T, B, *shape]`` (S4.1).

Operations (``Node.op``):

=============  ======================================================================
``linear``     ``I_t = x_t W^T + b``, ``W`` of shape ``(out, in)``; input ``(in,)``
``conv``       ``I_t = conv2d(x_t, W, stride, padding) + b``, ``W`` ``(out, in, k, k)``
``bn``         batch norm over batch and time together (S4.13), ``gamma``, ``beta``
``pool``       ``q x q`` average pooling, stride ``q`` (``window = 0``: global, to 1x1)
``flatten``    ``(C, H, W) -> (C * H * W,)`` in ``C, H, W`` order
``add``        elementwise sum of its inputs (residual connection, S4.14)
``lif``        the LIF neuron of `spikenm.snn.neuron` (S4.3): spikes out
=============  ======================================================================

Names: the ``k``-th weighted node (``linear``/``conv``, in node order) is ``layer{k}``,
the ``j``-th ``bn`` node is ``bn{j}``, the ``i``-th ``lif`` node is ``lif{i}``.  Parameter
keys are ``"layer{k}.weight"``, ``"layer{k}.bias"`` (absent when ``bias=False``),
``"bn{j}.gamma"``, ``"bn{j}.beta"``; buffers (running statistics, no gradient) are
``"bn{j}.running_mean"`` and ``"bn{j}.running_var"``.  Masks, credits and noise seeds use
the layer ordinal ``k`` (S5.1-S5.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["Node", "Graph", "OPS", "output_shape", "init_params", "init_buffers", "fold_batch_norm",
           "graph_from_record"]

OPS = ("linear", "conv", "bn", "pool", "flatten", "add", "lif")
WEIGHTED = ("linear", "conv")

BN_EPS = 1e-5
"""``eps`` of batch norm (S4.13)."""
BN_MOMENTUM = 0.1
"""Running-statistics momentum of batch norm (S4.13)."""


@dataclass(frozen=True)
class Node:
    """One operation of a `Graph` (see the module docstring for the ops).

    Attributes
    ----------
    op : str
        One of `OPS`.
    inputs : tuple of int
        Indices of the nodes it reads (``-1``: the network input); two or more for
        ``add``, exactly one otherwise.
    in_features, out_features : int
        ``linear``/``conv`` only: input and output features (channels).
    kernel, stride, padding : int
        ``conv`` only: square kernel, stride and zero padding.
    window : int
        ``pool`` only: window and stride ``q`` (``0``: global average pooling).
    bias : bool
        ``linear``/``conv`` only: whether the layer has a bias.
    """

    op: Literal["linear", "conv", "bn", "pool", "flatten", "add", "lif"]
    inputs: tuple[int, ...]
    in_features: int = 0
    out_features: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    window: int = 2
    bias: bool = True

    def weight_shape(self) -> tuple[int, ...]:
        """``(out, in)`` for ``linear``, ``(out, in, k, k)`` for ``conv``."""
        if self.op == "linear":
            return (self.out_features, self.in_features)
        if self.op == "conv":
            return (self.out_features, self.in_features, self.kernel, self.kernel)
        raise ValueError(f"a {self.op} node has no weight")


@dataclass(frozen=True)
class Graph:
    """A spiking network: per-sample input shape and nodes in topological order.

    Construction checks every node (inputs exist and come earlier, shapes fit, pooling
    windows divide the map, the readout is a ``linear`` node) and raises a `ValueError`
    naming the node otherwise.

    Examples
    --------
    >>> g = Graph((4,), (Node("linear", (-1,), 4, 8), Node("lif", (0,)),
    ...                  Node("linear", (1,), 8, 3)))
    >>> g.shapes, g.layers, g.param_shapes()["layer1.weight"]
    (((8,), (8,), (3,)), (0, 2), (3, 8))
    """

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    shapes: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "shapes", tuple(_infer_shapes(self)))

    # -- names -------------------------------------------------------------------------
    @property
    def layers(self) -> tuple[int, ...]:
        """Node indices of the weighted (``linear``/``conv``) nodes; layer ``k`` is
        ``nodes[layers[k]]``."""
        return tuple(i for i, n in enumerate(self.nodes) if n.op in WEIGHTED)

    @property
    def norms(self) -> tuple[int, ...]:
        """Node indices of the ``bn`` nodes (``bn{j}`` is ``nodes[norms[j]]``)."""
        return tuple(i for i, n in enumerate(self.nodes) if n.op == "bn")

    @property
    def neurons(self) -> tuple[int, ...]:
        """Node indices of the ``lif`` nodes, in the order of the firing rates (S4.9)."""
        return tuple(i for i, n in enumerate(self.nodes) if n.op == "lif")

    @property
    def num_classes(self) -> int:
        return self.nodes[-1].out_features

    def name_of(self, index: int) -> str:
        """``layer{k}``, ``bn{j}``, ``lif{i}``, or ``{op}@{index}`` for the other ops."""
        op = self.nodes[index].op
        if op in WEIGHTED:
            return f"layer{self.layers.index(index)}"
        if op == "bn":
            return f"bn{self.norms.index(index)}"
        if op == "lif":
            return f"lif{self.neurons.index(index)}"
        return f"{op}@{index}"

    def layer_node(self, layer: int) -> Node:
        """The node of weighted layer ``layer``."""
        return self.nodes[self.layers[layer]]

    # -- parameters --------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of every trainable parameter (module docstring for the keys)."""
        out: dict[str, tuple[int, ...]] = {}
        for k, i in enumerate(self.layers):
            node = self.nodes[i]
            out[f"layer{k}.weight"] = node.weight_shape()
            if node.bias:
                out[f"layer{k}.bias"] = (node.out_features,)
        for j, i in enumerate(self.norms):
            c = self.shapes[i][0]
            out[f"bn{j}.gamma"] = (c,)
            out[f"bn{j}.beta"] = (c,)
        return out

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of every buffer (batch-norm running statistics)."""
        out: dict[str, tuple[int, ...]] = {}
        for j, i in enumerate(self.norms):
            c = self.shapes[i][0]
            out[f"bn{j}.running_mean"] = (c,)
            out[f"bn{j}.running_var"] = (c,)
        return out

    def consumers(self) -> list[list[int]]:
        """For every node, the nodes that read it."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                if j >= 0:
                    out[j].append(i)
        return out

    def describe(self) -> str:
        """One line per node: index, name, op, inputs and output shape."""
        lines = []
        for i, node in enumerate(self.nodes):
            extra = ""
            if node.op in WEIGHTED:
                extra = f" weight {node.weight_shape()}" + ("" if node.bias else " no bias")
                if node.op == "conv":
                    extra += f" stride {node.stride} padding {node.padding}"
            elif node.op == "pool":
                extra = " global" if node.window == 0 else f" {node.window}x{node.window}"
            lines.append(f"{i:3d} {self.name_of(i):10s} {node.op:8s} in {list(node.inputs)}"
                         f" -> {self.shapes[i]}{extra}")
        return "\n".join(lines)


def graph_from_record(record: dict) -> Graph:  # type: ignore[type-arg]
    """The `Graph` of a JSON record ``{"input_shape": [...], "nodes": [{field: value}]}``
    (as a run's ``model.npz`` stores it).

    Raises
    ------
    ValueError
        A record that does not describe a valid graph (the failing field or node named).

    Examples
    --------
    >>> g = graph_from_record({"input_shape": [4], "nodes": [
    ...     {"op": "linear", "inputs": [-1], "in_features": 4, "out_features": 3}]})
    >>> g.layers
    (0,)
    """
    try:
        nodes = tuple(Node(**{**n, "inputs": tuple(n["inputs"])}) for n in record["nodes"])
        return Graph(tuple(record["input_shape"]), nodes)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a graph record: {exc!r}") from None


def output_shape(node: Node, ins: list[tuple[int, ...]], where: str) -> tuple[int, ...]:
    """Per-sample output shape of ``node`` given its input shapes (``where`` names it in
    errors)."""
    if node.op not in OPS:
        raise ValueError(f"{where}: unknown op; expected one of {OPS}")
    if node.op in WEIGHTED and (node.in_features < 1 or node.out_features < 1):
        raise ValueError(f"{where}: features must be >= 1, got {node.in_features} -> "
                         f"{node.out_features}")
    s = ins[0]
    if node.op == "linear":
        if len(s) != 1 or s[0] != node.in_features:
            raise ValueError(f"{where} expects ({node.in_features},) features, gets {s}"
                             + ("; add a flatten node" if len(s) != 1 else ""))
        return (node.out_features,)
    if node.op == "conv":
        if len(s) != 3 or s[0] != node.in_features:
            raise ValueError(f"{where} expects ({node.in_features}, H, W) maps, gets {s}")
        if node.stride < 1 or node.kernel < 1 or node.padding < 0:
            raise ValueError(f"{where}: kernel {node.kernel}, stride {node.stride} and "
                             f"padding {node.padding} must be >= 1, >= 1 and >= 0")
        ho = (s[1] + 2 * node.padding - node.kernel) // node.stride + 1
        wo = (s[2] + 2 * node.padding - node.kernel) // node.stride + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"{where}: kernel {node.kernel}, padding {node.padding} do not "
                             f"fit a {s[1]}x{s[2]} map")
        return (node.out_features, ho, wo)
    if node.op == "pool":
        if len(s) != 3:
            raise ValueError(f"{where} pools (C, H, W) maps, gets {s}")
        if node.window == 0:
            return (s[0], 1, 1)
        q = node.window
        if q < 1 or s[1] % q or s[2] % q:
            raise ValueError(f"{where}: a {s[1]}x{s[2]} map does not divide into "
                             f"{q}x{q} pooling windows (SPEC S4.6)")
        return (s[0], s[1] // q, s[2] // q)
    if node.op == "flatten":
        return (int(np.prod(s)),)
    if node.op == "add":
        if len(ins) < 2 or any(t != s for t in ins):
            raise ValueError(f"{where} adds inputs of shapes {ins}; expected two or more "
                             f"of one shape")
    return s  # add, bn, lif


def _infer_shapes(g: Graph) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    if not g.nodes:
        raise ValueError("a graph needs at least one node (the linear readout)")
    for i, node in enumerate(g.nodes):
        where = f"node {i} ({node.op})"
        if not node.inputs:
            raise ValueError(f"{where} has no inputs")
        for j in node.inputs:
            if not (isinstance(j, int) and -1 <= j < i):
                raise ValueError(f"{where} reads node {j!r}; inputs must be -1 (the network "
                                 f"input) or an earlier node")
        if node.op != "add" and len(node.inputs) != 1:
            raise ValueError(f"{where} has {len(node.inputs)} inputs; only add takes several")
        ins = [g.input_shape if j < 0 else shapes[j] for j in node.inputs]
        shapes.append(output_shape(node, ins, where))
    last = g.nodes[-1]
    if last.op != "linear":
        raise ValueError(f"the last node is a {last.op}; the readout must be a linear node "
                         f"(S4.8)")
    return shapes


def init_params(graph: Graph, seed: int, gain: float, dtype: str) -> dict[str, np.ndarray]:
    """Initial parameters in NumPy (S4.10, S4.13).

    Weighted layers in order from ``default_rng(seed)``: ``W ~ N(0, gain^2 / fan_in)``
    drawn in float64 C order and cast to ``dtype``; ``b = 0``.  Batch norm:
    ``gamma = 1``, ``beta = 0``.

    Examples
    --------
    >>> g = Graph((4,), (Node("linear", (-1,), 4, 3, bias=False),))
    >>> sorted(init_params(g, 0, 1.0, "float32"))
    ['layer0.weight']
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for k, i in enumerate(graph.layers):
        node = graph.nodes[i]
        shape = node.weight_shape()
        fan_in = int(np.prod(shape[1:]))
        out[f"layer{k}.weight"] = (rng.standard_normal(shape) * (gain / np.sqrt(fan_in))
                                   ).astype(dtype)
        if node.bias:
            out[f"layer{k}.bias"] = np.zeros(node.out_features, dtype)
    for key, shape in graph.param_shapes().items():
        if key.endswith(".gamma"):
            out[key] = np.ones(shape, dtype)
        elif key.endswith(".beta"):
            out[key] = np.zeros(shape, dtype)
    return out


def init_buffers(graph: Graph, dtype: str) -> dict[str, np.ndarray]:
    """Initial running statistics: mean 0, variance 1 (S4.13)."""
    return {key: (np.zeros if key.endswith("mean") else np.ones)(shape, dtype)
            for key, shape in graph.buffer_shapes().items()}


def fold_batch_norm(graph: Graph, params: dict[str, np.ndarray],
                    buffers: dict[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The eval-mode network with every ``bn`` folded into the layer that feeds it (S4.13).

    A ``bn`` node whose only input is a ``linear``/``conv`` node read by nothing else
    becomes part of it: ``W' = W * s`` per output channel and ``b' = (b - mu) * s + beta``
    with ``s = gamma / sqrt(var + eps)`` (running statistics).  Zeros of ``W`` stay zeros,
    so an ``n:m`` pattern along the input axis is kept.  Every folded layer gets a bias.
    Returns the new graph (no ``bn`` nodes) and its parameters.

    Raises
    ------
    ValueError
        When a ``bn`` node does not directly follow a weighted node that only it reads.
    """
    consumers = graph.consumers()
    fold: dict[int, int] = {}  # weighted node -> bn node
    for i in graph.norms:
        src = graph.nodes[i].inputs[0]
        if src < 0 or graph.nodes[src].op not in WEIGHTED or consumers[src] != [i]:
            raise ValueError(f"{graph.name_of(i)} (node {i}) does not directly follow a "
                             f"linear/conv layer read by it alone; it cannot be folded")
        fold[src] = i
    remap: dict[int, int] = {-1: -1}
    nodes: list[Node] = []
    new_params: dict[str, np.ndarray] = {}
    layer_new = 0
    for i, node in enumerate(graph.nodes):
        if node.op == "bn":
            remap[i] = remap[node.inputs[0]]
            continue
        inputs = tuple(remap[j] for j in node.inputs)
        if node.op in WEIGHTED:
            k = graph.layers.index(i)
            w = np.asarray(params[f"layer{k}.weight"])
            b = params.get(f"layer{k}.bias")
            b = np.zeros(node.out_features, w.dtype) if b is None else np.asarray(b)
            if i in fold:
                j = graph.norms.index(fold[i])
                s = np.asarray(params[f"bn{j}.gamma"]) / np.sqrt(
                    np.asarray(buffers[f"bn{j}.running_var"]) + BN_EPS)
                w = w * s.reshape((-1,) + (1,) * (w.ndim - 1)).astype(w.dtype)
                b = ((b - np.asarray(buffers[f"bn{j}.running_mean"])) * s
                     + np.asarray(params[f"bn{j}.beta"])).astype(w.dtype)
                node = Node(node.op, inputs, node.in_features, node.out_features, node.kernel,
                            node.stride, node.padding, node.window, True)
            else:
                node = Node(node.op, inputs, node.in_features, node.out_features, node.kernel,
                            node.stride, node.padding, node.window, node.bias)
            new_params[f"layer{layer_new}.weight"] = w
            if node.bias:
                new_params[f"layer{layer_new}.bias"] = b
            layer_new += 1
        else:
            node = Node(node.op, inputs, node.in_features, node.out_features, node.kernel,
                        node.stride, node.padding, node.window, node.bias)
        remap[i] = len(nodes)
        nodes.append(node)
    return Graph(graph.input_shape, tuple(nodes)), new_params

