"""Spiking graphs (SPEC S4.12-S4.14) to and from NIR: round trips of chains and residual
networks with batch norm, graph structure, the LIF mapping checked by simulating the NIR
equations, and N:M re-derivation on import."""

from __future__ import annotations


import doctest
import math
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import spikenm.nir_io as nio
from spikenm import api
from spikenm.registry import model_backend
from spikenm.snn import (Graph, LIFParams, Node, build_graph, fold_batch_norm, init_buffers,
                         init_params, resnet19)

N, M = 2, 4
Params = dict[str, np.ndarray]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def prune(graph: Graph, params: Params, layers: range | list[int]) -> Params:
    """Layers ``layers`` pruned to 2:4 by magnitude (block layout, S0.2)."""
    out = dict(params)
    for k in layers:
        blocks = api.to_block_layout(out[f"layer{k}.weight"])
        keep = api.topn_mask(np.abs(blocks), N, M)
        out[f"layer{k}.weight"] = np.ascontiguousarray(api.from_block_layout(blocks * keep))
    return out


def network(kind: str, dtype: str = "float64", seed: int = 0
            ) -> tuple[Graph, Params, dict[str, np.ndarray]]:
    """A trained-looking network: S4.10 init, biases 0.1, batch norm with drawn statistics,
    layers 1..L-2 pruned to 2:4 by magnitude (S5.1)."""
    if kind == "conv":
        graph = build_graph("conv", (1, 8, 8), 5, channels=(4, 8), hidden=(16,))
    elif kind == "mlp":
        graph = build_graph("mlp", (1, 4, 4), 3, hidden=(16, 8))
    else:
        graph = resnet19((1, 8, 8), 3, width=1 / 32)
    rng = np.random.default_rng(seed + 1)
    params = {k: (v + 0.1 if k.endswith(".bias") else v)
              for k, v in init_params(graph, seed, 2.0, dtype).items()}
    for key in params:
        if key.endswith(".gamma"):
            params[key] = rng.uniform(0.5, 1.5, params[key].shape).astype(dtype)
        elif key.endswith(".beta"):
            params[key] = rng.uniform(-0.2, 0.3, params[key].shape).astype(dtype)
    buffers = {k: (rng.uniform(-0.1, 0.1, v.shape) if k.endswith("mean")
                   else rng.uniform(0.5, 2.0, v.shape)).astype(dtype)
               for k, v in init_buffers(graph, dtype).items()}
    return graph, prune(graph, params, range(1, len(graph.layers) - 1)), buffers


def readers(graph: Graph) -> tuple[str, ...]:
    """The default readers, or snnTorch alone for a graph with pooling (Norse's importer
    maps no AvgPool2d, S4.12a)."""
    return ("snntorch",) if any(n.op == "pool" for n in graph.nodes) else nio.READERS


