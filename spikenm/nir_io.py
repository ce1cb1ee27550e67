"""Spiking networks (SPEC S4, `spikenm.snn.Graph`) to and from NIR, the Neuromorphic
Intermediate Representation (the ``nir`` package, an optional extra:
``pip install 'spikenm[nir]'``).

Graph
-----
`to_nir` writes a `Graph` with its parameters node by node (S4.12)::

    input -> [flatten0] -> layer0 -> lif0 -> [pool0] -> ... -> layerL -> output

* ``layer{k}`` (a ``linear``/``conv`` node, ordinal ``k``): ``nir.Affine(W, b)``, or
  ``nir.Linear(W)`` for a linear layer without bias; ``nir.Conv2d`` (stride ``s``,
  padding ``p``, dilation 1, groups 1, bias ``b``; a conv without bias is written with a
  zero bias and the node metadata ``spikenm.bias = False``).  The weights are written as
  they are: dense arrays whose zeros are the only trace of an N:M pattern.
* ``lif{i}``: the LIF of S4.3 (below), with parameter arrays of the node's shape.
* ``pool{j}``: ``nir.AvgPool2d`` (``q x q``, stride ``q``, no padding, S4.6); a global
  pool (window 0) is the window of the whole map, listed in the graph metadata
  ``spikenm.global_pools``.
* ``flatten{j}``: ``nir.Flatten`` of the whole ``(C, H, W)`` map (``start_dim`` 0).
* ``bn`` nodes are first folded into the layer that feeds them with the running
  statistics (`spikenm.snn.fold_batch_norm`, S4.13), so `to_nir` needs the buffers.
* ``add`` (a residual join, S4.14) has no node of its own: NIR sums the signals of all
  edges that enter one node (as nirtorch's executor does), so each input of the ``add``
  gets an edge into each node that reads it.  An ``add`` whose inputs repeat a source
  (``add(a, a)``, or a nested ``add`` reaching ``a`` twice) would need a duplicate edge,
  which NIR does not allow: `to_nir` refuses it, naming the node.

The readout ``layer{L}`` feeds ``output`` directly: it is non-spiking, and the network's
logits are the mean of its output over the ``T`` steps (S4.8).  Edges are written in node
order, so `from_nir` rebuilds the same node order (also after `nir.write`/`nir.read`,
which keep the edge list but not the order of the nodes).

LIF mapping
-----------
NIR's LIF is continuous: ``tau dv/dt = (v_leak - v) + r I``, a spike when
``v > v_threshold``, then ``v = v_reset``.  One forward-Euler step of length ``dt`` gives
``v_t = (1 - dt / tau) v_{t-1} + (dt / tau) r I_t``.  `to_nir` writes (S4.12a)

    ``tau = dt / (1 - beta)``,  ``r = 1``,  ``v_threshold = theta (1 - beta)``,
    ``v_leak = 0``,  ``v_reset = 0``,  ``dt = 1e-4`` by default,

so ``v_t = beta v_{t-1} + (1 - beta) I_t``: the membrane ``v = (1 - beta) V`` of S4.3's
``H_t = beta V_{t-1} + I_t`` (threshold ``theta``, hard reset to 0), scaled by the constant
input gain ``g = r dt / tau = 1 - beta``.  This is the one form both importers rebuild
as S4.3 (`spikenm.nir_readers`): snnTorch's ``import_from_nir`` fixes ``dt = 1e-4``
(``beta = 1 - dt / tau``) and divides the threshold by ``r dt / tau``, giving ``theta``
back (it prints a warning about that scaling); Norse's ``from_nir(graph, dt=1e-4)``
ignores ``r`` and integrates ``v += dt / tau (I - v)``, which is the equation above with
``r = 1``.  With ``r = tau / dt`` (snnTorch's own exporter) Norse would scale the input
by ``1 - beta``; with ``dt = 1`` snnTorch would rebuild ``beta = 1 - 1e-4 / tau``, almost 1.
``beta = 1`` (no leak, ``tau`` infinite) is written as ``nir.IF`` with ``r = 1 / dt``
and ``v_threshold = theta`` (gain 1); ``beta = 0`` has ``tau = dt``.

Assumptions, where the two descriptions differ:

* NIR fires when ``v > v_threshold``; S4.3 fires at equality (``H_t >= theta``).  The two
  agree except when a membrane value lands exactly on the threshold.
* The neuron charges and fires in the same step (S4.3), as the Euler step above reads.
* S4.3's soft reset (``V_t = H_t - theta S_t``) has no NIR form (every NIR neuron resets
  to ``v_reset``; no node field selects the reset): `to_nir` refuses it for snnTorch and
  Norse, and writes it with ``readers=("spikenm",)`` as the metadata
  ``spikenm.reset = "soft"``, which `from_nir` reads (any other reader would run a hard
  reset).
* Time steps ``T``, the surrogate slope ``alpha`` and ``detach_reset`` are not NIR
  quantities (the last two only shape gradients): `to_nir` keeps them, with ``dt``,
  ``beta``, ``theta``, the reset, the readers and the readout rule, in the graph's
  ``metadata`` (keys ``spikenm.*``).  Apart from a soft reset, metadata only chooses
  between equivalent readings (``dt``, ``T``, global pooling, a zero conv bias); the
  graph runs without it.

Import
------
`from_nir` reads such a graph back: nodes in an order consistent with the edges (the
order of their first incoming edge), a node with several incoming edges read as an
``add`` of them followed by the node, ``nir.Linear`` as a linear layer without bias,
``nir.IF`` as ``beta = 1``.  A neuron's input gain ``g = r dt / tau`` (``r dt`` for an
``IF``) is a scaling of its membrane: it reads as the threshold ``v_threshold / g``, the
weights untouched.  It checks that every neuron has the same uniform parameters (one
`LIFParams` per network), ``v_leak = 0`` and ``v_reset = 0``, and re-derives the N:M
pattern of the masked layers from the zeros of their weights: each one is checked with
`spikenm.api.check_nm` in block layout (S0.2), so a weight that is not ``n:m`` is a
``ValueError`` naming the node and the block.  Graphs from other exporters (S4.12b): the
reset must be given (``reset=``) unless the metadata states it, since snnTorch writes its
default subtract-reset ``Leaky`` as the same node as a hard-reset one; a leading batch
axis in the Input node's shape (a traced sample batch) is dropped; a spiking readout (a
LIF after the last layer) is refused unless ``drop_spiking_readout=True``.  `read_nir`
reads a NIR file (``nir.read``) and imports it, letting only the documented exceptions
of SPEC S3.11 escape.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .api import check_nm, to_block_layout
from .atomic import atomic_path
from .container import loader_boundary
from .dispatch import backend_for
from .nir_readers import READERS, SNNTORCH_DT, check_readers, readers_tuple
from .snn.graph import WEIGHTED, Graph, Node, fold_batch_norm, output_shape
from .snn.neuron import LIFParams

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from .runs import Run

__all__ = ["to_nir", "from_nir", "read_nir", "write_nir", "export_run", "nm_masks",
           "lif_to_nir_params", "FORMAT", "VERSION", "DT", "READERS"]

FORMAT = "spikenm.snn"
VERSION = 3
"""Version 3: ``r = 1`` neurons and the reset in the metadata (S4.12a); versions 1 (chains
of layers) and 2 (``r = tau / dt``, hard reset) still read."""
DT = SNNTORCH_DT
"""`to_nir`'s default time step, the one both importers rebuild (S4.12a)."""
READOUT = "mean over the T time steps of the output node"
_REL = 1e-9
"""Relative tolerance for parameters that went through ``tau = dt / (1 - beta)``."""
_NEURON_FIELDS = ("tau", "r", "v_leak", "v_threshold", "v_reset")


