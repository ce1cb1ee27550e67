"""The trainer's model backends against the NumPy/Numba reference (SPEC S4, S2.3, S2.9,
S4.11).

One training step (`forward_backward`: loss, correct count, every gradient, the new
batch-norm running statistics, EID credits (S2.3, and the signed ones of S2.9), firing
rates) and one eval pass of the torch
and jax backends are compared with `spikenm.registry.model_backend("numpy")` on the same
NumPy-drawn parameters and batch, for every shipped architecture of `spikenm.snn.archs`
(mlp, conv, vgg11, resnet19 at small width on ``(1, 8, 8)`` inputs, batch norm and
residual joins included) and a graph that uses every op (strided, 1x1 and biased convs,
bn on maps and on features, ``q x q`` and global pooling, a three-way ``add`` mixing a
direct-encoded and a time-major branch, fan-out, flatten).

The spike function is discontinuous, so every batch is first checked to keep all membrane
potentials ``H_t`` at least ``MARGIN64`` (S4.11: 1e-6) away from ``theta`` -- ``MARGIN32``
for float32 runs.  With the spike patterns thus identical the results must agree within
S0.6/S4.11: float64 ``rtol = 4 sqrt(eps) = 5.96e-8`` (gradients, credits scaled by their
largest magnitude), float32 ``1.38e-3``; correct counts and firing rates equal.

JAX runs float64 inside ``jax.enable_x64(True)``.  torch runs single-threaded here: on
tensors this small, intra-op threads cost more than they save.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
from dataclasses import replace
from typing import Any

import jax
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from spikenm.backends.torch import snn as tsnn
from spikenm.backends.torch.snn_graph import graph_forward
from spikenm.registry import model_backend
from spikenm.snn import (EIDRequest, Graph, LIFParams, Node, conv_net, init_buffers,
                         init_params, mlp, resnet19, vgg11)

from network_helpers import random_params

TOL64 = 4 * math.sqrt(float(np.finfo(np.float64).eps))
"""float64 agreement, SPEC S0.6 / S4.11 (5.96e-8)."""
TOL32 = 4 * math.sqrt(float(np.finfo(np.float32).eps))
"""float32 agreement, SPEC S0.6 (1.38e-3)."""
MARGIN64 = 1e-6
"""Smallest allowed ``|H_t - theta|`` for float64 comparisons (S4.11)."""
MARGIN32 = 1e-3
"""Smallest allowed ``|H_t - theta|`` for float32 comparisons."""
OTHERS = ("torch", "jax")
DECAY = 0.6
"""EID trace decay of every comparison."""


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _x64(name: str, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """JAX's 64-bit mode for float64 runs of the jax backend."""
    if name == "jax":
        return jax.enable_x64(dtype == "float64")
    return contextlib.nullcontext()


# -- networks -------------------------------------------------------------------------

def _every_op() -> Graph:
    """A graph with every op: convs with stride 2, 1x1 and bias (none before a bn, whose
    bias gradient would be 0 up to rounding), bn on static maps, on time-major maps and on
    features, q x q and global pooling, flatten, a two-way add of static branches and a
    three-way add mixing static and time-major inputs (node 3 is read twice), and a
    linear layer without bias."""
    n = Node
    return Graph((1, 8, 8), (
        n("conv", (-1,), 1, 4, 3, 1, 1, bias=False),     # 0  layer0 (4, 8, 8) static
        n("bn", (0,)),                                   # 1  bn0 on a static map
        n("pool", (1,), window=2),                       # 2  (4, 4, 4)
        n("conv", (-1,), 1, 4, 1, 2, 0),                 # 3  layer1: 1x1, stride 2
        n("add", (2, 3)),                                # 4  static + static
        n("lif", (4,)),                                  # 5  lif0
        n("conv", (5,), 4, 4, 3, 2, 1, bias=False),      # 6  layer2 (4, 2, 2)
        n("bn", (6,)),                                   # 7  bn1
        n("pool", (5,), window=2),                       # 8  (4, 2, 2)
        n("conv", (3,), 4, 4, 3, 2, 1),                  # 9  layer3 reads node 3 again
        n("add", (7, 8, 9)),                             # 10 three-way join
        n("lif", (10,)),                                 # 11 lif1
        n("pool", (11,), window=0),                      # 12 global (4, 1, 1)
        n("flatten", (12,)),                             # 13 (4,)
        n("flatten", (11,)),                             # 14 (16,)
        n("linear", (14,), 16, 12, bias=False),          # 15 layer4
        n("bn", (15,)),                                  # 16 bn2 on features
        n("linear", (13,), 4, 12),                       # 17 layer5
        n("add", (16, 17)),                              # 18
        n("lif", (18,)),                                 # 19 lif2
        n("linear", (19,), 12, 10),                      # 20 layer6: readout
    ))


