"""The trainer's networks as `Graph` objects (SPEC S4.2, S4.15): ``mlp``, ``conv``,
``vgg11`` and ``resnet19``.

``width`` (``model.width_multiplier``) scales every hidden width and channel count:
``max(1, round(c * width))``; ``1.0`` is the published network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Graph, Node, output_shape

__all__ = ["ARCHS", "GraphBuilder", "mlp", "conv_net", "vgg11", "resnet19", "build_graph",
           "VGG11_CHANNELS", "VGG11_POOL_AFTER", "RESNET19_STAGES"]

ARCHS = ("mlp", "conv", "vgg11", "resnet19")

VGG11_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
"""Conv widths of VGG-11 (configuration "A" of Simonyan & Zisserman)."""
VGG11_POOL_AFTER = (0, 1, 3, 5, 7)
"""Conv layers followed by 2x2 pooling (the "M" entries of configuration "A")."""
RESNET19_STAGES = ((128, 3, 1), (256, 3, 2), (512, 2, 2))
"""ResNet-19 stages (channels, basic blocks, stride of the first block), after a 3x3
conv stem of 128 channels; then global average pooling, Linear 256 + LIF and the readout
(Zheng et al. 2021, the network of the SpikeNM paper)."""


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


@dataclass
class GraphBuilder:
    """Appends nodes and tracks the current output; ``add`` builds residual joins.

    Examples
    --------
    >>> b = GraphBuilder((1, 4, 4))
    >>> x = b.conv(4, 3, batch_norm=True); x = b.lif(); _ = b.flatten(); _ = b.linear(3)
    >>> [n.op for n in b.graph().nodes]
    ['conv', 'bn', 'lif', 'flatten', 'linear']
    """

    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        self.nodes: list[Node] = []
        self.shapes: list[tuple[int, ...]] = []
        self.current = -1

    def shape(self, index: int | None = None) -> tuple[int, ...]:
        i = self.current if index is None else index
        return tuple(self.input_shape) if i < 0 else self.shapes[i]

    def _push(self, node: Node) -> int:
        i = len(self.nodes)
        ins = [self.shape(j) for j in node.inputs]
        self.shapes.append(output_shape(node, ins, f"node {i} ({node.op})"))
        self.nodes.append(node)
        self.current = i
        return i

    def conv(self, out: int, kernel: int, stride: int = 1, *, batch_norm: bool = False,
             source: int | None = None) -> int:
        src = self.current if source is None else source
        c = self.shape(src)[0]
        self._push(Node("conv", (src,), c, out, kernel, stride, kernel // 2,
                        bias=not batch_norm))
        if batch_norm:
            self._push(Node("bn", (self.current,)))
        return self.current

    def linear(self, out: int, *, batch_norm: bool = False) -> int:
        self._push(Node("linear", (self.current,), self.shape()[0], out,
                        bias=not batch_norm))
        if batch_norm:
            self._push(Node("bn", (self.current,)))
        return self.current

    def lif(self) -> int:
        return self._push(Node("lif", (self.current,)))

    def pool(self, window: int) -> int:
        return self._push(Node("pool", (self.current,), window=window))

    def flatten(self) -> int:
        if len(self.shape()) == 1:
            return self.current
        return self._push(Node("flatten", (self.current,)))

    def add(self, *sources: int) -> int:
        return self._push(Node("add", tuple(sources)))

    def graph(self) -> Graph:
        return Graph(tuple(self.input_shape), tuple(self.nodes))


def _head(b: GraphBuilder, hidden: tuple[int, ...], width: float, num_classes: int) -> Graph:
    """Flatten, the ``hidden`` Linear + LIF layers and the Linear readout."""
    b.flatten()
    for h in hidden:
        b.linear(_scaled(h, width))
        b.lif()
    b.linear(num_classes)
    return b.graph()


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (128, 128),
        width: float = 1.0) -> Graph:
    """``[flatten] Linear(in, h_1) LIF ... Linear(h_L, classes)``.

    Examples
    --------
    >>> [n.op for n in mlp((1, 2, 2), 3, (8,)).nodes]
    ['flatten', 'linear', 'lif', 'linear']
    """
    b = GraphBuilder(input_shape)
    return _head(b, hidden, width, num_classes)


def conv_net(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...],
             kernel: int = 3, pools: tuple[int, ...] = (), hidden: tuple[int, ...] = (),
             width: float = 1.0) -> Graph:
    """Per entry ``c_i`` of ``channels``: conv (``kernel``, stride 1, padding
    ``kernel // 2``), LIF and ``q_i x q_i`` average pooling (``pools``, default 2; 1 for
    none); then flatten, the ``hidden`` Linear + LIF layers and the readout."""
    if len(input_shape) != 3:
        raise ValueError(f"a conv net needs (C, H, W) inputs, got {input_shape}")
    pools = tuple(pools) or (2,) * len(channels)
    if len(pools) != len(channels):
        raise ValueError(f"model.pools has {len(pools)} entries for {len(channels)} "
                         f"model.channels; give one per conv stage")
    b = GraphBuilder(input_shape)
    for c, q in zip(channels, pools):
        b.conv(_scaled(c, width), kernel)
        b.lif()
        if q > 1:
            _, h, w = b.shape()
            if h % q or w % q:
                raise ValueError(f"conv stage {len(b.nodes)} sees a {h}x{w} map; {q}x{q} "
                                 f"pooling needs sizes divisible by {q}: change model.pools "
                                 f"or model.channels")
            b.pool(q)
    return _head(b, hidden, width, num_classes)


def vgg11(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10,
          width: float = 1.0, hidden: tuple[int, ...] = ()) -> Graph:
    """Spiking VGG-11 with batch norm (S4.15): 8 conv layers (3x3, stride 1, padding 1,
    no bias), each followed by ``bn`` and LIF; 2x2 average pooling of the spikes after
    conv 1, 2, 4, 6 and 8 (`VGG11_POOL_AFTER`); flatten, the ``hidden`` Linear + LIF
    layers and the readout.

    A pooling stage that meets a ``1 x 1`` map is left out (the shipped 8x8 digits reach
    1x1 after three), so the network runs on small inputs; an odd map larger than 1 is an
    error.

    Examples
    --------
    >>> g = vgg11()
    >>> len(g.layers), g.shapes[-2]
    (9, (512,))
    >>> len(vgg11((1, 8, 8), 10, width=0.125).layers)
    9
    """
    if len(input_shape) != 3:
        raise ValueError(f"vgg11 needs (C, H, W) inputs, got {input_shape}")
    b = GraphBuilder(input_shape)
    for index, c in enumerate(VGG11_CHANNELS):
        b.conv(_scaled(c, width), 3, batch_norm=True)
        b.lif()
        if index in VGG11_POOL_AFTER:
            _, h, w = b.shape()
            if h == 1 and w == 1:
                continue
            if h % 2 or w % 2:
                raise ValueError(f"VGG-11 conv {index} makes a {h}x{w} map; its 2x2 pooling "
                                 f"needs even sizes: use 2^k input sizes (e.g. 32x32)")
            b.pool(2)
    return _head(b, hidden, width, num_classes)


def resnet19(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10,
             width: float = 1.0) -> Graph:
    """Spiking ResNet-19 (S4.15): a 3x3 conv stem (128 channels) + bn + LIF; the stages of
    `RESNET19_STAGES` of basic blocks ``conv3x3(stride) bn LIF conv3x3 bn (+ shortcut)
    LIF``, the shortcut being the identity or, where the shape changes, a 1x1 conv with the
    block's stride + bn; global average pooling, flatten, Linear 256 + LIF and the readout.
    Every conv has no bias (batch norm follows it).

    Examples
    --------
    >>> g = resnet19()
    >>> len(g.layers), sum(n.op == "add" for n in g.nodes), g.shapes[-1]
    (21, 8, (10,))
    """
    if len(input_shape) != 3:
        raise ValueError(f"resnet19 needs (C, H, W) inputs, got {input_shape}")
    b = GraphBuilder(input_shape)
    b.conv(_scaled(128, width), 3, batch_norm=True)
    x = b.lif()
    for channels, blocks, stride in RESNET19_STAGES:
        c = _scaled(channels, width)
        for block in range(blocks):
            s = stride if block == 0 else 1
            b.conv(c, 3, s, batch_norm=True, source=x)
            b.lif()
            main = b.conv(c, 3, 1, batch_norm=True)
            if s != 1 or b.shape(x)[0] != c:
                short = b.conv(c, 1, s, batch_norm=True, source=x)
            else:
                short = x
            b.add(main, short)
            x = b.lif()
    b.pool(0)
    b.flatten()
    b.linear(_scaled(256, width))
    b.lif()
    b.linear(num_classes)
    return b.graph()


def build_graph(arch: str, input_shape: tuple[int, ...], num_classes: int, *,
                hidden: tuple[int, ...] = (128, 128), channels: tuple[int, ...] = (16, 32),
                kernel: int = 3, pools: tuple[int, ...] = (), width: float = 1.0) -> Graph:
    """The network ``arch`` (one of `ARCHS`) for ``input_shape`` and ``num_classes``.

    ``hidden`` is used by ``mlp``, ``conv`` and ``vgg11`` (its Linear head; the CIFAR
    configs use none); ``channels``, ``kernel`` and ``pools`` by ``conv`` only.
    """
    if not (isinstance(width, (int, float)) and not isinstance(width, bool)
            and np.isfinite(width) and width > 0):
        raise ValueError(f"model.width_multiplier={width!r} is invalid; expected a number > 0")
    if arch == "mlp":
        return mlp(input_shape, num_classes, hidden, width)
    if arch == "conv":
        return conv_net(input_shape, num_classes, channels, kernel, pools, hidden, width)
    if arch == "vgg11":
        return vgg11(input_shape, num_classes, width, hidden)
    if arch == "resnet19":
        return resnet19(input_shape, num_classes, width)
    raise ValueError(f"model.arch={arch!r} is unknown; expected one of {ARCHS}")
