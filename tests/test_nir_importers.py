"""Round trips through the real NIR importers (SPEC S4.12a-S4.12c): networks written by
`spikenm.nir_io.to_nir` are rebuilt by snnTorch's ``import_from_nir`` and Norse's
``from_nir(graph, dt=1e-4)`` and run for ``T`` steps on the same input spikes; every LIF
layer's spikes must equal those of the NumPy reference (S4.3) and the mean readout current
its logits (S4.8).  Also the import direction (an snnTorch export read by `from_nir`), and
what an importer cannot rebuild, refused by `to_nir`."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from norse.torch import from_nir as norse_from_nir
from norse.torch.module.iaf import IAFCell
from norse.torch.module.lif_box import LIFBoxCell
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

import spikenm.nir_io as nio
from spikenm import api
from spikenm.reference.snn import _forward
from spikenm.snn import Graph, LIFParams, Node, init_buffers, init_params

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

N, M = 2, 4
Params = dict[str, np.ndarray]
Spikes = dict[str, np.ndarray]


def prune(graph: Graph, params: Params) -> Params:
    """Layers 1..L-2 pruned to 2:4 by magnitude (block layout, S0.2)."""
    out = dict(params)
    for k in range(1, len(graph.layers) - 1):
        blocks = api.to_block_layout(out[f"layer{k}.weight"])
        out[f"layer{k}.weight"] = np.ascontiguousarray(
            api.from_block_layout(blocks * api.topn_mask(np.abs(blocks), N, M)))
    return out


def network(graph: Graph, seed: int = 0) -> Params:
    params = init_params(graph, seed, 2.5, "float32")
    return prune(graph, {k: (v + np.float32(0.1) if k.endswith(".bias") else v)
                         for k, v in params.items()})


MLP = Graph((20,), (Node("linear", (-1,), 20, 24), Node("lif", (0,)),
                    Node("linear", (1,), 24, 16), Node("lif", (2,)),
                    Node("linear", (3,), 16, 4)))
RESIDUAL = Graph((12,), (Node("linear", (-1,), 12, 16), Node("lif", (0,)),
                         Node("linear", (1,), 16, 16), Node("add", (2, 1)), Node("lif", (3,)),
                         Node("linear", (4,), 16, 3)))
CONV = Graph((2, 8, 8), (Node("conv", (-1,), 2, 4, 3, 1, 1), Node("lif", (0,)),
                         Node("conv", (1,), 4, 8, 3, 2, 1), Node("lif", (2,)),
                         Node("flatten", (3,)), Node("linear", (4,), 128, 16), Node("lif", (5,)),
                         Node("linear", (6,), 16, 5)))
CONV_POOL = Graph((1, 8, 8), (Node("conv", (-1,), 1, 4, 3, 1, 1), Node("lif", (0,)),
                              Node("pool", (1,), window=2), Node("conv", (2,), 4, 8, 3, 1, 1),
                              Node("bn", (3,)), Node("lif", (4,)), Node("pool", (5,), window=2),
                              Node("flatten", (6,)), Node("linear", (7,), 32, 16),
                              Node("lif", (8,)), Node("linear", (9,), 16, 5)))


def reference(graph: Graph, params: Params, buffers: Params, x: np.ndarray, lif: LIFParams
              ) -> tuple[Spikes, np.ndarray]:
    """Spikes ``(T, B, *shape)`` of every LIF node (by NIR name) and the logits of the
    reference's eval-mode forward pass on input spikes ``x`` ``(T, B, *input)``."""
    fw = _forward(graph, params, buffers, x, False, lif, train=False, keep=True)
    spikes = {}
    for i in graph.neurons:
        shape = graph.shapes[i]
        s = fw.caches[i][1].reshape(x.shape[:2] + shape[1:] + shape[:1] if len(shape) == 3
                                    else x.shape[:2] + shape)
        spikes[graph.name_of(i)] = np.moveaxis(s, -1, 2) if len(shape) == 3 else s
    return spikes, fw.logits