def same_params(a: Params, b: Params) -> bool:
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_S4_12_docstring_examples_run() -> None:
    result = doctest.testmod(nio, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_S4_12_round_trip_graph_params_lif(kind: str, dtype: str) -> None:
    graph, params, _ = network(kind, dtype)
    lif = LIFParams(beta=0.9, theta=0.75, alpha=3.0, detach_reset=True, time_steps=6)
    graph2, params2, lif2 = nio.from_nir(nio.to_nir(graph, params, lif,
                                                    readers=readers(graph)), N, M)
    assert graph2 == graph and lif2 == lif
    assert same_params(params2, params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_S4_13_S4_14_residual_network_with_batch_norm_round_trips_folded(dtype: str) -> None:
    """bn is folded on export (S4.13); residual adds become summed edges (S4.14)."""
    graph, params, buffers = network("resnet", dtype)
    assert graph.norms and any(n.op == "add" for n in graph.nodes)
    lif = LIFParams(beta=0.75, time_steps=3)
    exported = nio.to_nir(graph, params, lif, buffers=buffers, readers=readers(graph))
    graph2, params2, lif2 = nio.from_nir(exported, N, M)
    folded, folded_params = fold_batch_norm(graph, params, buffers)
    assert graph2 == folded and lif2 == lif
    assert same_params(params2, folded_params)
    assert sum(n.op == "add" for n in graph2.nodes) == 8 and not graph2.norms
    assert [n.window for n in graph2.nodes if n.op == "pool"] == [0]   # global pooling


def test_S4_12_round_trip_through_a_nir_file(tmp_path: Path) -> None:
    """`nir.read` returns nodes in name order; the edge order rebuilds the node order."""
    graph, params, buffers = network("resnet")
    lif = LIFParams(beta=0.8, time_steps=3)
    nir.write(tmp_path / "net.nir", nio.to_nir(graph, params, lif, buffers=buffers, dt=1e-3,
                                                readers=("spikenm",)))
    back = nir.read(tmp_path / "net.nir")
    assert list(back.nodes) == sorted(back.nodes)
    graph2, params2, lif2 = nio.from_nir(back, N, M)
    folded, folded_params = fold_batch_norm(graph, params, buffers)
    assert graph2 == folded and lif2 == lif and same_params(params2, folded_params)


def test_S4_12_torch_params_export() -> None:
    graph, params, _ = network("mlp", "float32")
    tparams = {k: torch.from_numpy(v) for k, v in params.items()}
    exported = nio.to_nir(graph, tparams, LIFParams())
    assert same_params(nio.from_nir(exported, N, M)[1], params)


def test_S4_12_layers_without_bias_round_trip() -> None:
    """A linear layer without bias is ``nir.Linear``; a conv without bias carries a zero
    bias and the node metadata ``spikenm.bias = False``."""
    graph = Graph((1, 4, 4), (Node("conv", (-1,), 1, 4, 3, 1, 1, bias=False), Node("lif", (0,)),
                              Node("flatten", (1,)), Node("linear", (2,), 64, 3, bias=False)))
    params = init_params(graph, 1, 2.0, "float64")
    exported = nio.to_nir(graph, params, LIFParams())
    assert isinstance(exported.nodes["layer1"], nir.Linear)
    assert not np.any(exported.nodes["layer0"].bias)
    graph2, params2, _ = nio.from_nir(exported, N, M)
    assert graph2 == graph and same_params(params2, params)


# -- graph structure ------------------------------------------------------------------------

def test_S4_12_conv_graph_nodes_and_edges() -> None:
    graph, params, _ = network("conv")
    exported = nio.to_nir(graph, params, LIFParams(), readers=("snntorch",))
    chain = ["input", "layer0", "lif0", "pool0", "layer1", "lif1", "pool1", "flatten0",
             "layer2", "lif2", "layer3", "output"]
    assert exported.edges == list(zip(chain[:-1], chain[1:]))
    types = {name: type(node) for name, node in exported.nodes.items()}
    assert types == {"input": nir.Input, "layer0": nir.Conv2d, "lif0": nir.LIF,
                     "pool0": nir.AvgPool2d, "layer1": nir.Conv2d, "lif1": nir.LIF,
                     "pool1": nir.AvgPool2d, "flatten0": nir.Flatten, "layer2": nir.Affine,
                     "lif2": nir.LIF, "layer3": nir.Affine, "output": nir.Output}
    assert exported.nodes["lif0"].tau.shape == (4, 8, 8)            # before pooling
    assert exported.nodes["lif1"].tau.shape == (8, 4, 4)
    assert list(exported.nodes["pool0"].kernel_size) == [2, 2]
    assert list(exported.nodes["pool0"].stride) == [2, 2]
    assert list(exported.nodes["layer0"].padding) == [1, 1]
    assert np.array_equal(exported.nodes["layer1"].weight, params["layer1.weight"])
    assert list(exported.nodes["output"].output_type["output"]) == [5]
    assert exported.metadata["spikenm.time_steps"] == 4 and exported.metadata["spikenm.dt"] == 1e-4
    assert "spikenm.global_pools" not in exported.metadata


def test_S4_14_residual_joins_are_summed_edges() -> None:
    graph, params, buffers = network("resnet")
    exported = nio.to_nir(graph, params, LIFParams(), buffers=buffers, readers=("snntorch",))
    into: dict[str, list[str]] = {}
    for a, b in exported.edges:
        into.setdefault(b, []).append(a)
    joins = {b: a for b, a in into.items() if len(a) > 1}
    assert len(joins) == 8 and all(isinstance(exported.nodes[b], nir.LIF) for b in joins)
    # the first block: identity shortcut from lif0 next to the block's second conv
    assert joins["lif2"] == ["layer2", "lif0"]
    # the first block of stage 2: a strided 1x1 conv shortcut
    first_conv_short = [b for b, a in joins.items() if all(s.startswith("layer") for s in a)]
    assert first_conv_short == ["lif8", "lif14"]
    assert exported.metadata["spikenm.global_pools"] == "pool0"
    assert list(exported.nodes["pool0"].kernel_size) == [2, 2]     # the whole 2x2 map


def test_S4_12_mlp_on_images_flattens_its_input() -> None:
    graph, params, _ = network("mlp")
    exported = nio.to_nir(graph, params, LIFParams())
    assert exported.edges[:2] == [("input", "flatten0"), ("flatten0", "layer0")]
    assert list(exported.nodes["input"].input_type["input"]) == [1, 4, 4]
    assert [type(exported.nodes[f"lif{i}"]) for i in range(2)] == [nir.LIF, nir.LIF]
    assert "lif2" not in exported.nodes                        # non-spiking readout (S4.8)


# -- the LIF mapping -------------------------------------------------------------------------

def test_S4_12_lif_parameters_follow_the_euler_mapping() -> None:
    graph, params, _ = network("mlp")
    lif = LIFParams(beta=0.75, theta=1.5)
    node = nio.to_nir(graph, params, lif, dt=0.5, readers=("norse",)).nodes["lif0"]
    np.testing.assert_allclose(node.tau, 0.5 / 0.25)
    assert np.all(node.r == 1.0)                    # S4.12a: Norse ignores r, so r = 1
    assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    assert np.all(node.v_threshold == 1.5 * 0.25)   # theta (1 - beta): gain r dt / tau
    default = nio.to_nir(graph, params, lif).nodes["lif0"]      # dt = 1e-4 (snnTorch's)
    np.testing.assert_allclose(default.tau, 4e-4)
    assert nio.to_nir(graph, params, lif).metadata["spikenm.dt"] == nio.DT == 1e-4


def test_S4_12_beta_one_is_an_integrate_and_fire_node() -> None:
    graph, params, _ = network("mlp")
    lif = LIFParams(beta=1.0)
    exported = nio.to_nir(graph, params, lif, dt=0.25, readers=("norse",))
    assert isinstance(exported.nodes["lif0"], nir.IF) and np.all(exported.nodes["lif0"].r == 4.0)
    assert nio.from_nir(exported, N, M)[2] == lif


def test_S4_12a_soft_reset_is_refused_for_the_importers_and_carried_for_spikenm() -> None:
    graph, params, _ = network("mlp")
    soft = LIFParams(reset="soft", beta=0.75, time_steps=3)
    for names, shown in [(nio.READERS, "snntorch, norse"), (("norse", "spikenm"), "norse")]:
        with pytest.raises(ValueError, match=rf"lif.reset='soft' .* cannot be written for "
                                             rf"{shown}: NIR's LIF resets to v_reset.*"
                                             rf"readers=\('spikenm',\)"):
            nio.to_nir(graph, params, soft, readers=names)
    exported = nio.to_nir(graph, params, soft, readers=("spikenm",))
    assert exported.metadata["spikenm.reset"] == "soft"
    graph2, params2, lif2 = nio.from_nir(exported, N, M)
    assert graph2 == graph and lif2 == soft and same_params(params2, params)
    with pytest.raises(ValueError, match=r"reset='hard' but the graph's "
                                         r"metadata states 'soft'"):
        nio.from_nir(exported, N, M, reset="hard")


def test_S4_12a_what_an_importer_cannot_rebuild_is_refused() -> None:
    graph, params, _ = network("mlp")
    with pytest.raises(ValueError, match=r"dt=1.0: snnTorch's import_from_nir assumes "
                                         r"dt = 0.0001"):
        nio.to_nir(graph, params, LIFParams(), dt=1.0)
    with pytest.raises(ValueError, match=r"lif.beta=1 .* snn.Leaky\(beta=0.9\)"):
        nio.to_nir(graph, params, LIFParams(beta=1.0))
    conv, conv_params, _ = network("conv")
    with pytest.raises(ValueError, match=r"pooling nodes \(pool0, pool1\), written as NIR "
                                         r"AvgPool2d, which Norse's from_nir does not map"):
        nio.to_nir(conv, conv_params, LIFParams())
    with pytest.raises(ValueError, match=r"readers=\('torch',\): expected one or more of"):
        nio.to_nir(graph, params, LIFParams(), readers=("torch",))
    with pytest.raises(TypeError, match=r"readers must be a sequence of reader names"):
        nio.to_nir(graph, params, LIFParams(), readers="snntorch")


def _topological(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[str]]]:
    preds: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order: list[str] = []
    while len(order) < len(preds):
        order += [k for k in preds if k not in order and all(p in order for p in preds[k])][:1]
    return order, preds


def simulate_nir(graph: nir.NIRGraph, x: np.ndarray, steps: int, dt: float) -> np.ndarray:
    """Run a NIR graph by its own equations, forward Euler with step ``dt``: a node's input
    is the sum of its incoming edges; ``v += dt / tau * (v_leak - v + r I)`` (LIF),
    ``v += dt r I`` (IF), spike when ``v > v_threshold``, then ``v = v_reset``; returns the
    mean output over the steps."""
    order, preds = _topological(graph)
    state: dict[str, torch.Tensor] = {}
    total = torch.zeros(())
    for _ in range(steps):
        out: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                out[name] = torch.from_numpy(x)
                continue
            a = sum(out[p] for p in preds[name][1:]) + out[preds[name][0]]
            if isinstance(node, nir.Output):
                total = total + a
            elif isinstance(node, nir.Flatten):
                a = a.reshape(a.shape[0], -1)
            elif isinstance(node, nir.Affine):
                a = a @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias)
            elif isinstance(node, nir.Linear):
                a = a @ torch.from_numpy(node.weight).T
            elif isinstance(node, nir.Conv2d):
                a = F.conv2d(a, torch.from_numpy(node.weight), torch.from_numpy(node.bias),
                             stride=tuple(node.stride), padding=tuple(int(p) for p in node.padding))
            elif isinstance(node, nir.AvgPool2d):
                a = F.avg_pool2d(a, tuple(int(k) for k in node.kernel_size),
                                 tuple(int(s) for s in node.stride))
            elif isinstance(node, (nir.LIF, nir.IF)):
                v = state.get(name, torch.zeros_like(a))
                r = torch.from_numpy(node.r)
                if isinstance(node, nir.LIF):
                    tau = torch.from_numpy(node.tau)
                    v = v + dt / tau * (torch.from_numpy(node.v_leak) - v + r * a)
                else:
                    v = v + dt * r * a
                z = v > torch.from_numpy(node.v_threshold)
                state[name] = torch.where(z, torch.from_numpy(node.v_reset).expand_as(v), v)
                a = z.to(a.dtype)
            else:  # pragma: no cover - the exporter writes no other node
                raise AssertionError(type(node))
            out[name] = a
    return (total / steps).numpy()


