"""The trainer's networks (SPEC S4) to and from NIR: round trips, graph structure, the LIF
mapping checked by simulating the NIR equations, and N:M re-derivation on import."""

from __future__ import annotations

from collections.abc import Iterator

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
from spikenm.train.config import LIFConfig, ModelConfig
from spikenm.train.model_backend import Arch, LayerParams, LayerSpec, load_model_backend
from spikenm.train.network import build_arch, init_params

N, M = 2, 4


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids spin-waiting on a shared two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def network(kind: str, dtype: str = "float64", seed: int = 0
            ) -> tuple[Arch, list[LayerParams]]:
    """A trained-looking network: S4.10 init, layers 1..L-2 pruned to 2:4 by magnitude."""
    if kind == "conv":
        arch = build_arch(ModelConfig(arch="conv", channels=(4, 8), hidden=(16,)), (1, 8, 8), 5)
    else:
        arch = build_arch(ModelConfig(hidden=(16, 8)), (1, 4, 4), 3)
    params = [LayerParams(w, b + 0.1) for w, b in init_params(arch, seed, 2.0, dtype)]
    for i in range(1, len(params) - 1):
        blocks = api.to_block_layout(params[i].weight)
        keep = api.topn_mask(np.abs(blocks), N, M)
        params[i] = LayerParams(np.ascontiguousarray(api.from_block_layout(blocks * keep)),
                                params[i].bias)
    return arch, params


def same_params(a: tuple[LayerParams, ...] | list[LayerParams],
                b: tuple[LayerParams, ...] | list[LayerParams]) -> bool:
    return len(a) == len(b) and all(
        x.weight.dtype == y.weight.dtype and np.array_equal(x.weight, y.weight)
        and np.array_equal(x.bias, y.bias) for x, y in zip(a, b))