SOFT = LIFParams(reset="soft", detach_reset=True, beta=0.8, theta=0.7, alpha=3.0,
                 time_steps=3)
CASES: dict[str, tuple[Graph, LIFParams, bool]] = {
    # name: (graph, neuron and T, Poisson time-major input?)
    "mlp": (mlp((1, 8, 8), 10, (24, 16)), LIFParams(time_steps=3), False),
    "conv": (conv_net((1, 8, 8), 10, (4, 8), hidden=(16,)), LIFParams(), False),
    "vgg11": (vgg11((1, 8, 8), 10, width=0.125), LIFParams(time_steps=2), False),
    "resnet19": (resnet19((1, 8, 8), 10, width=0.125), LIFParams(time_steps=2), False),
    "every-op-direct": (_every_op(), LIFParams(time_steps=3), False),
    "every-op-poisson-soft": (_every_op(), SOFT, True),
    # a lif node read by nothing (its layer gets zero gradients and credits) and a
    # readout on the direct-encoded input (logits without a time axis)
    "unread-node-static-readout": (
        Graph((6,), (Node("linear", (-1,), 6, 5), Node("lif", (0,)),
                     Node("linear", (-1,), 6, 3))), LIFParams(), False),
}


# -- parameters and batches -----------------------------------------------------------

def _arrays(graph: Graph, lif: LIFParams, poisson: bool, seed: int, batch: int, dtype: str
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """S4.10 weights (gain 2.5), small non-zero biases and batch-norm affine parameters,
    non-trivial running statistics, and a batch; all drawn in float64."""
    rng = np.random.default_rng(seed)
    params, buffers = random_params(graph, seed, rng)
    x = rng.random((batch,) + graph.input_shape)
    if poisson:  # rate-coded spikes (S4.7)
        x = (rng.random((lif.time_steps,) + x.shape) < x).astype(np.float64)
    y = rng.integers(0, graph.num_classes, batch).astype(np.int64)
    cast = {k: v.astype(dtype) for k, v in params.items()}
    return cast, {k: v.astype(dtype) for k, v in buffers.items()}, x.astype(dtype), y


def _margin(graph: Graph, params: dict[str, np.ndarray], buffers: dict[str, np.ndarray],
            x: np.ndarray, lif: LIFParams, train: bool) -> float:
    """``min |H_t - theta|`` over every LIF unit, step and sample, in float64."""
    t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}
    b = {k: torch.from_numpy(v.astype(np.float64)) for k, v in buffers.items()}
    xs = torch.from_numpy(x.astype(np.float64))
    hs: list[torch.Tensor] = []
    with torch.no_grad():
        graph_forward(graph, t, b, xs, lif, train=train,
                      static=x.ndim == len(graph.input_shape) + 1, potentials=hs)
    return min((float((h - lif.theta).abs().min()) for h in hs), default=math.inf)


def _batch(graph: Graph, lif: LIFParams, poisson: bool, dtype: str, margin: float,
           batch: int = 4, train: bool = True) -> tuple[dict[str, np.ndarray],
                                                        dict[str, np.ndarray],
                                                        np.ndarray, np.ndarray]:
    """Parameters, buffers and a batch whose ``H_t`` all keep ``margin`` from ``theta``
    (the first such seed; deterministic)."""
    for seed in range(50):
        arrays = _arrays(graph, lif, poisson, seed, batch, dtype)
        if _margin(graph, *arrays[:3], lif, train) >= margin:
            return arrays
    raise AssertionError(f"no seed < 50 keeps every H_t {margin} away from theta")


# -- running a backend and comparing --------------------------------------------------

