"""Hypothesis strategies for the model-backend checks: small graphs of every op (SPEC
S4.14) and the neuron, encoding and seed of one call (`spikenm.conformance.model_cases`).

Graphs stay tiny (features and channels up to 6, maps up to 6x6, ``T <= 3``, ``B <= 4``)
so that one example runs in milliseconds on the reference and frameworks that compile
per graph (JAX) compile quickly.  Convolutions use padding ``k // 2`` (S4.2).
"""

from __future__ import annotations

from typing import Callable

from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from spikenm.snn.graph import Graph, Node, output_shape
from spikenm.snn.neuron import LIFParams

from .model_cases import Case

Family = Callable[[DataObject], Graph]


class Nodes:
    """Appends nodes with their shapes (any op, any bias), like `spikenm.snn.GraphBuilder`."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.input_shape = input_shape
        self.nodes: list[Node] = []
        self.shapes: list[tuple[int, ...]] = []

    def shape(self, i: int) -> tuple[int, ...]:
        return self.input_shape if i < 0 else self.shapes[i]

    @property
    def last(self) -> int:
        return len(self.nodes) - 1

    def add(self, node: Node) -> int:
        ins = [self.shape(j) for j in node.inputs]
        self.shapes.append(output_shape(node, ins, f"node {len(self.nodes)} ({node.op})"))
        self.nodes.append(node)
        return self.last

    def linear(self, src: int, out: int, bias: bool = True) -> int:
        return self.add(Node("linear", (src,), self.shape(src)[0], out, bias=bias))

    def conv(self, src: int, out: int, kernel: int, stride: int = 1, bias: bool = True) -> int:
        return self.add(Node("conv", (src,), self.shape(src)[0], out, kernel, stride,
                             kernel // 2, bias=bias))

    def op(self, op: str, *src: int, window: int = 2) -> int:
        return self.add(Node(op, tuple(src), window=window))

    def readout(self, src: int, classes: int) -> Graph:
        if len(self.shape(src)) != 1:
            src = self.op("flatten", src)
        self.linear(src, classes)
        return Graph(self.input_shape, tuple(self.nodes))


def _classes(data: DataObject) -> int:
    return data.draw(st.integers(2, 4), label="classes")


def _image(data: DataObject, sides: tuple[int, ...] = (4, 5, 6)) -> tuple[int, int, int]:
    c = data.draw(st.integers(1, 2), label="input channels")
    h = data.draw(st.sampled_from(sides), label="input side")
    return (c, h, h)


def linear_graph(data: DataObject) -> Graph:
    """``[flatten] (Linear + LIF){1,2}`` and the readout, biases drawn per layer."""
    flat = data.draw(st.booleans(), label="image input (flatten first)")
    shape = (1, 2, 3) if flat else (data.draw(st.integers(2, 6), label="features"),)
    b = Nodes(shape)
    x = b.op("flatten", -1) if flat else -1
    for i in range(data.draw(st.integers(1, 2), label="hidden layers")):
        x = b.linear(x, data.draw(st.integers(2, 6), label=f"width {i}"),
                     data.draw(st.booleans(), label=f"bias {i}"))
        x = b.op("lif", x)
    return b.readout(x, _classes(data))


def conv_graph(data: DataObject) -> Graph:
    """``(Conv k in {1, 3}, stride in {1, 2} + LIF){1,2}``, flatten, ``[Linear + LIF]``,
    readout."""
    b = Nodes(_image(data))
    x = -1
    for i in range(data.draw(st.integers(1, 2), label="conv layers")):
        x = b.conv(x, data.draw(st.integers(1, 3), label=f"channels {i}"),
                   data.draw(st.sampled_from([3, 1]), label=f"kernel {i}"),
                   data.draw(st.sampled_from([1, 2]), label=f"stride {i}"),
                   data.draw(st.booleans(), label=f"bias {i}"))
        x = b.op("lif", x)
    x = b.op("flatten", x)
    if data.draw(st.booleans(), label="hidden linear"):
        x = b.op("lif", b.linear(x, data.draw(st.integers(2, 5), label="hidden width")))
    return b.readout(x, _classes(data))


def pool_graph(data: DataObject) -> Graph:
    """Average pooling (S4.6): ``q x q`` of the input or of spikes, and global pooling."""
    b = Nodes(_image(data, (4, 6)))
    x = -1
    if data.draw(st.booleans(), label="pool the input"):
        x = b.op("pool", x, window=2)
    x = b.op("lif", b.conv(x, data.draw(st.integers(1, 3), label="channels"), 3))
    side = b.shape(x)[1]
    windows = [q for q in (2, 3) if side % q == 0] + [0]
    x = b.op("pool", x, window=data.draw(st.sampled_from(windows), label="window"))
    return b.readout(x, _classes(data))


def bn_graph(data: DataObject) -> Graph:
    """Batch norm (S4.13) after conv or linear layers, before LIF."""
    convs = data.draw(st.booleans(), label="conv (else linear)")
    b = Nodes(_image(data, (4, 5)) if convs else (data.draw(st.integers(2, 5), label="features"),))
    x = -1
    for i in range(data.draw(st.integers(1, 2), label="bn layers")):
        bias = data.draw(st.booleans(), label=f"bias {i}")
        width = data.draw(st.integers(1 if convs else 2, 4), label=f"width {i}")
        if convs:
            x = b.conv(x, width, data.draw(st.sampled_from([3, 1]), label=f"kernel {i}"),
                       data.draw(st.sampled_from([1, 2]), label=f"stride {i}"), bias)
        else:
            x = b.linear(x, width, bias)
        x = b.op("lif", b.op("bn", x))
    return b.readout(x, _classes(data))


def residual_graph(data: DataObject) -> Graph:
    """Residual joins (S4.14): a stem, a block ``conv [bn] LIF conv [bn]`` added to an
    identity or 1x1-conv shortcut, LIF; sometimes a third input of the add, sometimes a
    node read twice downstream; global pooling or flatten, readout."""
    bn = data.draw(st.booleans(), label="batch norm")
    b = Nodes(_image(data, (4,)))
    c = data.draw(st.integers(1, 3), label="channels")

    def conv(src: int, out: int, kernel: int, stride: int = 1) -> int:
        x = b.conv(src, out, kernel, stride, bias=not bn)
        return b.op("bn", x) if bn else x

    stem = b.op("lif", conv(-1, c, 3))
    stride = data.draw(st.sampled_from([1, 2]), label="block stride")
    width = c if stride == 1 and data.draw(st.booleans(), label="identity shortcut") else \
        data.draw(st.integers(1, 3), label="block channels")
    main = conv(b.op("lif", conv(stem, width, 3, stride)), width, 3)
    short = stem if stride == 1 and width == c else conv(stem, width, 1, stride)
    joins = [main, short]
    if data.draw(st.booleans(), label="three-way add"):
        joins.append(conv(stem, width, 1, stride))
    x = b.op("lif", b.op("add", *joins))
    if data.draw(st.booleans(), label="global pooling"):
        x = b.op("pool", x, window=0)
    if data.draw(st.booleans(), label="fan-out: add the block input again"):
        if b.shape(x) == b.shape(short) and short != x:
            x = b.op("add", x, short)
    return b.readout(x, _classes(data))


FAMILIES: dict[str, Family] = {
    "linear": linear_graph, "conv": conv_graph, "pool": pool_graph, "bn": bn_graph,
    "residual": residual_graph,
}


def lif_params(data: DataObject) -> LIFParams:
    """Decay, reset, detach and ``T`` drawn (``theta = 1``, ``alpha`` drawn)."""
    beta = data.draw(st.one_of(st.sampled_from([0.5, 0.9, 1.0, 0.0]), st.floats(0.0, 1.0)),
                     label="lif.beta")
    return LIFParams(beta=beta,
                     alpha=data.draw(st.sampled_from([2.0, 1.0, 4.0]), label="lif.alpha"),
                     reset=data.draw(st.sampled_from(["hard", "soft"]), label="lif.reset"),
                     detach_reset=data.draw(st.booleans(), label="lif.detach_reset"),
                     time_steps=data.draw(st.integers(1, 3), label="lif.time_steps"))


def case(data: DataObject, family: str, *, dtype: str = "float64",
         time_major: bool | None = None, eid: bool = False,
         signed: bool | None = False) -> Case:
    """A `Case` of graph family ``family`` (see `FAMILIES`); with ``eid``, its credits are
    the signed ones of S2.9 when ``signed`` (drawn when ``signed`` is None)."""
    graph = FAMILIES[family](data)
    lif = lif_params(data)
    if time_major is None:
        time_major = data.draw(st.booleans(), label="time-major input")
    layers: tuple[int, ...] = ()
    decay = 0.5
    if eid:
        chosen = data.draw(st.lists(st.integers(0, len(graph.layers) - 1), min_size=1,
                                    max_size=len(graph.layers), unique=True),
                           label="EID layers")
        layers = tuple(sorted(chosen))
        decay = data.draw(st.one_of(st.just(lif.beta), st.floats(0.0, 1.0)), label="eid.decay")
        if signed is None:
            signed = data.draw(st.booleans(), label="eid.signed")
    return Case(graph, lif, dtype, data.draw(st.integers(2, 4), label="batch"), time_major,
                data.draw(st.integers(0, 2**31 - 1), label="seed"),
                data.draw(st.floats(1.5, 4.0), label="init gain"), layers, decay,
                bool(eid and signed))