def _nir() -> Any:
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "NIR export and import need the nir package: pip install 'spikenm[nir]'"
        ) from exc
    return nir


def lif_to_nir_params(beta: float, theta: float, dt: float = DT) -> dict[str, float]:
    """NIR neuron parameters of S4.3's discrete LIF (S4.12a, the module docstring).

    Returns ``{"tau", "r", "v_leak", "v_threshold", "v_reset"}``: ``tau = dt / (1 -
    beta)``, ``r = 1``, ``v_threshold = theta (1 - beta)``; for ``beta = 1`` (an
    integrate-and-fire neuron) ``tau`` is ``inf``, ``r = 1 / dt`` and ``v_threshold =
    theta``.

    Examples
    --------
    >>> lif_to_nir_params(0.5, 1.0)
    {'tau': 0.0002, 'r': 1.0, 'v_leak': 0.0, 'v_threshold': 0.5, 'v_reset': 0.0}
    >>> lif_to_nir_params(1.0, 1.0, dt=0.25)["r"]
    4.0
    """
    if beta >= 1.0:
        return dict(tau=math.inf, r=1.0 / dt, v_leak=0.0, v_threshold=float(theta),
                    v_reset=0.0)
    return dict(tau=dt / (1.0 - beta), r=1.0, v_leak=0.0,
                v_threshold=float(theta) * (1.0 - beta), v_reset=0.0)


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


def _host_table(kind: str, given: Mapping[str, Any], want: dict[str, tuple[int, ...]]
                ) -> dict[str, np.ndarray]:
    """NumPy copies of ``given`` after checking its keys and shapes against ``want``."""
    if not isinstance(given, Mapping):
        raise TypeError(f"{kind}s must be a mapping key -> array (Graph.param_shapes keys), "
                        f"got {type(given).__name__}")
    missing = sorted(set(want) - set(given))
    extra = sorted(set(given) - set(want))
    if missing or extra:
        raise ValueError(f"{kind}s do not match the graph: missing {missing}, unexpected "
                         f"{extra}")
    out = {}
    for key, shape in want.items():
        a = _host(f"{kind}s[{key!r}]", given[key])
        if a.shape != shape:
            raise ValueError(f"{kind} {key} has shape {a.shape}; expected {shape}")
        out[key] = a
    return out


def _check_graph(graph: Any) -> Graph:
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a spikenm.snn.Graph, got {type(graph).__name__}")
    return graph


def _check_lif(lif: Any) -> LIFParams:
    if not isinstance(lif, LIFParams):
        raise TypeError(f"lif must be a spikenm.snn.LIFParams, got {type(lif).__name__}")
    return lif


def _names(graph: Graph) -> list[str]:
    """NIR node name of every graph node (``""`` for ``add``, which has none)."""
    counts: dict[str, int] = {}
    out = []
    for i, node in enumerate(graph.nodes):
        if node.op in WEIGHTED or node.op == "lif":
            out.append(graph.name_of(i))
        elif node.op == "add":
            out.append("")
        else:
            j = counts.get(node.op, 0)
            counts[node.op] = j + 1
            out.append(f"{node.op}{j}")
    return out


def _sources(graph: Graph, names: list[str], index: int) -> list[str]:
    """NIR nodes whose summed signals are the value of graph node ``index``."""
    if index < 0:
        return ["input"]
    node = graph.nodes[index]
    if node.op != "add":
        return [names[index]]
    out: list[str] = []
    for j in node.inputs:
        out += _sources(graph, names, j)
    if len(set(out)) != len(out):
        raise ValueError(
            f"{graph.name_of(index)} (node {index}) sums {out}, a source more than once; "
            f"NIR sums the edges into a node and has no duplicate edges, so this add cannot "
            f"be written")
    return out