@pytest.mark.parametrize("kind, beta, dt, names", [
    ("mlp", 0.5, 1.0, ("norse",)), ("conv", 0.9, 1e-4, ("snntorch",)),
    ("mlp", 1.0, 0.5, ("norse",)), ("resnet", 0.75, 1.0, ("spikenm",)),
    ("mlp", 0.0, 1e-4, nio.READERS)])
def test_S4_12_nir_equations_reproduce_the_network(kind: str, beta: float, dt: float,
                                                   names: tuple[str, ...]) -> None:
    """The exported graph, run by NIR's own equations, gives the logits of S4 in eval mode
    (checked through the loss and accuracy count of the reference model backend)."""
    graph, params, buffers = network(kind)
    lif = LIFParams(beta=beta, theta=1.0, time_steps=5)
    exported = nio.to_nir(graph, params, lif, buffers=buffers, dt=dt, readers=names)
    rng = np.random.default_rng(3)
    x = rng.random((16, *graph.input_shape))
    y = rng.integers(0, graph.num_classes, 16)
    logits = simulate_nir(exported, x, lif.time_steps, dt)
    loss = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(16), y]))
    backend = model_backend("numpy")
    result = backend.evaluate(graph, params, buffers, x, y, lif)
    assert result.spike_sums[0] > 0 and result.spike_sums[-1] > 0    # neurons do fire
    assert math.isclose(result.loss_sum / result.count, loss, rel_tol=1e-9)
    assert result.correct == int(np.sum(logits.argmax(1) == y))