def run_module(module: torch.nn.Module, neuron: type, x: np.ndarray, batched: bool,
               reset: Callable[[torch.nn.Module], None]) -> tuple[Spikes, np.ndarray]:
    """Run an imported module for ``T`` steps; spikes of each neuron module by name and
    the mean output over the steps.  ``batched=False`` feeds one unbatched sample at a
    time (the importers' ``Flatten(0)`` flattens a batch axis too)."""
    record: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, mod in module.named_modules():
        if isinstance(mod, neuron):
            record[name] = []
            hooks.append(mod.register_forward_hook(
                lambda _m, _i, out, name=name: record[name].append(
                    (out[0] if isinstance(out, tuple) else out).detach().clone())))
    t_steps, batch = x.shape[:2]
    xt = torch.from_numpy(x)
    outs = []
    with torch.no_grad():
        for sample in ([slice(None)] if batched else range(batch)):
            reset(module)
            state = None
            steps = []
            for t in range(t_steps):
                out, state = module(xt[t, sample], state)
                steps.append(out)
            outs.append(torch.stack(steps))                    # (T, [B,] classes)
    for h in hooks:
        h.remove()
    if batched:
        spikes = {k: torch.stack(v).numpy() for k, v in record.items()}
        mean = outs[0].mean(0)
    else:
        spikes = {k: torch.stack(v).reshape((batch, t_steps) + v[0].shape).transpose(0, 1)
                  .numpy() for k, v in record.items()}
        mean = torch.stack(outs, 1).mean(0)
    return spikes, mean.numpy()


def reset_snntorch(module: torch.nn.Module) -> None:
    for mod in module.modules():
        if isinstance(mod, snn.Leaky):
            mod.reset_mem()


def import_snntorch(graph: nir.NIRGraph) -> torch.nn.Module:
    with contextlib.redirect_stdout(io.StringIO()):   # its notes on the threshold scaling
        return import_from_nir(graph)


def import_norse(graph: nir.NIRGraph) -> torch.nn.Module:
    return norse_from_nir(graph, dt=graph.metadata["spikenm.dt"])


IMPORTERS = {"snntorch": (import_snntorch, snn.Leaky, reset_snntorch),
             "norse": (import_norse, (LIFBoxCell, IAFCell), lambda m: None)}


def agreement(graph: Graph, params: Params, lif: LIFParams, importer: str, batch: int = 16,
              buffers: Params | None = None, readers: tuple[str, ...] = nio.READERS,
              seed: int = 0) -> tuple[float, float, int]:
    """(fraction of identical spikes over all LIF layers, largest logit difference, number
    of spikes) of ``importer`` against the reference."""
    buffers = buffers or {}
    exported = nio.to_nir(graph, params, lif, buffers=buffers or None, readers=readers)
    build, neuron, reset = IMPORTERS[importer]
    rng = np.random.default_rng(seed)
    x = (rng.random((lif.time_steps, batch, *graph.input_shape)) < 0.4).astype(np.float32)
    want, logits = reference(graph, params, buffers, x, lif)
    got, mean = run_module(build(exported), neuron, x, batched=len(graph.input_shape) == 1
                           and not any(n.op == "flatten" for n in graph.nodes), reset=reset)
    assert sorted(got) == sorted(want)
    same = sum(int(np.sum(got[k] == want[k])) for k in want)
    total = sum(want[k].size for k in want)
    fired = sum(int(want[k].sum()) for k in want)
    return same / total, float(np.max(np.abs(mean - logits))), fired


@pytest.mark.parametrize("importer", ["snntorch", "norse"])
@pytest.mark.parametrize("kind, beta", [("mlp", 0.5), ("mlp", 0.9), ("residual", 0.75),
                                        ("conv", 0.5)])
def test_S4_12a_importers_rebuild_the_spikes_exactly(importer: str, kind: str, beta: float
                                                     ) -> None:
    """2:4 networks (MLP, residual add, strided conv) with the default export: every LIF
    layer's spikes identical, logits within float32 rounding."""
    graph = {"mlp": MLP, "residual": RESIDUAL, "conv": CONV}[kind]
    params = network(graph)
    api.check_nm(api.to_block_layout(params["layer1.weight"]), N, M)
    lif = LIFParams(beta=beta, theta=1.0, time_steps=6)
    same, diff, fired = agreement(graph, params, lif, importer)
    assert fired > 100                                       # the layers do fire
    assert same == 1.0
    assert diff < 1e-5