def to_nir(graph: Graph, params: Mapping[str, Any], lif: LIFParams, *,
           buffers: Mapping[str, Any] | None = None, dt: float = DT,
           readers: Sequence[str] = READERS) -> nir.NIRGraph:
    """The network ``(graph, params, lif)`` of S4 as a type-checked ``nir.NIRGraph``.

    Parameters
    ----------
    graph : spikenm.snn.Graph
    params : mapping
        `Graph.param_shapes` keys -> float32/float64 arrays of any framework; the trained
        weights (``W * mask``), written densely.
    lif : spikenm.snn.LIFParams
        A soft reset only with ``readers=("spikenm",)`` (S4.12a).
    buffers : mapping, optional
        `Graph.buffer_shapes` keys -> running statistics; required when the graph has
        ``bn`` nodes, which are folded into the layers before them (S4.13).
    dt : float
        Time step of the Euler discretization (module docstring); default `DT` =
        ``1e-4``, the one snnTorch's importer assumes (pass it to Norse's
        ``from_nir(graph, dt=1e-4)``).
    readers : sequence of str
        The importers that must rebuild the network exactly, from ``"snntorch"``,
        ``"norse"`` and ``"spikenm"`` (default both importers; spikenm's `from_nir`
        reads every file); what one of them cannot rebuild is refused
        (`spikenm.nir_readers.check_readers`).

    Raises
    ------
    ValueError
        What a reader cannot rebuild (a soft reset for snnTorch or Norse, ``dt != 1e-4``
        or ``beta = 1`` for snnTorch, pooling for Norse), naming the reader; params or
        buffers that do not fit the graph; a ``bn`` that cannot be folded; an ``add``
        that would need a duplicate edge.
    TypeError
        A graph, LIF parameters, readers or arrays of the wrong type or dtype.

    Examples
    --------
    >>> import numpy as np
    >>> g = Graph((4,), (Node("linear", (-1,), 4, 8), Node("lif", (0,)),
    ...                  Node("linear", (1,), 8, 2)))
    >>> params = {"layer0.weight": np.ones((8, 4)), "layer0.bias": np.zeros(8),
    ...           "layer1.weight": np.ones((2, 8)), "layer1.bias": np.zeros(2)}
    >>> ng = to_nir(g, params, LIFParams())
    >>> sorted(ng.nodes), ng.edges
    (['input', 'layer0', 'layer1', 'lif0', 'output'], [('input', 'layer0'), ('layer0', 'lif0'), ('lif0', 'layer1'), ('layer1', 'output')])
    >>> lif0 = ng.nodes["lif0"]
    >>> float(lif0.tau[0]), float(lif0.r[0]), float(lif0.v_threshold[0])
    (0.0002, 1.0, 0.5)
    """
    nir = _nir()
    graph = _check_graph(graph)
    lif = _check_lif(lif)
    dt = _positive_float("dt", dt)
    readers = readers_tuple(readers)
    arrays = _host_table("parameter", params, graph.param_shapes())
    if graph.norms:
        if buffers is None:
            raise ValueError(
                f"the graph has batch norm nodes ({', '.join(graph.name_of(i) for i in graph.norms)}); "
                f"pass buffers= (their running statistics) to fold them into the layers "
                f"before them (S4.13)")
        stats = _host_table("buffer", buffers, graph.buffer_shapes())
        graph, arrays = fold_batch_norm(graph, arrays, stats)
    check_readers(graph, lif, dt, readers)
    names = _names(graph)
    neuron = lif_to_nir_params(lif.beta, lif.theta, dt)
    nodes: dict[str, Any] = {
        "input": nir.Input(input_type={"input": np.array(graph.input_shape)})}
    edges: list[tuple[str, str]] = []
    global_pools: list[str] = []
    for i, node in enumerate(graph.nodes):
        if node.op == "add":
            _sources(graph, names, i)                # refuses duplicate sources now
            continue
        name = names[i]
        src = node.inputs[0]
        in_shape = graph.input_shape if src < 0 else graph.shapes[src]
        shape = graph.shapes[i]
        if node.op in WEIGHTED:
            k = graph.layers.index(i)
            w = arrays[f"layer{k}.weight"]
            b = arrays.get(f"layer{k}.bias")
            if node.op == "linear":
                nodes[name] = (nir.Affine(weight=w, bias=b) if b is not None
                               else nir.Linear(weight=w))
            else:
                meta = {} if b is not None else {"spikenm.bias": False}
                nodes[name] = nir.Conv2d(
                    input_shape=in_shape[1:], weight=w, stride=node.stride,
                    padding=node.padding, dilation=1, groups=1,
                    bias=b if b is not None else np.zeros(node.out_features, w.dtype),
                    metadata=meta)
        elif node.op == "lif":
            filled = {key: np.full(shape, value, dtype=np.float64)
                      for key, value in neuron.items()}
            if lif.beta >= 1.0:
                nodes[name] = nir.IF(r=filled["r"], v_threshold=filled["v_threshold"],
                                     v_reset=filled["v_reset"])
            else:
                nodes[name] = nir.LIF(**filled)
        elif node.op == "pool":
            q = (in_shape[1], in_shape[2]) if node.window == 0 else (node.window,) * 2
            if node.window == 0:
                global_pools.append(name)
            nodes[name] = nir.AvgPool2d(kernel_size=np.array(q), stride=np.array(q),
                                        padding=np.array([0, 0]))
        elif node.op == "flatten":
            nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0,
                                      end_dim=-1)
        else:  # pragma: no cover - fold_batch_norm leaves no bn, Graph allows no other op
            raise AssertionError(node.op)
        edges += [(s, name) for s in _sources(graph, names, src)]
    nodes["output"] = nir.Output(output_type={"output": np.array(graph.shapes[-1])})
    edges.append((names[-1], "output"))
    metadata: dict[str, Any] = {
        "spikenm.format": FORMAT, "spikenm.version": VERSION, "spikenm.dt": dt,
        "spikenm.beta": float(lif.beta), "spikenm.theta": float(lif.theta),
        "spikenm.time_steps": int(lif.time_steps), "spikenm.alpha": float(lif.alpha),
        "spikenm.detach_reset": bool(lif.detach_reset), "spikenm.readout": READOUT,
        "spikenm.reset": lif.reset, "spikenm.readers": ",".join(readers),
    }
    if global_pools:
        metadata["spikenm.global_pools"] = ",".join(global_pools)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(path: str | os.PathLike[str], graph: nir.NIRGraph) -> None:
    """Write ``graph`` to the NIR (HDF5) file ``path`` with ``nir.write``, atomically
    (`spikenm.atomic.atomic_path`: the old file or the complete new one, S5.12)."""
    nir = _nir()
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)