# -- export: what cannot be written -----------------------------------------------------------

def test_S4_13_batch_norm_needs_its_running_statistics() -> None:
    graph, params, buffers = network("resnet")
    with pytest.raises(ValueError, match=r"batch norm nodes \(bn0, bn1, .*pass buffers="):
        nio.to_nir(graph, params, LIFParams())
    with pytest.raises(ValueError, match=r"buffers do not match the graph: missing "
                                         r"\['bn0.running_mean'\]"):
        nio.to_nir(graph, params, LIFParams(),
                   buffers={k: v for k, v in buffers.items() if k != "bn0.running_mean"})
    after_lif = Graph((4,), (Node("linear", (-1,), 4, 4), Node("lif", (0,)), Node("bn", (1,)),
                             Node("linear", (2,), 4, 2)))
    with pytest.raises(ValueError, match=r"bn0 \(node 2\) does not directly follow a "
                                         r"linear/conv layer"):
        nio.to_nir(after_lif, init_params(after_lif, 0, 1.0, "float64"), LIFParams(),
                   buffers=init_buffers(after_lif, "float64"))


def test_S4_14_an_add_repeating_a_source_is_refused() -> None:
    twice = Graph((4,), (Node("linear", (-1,), 4, 4), Node("lif", (0,)), Node("add", (1, 1)),
                         Node("linear", (2,), 4, 2)))
    with pytest.raises(ValueError, match=r"add@2 \(node 2\) sums \['lif0', 'lif0'\], a source "
                                         r"more than once"):
        nio.to_nir(twice, init_params(twice, 0, 1.0, "float64"), LIFParams())


