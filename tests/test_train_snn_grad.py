"""Reference model backend (SPEC S4): hand-written BPTT over graphs against torch autograd
of the same equations (ATan surrogate, batch norm of S4.13, residual adds), finite
differences where the loss is smooth, the LIF kernels, and EID credits (S2.3, and the
signed S2.9) against credits built from torch's ``dL/dI_t``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikenm import api
from spikenm.reference import eid as reference_eid
from spikenm.reference import snn
from spikenm.reference.snn_lif import lif_backward, lif_forward
from spikenm.snn import EIDRequest, Graph, LIFParams, Node, archs, init_buffers
from spikenm.snn.graph import BN_EPS, BN_MOMENTUM

import torch
import torch.nn.functional as F

LIFS = [LIFParams(), LIFParams(reset="soft"), LIFParams(detach_reset=True),
        LIFParams(reset="soft", detach_reset=True, time_steps=3, beta=0.8, theta=0.7,
                  alpha=3.0)]
LIF_IDS = ["hard", "soft", "hard-detach", "soft-detach-T3"]

MIXED = Graph((2, 8, 8), (
    Node("conv", (-1,), 2, 4, 3, 1, 1),                      # 0
    Node("bn", (0,)),                                        # 1
    Node("lif", (1,)),                                       # 2, read by 3, 4 and 5
    Node("conv", (2,), 4, 4, 3, 2, 1, bias=False),           # 3 -> 4x4
    Node("conv", (2,), 4, 4, 1, 2, 0),                       # 4 -> 4x4
    Node("pool", (2,), window=2),                            # 5 -> 4x4
    Node("add", (3, 4, 5)),                                  # 6
    Node("lif", (6,)),                                       # 7
    Node("pool", (7,), window=2),                            # 8 -> 2x2
    Node("flatten", (8,)),                                   # 9 -> 16
    Node("linear", (9,), 16, 8, bias=False),                 # 10
    Node("bn", (10,)),                                       # 11
    Node("lif", (11,)),                                      # 12
    Node("linear", (12,), 8, 3),                             # 13 readout
))
GRAPHS = {
    "mlp": archs.mlp((1, 4, 4), 3, (12, 8)),
    "conv": archs.conv_net((2, 8, 8), 3, (4, 4), hidden=(8,)),
    "mixed": MIXED,
    "vgg11": archs.vgg11((1, 8, 8), 3, width=1 / 16),
    "resnet19": archs.resnet19((1, 8, 8), 3, width=1 / 32),
}


class _ATan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, theta, alpha):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(h)
        ctx.theta, ctx.alpha = theta, alpha
        return (h >= theta).to(h.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (h,) = ctx.saved_tensors
        u = math.pi / 2 * ctx.alpha * (h - ctx.theta)
        return g * (ctx.alpha / 2) / (1 + u * u), None, None


def _torch_run(graph, params, buffers, x, y, lif):  # type: ignore[no-untyped-def]
    """S4 written with torch autograd on time-major ``[T, B, C, H, W]`` activations.

    Returns loss, grads, new buffers, firing rates, and per layer ordinal its input
    ``x_t`` and ``dL/dI_t`` (time-major, channels-first)."""
    t_steps = lif.time_steps
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x)
    a_in = xt.unsqueeze(0).expand((t_steps,) + xt.shape) if x.ndim == len(
        graph.input_shape) + 1 else xt
    acts, currents, inputs, new_buffers, rates = [], {}, {}, {}, []
    for i, node in enumerate(graph.nodes):
        ins = [a_in if j < 0 else acts[j] for j in node.inputs]
        a = ins[0]
        tn, bn = a.shape[:2]
        name = graph.name_of(i)
        if node.op == "linear":
            out = a @ ps[f"{name}.weight"].T
            out = out + ps[f"{name}.bias"] if node.bias else out
        elif node.op == "conv":
            out = F.conv2d(a.reshape((tn * bn,) + a.shape[2:]), ps[f"{name}.weight"],
                           ps.get(f"{name}.bias"), stride=node.stride, padding=node.padding)
            out = out.reshape((tn, bn) + out.shape[1:])
        elif node.op == "bn":
            dims = (0, 1) + tuple(range(3, a.ndim))
            shape = (1, 1, -1) + (1,) * (a.ndim - 3)
            mu = a.mean(dims, keepdim=True)
            var = ((a - mu) ** 2).mean(dims, keepdim=True)
            out = (ps[f"{name}.gamma"].reshape(shape) * (a - mu) / torch.sqrt(var + BN_EPS)
                   + ps[f"{name}.beta"].reshape(shape))
            n = a.numel() // a.shape[2]
            rm, rv = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
            new_buffers[f"{name}.running_mean"] = ((1 - BN_MOMENTUM) * rm + BN_MOMENTUM
                                                   * mu.detach().reshape(-1).numpy())
            new_buffers[f"{name}.running_var"] = ((1 - BN_MOMENTUM) * rv + BN_MOMENTUM * n
                                                  / (n - 1) * var.detach().reshape(-1).numpy())
        elif node.op == "pool":
            flat = a.reshape((tn * bn,) + a.shape[2:])
            out = (F.adaptive_avg_pool2d(flat, 1) if node.window == 0
                   else F.avg_pool2d(flat, node.window))
            out = out.reshape((tn, bn) + out.shape[1:])
        elif node.op == "flatten":
            out = a.reshape(tn, bn, -1)
        elif node.op == "add":
            out = sum(ins[1:], ins[0])
        else:
            v = torch.zeros_like(a[0])
            outs = []
            for t in range(t_steps):
                h = lif.beta * v + a[t]
                s = _ATan.apply(h, lif.theta, lif.alpha)
                sr = s.detach() if lif.detach_reset else s
                v = h - lif.theta * sr if lif.reset == "soft" else h * (1 - sr)
                outs.append(s)
            out = torch.stack(outs)
            rates.append(float(out.detach().mean()))
        if node.op in ("linear", "conv"):
            k = graph.layers.index(i)
            out.retain_grad()
            currents[k], inputs[k] = out, a
        acts.append(out)
    logits = acts[-1].mean(0)
    loss = F.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in ps.items()}
    layer_data = {k: (inputs[k].detach().numpy(), currents[k].grad.numpy()) for k in currents}
    return float(loss.detach()), grads, new_buffers, tuple(rates), layer_data


def _params(graph: Graph, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in graph.param_shapes().items():
        if key.endswith(".weight"):
            out[key] = rng.normal(size=shape) * 2.5 / np.sqrt(np.prod(shape[1:]))
        elif key.endswith(".gamma"):
            out[key] = 1.0 + 0.2 * rng.normal(size=shape)
        else:
            out[key] = rng.normal(size=shape) * 0.1
    return out


def _buffers(graph: Graph, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return {k: (rng.normal(size=s) * 0.1 if k.endswith("mean") else rng.random(s) + 0.5)
            for k, s in graph.buffer_shapes().items()}


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-10) -> None:
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-12)
    assert float(np.abs(a - b).max()) / scale < tol


def _data(graph: Graph, lif: LIFParams, poisson: bool, seed: int = 1, batch: int = 5):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    shape = (batch,) + graph.input_shape
    x = rng.random(shape)
    if poisson:
        x = (rng.random((lif.time_steps,) + shape) < x).astype(np.float64)
    return x, rng.integers(0, graph.num_classes, batch)


@pytest.mark.parametrize("lif", LIFS, ids=LIF_IDS)
@pytest.mark.parametrize("arch", list(GRAPHS))
@pytest.mark.parametrize("poisson", [False, True], ids=["direct", "spikes"])
def test_bptt_matches_torch_autograd_S4_5_S4_13_S4_14(lif, arch, poisson) -> None:
    graph = GRAPHS[arch]
    params, buffers = _params(graph, 2), _buffers(graph, 3)
    x, y = _data(graph, lif, poisson)
    ours = snn.forward_backward(graph, params, buffers, x, y, lif)
    loss, grads, new_buffers, rates, _ = _torch_run(graph, params, buffers, x, y, lif)
    assert abs(ours.loss - loss) < 1e-12
    assert ours.firing_rates == pytest.approx(rates, abs=1e-15)
    assert len(rates) == len(graph.neurons) and any(r > 0 for r in rates)
    assert set(ours.grads) == set(grads) and set(ours.buffers) == set(new_buffers)
    # a bias before batch norm has a zero gradient up to rounding: floor the scale
    floor = 1e-4 * max(float(np.abs(g).max()) for g in grads.values())
    for key, g in grads.items():
        assert ours.grads[key].shape == g.shape
        scale = max(float(np.abs(g).max()), floor)
        assert float(np.abs(ours.grads[key] - g).max()) < 1e-10 * scale, key
    for key, b in new_buffers.items():
        np.testing.assert_allclose(ours.buffers[key], b, rtol=1e-12, atol=1e-14)


def test_readout_gradient_matches_central_differences() -> None:
    """The loss is smooth in the readout weights (spikes do not depend on them)."""
    graph = GRAPHS["mixed"]
    params, buffers = _params(graph, 4), _buffers(graph, 5)
    lif = LIFParams()
    x, y = _data(graph, lif, False, seed=3, batch=6)
    key = f"layer{len(graph.layers) - 1}.weight"
    grad = snn.forward_backward(graph, params, buffers, x, y, lif).grads[key]
    eps = 1e-6
    w = params[key]
    for idx in [(0, 0), (1, 3), (2, 7)]:
        plus, minus = w.copy(), w.copy()
        plus[idx] += eps
        minus[idx] -= eps
        lp = snn.forward_backward(graph, {**params, key: plus}, buffers, x, y, lif).loss
        lm = snn.forward_backward(graph, {**params, key: minus}, buffers, x, y, lif).loss
        assert abs((lp - lm) / (2 * eps) - grad[idx]) < 1e-8


def test_surrogate_and_lif_kernels_S4_3_S4_4() -> None:
    current = np.array([[0.6], [0.6], [1.2], [0.0]])
    spikes, h = lif_forward(current, 0.5, 1.0, False)
    assert spikes[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert np.allclose(h[:, 0], [0.6, 0.9, 1.65, 0.0])  # reset to 0 after the spike
    soft, hs = lif_forward(current, 0.5, 1.0, True)
    assert np.allclose(hs[:, 0], [0.6, 0.9, 1.65, 0.325])
    g = lif_backward(np.array([[1.0]]), np.array([[1.0]]), np.array([[1.0]]),
                     0.5, 1.0, 2.0, False, False)
    assert np.isclose(g[0, 0], 1.0)  # sigma'(theta) = alpha / 2
    assert snn.lif_forward is lif_forward and snn.lif_backward is lif_backward


@pytest.mark.parametrize("signed", [False, True], ids=["abs", "signed"])
@pytest.mark.parametrize("poisson", [False, True], ids=["direct", "spikes"])
def test_eid_credits_from_torch_learning_signals_S2_3(poisson, signed) -> None:
    """Credits of linear and conv layers (first, strided, 1x1, readout) equal S2.3 built
    from torch's inputs and ``dL/dI_t``: `api.eligibility_credit` for linear layers and
    ``|W| sum_t |conv weight gradient of (e_t, d_t)|`` for conv layers.  Signed (S2.9):
    `spikenm.reference.eid.eligibility_credit` with ``signed=True`` for linear layers and
    ``|W| |sum_t conv weight gradient of (e_t, d_t)|`` (per step, summed) for conv
    layers."""
    graph, lif = GRAPHS["mixed"], LIFParams(beta=0.6)
    params, buffers = _params(graph, 6), _buffers(graph, 7)
    x, y = _data(graph, lif, poisson, seed=8)
    rng = np.random.default_rng(9)
    layers = tuple(range(len(graph.layers)))
    dense = tuple(rng.normal(size=graph.layer_node(k).weight_shape()) for k in layers)
    lam = 0.35
    res = snn.forward_backward(graph, params, buffers, x, y, lif,
                               EIDRequest(layers, dense, lam, signed))
    _, _, _, _, data = _torch_run(graph, params, buffers, x, y, lif)
    assert set(res.credits) == set(layers)
    for k in layers:
        node = graph.layer_node(k)
        inp, d = data[k]  # time-major (a direct input is expanded over T)
        inp = np.ascontiguousarray(inp)
        if node.op == "linear":
            expected = (reference_eid.eligibility_credit(inp, d, dense[k], lam, signed=True)
                        if signed else api.eligibility_credit(inp, d, dense[k], decay=lam))
        else:
            trace = torch.zeros_like(torch.tensor(inp[0]))
            total = torch.zeros(node.weight_shape(), dtype=torch.float64)
            for t in range(lif.time_steps):
                trace = lam * trace + torch.tensor(inp[t])
                step = torch.nn.grad.conv2d_weight(trace, node.weight_shape(),
                                                   torch.tensor(d[t]), stride=node.stride,
                                                   padding=node.padding)
                total += step if signed else step.abs()
            expected = api.to_block_layout(np.abs(dense[k]) * total.abs().numpy())
        assert res.credits[k].shape == expected.shape
        np.testing.assert_allclose(res.credits[k], expected, rtol=1e-9,
                                   atol=1e-12 * float(np.abs(expected).max()))
        assert float(np.abs(expected).max()) > 0


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_evaluate_agrees_with_forward_backward_without_batch_norm(arch) -> None:
    graph = GRAPHS[arch]
    params = _params(graph, 10)
    lif = LIFParams()
    x, y = _data(graph, lif, False, seed=11, batch=7)
    a = snn.forward_backward(graph, params, {}, x, y, lif)
    b = snn.evaluate(graph, params, {}, x, y, lif)
    assert abs(b.loss_sum / b.count - a.loss) < 1e-12 and b.correct == a.correct
    assert np.allclose(np.array(b.spike_sums) / np.array(b.spike_counts), a.firing_rates)
    assert b.spike_counts == tuple(lif.time_steps * 7 * int(np.prod(graph.shapes[i]))
                                   for i in graph.neurons)


def test_float32_step_matches_float64_within_S0_6() -> None:
    graph = GRAPHS["resnet19"]
    params, buffers = _params(graph, 12), init_buffers(graph, "float64")
    lif = LIFParams()
    x, y = _data(graph, lif, False, seed=13, batch=8)
    r64 = snn.forward_backward(graph, params, buffers, x, y, lif)
    r32 = snn.forward_backward(graph, {k: v.astype(np.float32) for k, v in params.items()},
                               {k: v.astype(np.float32) for k, v in buffers.items()},
                               x.astype(np.float32), y, lif)
    assert abs(r32.loss - r64.loss) < 1.38e-3 * (1 + abs(r64.loss))
    assert all(g.dtype == np.float32 for g in r32.grads.values())
    assert all(b.dtype == np.float32 for b in r32.buffers.values())