def export_run(run: Run, path: str | os.PathLike[str], *,
               readers: Sequence[str] = READERS) -> nir.NIRGraph:
    """Write the trained network of a run folder (`spikenm.runs.load_run`) as a NIR file
    (S4.12c): `to_nir` of its graph, final weights (``W * mask``), neuron and batch-norm
    statistics, with the default ``dt``; the metadata also records the run's pattern
    (``spikenm.pattern``, ``"n:m"`` or ``"dense"``), its masked layers
    (``spikenm.masked``, comma-separated ordinals) and input encoding
    (``spikenm.encoding``, S4.7: the graph's input at each step is the encoded input).
    Returns the graph written.

    Raises
    ------
    ValueError
        What `to_nir` refuses (e.g. a conv run's pooling for Norse, a soft reset).
    """
    graph = to_nir(run.graph, run.params, run.lif, buffers=run.buffers, readers=readers)
    masked = sorted(run.masks)
    n, m = run.config.sparsity.nm
    graph.metadata.update({
        "spikenm.pattern": f"{n}:{m}" if masked else "dense",
        "spikenm.masked": ",".join(str(k) for k in masked),
        "spikenm.encoding": str(run.config.data.encoding)})
    write_nir(path, graph)
    return graph


# -- import -------------------------------------------------------------------------------

def _order(graph: Any) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """Node names from the single Input to the single Output in an order consistent with
    the edges (ties: the node whose first incoming edge comes first), with predecessors
    and successors in edge order; ``ValueError`` for anything else."""
    nir = _nir()
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph has inputs {inputs} and outputs {outputs}; expected "
                         f"exactly one of each")
    succ: dict[str, list[str]] = {str(k): [] for k in graph.nodes}
    pred: dict[str, list[str]] = {str(k): [] for k in graph.nodes}
    first: dict[str, int] = {}
    for index, (a, b) in enumerate(graph.edges):
        a, b = str(a), str(b)
        if a not in succ or b not in succ:
            raise ValueError(f"edge ({a!r}, {b!r}) names a node the graph does not have")
        succ[a].append(b)
        pred[b].append(a)
        first.setdefault(b, index)
    start, end = inputs[0], outputs[0]
    if pred[start]:
        raise ValueError(f"the input node {start!r} has incoming edges from {pred[start]}")
    reach = {start}
    stack = [start]
    while stack:
        for b in succ[stack.pop()]:
            if b not in reach:
                reach.add(b)
                stack.append(b)
    unused = sorted(set(succ) - reach)
    if unused:
        raise ValueError(f"nodes {unused} are not reached from the input node {start!r}")
    waiting = {k: len(v) for k, v in pred.items()}
    ready = [start]
    order: list[str] = []
    while ready:
        ready.sort(key=lambda k: first.get(k, -1))
        here = ready.pop(0)
        order.append(here)
        for b in succ[here]:
            waiting[b] -= 1
            if waiting[b] == 0:
                ready.append(b)
    if len(order) != len(succ):
        stuck = sorted(k for k in succ if k not in order)
        raise ValueError(f"the graph has a cycle through {stuck}; spikenm networks are "
                         f"feed-forward (the recurrence is in the LIF state only)")
    dead = sorted(k for k in order if k != end and not succ[k])
    if dead:
        raise ValueError(f"nodes {dead} do not lead to the output node {end!r}")
    if order[-1] != end:  # pragma: no cover - every other node leads to the output
        raise AssertionError(order)
    return order, pred, succ


def _uniform(node_name: str, node: Any, field: str) -> float:
    values = np.asarray(getattr(node, field), dtype=np.float64)
    if values.size == 0:
        raise ValueError(f"node {node_name!r} has an empty {field}")
    first = float(values.flat[0])
    if not np.all(values == first):
        raise ValueError(f"node {node_name!r} has different {field} values per neuron "
                         f"({np.unique(values)[:4].tolist()}...); expected one value (a "
                         f"spikenm network has one LIFParams)")
    return first


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL, abs_tol=_REL)


def _neuron(name: str, node: Any, dt: float) -> tuple[float, float]:
    """``(beta, theta)`` of a LIF or IF node: ``beta = 1 - dt / tau`` and the threshold
    ``v_threshold / g`` of the membrane scaled by the input gain ``g = r dt / tau`` (``r dt``
    for no leak), module docstring."""
    nir = _nir()
    if isinstance(node, nir.LIF) and _uniform(name, node, "v_leak") != 0.0:
        raise ValueError(f"node {name!r} has v_leak {_uniform(name, node, 'v_leak')}; "
                         f"S4.3's neuron leaks to 0 (expected v_leak = 0)")
    if _uniform(name, node, "v_reset") != 0.0:
        raise ValueError(f"node {name!r} has v_reset {_uniform(name, node, 'v_reset')}; "
                         f"S4.3's neuron resets to 0 (expected v_reset = 0)")
    v_threshold = _uniform(name, node, "v_threshold")
    r = _uniform(name, node, "r")
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"node {name!r} has r {r}; expected a finite r > 0")
    tau = math.inf if isinstance(node, nir.IF) else _uniform(name, node, "tau")
    if math.isinf(tau) and tau > 0:                 # no leak: v += dt r I
        beta, gain = 1.0, r * dt
    elif not tau > 0:
        raise ValueError(f"node {name!r} has tau {tau}; expected tau > 0")
    else:
        beta, gain = 1.0 - dt / tau, r * dt / tau
    if beta < 0.0:
        raise ValueError(f"node {name!r} has tau {tau} < dt {dt}, which gives beta {beta}; "
                         f"expected tau >= dt")
    theta = v_threshold / gain
    if not (math.isfinite(theta) and theta > 0):
        raise ValueError(f"node {name!r} has v_threshold {v_threshold} and input gain "
                         f"r dt / tau = {gain}, a threshold {theta} of S4.3; expected a "
                         f"finite threshold > 0")
    return beta, theta


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        value = value.item()
        return value.decode() if isinstance(value, bytes) else value
    return value