def test_S4_12_export_checks_params_against_the_graph() -> None:
    graph, params, _ = network("mlp")
    with pytest.raises(ValueError, match=r"parameter layer1.weight has shape \(16, 8\); "
                                         r"expected \(8, 16\)"):
        nio.to_nir(graph, {**params, "layer1.weight": params["layer1.weight"].T}, LIFParams())
    with pytest.raises(ValueError, match=r"missing \['layer2.bias', 'layer2.weight'\], "
                                         r"unexpected \['layer9.weight'\]"):
        nio.to_nir(graph, {**{k: v for k, v in params.items() if not k.startswith("layer2")},
                           "layer9.weight": params["layer2.weight"]}, LIFParams())
    with pytest.raises(TypeError, match=r"parameters\['layer0.weight'\] is float16"):
        nio.to_nir(graph, {**params, "layer0.weight": params["layer0.weight"].astype(np.float16)},
                   LIFParams())
    with pytest.raises(ValueError, match=r"dt must be finite and > 0"):
        nio.to_nir(graph, params, LIFParams(), dt=0.0)
    with pytest.raises(TypeError, match=r"lif must be a spikenm.snn.LIFParams"):
        nio.to_nir(graph, params, {"beta": 0.5})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"graph must be a spikenm.snn.Graph"):
        nio.to_nir("mlp", params, LIFParams())  # type: ignore[arg-type]


# -- import: N:M validation and foreign graphs ---------------------------------------------

