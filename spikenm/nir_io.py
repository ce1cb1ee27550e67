"""The trainer's spiking networks (SPEC S4) to and from NIR, the Neuromorphic Intermediate
Representation (the ``nir`` package, an optional extra: ``pip install 'spikenm[nir]'``).

Graph
-----
`to_nir` writes an `Arch` as a chain of NIR nodes::

    input -> [flatten] -> layer0 -> lif0 -> [pool0] -> ... -> flatten -> layerK -> lifK
          -> ... -> layerL -> output

``layer<i>`` is ``nir.Affine(W, b)`` for a linear layer and ``nir.Conv2d`` (stride ``s``,
padding ``p``, dilation 1, groups 1, bias ``b``) for a conv layer, with the weights as they
are: dense arrays whose zeros are the only trace of an N:M pattern.  ``lif<i>`` is the
LIF of S4.3 (below), ``pool<i>`` ``nir.AvgPool2d`` (``q x q``, stride ``q``, no padding,
S4.6), ``flatten`` a ``nir.Flatten`` of the whole ``(C, H, W)`` map (S4.2: Linear after
conv sees ``(C, H, W)`` order; an MLP on images flattens its input).  The readout layer
``layer<L>`` feeds ``output`` directly: it is non-spiking, and the network's logits are
the mean of its output over the ``T`` steps (S4.8).

LIF mapping
-----------
NIR's LIF is continuous: ``tau dv/dt = (v_leak - v) + r I``, a spike when
``v > v_threshold``, then ``v = v_reset``.  One forward-Euler step of length ``dt`` gives
``v_t = (1 - dt / tau) v_{t-1} + (dt / tau) r I_t``, which is S4.3's
``H_t = beta V_{t-1} + I_t`` when

    ``tau = dt / (1 - beta)``,  ``r = tau / dt = 1 / (1 - beta)``,  ``v_leak = 0``,
    ``v_threshold = theta``,  ``v_reset = 0`` (hard reset to zero).

This is snnTorch's mapping (``export_to_nir`` of ``snn.Leaky``: ``tau = dt / (1 - beta)``,
``r = tau / dt``, ``v_leak = v_reset = 0``, with ``dt = 1e-4``; its importer and Spyx's use
``beta = 1 - dt / tau`` and scale the input by ``r dt / tau``, which is 1 here).  Norse
writes ``r = 1`` and ``tau = 1 / tau_mem_inv``: the input then enters scaled by
``dt / tau``.  `from_nir` reads all of these: ``beta = 1 - dt / tau``, and an input gain
``g = r dt / tau`` other than 1 is folded into the weights and bias of the layer that
feeds the neuron (``W <- g W``, ``b <- g b``; zeros stay zeros, so the N:M pattern is kept).
``beta = 1`` (no leak, ``tau`` infinite) is written as ``nir.IF`` with ``r = 1 / dt``.
``dt`` defaults to 1, so ``tau`` is in time steps (``beta = 0.5`` gives ``tau = 2``).

Assumptions, where the two descriptions differ:

* NIR fires when ``v > v_threshold``; S4.3 fires at equality (``H_t >= theta``).  The two
  agree except when a membrane value lands exactly on the threshold.
* The neuron charges and fires in the same step (S4.3), as the Euler step above reads.
* S4.3's soft reset (``V_t = H_t - theta S_t``) has no NIR LIF form: `to_nir` refuses it.
* Time steps ``T``, the surrogate slope ``alpha`` and ``detach_reset`` are not NIR
  quantities (the last two only shape gradients): `to_nir` keeps them, with ``dt``, ``beta``
  and the readout rule, in the graph's ``metadata`` (keys ``spikenm.*``).

Import
------
`from_nir` reads such a chain back (``nir.Linear`` counts as ``Affine`` with zero bias,
``nir.IF`` as ``beta = 1``), checks that every neuron has the same uniform parameters
(one `LIFConfig` per network), ``v_leak = 0`` and ``v_reset = 0``, and re-derives the N:M
pattern of the masked layers from the zeros of their weights: each one is checked with
`spikenm.api.check_nm` in block layout (S0.2), so a weight that is not ``n:m`` is a
``ValueError`` naming the node and the block.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .api import check_nm, to_block_layout
from .dispatch import backend_for
from .train.config import LIFConfig
from .train.model_backend import Arch, LayerParams, LayerSpec

if TYPE_CHECKING:  # pragma: no cover
    import nir

__all__ = ["to_nir", "from_nir", "nm_masks", "lif_to_nir_params", "FORMAT", "VERSION"]

FORMAT = "spikenm.snn"
VERSION = 1
READOUT = "mean over the T time steps of the output node"
_REL = 1e-9
"""Relative tolerance for parameters that went through ``tau = dt / (1 - beta)``."""


def _nir() -> Any:
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "NIR export and import need the nir package: pip install 'spikenm[nir]'"
        ) from exc
    return nir


def lif_to_nir_params(beta: float, theta: float, dt: float = 1.0) -> dict[str, float]:
    """NIR neuron parameters of S4.3's discrete LIF (see the module docstring).

    Returns ``{"tau", "r", "v_leak", "v_threshold", "v_reset"}``; for ``beta = 1`` (an
    integrate-and-fire neuron) ``tau`` is ``inf`` and ``r = 1 / dt``.

    Examples
    --------
    >>> lif_to_nir_params(0.5, 1.0)
    {'tau': 2.0, 'r': 2.0, 'v_leak': 0.0, 'v_threshold': 1.0, 'v_reset': 0.0}
    >>> lif_to_nir_params(0.9, 1.0, dt=1e-4)["r"]     # snnTorch's dt
    10.000000000000002
    """
    if beta >= 1.0:
        return dict(tau=math.inf, r=1.0 / dt, v_leak=0.0, v_threshold=float(theta),
                    v_reset=0.0)
    tau = dt / (1.0 - beta)
    return dict(tau=tau, r=tau / dt, v_leak=0.0, v_threshold=float(theta), v_reset=0.0)


def _host(name: str, a: Any) -> np.ndarray:
    be = backend_for(**{name: a})
    dtype = be.dtype_name(a)
    if dtype not in ("float32", "float64"):
        raise TypeError(f"{name} is {dtype}; expected float32 or float64")
    return np.ascontiguousarray(be.to_numpy(a))


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return number


def _check_params(arch: Arch, params: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(params) != len(arch.layers):
        raise ValueError(f"arch has {len(arch.layers)} layers but params has {len(params)} "
                         f"entries")
    out = []
    for i, (spec, p) in enumerate(zip(arch.layers, params)):
        w, b = _host(f"params[{i}].weight", p[0]), _host(f"params[{i}].bias", p[1])
        if w.shape != spec.weight_shape() or b.shape != (spec.out_features,):
            raise ValueError(
                f"layer {i} ({spec.kind}) has weight {w.shape} and bias {b.shape}; expected "
                f"{spec.weight_shape()} and ({spec.out_features},)"
            )
        out.append((w, b))
    return out


def to_nir(arch: Arch, params: Sequence[LayerParams], lif: LIFConfig, *, dt: float = 1.0
           ) -> nir.NIRGraph:
    """The network ``(arch, params, lif)`` of S4 as a type-checked ``nir.NIRGraph``.

    Parameters
    ----------
    arch : Arch
        Linear and conv layers (conv layers need ``(C, H, W)`` inputs).
    params : sequence of LayerParams
        ``(weight, bias)`` per layer, float32 or float64 arrays of any framework; the
        trained weights (``W * mask``), written densely.
    lif : LIFConfig
        Hard reset only (a soft reset has no NIR form).
    dt : float
        Time step of the Euler discretization (module docstring); 1 by default.

    Raises
    ------
    ValueError
        Soft reset; params that do not fit ``arch``; a pooling window that does not
        divide the feature map.

    Examples
    --------
    >>> import numpy as np
    >>> arch = Arch((4,), (LayerSpec("linear", 4, 8), LayerSpec("linear", 8, 2)))
    >>> params = [LayerParams(np.ones((8, 4)), np.zeros(8)),
    ...           LayerParams(np.ones((2, 8)), np.zeros(2))]
    >>> g = to_nir(arch, params, LIFConfig())
    >>> sorted(g.nodes), g.edges
    (['input', 'layer0', 'layer1', 'lif0', 'output'], [('input', 'layer0'), ('layer0', 'lif0'), ('lif0', 'layer1'), ('layer1', 'output')])
    >>> float(g.nodes["lif0"].tau[0]), float(g.nodes["lif0"].r[0])
    (2.0, 2.0)
    """
    nir = _nir()
    dt = _positive_float("dt", dt)
    if not isinstance(lif, LIFConfig):
        raise TypeError(f"lif must be a LIFConfig, got {type(lif).__name__}")
    if lif.reset != "hard":
        raise ValueError(
            f"lif.reset={lif.reset!r}: NIR's LIF resets to v_reset (a hard reset); the soft "
            f"reset V = H - theta S has no NIR form"
        )
    arrays = _check_params(arch, params)
    neuron = lif_to_nir_params(lif.beta, lif.theta, dt)
    shape: tuple[int, ...] = tuple(int(s) for s in arch.input_shape)
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    chain = ["input"]

    def add(name: str, node: Any) -> None:
        nodes[name] = node
        chain.append(name)

    last = len(arch.layers) - 1
    for i, (spec, (w, b)) in enumerate(zip(arch.layers, arrays)):
        if spec.kind == "linear":
            if len(shape) != 1:
                add("flatten" if "flatten" not in nodes else f"flatten{i}",
                    nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
                shape = (int(np.prod(shape)),)
            if shape[0] != spec.in_features:
                raise ValueError(f"layer {i} (linear) expects {spec.in_features} inputs, the "
                                 f"layer before gives {shape[0]}")
            add(f"layer{i}", nir.Affine(weight=w, bias=b))
            shape = (spec.out_features,)
        else:
            if len(shape) != 3 or shape[0] != spec.in_features:
                raise ValueError(f"layer {i} (conv) expects ({spec.in_features}, H, W) inputs, "
                                 f"the layer before gives {shape}")
            k, s, p = spec.kernel, spec.stride, spec.padding
            add(f"layer{i}", nir.Conv2d(input_shape=shape[1:], weight=w, stride=s, padding=p,
                                        dilation=1, groups=1, bias=b))
            h, wd = ((n + 2 * p - k) // s + 1 for n in shape[1:])
            shape = (spec.out_features, h, wd)
        if i == last:
            break
        filled = {key: np.full(shape, value, dtype=np.float64) for key, value in neuron.items()}
        if lif.beta >= 1.0:
            add(f"lif{i}", nir.IF(r=filled["r"], v_threshold=filled["v_threshold"],
                                  v_reset=filled["v_reset"]))
        else:
            add(f"lif{i}", nir.LIF(**filled))
        if spec.kind == "conv" and spec.pool > 1:
            q = spec.pool
            channels, height, width = tuple(shape)
            if height % q or width % q:
                raise ValueError(f"layer {i} pools {q}x{q} a {height}x{width} map; "
                                 f"expected sizes divisible by {q}")
            add(f"pool{i}", nir.AvgPool2d(kernel_size=np.array([q, q]), stride=np.array([q, q]),
                                          padding=np.array([0, 0])))
            shape = (channels, height // q, width // q)
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    chain.append("output")
    metadata = {
        "spikenm.format": FORMAT, "spikenm.version": VERSION, "spikenm.dt": dt,
        "spikenm.beta": float(lif.beta), "spikenm.theta": float(lif.theta),
        "spikenm.time_steps": int(lif.time_steps), "spikenm.alpha": float(lif.alpha),
        "spikenm.detach_reset": bool(lif.detach_reset), "spikenm.readout": READOUT,
    }
    edges = list(zip(chain[:-1], chain[1:]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


# -- import -------------------------------------------------------------------------------

def _chain(graph: Any) -> list[str]:
    """Node names from the single Input to the single Output; ``ValueError`` otherwise."""
    nir = _nir()
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph has inputs {inputs} and outputs {outputs}; expected "
                         f"exactly one of each (a feed-forward chain)")
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(str(a), []).append(str(b))
        pred.setdefault(str(b), []).append(str(a))
    order = [inputs[0]]
    while order[-1] != outputs[0]:
        here = order[-1]
        nxt = succ.get(here, [])
        if len(nxt) != 1 or len(pred.get(nxt[0], [])) != 1:
            raise ValueError(
                f"node {here!r} has successors {nxt}; expected a chain (one successor, "
                f"which has one predecessor) from {inputs[0]!r} to {outputs[0]!r}"
            )
        if nxt[0] in order:
            raise ValueError(f"the graph has a cycle through {nxt[0]!r}")
        order.append(nxt[0])
    unused = sorted(set(graph.nodes) - set(order))
    if unused:
        raise ValueError(f"nodes {unused} are not on the chain from {inputs[0]!r} to "
                         f"{outputs[0]!r}")
    return order


def _uniform(node_name: str, node: Any, field: str) -> float:
    values = np.asarray(getattr(node, field), dtype=np.float64)
    if values.size == 0:
        raise ValueError(f"node {node_name!r} has an empty {field}")
    first = float(values.flat[0])
    if not np.all(values == first):
        raise ValueError(f"node {node_name!r} has different {field} values per neuron "
                         f"({np.unique(values)[:4].tolist()}...); expected one value (a "
                         f"spikenm network has one LIFConfig)")
    return first


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL, abs_tol=_REL)


def _neuron(name: str, node: Any, dt: float) -> tuple[float, float, float]:
    """``(beta, theta, gain)`` of a LIF or IF node (module docstring)."""
    nir = _nir()
    if isinstance(node, nir.LIF) and _uniform(name, node, "v_leak") != 0.0:
        raise ValueError(f"node {name!r} has v_leak {_uniform(name, node, 'v_leak')}; "
                         f"S4.3's neuron leaks to 0 (expected v_leak = 0)")
    if _uniform(name, node, "v_reset") != 0.0:
        raise ValueError(f"node {name!r} has v_reset {_uniform(name, node, 'v_reset')}; "
                         f"S4.3's hard reset sets V to 0 (expected v_reset = 0)")
    theta = _uniform(name, node, "v_threshold")
    r = _uniform(name, node, "r")
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"node {name!r} has r {r}; expected a finite r > 0")
    tau = math.inf if isinstance(node, nir.IF) else _uniform(name, node, "tau")
    if math.isinf(tau) and tau > 0:                 # no leak: v += dt r I
        return 1.0, theta, r * dt
    if not tau > 0:
        raise ValueError(f"node {name!r} has tau {tau}; expected tau > 0")
    beta = 1.0 - dt / tau
    if beta < 0.0:
        raise ValueError(f"node {name!r} has tau {tau} < dt {dt}, which gives beta {beta}; "
                         f"expected tau >= dt")
    return beta, theta, r * dt / tau


def _graph_metadata(graph: Any) -> dict[str, Any]:
    meta = getattr(graph, "metadata", None) or {}
    out = {}
    for key, value in meta.items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.ndarray) and value.shape == ():
            value = value.item()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _pair(name: str, node: Any, field: str) -> int:
    values = np.atleast_1d(np.asarray(getattr(node, field)))
    if values.size not in (1, 2) or values.dtype.kind not in "iu" or len(set(values.tolist())) != 1:
        raise ValueError(f"node {name!r} has {field} {values.tolist()}; expected one integer "
                         f"for both spatial axes")
    return int(values.flat[0])


def nm_masks(arch: Arch, params: Sequence[Any], n: int, m: int,
             masked: Iterable[int] | None = None, *, names: Sequence[str] | None = None
             ) -> dict[int, np.ndarray]:
    """Re-derive the ``n:m`` masks of dense weights from their zeros, and validate them.

    For each masked layer the mask is ``W != 0`` (as 0/1 in the weight's dtype, weight
    layout); `spikenm.api.check_nm` checks it in block layout (S0.2).

    Parameters
    ----------
    masked : iterable of int, optional
        Layers that must be ``n:m``; default every layer but the first and the last (S5.1).
    names : sequence of str, optional
        Names of the layers for error messages (e.g. NIR node names).

    Raises
    ------
    ValueError
        A masked layer whose input size is not a multiple of ``m``, whose weight has a
        block with more than ``n`` non-zeros, or an index out of range.

    Examples
    --------
    >>> import numpy as np
    >>> arch = Arch((4,), (LayerSpec("linear", 4, 4), LayerSpec("linear", 4, 4),
    ...                    LayerSpec("linear", 4, 2)))
    >>> w = np.array([[0.0, 1.0, 0.0, 2.0]] * 4)
    >>> params = [(np.ones((4, 4)), np.zeros(4)), (w, np.zeros(4)), (np.ones((2, 4)), np.zeros(2))]
    >>> nm_masks(arch, params, 2, 4)[1][0]
    array([0., 1., 0., 1.])
    """
    arrays = _check_params(arch, params)
    last = len(arch.layers) - 1
    layers = tuple(range(1, last)) if masked is None else tuple(int(i) for i in masked)
    labels = list(names) if names is not None else [f"layer {i}" for i in range(last + 1)]
    out = {}
    for i in layers:
        if not 0 <= i <= last:
            raise ValueError(f"masked layer {i} is out of range for {last + 1} layers")
        spec, (w, _) = arch.layers[i], arrays[i]
        if spec.in_features % m:
            raise ValueError(f"{labels[i]} has {spec.in_features} inputs, not a multiple of "
                             f"m={m}; it cannot carry an {n}:{m} pattern")
        check_nm(to_block_layout(w), n, m, name=f"{labels[i]} weight {w.shape} (block layout)")
        out[i] = (w != 0).astype(w.dtype)
    return out


def from_nir(graph: nir.NIRGraph, n: int, m: int, *, masked: Iterable[int] | None = None,
             dt: float | None = None, time_steps: int | None = None
             ) -> tuple[Arch, tuple[LayerParams, ...], LIFConfig]:
    """A network of S4 from a NIR chain, with the N:M pattern re-derived and checked.

    Parameters
    ----------
    graph : nir.NIRGraph
        ``Input -> [Flatten] -> (Conv2d -> LIF|IF -> [AvgPool2d])* -> [Flatten] ->
        (Affine|Linear -> LIF|IF)* -> Affine|Linear -> Output`` (what `to_nir` writes).
    n, m : int
        The pattern of the masked layers.
    masked : iterable of int, optional
        Layers whose weights must be ``n:m`` (`nm_masks`); default every layer but the
        first and the last (S5.1).
    dt : float, optional
        Euler step for ``beta = 1 - dt / tau``; default the graph's ``spikenm.dt``.
    time_steps : int, optional
        ``T``; default the graph's ``spikenm.time_steps``.

    Returns
    -------
    (Arch, tuple of LayerParams, LIFConfig)
        NumPy arrays, in the dtype stored in the graph.

    Raises
    ------
    ValueError
        A graph that is not such a chain; neurons with different or non-uniform
        parameters, ``v_leak != 0`` or ``v_reset != 0``; a masked weight that is not
        ``n:m`` (naming the node and the block); ``dt`` or ``time_steps`` neither given
        nor in the graph's metadata.
    """
    nir = _nir()
    meta = _graph_metadata(graph)
    if "spikenm.format" in meta and meta["spikenm.format"] != FORMAT:
        raise ValueError(f"graph metadata 'spikenm.format' is {meta['spikenm.format']!r}; "
                         f"expected {FORMAT!r}")
    if "spikenm.version" in meta and meta["spikenm.version"] != VERSION:
        raise ValueError(f"graph metadata 'spikenm.version' is {meta['spikenm.version']!r}; "
                         f"this spikenm reads version {VERSION}")
    if dt is None:
        if "spikenm.dt" not in meta:
            raise ValueError("the graph has no 'spikenm.dt' metadata: pass dt= (the time "
                             "step the neuron time constants refer to; snnTorch uses 1e-4)")
        dt = meta["spikenm.dt"]
    dt = _positive_float("dt", dt)
    if time_steps is None:
        if "spikenm.time_steps" not in meta:
            raise ValueError("the graph has no 'spikenm.time_steps' metadata: pass "
                             "time_steps= (T, the number of steps per sample)")
        time_steps = meta["spikenm.time_steps"]
    if isinstance(time_steps, bool) or not isinstance(time_steps, numbers.Integral):
        raise ValueError(f"time_steps must be an integer >= 1, got {time_steps!r}")
    order = _chain(graph)
    input_node = graph.nodes[order[0]]
    shape: tuple[int, ...] = tuple(
        int(s) for s in np.asarray(input_node.input_type["input"]).reshape(-1))
    input_shape = shape
    layers: list[LayerSpec] = []
    params: list[LayerParams] = []
    names: list[str] = []
    neurons: list[tuple[str, float, float]] = []
    pos = 1

    def take() -> tuple[str, Any] | None:
        nonlocal pos
        if pos >= len(order) - 1:
            return None
        name = order[pos]
        pos += 1
        return name, graph.nodes[name]

    def peek() -> Any:
        return graph.nodes[order[pos]] if pos < len(order) - 1 else None

    while True:
        item = take()
        if item is None:
            break
        name, node = item
        if isinstance(node, nir.Flatten):
            start, end = int(node.start_dim), int(node.end_dim)
            if start not in (0, -len(shape)) or end not in (-1, len(shape) - 1):
                raise ValueError(f"node {name!r} flattens dims {start}..{end} of {shape}; "
                                 f"expected the whole map (start_dim 0, end_dim -1)")
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            if w.ndim != 2 or len(shape) != 1 or w.shape[1] != shape[0]:
                raise ValueError(f"node {name!r} has weight {w.shape} but receives shape "
                                 f"{shape}; expected a 2-D (out, {shape}) weight after a "
                                 f"Flatten")
            b = np.asarray(node.bias) if isinstance(node, nir.Affine) else np.zeros(
                w.shape[0], w.dtype)
            spec = LayerSpec("linear", int(w.shape[1]), int(w.shape[0]))
            shape = (spec.out_features,)
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            if w.ndim != 4 or w.shape[2] != w.shape[3] or len(shape) != 3 or w.shape[1] != shape[0]:
                raise ValueError(f"node {name!r} has weight {w.shape} and receives {shape}; "
                                 f"expected a square (out, {shape[0]}, k, k) kernel on "
                                 f"(C, H, W) inputs")
            if isinstance(node.padding, str):
                raise ValueError(f"node {name!r} has padding {node.padding!r}; expected an "
                                 f"integer")
            stride, padding = _pair(name, node, "stride"), _pair(name, node, "padding")
            if _pair(name, node, "dilation") != 1 or int(node.groups) != 1:
                raise ValueError(f"node {name!r} has dilation {node.dilation} and groups "
                                 f"{node.groups}; expected 1 and 1")
            b = np.asarray(node.bias)
            k = int(w.shape[2])
            spec = LayerSpec("conv", int(w.shape[1]), int(w.shape[0]), k, stride, padding)
            shape = (spec.out_features,) + tuple((s + 2 * padding - k) // stride + 1
                                                 for s in shape[1:])
        else:
            raise ValueError(f"node {name!r} is a {type(node).__name__}; expected Affine, "
                             f"Linear, Conv2d or Flatten here (chain {order})")
        if w.dtype not in (np.float32, np.float64) or b.dtype != w.dtype:
            raise ValueError(f"node {name!r} has weight {w.dtype} and bias {b.dtype}; "
                             f"expected float32 or float64, the same for both")
        if b.shape != (spec.out_features,):
            raise ValueError(f"node {name!r} has bias {b.shape}; expected "
                             f"({spec.out_features},)")
        nxt = peek()
        if isinstance(nxt, (nir.LIF, nir.IF)):
            lif_name, lif_node = take()  # type: ignore[misc]
            beta, theta, gain = _neuron(lif_name, lif_node, dt)
            if not _close(gain, 1.0):
                w, b = w * w.dtype.type(gain), b * b.dtype.type(gain)
            neurons.append((lif_name, beta, theta))
            pool = peek()
            if isinstance(pool, (nir.AvgPool2d, nir.SumPool2d)):
                pool_name, pool_node = take()  # type: ignore[misc]
                if not isinstance(pool_node, nir.AvgPool2d) or spec.kind != "conv":
                    raise ValueError(f"node {pool_name!r} is a {type(pool_node).__name__} "
                                     f"after {name!r}; expected AvgPool2d after a conv layer")
                q = _pair(pool_name, pool_node, "kernel_size")
                if _pair(pool_name, pool_node, "stride") != q or \
                        _pair(pool_name, pool_node, "padding") != 0:
                    raise ValueError(f"node {pool_name!r} pools with kernel {q}, stride "
                                     f"{pool_node.stride}, padding {pool_node.padding}; "
                                     f"expected stride = kernel and no padding (S4.6)")
                spec = LayerSpec("conv", spec.in_features, spec.out_features, spec.kernel,
                                 spec.stride, spec.padding, q)
                shape = (shape[0], shape[1] // q, shape[2] // q)
        elif peek() is not None:
            raise ValueError(f"node {name!r} is followed by {type(nxt).__name__}; expected a "
                             f"LIF or IF neuron (only the last layer is a non-spiking readout)")
        layers.append(spec)
        params.append(LayerParams(np.array(w, order="C"), np.array(b, order="C")))
        names.append(f"NIR node {name!r} (layer {len(layers) - 1})")
    if not layers:
        raise ValueError("the graph has no Affine, Linear or Conv2d layer")
    if len(neurons) != len(layers) - 1:
        raise ValueError(f"the last layer {names[-1]} must feed the output directly (a "
                         f"non-spiking readout, S4.8)")
    beta, theta = _one_lif(neurons, meta)
    arch = Arch(input_shape, tuple(layers))
    lif = LIFConfig(beta=beta, theta=theta,
                    alpha=float(meta.get("spikenm.alpha", LIFConfig.alpha)),
                    reset="hard", detach_reset=bool(meta.get("spikenm.detach_reset", False)),
                    time_steps=int(time_steps))
    nm_masks(arch, params, n, m, masked, names=names)
    return arch, tuple(params), lif


def _one_lif(neurons: list[tuple[str, float, float]], meta: dict[str, Any]) -> tuple[float, float]:
    """The single ``(beta, theta)`` of all neurons; the metadata's exact values when they
    agree with the nodes up to the rounding of ``tau = dt / (1 - beta)``."""
    if not neurons:
        return LIFConfig.beta, LIFConfig.theta
    name0, beta, theta = neurons[0]
    for name, b, t in neurons[1:]:
        if not (_close(b, beta) and _close(t, theta)):
            raise ValueError(f"node {name!r} has beta {b}, theta {t} but {name0!r} has beta "
                             f"{beta}, theta {theta}; a spikenm network has one LIFConfig")
    for key, value in (("spikenm.beta", beta), ("spikenm.theta", theta)):
        if key in meta and not _close(float(meta[key]), value):
            raise ValueError(f"graph metadata {key!r} is {meta[key]} but the neuron nodes "
                             f"give {value}; the graph was changed after export")
    beta = float(meta.get("spikenm.beta", beta))
    theta = float(meta.get("spikenm.theta", theta))
    return min(1.0, max(0.0, beta)), theta