def _graph_metadata(graph: Any) -> dict[str, Any]:
    meta = getattr(graph, "metadata", None) or {}
    return {(k.decode() if isinstance(k, bytes) else str(k)): _plain(v)
            for k, v in meta.items()}


def _pair(name: str, node: Any, field: str) -> tuple[int, int]:
    values = np.atleast_1d(np.asarray(getattr(node, field)))
    if values.size not in (1, 2) or values.dtype.kind not in "iu":
        raise ValueError(f"node {name!r} has {field} {values.tolist()}; expected one or two "
                         f"integers")
    return (int(values.flat[0]), int(values.flat[-1]))


def _square(name: str, node: Any, field: str) -> int:
    a, b = _pair(name, node, field)
    if a != b:
        raise ValueError(f"node {name!r} has {field} {[a, b]}; expected one integer for both "
                         f"spatial axes")
    return a


def _check_masked(graph: Graph, masked: Iterable[int] | None) -> tuple[int, ...]:
    last = len(graph.layers) - 1
    layers = tuple(range(1, last)) if masked is None else tuple(int(k) for k in masked)
    for k in layers:
        if not 0 <= k <= last:
            raise ValueError(f"masked layer {k} is out of range for {last + 1} layers")
    return layers


def nm_masks(graph: Graph, params: Mapping[str, Any], n: int, m: int,
             masked: Iterable[int] | None = None, *, names: Sequence[str] | None = None
             ) -> dict[int, np.ndarray]:
    """Re-derive the ``n:m`` masks of dense weights from their zeros, and validate them.

    For each masked layer ``k`` the mask is ``W != 0`` (0/1 in the weight's dtype,
    framework layout); `spikenm.api.check_nm` checks it in block layout (S0.2).

    Parameters
    ----------
    graph : spikenm.snn.Graph
    params : mapping
        `Graph.param_shapes` keys -> arrays of any framework.
    masked : iterable of int, optional
        Layer ordinals that must be ``n:m``; default every layer but the first and the
        last (S5.1).
    names : sequence of str, optional
        Names of the layers for error messages (e.g. NIR node names).

    Raises
    ------
    ValueError
        A masked layer whose input size is not a multiple of ``m``, whose weight has a
        block with more than ``n`` non-zeros, or an ordinal out of range.

    Examples
    --------
    >>> import numpy as np
    >>> g = Graph((4,), (Node("linear", (-1,), 4, 4, bias=False), Node("lif", (0,)),
    ...                  Node("linear", (1,), 4, 4, bias=False), Node("lif", (2,)),
    ...                  Node("linear", (3,), 4, 2, bias=False)))
    >>> w = np.array([[0.0, 1.0, 0.0, 2.0]] * 4)
    >>> params = {"layer0.weight": np.ones((4, 4)), "layer1.weight": w,
    ...           "layer2.weight": np.ones((2, 4))}
    >>> nm_masks(g, params, 2, 4)[1][0]
    array([0., 1., 0., 1.])
    """
    graph = _check_graph(graph)
    arrays = _host_table("parameter", params, graph.param_shapes())
    layers = _check_masked(graph, masked)
    labels = list(names) if names is not None else [f"layer {k}" for k in
                                                    range(len(graph.layers))]
    out = {}
    for k in layers:
        node, w = graph.layer_node(k), arrays[f"layer{k}.weight"]
        if node.in_features % m:
            raise ValueError(f"{labels[k]} has {node.in_features} inputs, not a multiple of "
                             f"m={m}; it cannot carry an {n}:{m} pattern")
        check_nm(to_block_layout(w), n, m, name=f"{labels[k]} weight {w.shape} (block layout)")
        out[k] = (w != 0).astype(w.dtype)
    return out


def _meta_bool(node: Any, key: str, default: bool) -> bool:
    meta = getattr(node, "metadata", None) or {}
    return bool(_plain(meta[key])) if key in meta else default