def test_S4_12_tampered_weight_fails_the_pattern_check() -> None:
    graph, params, _ = network("conv")
    exported = nio.to_nir(graph, params, LIFParams(), readers=("snntorch",))
    w = exported.nodes["layer1"].weight                      # (8, 4, 3, 3), blocks along in=4
    zero = np.argwhere(w[0, :, 0, 0] == 0)[0][0]
    w[0, zero, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"NIR node 'layer1' \(layer 1\) weight \(8, 4, 3, 3\) "
                                         r"\(block layout\) is not 2:4 sparse.*block 0 at "
                                         r"\[0, 0, 0, 0:4\] has 3 non-zeros"):
        nio.from_nir(exported, N, M)
    graph2, _, _ = nio.from_nir(exported, N, M, masked=[2])   # the caller decides what is n:m
    assert graph2 == graph


def test_S4_12_masked_layers_must_fit_m() -> None:
    graph, params, _ = network("conv")
    exported = nio.to_nir(graph, params, LIFParams(), readers=("snntorch",))
    with pytest.raises(ValueError, match=r"NIR node 'layer0' \(layer 0\) has 1 inputs, not a "
                                         r"multiple of m=4"):
        nio.from_nir(exported, N, M, masked=[0, 1])
    with pytest.raises(ValueError, match=r"masked layer 7 is out of range for 4 layers"):
        nio.from_nir(exported, N, M, masked=[7])


def test_S4_12_nm_masks_are_the_nonzeros() -> None:
    graph, params, _ = network("resnet")
    masks = nio.nm_masks(graph, params, N, M)
    assert sorted(masks) == list(range(1, len(graph.layers) - 1))
    for k, mask in masks.items():
        assert np.array_equal(mask, (params[f"layer{k}.weight"] != 0).astype(mask.dtype))
        assert np.all(api.to_block_layout(mask).reshape(-1, M).sum(-1) <= N)


def test_S4_12b_snntorch_style_graph_without_metadata() -> None:
    """snnTorch's convention (dt = 1e-4, r = tau / dt): gain 1, weights kept as they are;
    the reset must be given (snnTorch writes subtract and zero resets as one node)."""
    w0, w1 = np.eye(8, 4), np.ones((2, 8))
    tau = np.full(8, 1e-4 / (1 - 0.9))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([4])}),
               "fc1": nir.Affine(weight=w0, bias=np.zeros(8)),
               "lif1": nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(8),
                               v_threshold=np.ones(8), v_reset=np.zeros(8)),
               "fc2": nir.Linear(weight=w1),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "output")])
    with pytest.raises(ValueError, match=r"no 'spikenm.dt' metadata: pass dt="):
        nio.from_nir(graph, N, M, masked=[])
    with pytest.raises(ValueError, match=r"no 'spikenm.time_steps' metadata"):
        nio.from_nir(graph, N, M, masked=[], dt=1e-4)
    with pytest.raises(ValueError, match=r"does not state its neurons' reset .*pass "
                                         r"reset='hard' .* or reset='soft' .*snnTorch"):
        nio.from_nir(graph, N, M, masked=[], dt=1e-4, time_steps=8)
    with pytest.raises(ValueError, match=r"reset='zero'; expected 'hard' or 'soft'"):
        nio.from_nir(graph, N, M, masked=[], dt=1e-4, time_steps=8, reset="zero")
    graph2, params, lif = nio.from_nir(graph, N, M, masked=[], dt=1e-4, time_steps=8,
                                       reset="soft")
    assert lif.reset == "soft"
    assert graph2 == Graph((4,), (Node("linear", (-1,), 4, 8), Node("lif", (0,)),
                                  Node("linear", (1,), 8, 2, bias=False)))
    assert math.isclose(lif.beta, 0.9, rel_tol=1e-12) and lif.time_steps == 8
    assert np.array_equal(params["layer0.weight"], w0) and "layer1.bias" not in params


def test_S4_12_norse_style_gain_scales_the_threshold() -> None:
    """r = 1 (Norse): the input enters scaled by dt / tau, which reads as the threshold
    v_threshold / (dt / tau) of the unscaled membrane; the weights are kept."""
    w0 = np.array([[0.0, 2.0, 0.0, 4.0]] * 8)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([4])}),
               "a": nir.Affine(weight=w0, bias=np.full(8, 1.0)),
               "n": nir.LIF(tau=np.full(8, 4.0), r=np.ones(8), v_leak=np.zeros(8),
                            v_threshold=np.ones(8)),
               "b": nir.Affine(weight=np.ones((2, 8)), bias=np.zeros(2)),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "a"), ("a", "n"), ("n", "b"), ("b", "output")])
    _, params, lif = nio.from_nir(graph, N, M, masked=[0], dt=1.0, time_steps=4,
                                  reset="hard")
    assert lif.beta == 0.75 and lif.theta == 4.0
    assert np.array_equal(params["layer0.weight"], w0)
    assert np.all(params["layer0.bias"] == 1.0)