def test_S4_12_docstring_examples_run() -> None:
    result = doctest.testmod(nio, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_S4_12_round_trip_arch_params_lif(kind: str, dtype: str) -> None:
    arch, params = network(kind, dtype)
    lif = LIFConfig(beta=0.9, theta=0.75, alpha=3.0, detach_reset=True, time_steps=6)
    arch2, params2, lif2 = nio.from_nir(nio.to_nir(arch, params, lif), N, M)
    assert arch2 == arch and lif2 == lif
    assert same_params(params2, params)


def test_S4_12_round_trip_through_a_nir_file(tmp_path: Path) -> None:
    arch, params = network("conv")
    lif = LIFConfig(beta=0.8, time_steps=3)
    nir.write(tmp_path / "net.nir", nio.to_nir(arch, params, lif, dt=1e-3))
    arch2, params2, lif2 = nio.from_nir(nir.read(tmp_path / "net.nir"), N, M)
    assert arch2 == arch and lif2 == lif and same_params(params2, params)


def test_S4_12_torch_params_export() -> None:
    arch, params = network("mlp", "float32")
    tparams = [LayerParams(torch.from_numpy(p.weight), torch.from_numpy(p.bias)) for p in params]
    graph = nio.to_nir(arch, tparams, LIFConfig())
    assert same_params(nio.from_nir(graph, N, M)[1], params)


# -- graph structure ------------------------------------------------------------------------

def test_S4_12_conv_graph_nodes_and_edges() -> None:
    arch, params = network("conv")
    graph = nio.to_nir(arch, params, LIFConfig())
    chain = ["input", "layer0", "lif0", "pool0", "layer1", "lif1", "pool1", "flatten", "layer2",
             "lif2", "layer3", "output"]
    assert graph.edges == list(zip(chain[:-1], chain[1:]))
    types = {name: type(node) for name, node in graph.nodes.items()}
    assert types == {"input": nir.Input, "layer0": nir.Conv2d, "lif0": nir.LIF,
                     "pool0": nir.AvgPool2d, "layer1": nir.Conv2d, "lif1": nir.LIF,
                     "pool1": nir.AvgPool2d, "flatten": nir.Flatten, "layer2": nir.Affine,
                     "lif2": nir.LIF, "layer3": nir.Affine, "output": nir.Output}
    assert graph.nodes["lif0"].tau.shape == (4, 8, 8)            # before pooling
    assert graph.nodes["lif1"].tau.shape == (8, 4, 4)
    assert list(graph.nodes["pool0"].kernel_size) == [2, 2]
    assert list(graph.nodes["pool0"].stride) == [2, 2]
    assert list(graph.nodes["layer0"].padding) == [1, 1]
    assert np.array_equal(graph.nodes["layer1"].weight, params[1].weight)
    assert list(graph.nodes["output"].output_type["output"]) == [5]
    assert graph.metadata["spikenm.time_steps"] == 4 and graph.metadata["spikenm.dt"] == 1.0


def test_S4_12_mlp_on_images_flattens_its_input() -> None:
    arch, params = network("mlp")
    graph = nio.to_nir(arch, params, LIFConfig())
    assert graph.edges[:2] == [("input", "flatten"), ("flatten", "layer0")]
    assert list(graph.nodes["input"].input_type["input"]) == [1, 4, 4]
    assert [type(graph.nodes[f"lif{i}"]) for i in range(2)] == [nir.LIF, nir.LIF]
    assert "lif2" not in graph.nodes                           # non-spiking readout (S4.8)


# -- the LIF mapping -------------------------------------------------------------------------

def test_S4_12_lif_parameters_follow_the_euler_mapping() -> None:
    arch, params = network("mlp")
    lif = LIFConfig(beta=0.75, theta=1.5)
    node = nio.to_nir(arch, params, lif, dt=0.5).nodes["lif0"]
    np.testing.assert_allclose(node.tau, 0.5 / 0.25)
    np.testing.assert_allclose(node.r, 4.0)
    assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    assert np.all(node.v_threshold == 1.5)
    snn_torch = nio.lif_to_nir_params(0.9, 1.0, dt=1e-4)        # snnTorch's export_to_nir
    assert math.isclose(snn_torch["tau"], 1e-4 / 0.1) and math.isclose(snn_torch["r"], 10.0)


def test_S4_12_beta_one_is_an_integrate_and_fire_node() -> None:
    arch, params = network("mlp")
    lif = LIFConfig(beta=1.0)
    graph = nio.to_nir(arch, params, lif, dt=0.25)
    assert isinstance(graph.nodes["lif0"], nir.IF) and np.all(graph.nodes["lif0"].r == 4.0)
    assert nio.from_nir(graph, N, M)[2] == lif


def test_S4_12_soft_reset_has_no_nir_form() -> None:
    arch, params = network("mlp")
    with pytest.raises(ValueError, match=r"lif.reset='soft'.*no NIR form"):
        nio.to_nir(arch, params, LIFConfig(reset="soft"))


def simulate_nir(graph: nir.NIRGraph, x: np.ndarray, steps: int, dt: float) -> np.ndarray:
    """Run a NIR chain by its own equations, forward Euler with step ``dt``:
    ``v += dt / tau * (v_leak - v + r I)`` (LIF), ``v += dt r I`` (IF), spike when
    ``v > v_threshold``, then ``v = v_reset``; returns the mean output over the steps."""
    order = [graph.edges[0][0]] + [b for _, b in graph.edges]
    state: dict[str, torch.Tensor] = {}
    total = torch.zeros(())
    for _ in range(steps):
        a = torch.from_numpy(x)
        for name in order[1:-1]:
            node = graph.nodes[name]
            if isinstance(node, nir.Flatten):
                a = a.reshape(a.shape[0], -1)
            elif isinstance(node, nir.Affine):
                a = a @ torch.from_numpy(node.weight).T + torch.from_numpy(node.bias)
            elif isinstance(node, nir.Conv2d):
                a = F.conv2d(a, torch.from_numpy(node.weight), torch.from_numpy(node.bias),
                             stride=tuple(node.stride), padding=tuple(int(p) for p in node.padding))
            elif isinstance(node, nir.AvgPool2d):
                a = F.avg_pool2d(a, tuple(node.kernel_size), tuple(node.stride))
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
        total = total + a
    return (total / steps).numpy()


@pytest.mark.parametrize("kind, beta, dt", [("mlp", 0.5, 1.0), ("conv", 0.9, 1e-4),
                                            ("mlp", 1.0, 0.5)])
def test_S4_12_nir_equations_reproduce_the_network(kind: str, beta: float, dt: float) -> None:
    """The exported graph, run by NIR's own equations, gives the logits of S4 (checked
    through the loss and accuracy count of the torch model backend)."""
    arch, params = network(kind)
    lif = LIFConfig(beta=beta, theta=1.0, time_steps=5)
    graph = nio.to_nir(arch, params, lif, dt=dt)
    rng = np.random.default_rng(3)
    x = rng.random((16, *arch.input_shape))
    y = rng.integers(0, arch.num_classes, 16)
    logits = simulate_nir(graph, x, lif.time_steps, dt)
    loss = float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(16), y]))
    backend = load_model_backend("torch")
    tp = tuple(LayerParams(torch.from_numpy(p.weight), torch.from_numpy(p.bias)) for p in params)
    result = backend.evaluate(arch, tp, torch.from_numpy(x), torch.from_numpy(y), lif)
    assert result.spike_sums[0] > 0                                  # neurons do fire
    assert math.isclose(result.loss_sum / result.count, loss, rel_tol=1e-9)
    assert result.correct == int(np.sum(logits.argmax(1) == y))