def _step(name: str, graph: Graph, params: dict[str, np.ndarray],
          buffers: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, lif: LIFParams,
          eid_layers: tuple[int, ...] | str | None, signed: bool = False) -> dict[str, Any]:
    """``forward_backward`` on backend ``name``, results as NumPy / Python values.

    ``eid_layers=None`` requests the credits of every layer but the first, as the trainer
    does (S5.1 keeps it dense); the first layer's output on a direct-encoded input is then
    computed once for all steps.  ``"all"`` requests every layer.  ``signed`` asks for the
    signed credits of S2.9."""
    dtype = str(x.dtype)
    every = tuple(range(len(graph.layers)))
    layers = every[1:] if eid_layers is None else every if eid_layers == "all" \
        else eid_layers
    with _x64(name, dtype):
        mb = model_backend(name)
        ps = {k: mb.from_numpy(v) for k, v in params.items()}
        bs = {k: mb.from_numpy(v) for k, v in buffers.items()}
        eid = EIDRequest(layers, tuple(ps[f"layer{k}.weight"] for k in layers), DECAY,
                         signed) if layers else None
        r = mb.forward_backward(graph, ps, bs, mb.from_numpy(x), mb.from_numpy(y), lif, eid)
        out = {"loss": r.loss, "correct": r.correct, "rates": r.firing_rates,
               "grads": {k: mb.to_numpy(v) for k, v in r.grads.items()},
               "buffers": {k: mb.to_numpy(v) for k, v in r.buffers.items()},
               "credits": {k: mb.to_numpy(v) for k, v in r.credits.items()}}
    assert isinstance(out["loss"], float) and isinstance(out["correct"], int)
    for group in ("grads", "buffers"):
        for k, v in out[group].items():
            assert v.dtype == x.dtype, f"{name} {group} {k} is {v.dtype}, not {x.dtype}"
    return out