def test_S4_14_foreign_residual_graph_reads_as_an_add() -> None:
    """Two edges into one node (NIR sums them) are an ``add`` before the node; a neuron
    with another input gain has another threshold, which one LIFParams cannot hold."""
    tau = np.full(4, 2.0)
    neuron = dict(tau=tau, r=tau.copy(), v_leak=np.zeros(4), v_threshold=np.ones(4),
                  v_reset=np.zeros(4))
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "a": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
             "s": nir.LIF(**neuron),
             "b": nir.Affine(weight=2 * np.eye(4), bias=np.zeros(4)),
             "join": nir.LIF(**neuron),
             "out": nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "a"), ("a", "s"), ("s", "b"), ("b", "join"), ("s", "join"),
             ("join", "out"), ("out", "output")]
    graph, _, _ = nio.from_nir(nir.NIRGraph(nodes=nodes, edges=edges), N, M, masked=[],
                               dt=1.0, time_steps=2, reset="hard")
    assert [(n.op, n.inputs) for n in graph.nodes] == [
        ("linear", (-1,)), ("lif", (0,)), ("linear", (1,)), ("add", (2, 1)), ("lif", (3,)),
        ("linear", (4,))]
    nodes["join"] = nir.LIF(**{**neuron, "r": np.ones(4)})
    with pytest.raises(ValueError, match=r"node 'join' has beta 0.5, theta 2.0 but 's' has "
                                         r"beta 0.5, theta 1.0"):
        nio.from_nir(nir.NIRGraph(nodes=nodes, edges=edges), N, M, masked=[], dt=1.0,
                     time_steps=2, reset="hard")


def test_S4_12_lif_without_leak_reads_as_beta_one() -> None:
    """tau = inf (no leak) is beta = 1 with input gain r dt, like an IF node."""
    graph, params, _ = network("mlp")
    exported = nio.to_nir(graph, params, LIFParams(beta=0.5), dt=1.0, readers=("norse",))
    for name in ("lif0", "lif1"):
        node = exported.nodes[name]
        node.tau = np.full_like(node.tau, np.inf)
        node.v_threshold = np.ones_like(node.v_threshold)       # gain r dt = 1
    with pytest.raises(ValueError, match=r"metadata 'spikenm.beta' is 0.5 but the neuron "
                                         r"nodes give 1.0"):
        nio.from_nir(exported, N, M)
    exported.metadata["spikenm.beta"] = 1.0
    _, params2, lif = nio.from_nir(exported, N, M)
    assert lif.beta == 1.0
    assert same_params(params2, params)                       # r dt = 1: weights as they were


def test_S4_6_foreign_pooling_reads() -> None:
    """Without the metadata a whole-map square window is a q x q pool (the same numbers);
    a whole-map non-square window is global pooling; other windows are refused."""
    graph = Graph((2, 4, 6), (Node("conv", (-1,), 2, 4, 3, 1, 1), Node("lif", (0,)),
                              Node("pool", (1,), window=0), Node("flatten", (2,)),
                              Node("linear", (3,), 4, 2)))
    params = init_params(graph, 0, 2.0, "float64")
    exported = nio.to_nir(graph, params, LIFParams(), readers=("snntorch",))
    assert exported.metadata["spikenm.global_pools"] == "pool0"
    del exported.metadata["spikenm.global_pools"]
    assert nio.from_nir(exported, N, M, masked=[])[0] == graph         # 4x6: non-square
    exported.nodes["pool0"].kernel_size = np.array([2, 3])
    exported.nodes["pool0"].stride = np.array([2, 3])
    with pytest.raises(ValueError, match=r"node 'pool0' has kernel_size \[2, 3\]; expected a "
                                         r"square window or the whole 4x6 map"):
        nio.from_nir(exported, N, M, masked=[])
    square = Graph((1, 4, 4), (Node("conv", (-1,), 1, 4, 3, 1, 1), Node("lif", (0,)),
                               Node("pool", (1,), window=0), Node("flatten", (2,)),
                               Node("linear", (3,), 4, 2)))
    exported = nio.to_nir(square, init_params(square, 0, 2.0, "float64"), LIFParams(),
                          readers=("snntorch",))
    assert nio.from_nir(exported, N, M, masked=[])[0] == square
    del exported.metadata["spikenm.global_pools"]
    assert nio.from_nir(exported, N, M, masked=[])[0].nodes[2].window == 4