class _Reader:
    """State of one `from_nir` call: the graph nodes built so far and their shapes."""

    def __init__(self, graph: Any, input_shape: tuple[int, ...], dt: float,
                 global_pools: set[str]) -> None:
        self.graph = graph
        self.dt = dt
        self.global_pools = global_pools
        self.nodes: list[Node] = []
        self.shapes: list[tuple[int, ...]] = []
        self.input_shape = input_shape
        self.index: dict[str, int] = {}
        self.weights: list[tuple[str, np.ndarray, np.ndarray | None]] = []  # per layer
        self.neurons: list[tuple[str, float, float]] = []

    def shape(self, j: int) -> tuple[int, ...]:
        return self.input_shape if j < 0 else self.shapes[j]

    def push(self, node: Node, shape: tuple[int, ...], name: str | None = None) -> int:
        self.nodes.append(node)
        self.shapes.append(shape)
        if name is not None:
            self.index[name] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def source(self, name: str, preds: list[str]) -> int:
        """The graph node the NIR node ``name`` reads: its predecessor, or an ``add`` of
        its predecessors."""
        ins = [self.index[p] for p in preds]
        if len(ins) == 1:
            return ins[0]
        shapes = [self.shape(j) for j in ins]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"node {name!r} sums its inputs {preds} of shapes {shapes}; "
                             f"expected one shape")
        return self.push(Node("add", tuple(ins)), shapes[0])

    def layer(self, name: str, node: Any, src: int) -> tuple[Node, tuple[int, ...]]:
        nir = _nir()
        shape = self.shape(src)
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            if w.ndim != 2 or len(shape) != 1 or w.shape[1] != shape[0]:
                raise ValueError(f"node {name!r} has weight {w.shape} but receives shape "
                                 f"{shape}; expected a 2-D (out, {shape}) weight after a "
                                 f"Flatten")
            b = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
            spec = Node("linear", (src,), int(w.shape[1]), int(w.shape[0]), bias=b is not None)
            out = (spec.out_features,)
        else:
            w = np.asarray(node.weight)
            if w.ndim != 4 or w.shape[2] != w.shape[3] or len(shape) != 3 or \
                    w.shape[1] != shape[0]:
                raise ValueError(f"node {name!r} has weight {w.shape} and receives {shape}; "
                                 f"expected a square (out, {shape[0] if shape else '?'}, k, k) "
                                 f"kernel on (C, H, W) inputs")
            if isinstance(node.padding, str):
                raise ValueError(f"node {name!r} has padding {node.padding!r}; expected an "
                                 f"integer")
            stride, padding = _square(name, node, "stride"), _square(name, node, "padding")
            if _square(name, node, "dilation") != 1 or int(node.groups) != 1:
                raise ValueError(f"node {name!r} has dilation {node.dilation} and groups "
                                 f"{node.groups}; expected 1 and 1")
            b = np.asarray(node.bias)
            if not _meta_bool(node, "spikenm.bias", True) and not np.any(b):
                b = None
            k = int(w.shape[2])
            spec = Node("conv", (src,), int(w.shape[1]), int(w.shape[0]), k, stride, padding,
                        bias=b is not None)
            out = (spec.out_features,) + tuple((s + 2 * padding - k) // stride + 1
                                               for s in shape[1:])
        if w.dtype not in (np.float32, np.float64) or (b is not None and b.dtype != w.dtype):
            raise ValueError(f"node {name!r} has weight {w.dtype} and bias "
                             f"{None if b is None else b.dtype}; expected float32 or float64, "
                             f"the same for both")
        if b is not None and b.shape != (spec.out_features,):
            raise ValueError(f"node {name!r} has bias {b.shape}; expected "
                             f"({spec.out_features},)")
        if self.weights and self.weights[0][1].dtype != w.dtype:
            raise ValueError(f"node {name!r} has {w.dtype} weights but {self.weights[0][0]!r} "
                             f"has {self.weights[0][1].dtype}; a network has one dtype")
        self.weights.append((name, np.array(w, order="C"),
                             None if b is None else np.array(b, order="C")))
        return spec, out

    def neuron(self, name: str, node: Any, src: int) -> Node:
        beta, theta = _neuron(name, node, self.dt)
        self.neurons.append((name, beta, theta))
        return Node("lif", (src,))

    def pool(self, name: str, node: Any, src: int) -> tuple[Node, tuple[int, ...]]:
        nir = _nir()
        shape = self.shape(src)
        if not isinstance(node, nir.AvgPool2d):
            raise ValueError(f"node {name!r} is a {type(node).__name__}; expected AvgPool2d "
                             f"(S4.6 pools by averaging)")
        if len(shape) != 3:
            raise ValueError(f"node {name!r} pools a {shape} input; expected (C, H, W) maps")
        kernel, stride = _pair(name, node, "kernel_size"), _pair(name, node, "stride")
        if stride != kernel or _pair(name, node, "padding") != (0, 0):
            raise ValueError(f"node {name!r} pools with kernel {list(kernel)}, stride "
                             f"{np.asarray(node.stride).tolist()}, padding "
                             f"{np.asarray(node.padding).tolist()}; expected stride = kernel "
                             f"and no padding (S4.6)")
        whole = kernel == (shape[1], shape[2])
        if whole and (name in self.global_pools or kernel[0] != kernel[1]):
            window = 0
        else:
            if kernel[0] != kernel[1]:
                raise ValueError(f"node {name!r} has kernel_size {list(kernel)}; expected a "
                                 f"square window or the whole {shape[1]}x{shape[2]} map")
            window = kernel[0]
        spec = Node("pool", (src,), window=window)
        return spec, output_shape(spec, [shape], f"NIR node {name!r}")