# -- import: N:M validation and foreign graphs ---------------------------------------------

def test_S4_12_tampered_weight_fails_the_pattern_check() -> None:
    arch, params = network("conv")
    graph = nio.to_nir(arch, params, LIFConfig())
    w = graph.nodes["layer1"].weight                      # (8, 4, 3, 3), blocks along in=4
    zero = np.argwhere(w[0, :, 0, 0] == 0)[0][0]
    w[0, zero, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"NIR node 'layer1' \(layer 1\) weight \(8, 4, 3, 3\) "
                                         r"\(block layout\) is not 2:4 sparse.*block 0 at "
                                         r"\[0, 0, 0, 0:4\] has 3 non-zeros"):
        nio.from_nir(graph, N, M)
    arch2, _, _ = nio.from_nir(graph, N, M, masked=[2])   # the caller decides what is n:m
    assert arch2 == arch


def test_S4_12_masked_layers_must_fit_m() -> None:
    arch, params = network("conv")
    graph = nio.to_nir(arch, params, LIFConfig())
    with pytest.raises(ValueError, match=r"NIR node 'layer0' \(layer 0\) has 1 inputs, not a "
                                         r"multiple of m=4"):
        nio.from_nir(graph, N, M, masked=[0, 1])


def test_S4_12_nm_masks_are_the_nonzeros() -> None:
    arch, params = network("mlp")
    masks = nio.nm_masks(arch, params, N, M)
    assert sorted(masks) == [1]
    for i, mask in masks.items():
        assert np.array_equal(mask, (params[i].weight != 0).astype(mask.dtype))
        assert np.all(api.to_block_layout(mask).reshape(-1, M).sum(-1) <= N)


def test_S4_12_snntorch_style_graph_without_metadata() -> None:
    """snnTorch's convention (dt = 1e-4, r = tau / dt): gain 1, weights kept as they are."""
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
    arch, params, lif = nio.from_nir(graph, N, M, masked=[], dt=1e-4, time_steps=8)
    assert arch == Arch((4,), (LayerSpec("linear", 4, 8), LayerSpec("linear", 8, 2)))
    assert math.isclose(lif.beta, 0.9, rel_tol=1e-12) and lif.time_steps == 8
    assert np.array_equal(params[0].weight, w0) and np.array_equal(params[1].bias, np.zeros(2))


def test_S4_12_norse_style_gain_is_folded_into_the_weights() -> None:
    """r = 1 (Norse): the input enters scaled by dt / tau, folded into W and b."""
    w0 = np.array([[0.0, 2.0, 0.0, 4.0]] * 8)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([4])}),
               "a": nir.Affine(weight=w0, bias=np.full(8, 1.0)),
               "n": nir.LIF(tau=np.full(8, 4.0), r=np.ones(8), v_leak=np.zeros(8),
                            v_threshold=np.ones(8)),
               "b": nir.Affine(weight=np.ones((2, 8)), bias=np.zeros(2)),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "a"), ("a", "n"), ("n", "b"), ("b", "output")])
    _, params, lif = nio.from_nir(graph, N, M, masked=[0], dt=1.0, time_steps=4)
    assert lif.beta == 0.75
    assert np.array_equal(params[0].weight, w0 * 0.25) and np.all(params[0].bias == 0.25)