def graph_with(change: str) -> nir.NIRGraph:
    graph, params, _ = network("mlp")
    exported = nio.to_nir(graph, params, LIFParams())
    node = exported.nodes["lif1"]
    if change == "v_leak":
        node.v_leak = np.full_like(node.v_leak, 0.1)
    elif change == "v_reset":
        node.v_reset = np.full_like(node.v_reset, -1.0)
    elif change == "tau per neuron":
        node.tau = node.tau.copy()
        node.tau[0] = 3.0
    elif change == "tau per layer":
        node.tau = np.full_like(node.tau, 3e-4)
    elif change == "metadata":
        exported.metadata["spikenm.beta"] = 0.7
    elif change == "spiking readout":
        exported.nodes["lif2"] = nir.LIF(**{k: np.resize(getattr(node, k), 3) for k in
                                            ("tau", "r", "v_leak", "v_threshold", "v_reset")})
        exported.edges = exported.edges[:-1] + [("layer2", "lif2"), ("lif2", "output")]
    elif change == "branch":
        exported.nodes["extra"] = nir.Output(output_type={"output": np.array([8])})
        exported.edges.append(("lif1", "extra"))
    elif change == "flatten":
        exported.nodes["flatten0"].start_dim = 1
    elif change == "scale":
        exported.nodes["lif1"] = nir.Scale(scale=np.ones(8))
    elif change == "cycle":
        exported.edges.append(("lif1", "layer1"))
    elif change == "dead end":
        exported.nodes["probe"] = nir.LIF(**{k: getattr(node, k) for k in
                                             ("tau", "r", "v_leak", "v_threshold", "v_reset")})
        exported.edges.append(("layer1", "probe"))
    elif change == "version":
        exported.metadata["spikenm.version"] = 9
    return exported


@pytest.mark.parametrize("change, message", [
    ("v_leak", r"node 'lif1' has v_leak 0.1; .*expected v_leak = 0"),
    ("v_reset", r"node 'lif1' has v_reset -1.0; .*expected v_reset = 0"),
    ("tau per neuron", r"node 'lif1' has different tau values per neuron"),
    ("tau per layer", r"node 'lif1' has beta 0.666.*, theta 1.4999.* but 'lif0' has beta 0.5"),
    ("metadata", r"graph metadata 'spikenm.beta' is 0.7 but the neuron nodes give 0.5"),
    ("spiking readout", r"the output node 'output' reads the spiking node 'lif2' \(LIF\): "
                        r"spikenm's readout is the non-spiking mean current .* pass "
                        r"drop_spiking_readout=True"),
    ("branch", r"inputs \['input'\] and outputs \['output', 'extra'\]"),
    ("flatten", r"node 'flatten0' flattens dims 1..-1 of \(1, 4, 4\); expected the whole map"),
    ("scale", r"node 'lif1' is a Scale; expected Affine, Linear, Conv2d, LIF, IF, AvgPool2d "
              r"or Flatten"),
    ("cycle", r"the graph has a cycle through \['layer1', 'layer2', 'lif1', 'output'\]"),
    ("dead end", r"nodes \['probe'\] do not lead to the output node 'output'"),
    ("version", r"'spikenm.version' is 9; this spikenm reads versions 1 to 3"),
])
def test_S4_12_graphs_spikenm_cannot_represent_are_refused(change: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nio.from_nir(graph_with(change), N, M)