def from_nir(graph: nir.NIRGraph, n: int, m: int, *, masked: Iterable[int] | None = None,
             dt: float | None = None, time_steps: int | None = None,
             reset: str | None = None, drop_spiking_readout: bool = False
             ) -> tuple[Graph, dict[str, np.ndarray], LIFParams]:
    """A network of S4 from a NIR graph, with the N:M pattern re-derived and checked.

    Parameters
    ----------
    graph : nir.NIRGraph
        One Input, one Output, and between them ``Affine``, ``Linear``, ``Conv2d``,
        ``LIF``, ``IF``, ``AvgPool2d`` and ``Flatten`` nodes without cycles; a node with
        several incoming edges sums them (an ``add``); the Output reads an ``Affine`` or
        ``Linear`` readout.  A leading batch axis in the Input node's shape (a traced
        sample batch: the shape without it fits the nodes reading the input, the shape
        with it does not, or they are a ``Flatten``) is dropped (S4.12b).
    n, m : int
        The pattern of the masked layers.
    masked : iterable of int, optional
        Layer ordinals whose weights must be ``n:m`` (`nm_masks`); default every layer but
        the first and the last (S5.1).
    dt : float, optional
        Euler step for ``beta = 1 - dt / tau``; default the graph's ``spikenm.dt``
        (snnTorch's exports use ``1e-4``).
    time_steps : int, optional
        ``T``; default the graph's ``spikenm.time_steps``.
    reset : ``"hard"`` or ``"soft"``, optional
        The neurons' reset (S4.3); default the graph's ``spikenm.reset`` (``"hard"`` for
        spikenm graphs of versions 1 and 2).  Required for other graphs: NIR's LIF node
        is the same for snnTorch's default subtract-reset ``snn.Leaky`` (``"soft"``) and
        a zero-reset one (``"hard"``).
    drop_spiking_readout : bool
        Read a graph whose Output reads a LIF/IF node after the last layer (snnTorch's
        spiking output layer) without that node: the logits become the mean current of
        the last layer (S4.8) instead of its spike counts.  Refused otherwise.

    Returns
    -------
    (Graph, dict, LIFParams)
        The graph (no ``bn`` nodes: they were folded on export), its parameters as NumPy
        arrays in the dtype stored in the NIR graph, and the neuron.

    Raises
    ------
    ValueError
        A graph outside that form (naming the node); neurons with different or
        non-uniform parameters, ``v_leak != 0`` or ``v_reset != 0``; a masked weight that
        is not ``n:m`` (naming the node and the block); ``dt``, ``time_steps`` or
        ``reset`` neither given nor in the graph's metadata, or ``reset`` given against
        the metadata.
    """
    nir = _nir()
    meta = _graph_metadata(graph)
    if "spikenm.format" in meta and meta["spikenm.format"] != FORMAT:
        raise ValueError(f"graph metadata 'spikenm.format' is {meta['spikenm.format']!r}; "
                         f"expected {FORMAT!r}")
    if "spikenm.version" in meta and meta["spikenm.version"] not in (1, 2, VERSION):
        raise ValueError(f"graph metadata 'spikenm.version' is {meta['spikenm.version']!r}; "
                         f"this spikenm reads versions 1 to {VERSION}")
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
    reset = _reset(meta, reset)
    if not isinstance(drop_spiking_readout, bool):
        raise TypeError(f"drop_spiking_readout must be a bool, got {drop_spiking_readout!r}")
    order, pred, succ = _order(graph)
    start, end = order[0], order[-1]
    spiking = _spiking_readout(graph, end, pred, succ, drop_spiking_readout)
    if spiking is not None:
        order.remove(spiking)
        pred[end] = pred[spiking]
    input_shape = _input_shape(graph, start, succ[start])
    pools = str(meta.get("spikenm.global_pools", ""))
    reader = _Reader(graph, input_shape, dt, {p for p in pools.split(",") if p})
    reader.index[start] = -1
    for name in order[1:-1]:
        node = graph.nodes[name]
        src = reader.source(name, pred[name])
        where = f"node {name!r}"
        if isinstance(node, nir.Flatten):
            shape = reader.shape(src)
            start_dim, end_dim = int(node.start_dim), int(node.end_dim)
            if start_dim not in (0, -len(shape)) or end_dim not in (-1, len(shape) - 1):
                raise ValueError(f"{where} flattens dims {start_dim}..{end_dim} of {shape}; "
                                 f"expected the whole map (start_dim 0, end_dim -1)")
            reader.push(Node("flatten", (src,)), (int(np.prod(shape)),), name)
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            spec, shape = reader.layer(name, node, src)
            reader.push(spec, shape, name)
        elif isinstance(node, (nir.LIF, nir.IF)):
            spec = reader.neuron(name, node, src)
            reader.push(spec, reader.shape(src), name)
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            spec, shape = reader.pool(name, node, src)
            reader.push(spec, shape, name)
        else:
            raise ValueError(f"{where} is a {type(node).__name__}; expected Affine, Linear, "
                             f"Conv2d, LIF, IF, AvgPool2d or Flatten (S4.12)")
    readout = pred[end]
    if len(readout) != 1 or not isinstance(graph.nodes[readout[0]], (nir.Affine, nir.Linear)) \
            or len(succ[readout[0]]) != 1 \
            or reader.index.get(readout[0]) != len(reader.nodes) - 1:
        raise ValueError(f"the output node {end!r} reads {readout}; the last layer must feed "
                         f"the output directly (one Affine/Linear node, a non-spiking readout, "
                         f"S4.8)")
    if not reader.weights:  # pragma: no cover - the readout check needs a layer
        raise ValueError("the graph has no Affine, Linear or Conv2d layer")
    out_graph = Graph(input_shape, tuple(reader.nodes))
    params: dict[str, np.ndarray] = {}
    for k, (_, w, b) in enumerate(reader.weights):
        params[f"layer{k}.weight"] = w
        if b is not None:
            params[f"layer{k}.bias"] = b
    beta, theta = _one_lif(reader.neurons, meta)
    lif = LIFParams(beta=beta, theta=theta,
                    alpha=float(meta.get("spikenm.alpha", LIFParams.alpha)),
                    reset=reset, detach_reset=bool(meta.get("spikenm.detach_reset", False)),
                    time_steps=int(time_steps))
    names = [f"NIR node {name!r} (layer {k})" for k, (name, _, _) in enumerate(reader.weights)]
    nm_masks(out_graph, params, n, m, masked, names=names)
    return out_graph, params, lif


def _reset(meta: dict[str, Any], reset: Any) -> str:
    """The reset of S4.3 from ``reset=`` and the graph metadata (S4.12b)."""
    if reset is not None and reset not in ("hard", "soft"):
        raise ValueError(f"reset={reset!r}; expected 'hard' or 'soft'")
    if "spikenm.reset" in meta:
        stated = meta["spikenm.reset"]
        if stated not in ("hard", "soft"):
            raise ValueError(f"graph metadata 'spikenm.reset' is {stated!r}; expected "
                             f"'hard' or 'soft'")
    elif "spikenm.format" in meta:
        stated = "hard"                       # versions 1 and 2 wrote hard resets only
    else:
        if reset is None:
            raise ValueError(
                "the graph does not state its neurons' reset (no 'spikenm.reset' metadata): "
                "pass reset='hard' (reset to zero, as NIR's LIF states) or reset='soft' "
                "(subtract the threshold: snnTorch's snn.Leaky default "
                "reset_mechanism='subtract', which snnTorch's export_to_nir writes as the "
                "same LIF node)")
        return str(reset)
    if reset is not None and reset != stated:
        raise ValueError(f"reset={reset!r} but the graph's metadata states {stated!r} "
                         f"(spikenm.reset, or a spikenm graph of version 1 or 2)")
    return str(stated)