def _scaled_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` (S0.6 scaling); the plain difference when ``b`` is 0."""
    assert a.shape == b.shape, f"shape {a.shape} != reference {b.shape}"
    if not b.size:
        return 0.0
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return diff / scale if scale > 0 else diff


def _order_one_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / (1 + |b|)``: S0.6 with ``atol = rtol`` (order-one quantities)."""
    assert np.shape(a) == np.shape(b), f"shape {np.shape(a)} != reference {np.shape(b)}"
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a64 - b64) / (1.0 + np.abs(b64)), initial=0.0))


def compare_steps(got: dict[str, Any], want: dict[str, Any], tol: float, rate_tol: float,
                  label: str) -> dict[str, float]:
    """Assert agreement of two `_step` results; return the measured differences."""
    assert got["correct"] == want["correct"], f"{label}: correct count"
    assert len(got["rates"]) == len(want["rates"]), f"{label}: number of firing rates"
    rates = _order_one_diff(np.array(got["rates"]), np.array(want["rates"]))
    assert rates <= rate_tol, f"{label}: firing rates {got['rates']} vs {want['rates']}"
    loss = _order_one_diff(np.array(got["loss"]), np.array(want["loss"]))
    assert loss <= tol, f"{label}: loss {got['loss']} vs {want['loss']}"
    measured = {"loss": loss, "rates": rates}
    for group, diff in (("grads", _scaled_diff), ("buffers", _order_one_diff),
                        ("credits", _scaled_diff)):
        assert sorted(got[group]) == sorted(want[group]), f"{label}: {group} keys"
        worst = 0.0
        for k in want[group]:
            d = diff(got[group][k], want[group][k])
            assert d <= tol, f"{label}: {group} {k} differs by {d:.3g}"
            worst = max(worst, d)
        measured[group] = worst
    return measured


# -- S4 / S4.13 / S2.3: one training step ---------------------------------------------

@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("case", list(CASES))
def test_S4_11_step_agrees_float64(case: str, name: str) -> None:
    """S4.2-S4.9, S4.13, S4.14, S2.3: loss, correct count, every dL/dparam, the new
    running statistics, the EID credits of every layer and the firing rates equal the
    reference within S4.11 in float64."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float64", MARGIN64)
    want = _step("numpy", graph, params, buffers, x, y, lif, None)
    assert all(r > 0 for r in want["rates"]), f"{case}: a lif node is silent"
    assert len(want["buffers"]) == 2 * len(graph.norms)
    got = _step(name, graph, params, buffers, x, y, lif, None)
    compare_steps(got, want, TOL64, 1e-12, f"{case} {name}")


@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("case", ["every-op-direct", "unread-node-static-readout"])
def test_S2_3_credits_of_every_layer_agree_float64(case: str, name: str) -> None:
    """S2.3 with the credits of every layer, the first included: its d_t are per step
    although its output on a direct-encoded input is the same at every step (S4.7)."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float64", MARGIN64)
    want = _step("numpy", graph, params, buffers, x, y, lif, "all")
    assert sorted(want["credits"]) == list(range(len(graph.layers)))
    got = _step(name, graph, params, buffers, x, y, lif, "all")
    compare_steps(got, want, TOL64, 1e-12, f"{case} {name} every layer")


SIGNED_CASES = ("mlp", "conv", "vgg11", "resnet19", "every-op-poisson-soft")
"""Every shipped architecture (tiny widths) and the graph with every op."""


@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("case", SIGNED_CASES)
def test_S2_9_signed_credits_agree_float64(case: str, name: str) -> None:
    """S2.9: the signed credits of every layer (time sum before the absolute value; for a
    conv the weight gradient of the stacked steps) equal the reference's within S4.11 in
    float64, with the rest of the step."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float64", MARGIN64)
    want = _step("numpy", graph, params, buffers, x, y, lif, "all", signed=True)
    assert sorted(want["credits"]) == list(range(len(graph.layers)))
    got = _step(name, graph, params, buffers, x, y, lif, "all", signed=True)
    compare_steps(got, want, TOL64, 1e-12, f"{case} {name} signed")


@pytest.mark.parametrize("case", SIGNED_CASES)
def test_S2_9_signed_credit_is_at_most_the_abs_credit(case: str) -> None:
    """S2.9 (triangle inequality): on the same step the signed credit is never larger
    than the S2.3 credit, entry by entry (up to rounding), and is smaller somewhere: the
    two are different quantities, so a backend that ignored ``signed`` would be caught by
    `test_S2_9_signed_credits_agree_float64`."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float64", MARGIN64)
    signed = _step("numpy", graph, params, buffers, x, y, lif, "all", signed=True)
    plain = _step("numpy", graph, params, buffers, x, y, lif, "all")
    compare_steps(signed | {"credits": {}}, plain | {"credits": {}}, 0.0, 0.0,
                  f"{case} signed vs abs, all but the credits")
    gap = 0.0
    for k, c_abs in plain["credits"].items():
        c_signed = signed["credits"][k]
        slack = 1e-12 * max(float(c_abs.max()), 1e-300)
        assert np.all(c_signed >= 0) and np.all(c_signed <= c_abs + slack), k
        gap = max(gap, float((c_abs - c_signed).max()) / max(float(c_abs.max()), 1e-300))
    assert gap > 1e-3, f"{case}: the signed credits equal the abs ones"


@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("case", ["mlp", "every-op-direct"])
def test_S0_6_step_agrees_float32(case: str, name: str) -> None:
    """S0.6/S4.11 in float32: the same quantities within rtol = 4 sqrt(eps32), results in
    float32."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float32", MARGIN32)
    want = _step("numpy", graph, params, buffers, x, y, lif, None)
    got = _step(name, graph, params, buffers, x, y, lif, None)
    compare_steps(got, want, TOL32, 1e-6, f"{case} float32 {name}")


@pytest.mark.parametrize("name", ("numpy",) + OTHERS)
@pytest.mark.parametrize("case", ["every-op-direct"])
@pytest.mark.parametrize("eid", ["masked", "all"])
def test_S4_7_direct_input_equals_repeated_time_major(eid: str, case: str, name: str
                                                      ) -> None:
    """S4.7, S4.13: a direct-encoded input gives the numbers of the time-major input that
    repeats it T times (batch norm counts n = T B H W in both), credits included."""
    graph, lif, _ = CASES[case]
    params, buffers, x, y = _batch(graph, lif, False, "float64", MARGIN64)
    repeated = np.ascontiguousarray(np.broadcast_to(x, (lif.time_steps,) + x.shape))
    layers = None if eid == "masked" else eid
    a = _step(name, graph, params, buffers, x, y, lif, layers)
    b = _step(name, graph, params, buffers, repeated, y, lif, layers)
    compare_steps(a, b, 1e-12, 0.0, f"{case} {name} direct vs repeated")


def _eval_buffers(graph: Graph, params: dict[str, np.ndarray], buffers: dict[str, np.ndarray],
                  x: np.ndarray, y: np.ndarray, lif: LIFParams) -> dict[str, np.ndarray]:
    """Running statistics equal to one batch's statistics (so that eval mode fires like
    train mode), recovered from the reference's update ``r' = 0.9 r + 0.1 s``."""
    new = _step("numpy", graph, params, buffers, x, y, lif, ())["buffers"]
    return {k: ((v - 0.9 * buffers[k]) / 0.1).astype(v.dtype) for k, v in new.items()}


@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("case", ["mlp", "resnet19", "every-op-poisson-soft"])
def test_S4_13_evaluate_agrees(case: str, name: str) -> None:
    """S4.8, S4.9, S4.13 eval mode: loss sum, correct count, spike sums and counts equal
    the reference's (float64), batch norm normalizing with the running statistics."""
    graph, lif, poisson = CASES[case]
    params, buffers, x, y = _batch(graph, lif, poisson, "float64", MARGIN64, batch=5)
    buffers = _eval_buffers(graph, params, buffers, x, y, lif)
    if _margin(graph, params, buffers, x, lif, train=False) < MARGIN64:
        pytest.fail(f"{case}: an eval-mode H_t lies within {MARGIN64} of theta")
    results = {}
    for backend in ("numpy", name):
        with _x64(backend, "float64"):
            mb = model_backend(backend)
            results[backend] = mb.evaluate(
                graph, {k: mb.from_numpy(v) for k, v in params.items()},
                {k: mb.from_numpy(v) for k, v in buffers.items()}, mb.from_numpy(x),
                mb.from_numpy(y), lif)
    want, got = results["numpy"], results[name]
    assert want.count == 5 and len(want.spike_sums) == len(graph.neurons)
    assert sum(want.spike_sums) > 0
    assert (got.correct, got.count, got.spike_counts) == \
        (want.correct, want.count, want.spike_counts)
    assert got.spike_sums == want.spike_sums
    assert _order_one_diff(np.array(got.loss_sum), np.array(want.loss_sum)) <= TOL64


def test_S4_13_eval_mode_uses_running_statistics() -> None:
    """S4.13: eval mode normalizes with the running statistics (changing them changes the
    loss; the train step does not depend on them) and leaves them unchanged."""
    graph, lif, _ = CASES["vgg11"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    mb = tsnn.model_backend()
    ps = {k: mb.from_numpy(v) for k, v in params.items()}
    bs = {k: mb.from_numpy(v) for k, v in buffers.items()}
    shifted = {k: v + 0.5 for k, v in bs.items()}
    before = {k: v.clone() for k, v in bs.items()}
    xs, ys = mb.from_numpy(x), mb.from_numpy(y)
    assert mb.evaluate(graph, ps, bs, xs, ys, lif).spike_sums != \
        mb.evaluate(graph, ps, shifted, xs, ys, lif).spike_sums
    a = mb.forward_backward(graph, ps, bs, xs, ys, lif)
    b = mb.forward_backward(graph, ps, shifted, xs, ys, lif)
    assert a.loss == b.loss
    torch.testing.assert_close(a.buffers["bn0.running_mean"] + 0.9 * 0.5,
                               b.buffers["bn0.running_mean"], rtol=0, atol=1e-15)
    assert all(torch.equal(bs[k], before[k]) for k in bs)


def test_S4_13_running_statistics_formula() -> None:
    """S4.13 in the torch backend: rm' = 0.9 rm + 0.1 mu and rv' = 0.9 rv + 0.1 var n /
    (n - 1) over the n = T B F entries of a feature batch norm; eval mode normalizes
    with (rm, rv)."""
    graph = Graph((3,), (Node("linear", (-1,), 3, 2, bias=False), Node("bn", (0,)),
                         Node("lif", (1,)), Node("linear", (2,), 2, 2)))
    lif = LIFParams(time_steps=2)
    rng = np.random.default_rng(1)
    params = init_params(graph, 0, 1.0, "float64")
    x = rng.random((lif.time_steps, 3, 3))
    mb = tsnn.model_backend()
    r = mb.forward_backward(graph, {k: mb.from_numpy(v) for k, v in params.items()},
                            {"bn0.running_mean": mb.from_numpy(np.ones(2)),
                             "bn0.running_var": mb.from_numpy(np.full(2, 2.0))},
                            mb.from_numpy(x), mb.from_numpy(np.array([0, 1, 0])), lif)
    a = (x @ params["layer0.weight"].T).reshape(-1, 2)  # the n = 6 entries per channel
    np.testing.assert_allclose(mb.to_numpy(r.buffers["bn0.running_mean"]),
                               0.9 + 0.1 * a.mean(0), rtol=1e-14)
    np.testing.assert_allclose(mb.to_numpy(r.buffers["bn0.running_var"]),
                               1.8 + 0.1 * a.var(0, ddof=1), rtol=1e-14)
    # eval mode: y = gamma (a - rm) / sqrt(rv + eps) + beta with the running statistics
    head = Graph((3,), (Node("linear", (-1,), 3, 2, bias=False), Node("bn", (0,)),
                        Node("linear", (1,), 2, 4)))
    hp = init_params(head, 2, 1.0, "float64")
    hp.update({"bn0.gamma": np.array([1.5, 0.5]), "bn0.beta": np.array([0.1, -0.2])})
    rm, rv = np.array([0.3, -0.1]), np.array([2.0, 0.5])
    z = ((x @ hp["layer0.weight"].T - rm) / np.sqrt(rv + 1e-5) * hp["bn0.gamma"]
         + hp["bn0.beta"]) @ hp["layer1.weight"].T
    logits = z.mean(0)
    labels = np.array([0, 3, 1])
    want = np.sum(np.log(np.exp(logits).sum(1)) - logits[np.arange(3), labels])
    e = mb.evaluate(head, {k: mb.from_numpy(v) for k, v in hp.items()},
                    {"bn0.running_mean": mb.from_numpy(rm),
                     "bn0.running_var": mb.from_numpy(rv)},
                    mb.from_numpy(x), mb.from_numpy(labels), lif)
    assert abs(e.loss_sum - want) <= 1e-12 * abs(want)


def test_S2_3_credits_from_learning_signals() -> None:
    """S2.3 in the torch backend: the linear readout's credit is
    `api.eligibility_credit` with the analytic d_t = (softmax - onehot) / (B T) (S4.8),
    and a conv layer's credit is sum_t |conv weight gradient of (e_t, d_t)| * |W| in
    block layout, d_t being the gradient of the conv's output before its batch norm."""
    from spikenm import api

    lif = LIFParams(time_steps=3)
    graph = Graph((12,), (Node("linear", (-1,), 12, 5),))
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    logits = x @ params["layer0.weight"].T + params["layer0.bias"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(y.shape[0]), y] -= 1.0
    d = np.broadcast_to(p / (y.shape[0] * lif.time_steps), (3,) + p.shape)
    xt = np.broadcast_to(x, (3,) + x.shape)
    want = api.eligibility_credit(np.ascontiguousarray(xt), np.ascontiguousarray(d),
                                  params["layer0.weight"], decay=DECAY)
    got = _step("torch", graph, params, buffers, x, y, lif, (0,))["credits"][0]
    assert _scaled_diff(got, want) <= 1e-12

    graph, lif, _ = CASES["vgg11"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    mb = tsnn.model_backend()
    ps = {k: mb.from_numpy(v).requires_grad_(True) for k, v in params.items()}
    bs = {k: mb.from_numpy(v) for k, v in buffers.items()}
    xs = mb.from_numpy(x)
    run = graph_forward(graph, ps, bs, xs, lif, train=True, static=True, keep=(1,))
    loss = torch.nn.functional.cross_entropy(run.logits, mb.from_numpy(y))
    (d1,) = torch.autograd.grad(loss, [run.currents[1]])
    x1, static = run.inputs[1]
    assert not static and tuple(d1.shape[:2]) == (lif.time_steps, 4)
    w = ps["layer1.weight"].detach()
    e = torch.zeros_like(x1[0])
    total = torch.zeros_like(w)
    for t in range(lif.time_steps):
        e = DECAY * e + x1[t].detach()
        total += torch.nn.grad.conv2d_weight(e, tuple(w.shape), d1[t], padding=1).abs()
    want = (w.abs() * total).permute(0, 2, 3, 1).numpy()
    got = _step("torch", graph, params, buffers, x, y, lif, (1,))["credits"][1]
    assert got.shape == want.shape == (16, 3, 3, 8)
    assert _scaled_diff(got, want) <= 1e-12


# -- S4.4 / S4.5 pieces ---------------------------------------------------------------

def test_S4_4_surrogate_derivative() -> None:
    """S4.4: dS/dH is (alpha/2) / (1 + (pi/2 alpha (H - theta))^2), including at H = theta
    (where it is alpha/2) and far from it."""
    from spikenm.backends.torch.snn_lif import spike

    lif = LIFParams(theta=0.7, alpha=3.0)
    h = np.array([-2.0, 0.0, 0.69, 0.7, 0.71, 1.5, 10.0])
    want = (3.0 / 2) / (1 + (math.pi / 2 * 3.0 * (h - 0.7)) ** 2)
    th = torch.tensor(h, requires_grad=True)
    s = spike(th, lif)
    s.sum().backward()
    assert s.detach().numpy().tolist() == (h >= 0.7).astype(float).tolist()
    np.testing.assert_allclose(th.grad.numpy(), want, rtol=1e-14)


def test_S4_5_detach_reset_is_honoured() -> None:
    """S4.5: detaching the reset changes the gradients but not the forward pass, so the
    detach case of `test_S4_11_step_agrees_float64` is not vacuous."""
    graph, lif, _ = CASES["mlp"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", MARGIN64)
    a = _step("torch", graph, params, buffers, x, y, lif, ())
    b = _step("torch", graph, params, buffers, x, y, replace(lif, detach_reset=True), ())
    assert a["loss"] == b["loss"] and a["rates"] == b["rates"]
    assert _scaled_diff(a["grads"]["layer0.weight"], b["grads"]["layer0.weight"]) > 1e-3


@pytest.mark.parametrize("module_name", [
    "spikenm.backends.torch.snn", "spikenm.backends.torch.snn_lif",
    "spikenm.backends.torch.snn_credit"])
def test_docstring_examples_run(module_name: str) -> None:
    """The examples in the torch model backend's docstrings run and print what they show."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name),
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


# -- S4.16: devices and host transfers ------------------------------------------------

def test_S4_16_missing_devices_are_named() -> None:
    """S4.16: a device that does not exist is a ValueError naming it and the available
    devices; a device of the wrong type is a TypeError."""
    missing = ["cuda:7", "cuda:1000"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in missing + ["cpu:3"]:
        with pytest.raises(ValueError, match=rf"{device!r} is not available; available "
                                             rf"devices: \['cpu'"):
            tsnn.model_backend(device)
    with pytest.raises(ValueError, match="'gpu0' is not a torch device.*available devices"):
        tsnn.model_backend("gpu0")
    with pytest.raises(ValueError, match="'cuda:7' is not available"):
        model_backend("torch", "cuda:7")
    with pytest.raises(TypeError, match="device=0 is a int"):
        tsnn.model_backend(0)  # type: ignore[arg-type]
    assert tsnn.model_backend("cpu").device == tsnn.model_backend("cpu:0").device == "cpu"
    assert model_backend("torch").name == "torch"


def test_S4_16_tensors_on_another_device_are_refused() -> None:
    """S4.16: arrays that do not live on the backend's device (here: ``meta`` tensors
    and NumPy arrays for a CPU backend) are refused with the key and both devices."""
    graph, lif, _ = CASES["mlp"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    mb = tsnn.model_backend("cpu")
    ps = {k: mb.from_numpy(v) for k, v in params.items()}
    xs, ys = mb.from_numpy(x), mb.from_numpy(y)
    bad = dict(ps, **{"layer1.weight": ps["layer1.weight"].to("meta")})
    with pytest.raises(ValueError, match=r"params\['layer1.weight'\] is on device 'meta'; "
                                         r"this backend runs on 'cpu'"):
        mb.forward_backward(graph, bad, {}, xs, ys, lif)
    with pytest.raises(TypeError, match="x is a ndarray; expected a torch.Tensor"):
        mb.evaluate(graph, ps, {}, x, ys, lif)


class _HostTransfers(TorchFunctionMode):
    """Records every tensor method that copies values to the host."""

    NAMES = frozenset({"tolist", "item", "numpy", "cpu", "__float__", "__int__",
                       "__bool__", "__index__"})

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in self.NAMES:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def test_S4_16_one_host_transfer_per_step() -> None:
    """S4.16: a training step with batch norm, residual joins and EID copies to the host
    once (the loss, the correct count and the firing rates together); so does eval."""
    graph, lif, _ = CASES["every-op-direct"]
    params, buffers, x, y = _batch(graph, lif, False, "float32", 0.0)
    mb = tsnn.model_backend()
    ps = {k: mb.from_numpy(v) for k, v in params.items()}
    bs = {k: mb.from_numpy(v) for k, v in buffers.items()}
    xs, ys = mb.from_numpy(x), mb.from_numpy(y)
    layers = tuple(range(len(graph.layers)))
    eid = EIDRequest(layers, tuple(ps[f"layer{k}.weight"] for k in layers), DECAY)
    with _HostTransfers() as mode:
        mb.forward_backward(graph, ps, bs, xs, ys, lif, eid)
    assert mode.calls == ["tolist"]
    with _HostTransfers() as mode:
        mb.evaluate(graph, ps, bs, xs, ys, lif)
    assert mode.calls == ["tolist"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_S4_16_cuda_step_stays_on_the_device() -> None:
    """S4.16 on a GPU: from_numpy puts arrays on "cuda", gradients, buffers and credits
    stay there, and the step equals the CPU step (float64)."""
    graph, lif, _ = CASES["resnet19"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", MARGIN64)
    mb = tsnn.model_backend("cuda")
    assert mb.device.startswith("cuda:") and mb.from_numpy(x).device.type == "cuda"
    layers = (1, 2)
    ps = {k: mb.from_numpy(v) for k, v in params.items()}
    r = mb.forward_backward(graph, ps, {k: mb.from_numpy(v) for k, v in buffers.items()},
                            mb.from_numpy(x), mb.from_numpy(y), lif,
                            EIDRequest(layers, tuple(ps[f"layer{k}.weight"] for k in layers),
                                       DECAY))
    for group in (r.grads, r.buffers, r.credits):
        assert all(v.device.type == "cuda" for v in group.values())
    got = {"loss": r.loss, "correct": r.correct, "rates": r.firing_rates,
           "grads": {k: mb.to_numpy(v) for k, v in r.grads.items()},
           "buffers": {k: mb.to_numpy(v) for k, v in r.buffers.items()},
           "credits": {k: mb.to_numpy(v) for k, v in r.credits.items()}}
    want = _step("torch", graph, params, buffers, x, y, lif, layers)
    compare_steps(got, want, TOL64, 1e-12, "cuda vs cpu")


# -- errors and imports ---------------------------------------------------------------

def test_S0_5_bad_calls_name_the_value() -> None:
    """S0.5: missing/unexpected parameters, wrong dtypes, bad EID requests and a batch
    norm over fewer than 2 entries are errors naming the value."""
    graph, lif, _ = CASES["conv"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    mb = tsnn.model_backend()
    ps = {k: mb.from_numpy(v) for k, v in params.items()}
    xs, ys = mb.from_numpy(x), mb.from_numpy(y)
    missing = {k: v for k, v in ps.items() if k != "layer1.bias"}
    with pytest.raises(ValueError, match=r"missing \['layer1.bias'\]"):
        mb.forward_backward(graph, missing, {}, xs, ys, lif)
    with pytest.raises(TypeError, match="input x is float32"):
        mb.forward_backward(graph, ps, {}, xs.float(), ys, lif)
    with pytest.raises(TypeError, match="lif is a dict"):
        mb.forward_backward(graph, ps, {}, xs, ys, {"beta": 0.5})  # type: ignore[arg-type]
    w = ps["layer1.weight"]
    for eid, match in (
            (EIDRequest((4,), (w,), 0.5), r"EID layer 4 does not exist; the graph has 4 "
                                          r"weighted layers \(ordinals 0..3\)"),
            (EIDRequest((1, 1), (w, w), 0.5), r"EID layers \(1, 1\) repeat a layer"),
            (EIDRequest((1,), (), 0.5), "0 weights for 1 layers"),
            (EIDRequest((1,), (w,), 1.5), r"eid.decay=1.5 is invalid; expected a number in "
                                          r"\[0, 1\]"),
            (EIDRequest((0,), (w,), 0.5), r"EID weight of layer 0 is \(8, 4, 3, 3\) "
                                          r"float64 on cpu; expected a tensor like "
                                          r"layer0.weight: \(4, 1, 3, 3\)")):
        with pytest.raises(ValueError, match=match):
            mb.forward_backward(graph, ps, {}, xs, ys, lif, eid)
    bn = Graph((3,), (Node("linear", (-1,), 3, 2), Node("bn", (0,)), Node("lif", (1,)),
                      Node("linear", (2,), 2, 2)))
    p = {k: mb.from_numpy(v) for k, v in init_params(bn, 0, 1.0, "float64").items()}
    b = {k: mb.from_numpy(v) for k, v in init_buffers(bn, "float64").items()}
    one = LIFParams(time_steps=1)
    with pytest.raises(ValueError, match=r"bn0 \(node 1\) normalizes n=1 entries"):
        mb.forward_backward(bn, p, b, mb.from_numpy(np.ones((1, 3))),
                            mb.from_numpy(np.zeros(1, np.int64)), one)
    r = mb.evaluate(bn, p, b, mb.from_numpy(np.ones((1, 3))),
                    mb.from_numpy(np.zeros(1, np.int64)), one)
    assert r.count == 1  # eval mode needs no batch statistics


@pytest.mark.parametrize("name", ("numpy",) + OTHERS)
def test_S0_5_signed_must_be_a_bool(name: str) -> None:
    """S0.5, S2.9: an EID request whose ``signed`` is not a bool is a ValueError naming
    it, on every model backend."""
    graph, lif, _ = CASES["mlp"]
    params, buffers, x, y = _batch(graph, lif, False, "float64", 0.0)
    with _x64(name, "float64"):
        mb = model_backend(name)
        ps = {k: mb.from_numpy(v) for k, v in params.items()}
        eid = EIDRequest((1,), (ps["layer1.weight"],), 0.5, "yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"eid.signed='yes' is invalid; expected True "
                                             r"or False"):
            mb.forward_backward(graph, ps, {}, mb.from_numpy(x), mb.from_numpy(y), lif, eid)


def test_no_trainer_import() -> None:
    """The torch model backend imports the core only, never the trainer (spikenm.train)."""
    code = ("import sys, spikenm.backends.torch.snn, spikenm.backends.torch.snn_graph, "
            "spikenm.backends.torch.snn_credit; "
            "bad = sorted(m for m in sys.modules if m.startswith('spikenm.train')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