def test_S4_12a_S4_13_snntorch_rebuilds_pooling_and_folded_batch_norm() -> None:
    """Conv + average pooling + batch norm (folded on export): snnTorch only (Norse maps
    no AvgPool2d)."""
    graph = CONV_POOL
    params = network(graph, seed=1)
    rng = np.random.default_rng(5)
    params["bn0.gamma"] = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    params["bn0.beta"] = rng.uniform(-0.2, 0.3, 8).astype(np.float32)
    buffers = {k: (rng.uniform(-0.1, 0.1, v.shape) if k.endswith("mean")
                   else rng.uniform(0.5, 2.0, v.shape)).astype(np.float32)
               for k, v in init_buffers(graph, "float32").items()}
    lif = LIFParams(beta=0.75, time_steps=5)
    same, diff, fired = agreement(graph, params, lif, "snntorch", batch=8, buffers=buffers,
                                  readers=("snntorch",))
    assert fired > 100 and same == 1.0 and diff < 1e-5
    with pytest.raises(ValueError, match=r"pooling nodes \(pool0, pool1\).*Norse's from_nir"):
        nio.to_nir(graph, params, lif, buffers=buffers)


def test_S4_12a_integrate_and_fire_for_norse_refused_for_snntorch() -> None:
    """beta = 1 is an IF node: Norse's IAFCell rebuilds it; snnTorch would build
    snn.Leaky(beta=0.9), so to_nir refuses it for snnTorch."""
    lif = LIFParams(beta=1.0, theta=2.0, time_steps=5)
    params = network(MLP)
    same, diff, _ = agreement(MLP, params, lif, "norse", readers=("norse",))
    assert same == 1.0 and diff < 1e-5
    with pytest.raises(ValueError, match=r"lif.beta=1 .* import_from_nir builds as "
                                         r"snn.Leaky\(beta=0.9\)"):
        nio.to_nir(MLP, params, lif)


def test_S4_12a_the_old_parameterization_was_wrong_in_both_importers() -> None:
    """What the defaults prevent: dt = 1 (the old default) rebuilds a leak of almost 1 in
    snnTorch, and r = tau / dt scales Norse's input by 1 - beta."""
    lif = LIFParams(beta=0.5, time_steps=6)
    params = network(MLP)
    old = nio.to_nir(MLP, params, lif, dt=1.0, readers=("spikenm",))
    for node in old.nodes.values():
        if isinstance(node, nir.LIF):
            node.r, node.v_threshold = node.tau / 1.0, node.v_threshold / 0.5  # version 2
    x = (np.random.default_rng(0).random((6, 16, 20)) < 0.4).astype(np.float32)
    want, _ = reference(MLP, params, {}, x, lif)
    got, _ = run_module(import_snntorch(old), snn.Leaky, x, True, reset_snntorch)
    assert np.mean(got["lif1"] == want["lif1"]) < 0.9
    old.metadata["spikenm.dt"] = 1.0
    got, _ = run_module(norse_from_nir(old, dt=1.0), LIFBoxCell, x, True, lambda m: None)
    assert np.mean(got["lif1"] == want["lif1"]) < 0.9


# -- the import direction: snnTorch's export read by from_nir -------------------------------