def _spiking_readout(graph: Any, end: str, pred: dict[str, list[str]],
                     succ: dict[str, list[str]], drop: bool) -> str | None:
    """The LIF/IF node between the last layer and the output, if any (S4.12b): returned
    when ``drop``, refused otherwise."""
    nir = _nir()
    last = pred[end]
    if len(last) != 1 or not isinstance(graph.nodes[last[0]], (nir.LIF, nir.IF)):
        return None
    name = last[0]
    feeder = pred[name]
    if not drop:
        raise ValueError(
            f"the output node {end!r} reads the spiking node {name!r} "
            f"({type(graph.nodes[name]).__name__}): spikenm's readout is the non-spiking "
            f"mean current of the last Affine/Linear layer over the T steps (S4.8); pass "
            f"drop_spiking_readout=True to read the network without {name!r} (its logits "
            f"are then the mean current of {feeder}, not spike counts)")
    if len(feeder) != 1 or not isinstance(graph.nodes[feeder[0]], (nir.Affine, nir.Linear)) \
            or succ[feeder[0]] != [name] or succ[name] != [end]:
        raise ValueError(f"the spiking readout {name!r} reads {feeder}; expected one "
                         f"Affine/Linear node read by it alone")
    return name


def _input_shape(graph: Any, start: str, readers: list[str]) -> tuple[int, ...]:
    """The Input node's shape, without a leading batch axis (S4.12b)."""
    nir = _nir()
    raw = np.asarray(graph.nodes[start].input_type["input"]).reshape(-1).tolist()
    if any(s is None for s in raw[1:]):
        raise ValueError(f"the input node {start!r} has shape {raw}; expected sizes (only "
                         f"a leading batch axis may be unknown)")
    if raw and raw[0] is None:
        raw[0] = -1
    shape = tuple(int(s) for s in raw)
    if len(shape) < 2:
        return shape

    def fits(sample: tuple[int, ...]) -> bool:
        if not sample or min(sample) <= 0:
            return False
        for name in readers:
            node = graph.nodes[name]
            weight = getattr(node, "weight", None)
            if isinstance(node, (nir.Affine, nir.Linear)):
                ok = len(sample) == 1 and np.ndim(weight) == 2 and \
                    np.shape(weight)[1] == sample[0]
            elif isinstance(node, nir.Conv2d):
                ok = len(sample) == 3 and np.ndim(weight) == 4 and \
                    np.shape(weight)[1] == sample[0]
            else:
                ok = True
            if not ok:
                return False
        return True

    if shape[0] > 0 and fits(shape):
        return shape
    if fits(shape[1:]):
        return shape[1:]
    if shape[0] <= 0:
        raise ValueError(f"the input node {start!r} has shape {list(shape)}; expected the "
                         f"unknown leading axis to be a batch axis, but the nodes reading "
                         f"the input ({', '.join(readers)}) do not take {list(shape[1:])}")
    return shape


def read_nir(path: str | os.PathLike[str], n: int, m: int, *,
             masked: Iterable[int] | None = None, dt: float | None = None,
             time_steps: int | None = None, reset: str | None = None,
             drop_spiking_readout: bool = False
             ) -> tuple[Graph, dict[str, np.ndarray], LIFParams]:
    """`from_nir` of the NIR file at ``path`` (read with ``nir.read``), as a loader of
    SPEC S3.11: only the documented exceptions leave it.

    A NIR file carries no checksum, so a changed weight that keeps the ``n:m`` pattern
    reads as that weight; everything else `from_nir` checks.

    Raises
    ------
    TypeError
        ``n`` or ``m`` not an integer (checked before the file is opened).
    FileNotFoundError, PermissionError, IsADirectoryError
        From the operating system.
    ValueError
        Every other failure, naming the file: not an HDF5 NIR file, truncated or corrupt
        (the HDF5 library's errors), a graph `from_nir` refuses.
    """
    nir = _nir()
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"no NIR file at {where!r}")
    if os.path.isdir(where):
        raise IsADirectoryError(f"{where!r} is a directory; expected a NIR (HDF5) file")
    with loader_boundary(repr(where), "NIR graph file"):
        graph = nir.read(where)
        return from_nir(graph, n, m, masked=masked, dt=dt, time_steps=time_steps,
                        reset=reset, drop_spiking_readout=drop_spiking_readout)


def _one_lif(neurons: list[tuple[str, float, float]], meta: dict[str, Any]) -> tuple[float, float]:
    """The single ``(beta, theta)`` of all neurons; the metadata's exact values when they
    agree with the nodes up to the rounding of ``tau = dt / (1 - beta)``."""
    if not neurons:
        return LIFParams.beta, LIFParams.theta
    name0, beta, theta = neurons[0]
    for name, b, t in neurons[1:]:
        if not (_close(b, beta) and _close(t, theta)):
            raise ValueError(f"node {name!r} has beta {b}, theta {t} but {name0!r} has beta "
                             f"{beta}, theta {theta}; a spikenm network has one LIFParams")
    for key, value in (("spikenm.beta", beta), ("spikenm.theta", theta)):
        if key in meta and not _close(float(meta[key]), value):
            raise ValueError(f"graph metadata {key!r} is {meta[key]} but the neuron nodes "
                             f"give {value}; the graph was changed after export")
    beta = float(meta.get("spikenm.beta", beta))
    theta = float(meta.get("spikenm.theta", theta))
    return min(1.0, max(0.0, beta)), theta