def test_S4_12_lif_without_leak_reads_as_beta_one() -> None:
    """tau = inf (no leak) is beta = 1 with input gain r dt, like an IF node."""
    arch, params = network("mlp")
    graph = nio.to_nir(arch, params, LIFConfig(beta=0.5))
    for name in ("lif0", "lif1"):
        node = graph.nodes[name]
        node.tau = np.full_like(node.tau, np.inf)
        node.r = np.ones_like(node.r)
    with pytest.raises(ValueError, match=r"metadata 'spikenm.beta' is 0.5 but the neuron "
                                         r"nodes give 1.0"):
        nio.from_nir(graph, N, M)
    graph.metadata["spikenm.beta"] = 1.0
    _, params2, lif = nio.from_nir(graph, N, M)
    assert lif.beta == 1.0
    assert same_params(params2, params)                       # r dt = 1: weights as they were


def graph_with(change: str) -> nir.NIRGraph:
    arch, params = network("mlp")
    graph = nio.to_nir(arch, params, LIFConfig())
    node = graph.nodes["lif1"]
    if change == "v_leak":
        node.v_leak = np.full_like(node.v_leak, 0.1)
    elif change == "v_reset":
        node.v_reset = np.full_like(node.v_reset, -1.0)
    elif change == "tau per neuron":
        node.tau = node.tau.copy()
        node.tau[0] = 3.0
    elif change == "tau per layer":
        node.tau = np.full_like(node.tau, 3.0)
        node.r = node.tau.copy()
    elif change == "metadata":
        graph.metadata["spikenm.beta"] = 0.7
    elif change == "spiking readout":
        graph.nodes["lif2"] = nir.LIF(**{k: np.resize(getattr(node, k), 3) for k in
                                         ("tau", "r", "v_leak", "v_threshold", "v_reset")})
        graph.edges = graph.edges[:-1] + [("layer2", "lif2"), ("lif2", "output")]
    elif change == "branch":
        graph.nodes["extra"] = nir.Output(output_type={"output": np.array([8])})
        graph.edges.append(("lif1", "extra"))
    elif change == "flatten":
        graph.nodes["flatten"].start_dim = 1
    elif change == "scale":
        graph.nodes["lif1"] = nir.Scale(scale=np.ones(8))
    return graph


@pytest.mark.parametrize("change, message", [
    ("v_leak", r"node 'lif1' has v_leak 0.1; .*expected v_leak = 0"),
    ("v_reset", r"node 'lif1' has v_reset -1.0; .*expected v_reset = 0"),
    ("tau per neuron", r"node 'lif1' has different tau values per neuron"),
    ("tau per layer", r"node 'lif1' has beta 0.666.*but 'lif0' has beta 0.5"),
    ("metadata", r"graph metadata 'spikenm.beta' is 0.7 but the neuron nodes give 0.5"),
    ("spiking readout", r"must feed the output directly"),
    ("branch", r"inputs \['input'\] and outputs \['output', 'extra'\]"),
    ("flatten", r"node 'flatten' flattens dims 1..-1 of \(1, 4, 4\); expected the whole map"),
    ("scale", r"node 'layer1' is followed by Scale; expected a LIF or IF neuron"),
])
def test_S4_12_graphs_spikenm_cannot_represent_are_refused(change: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nio.from_nir(graph_with(change), N, M)


def test_S4_12_export_checks_params_against_arch() -> None:
    arch, params = network("mlp")
    with pytest.raises(ValueError, match=r"layer 1 \(linear\) has weight \(16, 8\) and bias \(8,\); "
                                         r"expected \(8, 16\)"):
        nio.to_nir(arch, [params[0], LayerParams(params[1].weight.T, params[1].bias),
                          params[2]], LIFConfig())
    with pytest.raises(ValueError, match=r"arch has 3 layers but params has 2"):
        nio.to_nir(arch, params[:2], LIFConfig())
    with pytest.raises(TypeError, match=r"params\[0\].weight is float16"):
        nio.to_nir(arch, [LayerParams(params[0].weight.astype(np.float16), params[0].bias),
                          *params[1:]], LIFConfig())
    with pytest.raises(ValueError, match=r"dt must be finite and > 0"):
        nio.to_nir(arch, params, LIFConfig(), dt=0.0)