def snntorch_net(reset: str, seed: int = 0) -> torch.nn.Sequential:
    """Linear-Leaky-Linear-Leaky with a spiking output, as snnTorch users write it; the
    reset applied in the step it fires (``reset_delay=False``, as in S4.3).  Its
    subtract reset is S4.3's soft reset while no membrane stays above the threshold after
    a reset (then snnTorch fires at ``H > 2 theta`` in the next step, S4.12b); these
    weights keep below that."""
    torch.manual_seed(seed)

    def leaky(n: int, **kw: bool) -> snn.Leaky:
        return snn.Leaky(beta=torch.full((n,), 0.75), threshold=torch.ones(n),
                         init_hidden=True, reset_mechanism=reset, reset_delay=False, **kw)

    return torch.nn.Sequential(torch.nn.Linear(12, 16), leaky(16), torch.nn.Linear(16, 3),
                               leaky(3, output=True))


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_S4_12b_snntorch_export_reads_with_its_reset(reset: str) -> None:
    """snnTorch writes subtract and zero reset as one LIF node: from_nir needs reset=,
    and a spiking readout needs drop_spiking_readout=True; then the hidden spikes are
    snnTorch's own."""
    net = snntorch_net(reset)
    with contextlib.redirect_stdout(io.StringIO()):
        exported = export_to_nir(net, torch.zeros(12))
    with pytest.raises(ValueError, match=r"does not state its neurons' reset"):
        nio.from_nir(exported, N, M, masked=[], dt=1e-4, time_steps=6)
    with pytest.raises(ValueError, match=r"reads the spiking node '3' \(LIF\)"):
        nio.from_nir(exported, N, M, masked=[], dt=1e-4, time_steps=6, reset="soft")
    ours = "soft" if reset == "subtract" else "hard"
    graph, params, lif = nio.from_nir(exported, N, M, masked=[], dt=1e-4, time_steps=6,
                                      reset=ours, drop_spiking_readout=True)
    assert lif.reset == ours and np.isclose(lif.beta, 0.75) and np.isclose(lif.theta, 1.0)
    assert [n.op for n in graph.nodes] == ["linear", "lif", "linear"]
    x = (np.random.default_rng(2).random((6, 32, 12)) < 0.5).astype(np.float32)
    want, _ = reference(graph, params, {}, x, lif)
    hidden: list[torch.Tensor] = []
    net[1].register_forward_hook(lambda _m, _i, out: hidden.append(out.detach().clone()))
    reset_snntorch(net)
    with torch.no_grad():
        for t in range(6):
            net(torch.from_numpy(x[t]))
    got = torch.stack(hidden).numpy()
    assert want["lif0"].sum() > 100 and np.array_equal(got, want["lif0"])   # 1.0 agreement
    if reset == "subtract":                            # read as a hard reset, it differs
        hard = LIFParams(beta=lif.beta, theta=lif.theta, time_steps=6)
        assert not np.array_equal(reference(graph, params, {}, x, hard)[0]["lif0"], got)


def test_S4_12b_batch_axis_in_the_input_node_is_dropped() -> None:
    """A traced sample batch in the Input node's shape (Norse's to_nir writes one) is not
    part of the network."""
    exported = nio.to_nir(MLP, network(MLP), LIFParams())
    for shape in ([1, 20], [32, 20]):
        exported.nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
        assert nio.from_nir(exported, N, M)[0] == MLP
    conv = nio.to_nir(CONV, network(CONV), LIFParams())
    conv.nodes["input"] = nir.Input(input_type={"input": np.array([1, 2, 8, 8])})
    assert nio.from_nir(conv, N, M)[0] == CONV
    exported.nodes["input"] = nir.Input(input_type={"input": np.array([-1, 19])})
    with pytest.raises(ValueError, match=r"input node 'input' has shape \[-1, 19\]; expected "
                                         r"the unknown leading axis to be a batch axis, but "
                                         r"the nodes reading the input \(layer0\) do not"):
        nio.from_nir(exported, N, M)
    exported.nodes["input"] = nir.Input(input_type={"input": np.array([3, 19])})
    with pytest.raises(ValueError, match=r"node 'layer0' has weight \(24, 20\) but receives "
                                         r"shape \(3, 19\)"):
        nio.from_nir(exported, N, M)


def test_S4_12b_version_2_graphs_read_as_hard_reset() -> None:
    """Graphs written before the reset travelled in the metadata had hard resets only."""
    exported = nio.to_nir(MLP, network(MLP), LIFParams())
    del exported.metadata["spikenm.reset"]
    exported.metadata["spikenm.version"] = 2
    assert nio.from_nir(exported, N, M)[2].reset == "hard"
    with pytest.raises(ValueError, match=r"reset='soft' but the graph's "
                                         r"metadata states 'hard'"):
        nio.from_nir(exported, N, M, reset="soft")
