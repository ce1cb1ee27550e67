"""Reference model backend over graphs (SPEC S4.2, S4.5, S4.6, S4.13, S4.14, S2.3):
every smooth op's VJP against central differences in float64, whole LIF-free graphs
against finite differences of the loss, a LIF chain against the S4.3/S4.5 equations
written out, batch-norm statistics, eval mode, direct-encoded == repeated input, EID
credits and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from spikenm import api, registry
from spikenm.reference import snn
from spikenm.reference.snn_conv import pool_backward, pool_forward
from spikenm.reference.snn_ops import (
    bn_backward, bn_train_forward, conv_backward, conv_forward, flatten_backward,
    flatten_forward, linear_backward, linear_forward,
)
from spikenm.snn import (
    EIDRequest, Graph, LIFParams, ModelBackend, Node, archs, fold_batch_norm, init_buffers,
    init_params,
)
from spikenm.snn.graph import BN_EPS
from spikenm.snn.neuron import lif_step, surrogate

EPS = 1e-6


def _fd_vjp(f, arrays, gy):  # type: ignore[no-untyped-def]
    """Central differences of ``sum(gy * f(*arrays))`` w.r.t. every entry of every array."""
    out = []
    for a in arrays:
        grad = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + EPS
            plus = float((gy * f(*arrays)).sum())
            a[idx] = keep - EPS
            minus = float((gy * f(*arrays)).sum())
            a[idx] = keep
            grad[idx] = (plus - minus) / (2 * EPS)
        out.append(grad)
    return out


def _close(mine: np.ndarray, ref: np.ndarray, tol: float = 1e-7) -> None:
    assert mine.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-12)
    assert float(np.abs(mine - ref).max()) / scale < tol, (mine, ref)


# -- per-op VJPs ---------------------------------------------------------------------------

def test_linear_vjp_matches_central_differences_S4_5() -> None:
    rng = np.random.default_rng(0)
    a, w, b = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    gy = rng.normal(size=(5, 3))
    gw, gb, ga = linear_backward(gy, a, w, True)
    fa, fw, fb = _fd_vjp(linear_forward, [a, w, b], gy)
    _close(ga, fa), _close(gw, fw), _close(gb, fb)
    assert linear_backward(gy, a, w, False)[2] is None


@pytest.mark.parametrize("kernel,stride,padding,bias", [
    (3, 2, 1, True), (3, 1, 1, False), (1, 1, 0, True), (1, 2, 0, False), (3, 2, 0, True),
    (2, 1, 0, True)])
def test_conv_vjp_matches_central_differences_S4_2(kernel, stride, padding, bias) -> None:
    rng = np.random.default_rng(kernel * 10 + stride)
    a = rng.normal(size=(2, 5, 5, 2))
    w = rng.normal(size=(3, 2, kernel, kernel))
    b = rng.normal(size=3) if bias else None
    out, cols = conv_forward(a, w, b, stride, padding)
    gy = rng.normal(size=out.shape)
    gw, gb, ga = conv_backward(gy, cols, a.shape, w, stride, padding, True)

    def f(a_, w_, *b_):  # type: ignore[no-untyped-def]
        return conv_forward(a_, w_, b_[0] if b_ else None, stride, padding)[0]

    fds = _fd_vjp(f, [a, w] + ([b] if bias else []), gy)
    _close(ga, fds[0]), _close(gw, fds[1])
    if bias:
        _close(gb, fds[2])
    # the forward pass is the cross-correlation of S4.2 (channels-first reference)
    ref = _conv_nchw(a.transpose(0, 3, 1, 2), w, stride, padding)
    if bias:
        ref = ref + b[:, None, None]
    _close(out.transpose(0, 3, 1, 2), ref, 1e-12)


@pytest.mark.parametrize("shape", [(6, 3, 3, 2), (7, 3)], ids=["maps", "features"])
def test_bn_train_vjp_matches_central_differences_S4_13(shape) -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=shape) * 2 + 0.5
    c = shape[-1]
    gamma, beta = rng.normal(size=c) + 1.0, rng.normal(size=c)
    gy = rng.normal(size=shape)
    y, xhat, inv, mu, var = bn_train_forward(a, gamma, beta)
    flat = a.reshape(-1, c)
    np.testing.assert_allclose(mu, flat.mean(0), rtol=1e-13)
    np.testing.assert_allclose(var, flat.var(0), rtol=1e-12)  # biased
    np.testing.assert_allclose(y, gamma * (a - flat.mean(0)) / np.sqrt(flat.var(0) + BN_EPS)
                               + beta, rtol=1e-12, atol=1e-12)
    dgamma, dbeta, dx = bn_backward(gy, xhat, inv, gamma)
    fa, fg, fb = _fd_vjp(lambda a_, g_, b_: bn_train_forward(a_, g_, b_)[0], [a, gamma, beta],
                         gy)
    _close(dx, fa), _close(dgamma, fg), _close(dbeta, fb)


@pytest.mark.parametrize("q,shape", [(2, (2, 4, 4, 3)), (3, (1, 6, 3, 2)), (0, (2, 3, 3, 2))],
                         ids=["2x2", "3x3", "global"])
def test_pool_vjp_matches_central_differences_S4_6(q, shape) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=shape)
    out = pool_forward(a, q)
    n, h, w, c = shape
    assert out.shape == ((n, 1, 1, c) if q == 0 else (n, h // q, w // q, c))
    if q == 0:
        np.testing.assert_allclose(out[:, 0, 0], a.mean(axis=(1, 2)), rtol=1e-13)
    gy = rng.normal(size=out.shape)
    (fa,) = _fd_vjp(lambda a_: pool_forward(a_, q), [a], gy)
    _close(pool_backward(gy, q, a.shape), fa)


def test_flatten_is_chw_order_and_its_vjp_is_the_adjoint_S4_14() -> None:
    rng = np.random.default_rng(4)
    chw = rng.normal(size=(3, 2, 4, 5))
    a = np.ascontiguousarray(chw.transpose(0, 2, 3, 1))  # channels-last as the backend
    np.testing.assert_array_equal(flatten_forward(a), chw.reshape(3, -1))
    gy = rng.normal(size=(3, 40))
    (fa,) = _fd_vjp(flatten_forward, [a], gy)
    _close(flatten_backward(gy, a.shape), fa)
    feats = rng.normal(size=(3, 7))
    assert flatten_forward(feats) is feats and flatten_backward(feats, feats.shape) is feats


# -- whole graphs without spikes: the loss is smooth ---------------------------------------

def _smooth_graph() -> Graph:
    """conv(s2) bn -> fan-out to an identity and a 1x1 conv, 3-input add, pool, flatten,
    linear bn, the readout: every op but lif, a node read by three nodes."""
    return Graph((2, 6, 6), (
        Node("conv", (-1,), 2, 3, 3, 2, 1, bias=False),         # 0 -> (3, 3, 3)
        Node("bn", (0,)),                                       # 1
        Node("conv", (1,), 3, 3, 1, 1, 0),                      # 2
        Node("conv", (1,), 3, 3, 3, 1, 1, bias=False),          # 3
        Node("add", (1, 2, 3)),                                 # 4
        Node("pool", (4,), window=0),                           # 5 -> (3, 1, 1)
        Node("flatten", (5,)),                                  # 6
        Node("linear", (6,), 3, 4, bias=False),                 # 7
        Node("bn", (7,)),                                       # 8
        Node("add", (8, 8)),                                    # 9 the same input twice
        Node("linear", (9,), 4, 3),                             # 10 readout
    ))


def _random_params(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in graph.param_shapes().items():
        base = 1.0 if key.endswith("gamma") else 0.0
        out[key] = base + rng.normal(size=shape) * (0.3 if base else 0.7)
    return out


@pytest.mark.parametrize("static", [False, True], ids=["time-major", "direct"])
def test_smooth_graph_gradients_match_finite_differences_S4_14(static) -> None:
    graph, lif = _smooth_graph(), LIFParams(time_steps=3)
    params = _random_params(graph, 5)
    buffers = init_buffers(graph, "float64")
    rng = np.random.default_rng(6)
    x = rng.random((4, 2, 6, 6) if static else (3, 4, 2, 6, 6))
    y = rng.integers(0, 3, 4)
    res = snn.forward_backward(graph, params, buffers, x, y, lif)
    assert set(res.grads) == set(params) and res.firing_rates == ()
    fds = {}
    for key, value in params.items():
        def loss(v: np.ndarray, key: str = key) -> float:
            return snn.forward_backward(graph, {**params, key: v}, buffers, x, y, lif).loss
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[idx] += EPS
            minus[idx] -= EPS
            fd[idx] = (loss(plus) - loss(minus)) / (2 * EPS)
        fds[key] = fd
    # some gradients are exactly zero (a bias before batch norm): compare on one scale
    scale = max(float(np.abs(fd).max()) for fd in fds.values())
    for key, fd in fds.items():
        assert float(np.abs(res.grads[key] - fd).max()) < 1e-7 * scale, key


# -- LIF: one chain against the equations written out --------------------------------------

@pytest.mark.parametrize("lif", [LIFParams(), LIFParams(reset="soft"),
                                 LIFParams(detach_reset=True),
                                 LIFParams(reset="soft", detach_reset=True, beta=0.8,
                                           theta=0.7, alpha=3.0, time_steps=3)],
                         ids=["hard", "soft", "hard-detach", "soft-detach-T3"])
def test_lif_linear_chain_matches_hand_bptt_S4_3_S4_5(lif) -> None:
    graph = Graph((5,), (Node("linear", (-1,), 5, 6), Node("lif", (0,)),
                         Node("linear", (1,), 6, 3)))
    rng = np.random.default_rng(7)
    params = {"layer0.weight": rng.normal(size=(6, 5)), "layer0.bias": rng.normal(size=6) * .3 + .6,
              "layer1.weight": rng.normal(size=(3, 6)), "layer1.bias": rng.normal(size=3)}
    x, y = rng.random((4, 5)) * 2 - 1, rng.integers(0, 3, 4)
    t_steps = lif.time_steps
    w0, b0, w1, b1 = (params[k] for k in ("layer0.weight", "layer0.bias", "layer1.weight",
                                          "layer1.bias"))
    # forward, S4.3 and S4.8, with the core's operator-only step
    current = x @ w0.T + b0
    v = np.zeros_like(current)
    hs, ss = [], []
    for _ in range(t_steps):
        h, s, v = lif_step(v, current, lif)
        hs.append(h), ss.append(s)
    logits = sum(s @ w1.T + b1 for s in ss) / t_steps
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = float(np.mean(-np.log(p[np.arange(4), y])))
    g_logits = (p - np.eye(3)[y]) / 4
    # backward, S4.5
    g_w1 = sum(g_logits.T @ s for s in ss) / t_steps
    gv = np.zeros_like(current)
    g_current = np.zeros_like(current)
    for t in range(t_steps - 1, -1, -1):
        h, s = hs[t], ss[t]
        sg = surrogate(h, lif)
        if lif.reset == "soft":
            dvdh = 1.0 if lif.detach_reset else 1.0 - lif.theta * sg
        else:
            dvdh = (1.0 - s) - (0.0 if lif.detach_reset else h * sg)
        gh = (g_logits @ w1 / t_steps) * sg + gv * dvdh
        g_current += gh  # the static input: dL/dI summed over t
        gv = lif.beta * gh
    res = snn.forward_backward(graph, params, {}, x, y, lif)
    assert abs(res.loss - loss) < 1e-12
    assert res.firing_rates == pytest.approx((float(np.mean(ss)),), abs=0)
    _close(res.grads["layer1.weight"], g_w1, 1e-12)
    _close(res.grads["layer1.bias"], g_logits.sum(0), 1e-12)
    _close(res.grads["layer0.weight"], g_current.T @ x, 1e-12)
    _close(res.grads["layer0.bias"], g_current.sum(0), 1e-12)
    assert 0 < res.firing_rates[0] < 1


# -- batch norm: running statistics, eval mode ---------------------------------------------

def _conv_nchw(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Cross-correlation of ``x`` ``(N, C, H, W)`` with ``w`` ``(O, C, k, k)``."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (xp.shape[2] - k) // stride + 1
    wo = (xp.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for a in range(k):
        for b in range(k):
            win = xp[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", win, w[:, :, a, b])
    return out


def _conv_weight_grad(x: np.ndarray, d: np.ndarray, k: int, stride: int, padding: int
                      ) -> np.ndarray:
    """``dL/dW[o, c, a, b] = sum_{n,i,j} d[n, o, i, j] xpad[n, c, i s + a, j s + b]``."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = d.shape[2], d.shape[3]
    out = np.zeros((d.shape[1], x.shape[1], k, k))
    for a in range(k):
        for b in range(k):
            win = xp[:, :, a:a + stride * (ho - 1) + 1:stride, b:b + stride * (wo - 1) + 1:stride]
            out[:, :, a, b] = np.einsum("nohw,nchw->oc", d, win)
    return out


@pytest.mark.parametrize("kind", ["linear", "conv", "conv-direct"])
def test_bn_running_statistics_formula_S4_13(kind) -> None:
    rng = np.random.default_rng(8)
    t_steps, batch = 3, 4
    lif = LIFParams(time_steps=t_steps)
    if kind == "linear":
        graph = Graph((5,), (Node("linear", (-1,), 5, 3, bias=False), Node("bn", (0,)),
                             Node("lif", (1,)), Node("linear", (2,), 3, 2)))
        x = rng.random((t_steps, batch, 5))
    else:
        graph = Graph((2, 4, 4), (Node("conv", (-1,), 2, 3, 3, 1, 1, bias=False),
                                  Node("bn", (0,)), Node("lif", (1,)), Node("flatten", (2,)),
                                  Node("linear", (3,), 48, 2)))
        x = rng.random((batch, 2, 4, 4) if kind == "conv-direct" else (t_steps, batch, 2, 4, 4))
    params = _random_params(graph, 9)
    buffers = {"bn0.running_mean": rng.normal(size=3), "bn0.running_var": rng.random(3) + .5}
    w = params["layer0.weight"]
    if kind == "linear":
        pre = (x @ w.T).reshape(-1, 3)
    else:
        xs = x if kind == "conv" else np.broadcast_to(x, (t_steps,) + x.shape)
        pre = _conv_nchw(xs.reshape((-1,) + x.shape[-3:]), w, 1, 1)
        pre = pre.transpose(0, 2, 3, 1).reshape(-1, 3)
    n = pre.shape[0]
    assert n == t_steps * batch * (16 if kind != "linear" else 1)
    res = snn.forward_backward(graph, params, buffers, x, rng.integers(0, 2, batch), lif)
    np.testing.assert_allclose(res.buffers["bn0.running_mean"],
                               0.9 * buffers["bn0.running_mean"] + 0.1 * pre.mean(0),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.buffers["bn0.running_var"],
                               0.9 * buffers["bn0.running_var"]
                               + 0.1 * pre.var(0) * n / (n - 1), rtol=1e-12)
    assert set(res.buffers) == {"bn0.running_mean", "bn0.running_var"}


def test_eval_uses_running_statistics_and_changes_nothing_S4_13() -> None:
    graph = archs.resnet19((1, 8, 8), 4, width=1 / 32)
    params = init_params(graph, 0, 2.0, "float64")
    rng = np.random.default_rng(10)
    buffers = {}
    for key, shape in graph.buffer_shapes().items():
        buffers[key] = (rng.normal(size=shape) * 0.2 if key.endswith("mean")
                        else rng.random(shape) + 0.3)
    x, y = rng.random((6, 1, 8, 8)), rng.integers(0, 4, 6)
    lif = LIFParams()
    before = ({k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in buffers.items()})
    res = snn.evaluate(graph, params, buffers, x, y, lif)
    for table, copy in zip((params, buffers), before):
        for key in table:
            np.testing.assert_array_equal(table[key], copy[key])
    # eval-mode batch norm is the affine map folded into the layers before it
    folded_graph, folded = fold_batch_norm(graph, params, buffers)
    ref = snn.evaluate(folded_graph, folded, {}, x, y, lif)
    assert abs(res.loss_sum - ref.loss_sum) < 1e-9 and res.correct == ref.correct
    assert res.spike_sums == ref.spike_sums and res.spike_counts == ref.spike_counts
    assert sum(res.spike_sums) > 0 and res.count == 6
    # other running statistics give another result; train mode uses the batch's own
    shifted = {k: (v + 0.5 if k.endswith("mean") else v) for k, v in buffers.items()}
    assert snn.evaluate(graph, params, shifted, x, y, lif).spike_sums != res.spike_sums
    train = snn.forward_backward(graph, params, buffers, x, y, lif)
    assert abs(train.loss - res.loss_sum / 6) > 1e-6


# -- direct encoding == the input repeated over T -----------------------------------------

@pytest.mark.parametrize("arch", ["resnet19", "vgg11"])
def test_direct_input_equals_repeated_time_major_input_S4_7(arch) -> None:
    graph = (archs.resnet19((1, 8, 8), 5, width=1 / 32) if arch == "resnet19"
             else archs.vgg11((2, 4, 4), 5, width=1 / 16, hidden=(6,)))
    params = init_params(graph, 1, 2.5, "float64")
    buffers = init_buffers(graph, "float64")
    rng = np.random.default_rng(11)
    x = rng.random((5,) + graph.input_shape)
    y = rng.integers(0, 5, 5)
    lif = LIFParams(time_steps=3)
    repeated = np.ascontiguousarray(np.broadcast_to(x, (3,) + x.shape))
    layers = (0, 1, len(graph.layers) - 1)
    eid = EIDRequest(layers, tuple(params[f"layer{k}.weight"] * 1.5 for k in layers), 0.7)
    for request in (None, eid):
        a = snn.forward_backward(graph, params, buffers, x, y, lif, request)
        b = snn.forward_backward(graph, params, buffers, repeated, y, lif, request)
        assert abs(a.loss - b.loss) < 1e-12 and a.correct == b.correct
        assert a.firing_rates == b.firing_rates and any(r > 0 for r in a.firing_rates)
        for key in b.grads:
            _close(a.grads[key], b.grads[key], 1e-11)
        for key in b.buffers:
            _close(a.buffers[key], b.buffers[key], 1e-12)
        assert set(a.credits) == set(b.credits) == (set(layers) if request else set())
        for k in a.credits:
            _close(a.credits[k], b.credits[k], 1e-11)
    ea = snn.evaluate(graph, params, buffers, x, y, lif)
    eb = snn.evaluate(graph, params, buffers, repeated, y, lif)
    assert abs(ea.loss_sum - eb.loss_sum) < 1e-10 and ea.spike_sums == eb.spike_sums


# -- EID credits ---------------------------------------------------------------------------

def test_linear_credits_equal_api_eligibility_credit_S2_3() -> None:
    """Without spikes ``d_t`` is known in closed form: readout ``(p - onehot) / (B T)``,
    the layer below it ``d_t W_1``."""
    graph = Graph((4,), (Node("linear", (-1,), 4, 8), Node("linear", (0,), 8, 3)))
    rng = np.random.default_rng(12)
    params = _random_params(graph, 13)
    t_steps, batch = 3, 5
    x, y = rng.random((t_steps, batch, 4)), rng.integers(0, 3, batch)
    dense = (rng.normal(size=(8, 4)), rng.normal(size=(3, 8)))
    res = snn.forward_backward(graph, params, {}, x, y, LIFParams(time_steps=t_steps),
                               EIDRequest((0, 1), dense, 0.6))
    h = x @ params["layer0.weight"].T + params["layer0.bias"]
    logits = (h @ params["layer1.weight"].T + params["layer1.bias"]).mean(0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d1 = np.broadcast_to((p - np.eye(3)[y]) / (batch * t_steps), (t_steps, batch, 3))
    d0 = d1 @ params["layer1.weight"]
    np.testing.assert_allclose(res.credits[1], api.eligibility_credit(h, d1.copy(), dense[1],
                                                                      decay=0.6), rtol=1e-10)
    np.testing.assert_allclose(res.credits[0], api.eligibility_credit(x, d0, dense[0],
                                                                      decay=0.6), rtol=1e-10)


@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 0)])
def test_conv_credits_are_per_step_conv_weight_gradients_S2_3(stride, padding) -> None:
    ho = (5 + 2 * padding - 3) // stride + 1
    graph = Graph((2, 5, 5), (Node("conv", (-1,), 2, 4, 3, stride, padding),
                              Node("flatten", (0,)), Node("linear", (1,), 4 * ho * ho, 3)))
    rng = np.random.default_rng(14)
    params = _random_params(graph, 15)
    t_steps, batch, lam = 3, 4, 0.4
    x, y = rng.random((t_steps, batch, 2, 5, 5)), rng.integers(0, 3, batch)
    dense = rng.normal(size=(4, 2, 3, 3))
    res = snn.forward_backward(graph, params, {}, x, y, LIFParams(time_steps=t_steps),
                               EIDRequest((0,), (dense,), lam))
    maps = _conv_nchw(x.reshape(-1, 2, 5, 5), params["layer0.weight"], stride, padding)
    maps = maps + params["layer0.bias"][:, None, None]
    logits = (maps.reshape(t_steps, batch, -1) @ params["layer1.weight"].T
              + params["layer1.bias"]).mean(0)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = ((p - np.eye(3)[y]) / (batch * t_steps)) @ params["layer1.weight"]
    d = d.reshape(batch, 4, ho, ho)
    trace = np.zeros_like(x[0])
    total = np.zeros_like(dense)
    for t in range(t_steps):
        trace = lam * trace + x[t]
        total += np.abs(_conv_weight_grad(trace, d, 3, stride, padding))
    expected = api.to_block_layout(np.abs(dense) * total)
    assert res.credits[0].shape == (4, 3, 3, 2)
    np.testing.assert_allclose(res.credits[0], expected, rtol=1e-10, atol=1e-15)


# -- interface and errors ------------------------------------------------------------------

def test_backend_object_and_registry_S4_16() -> None:
    be = registry.model_backend("numpy")
    assert isinstance(be, ModelBackend) and be.name == "numpy" and be.device == "cpu"
    a = np.arange(6.0).reshape(2, 3)[:, ::2]
    b = be.from_numpy(a)
    assert b.flags.c_contiguous and np.array_equal(a, b) and b is not a
    assert np.array_equal(be.to_numpy(b), a) and be.to_numpy(b) is not b
    graph = archs.mlp((3,), 2, (4,))
    params = init_params(graph, 0, 1.0, "float32")
    x, y = np.ones((2, 3), np.float32), np.array([0, 1])
    res = be.forward_backward(graph, params, {}, x, y, LIFParams())
    assert all(g.dtype == np.float32 for g in res.grads.values())
    assert be.evaluate(graph, params, {}, x, y, LIFParams()).count == 2


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu", "cpu:1", ""])
def test_devices_other_than_cpu_are_refused_S4_16(device) -> None:
    with pytest.raises(ValueError, match=r"device .* it runs on \"cpu\" only"):
        snn.model_backend(device)
    with pytest.raises(ValueError, match="cpu"):
        registry.model_backend("numpy", device)


def _small():  # type: ignore[no-untyped-def]
    graph = Graph((3,), (Node("linear", (-1,), 3, 4, bias=False), Node("bn", (0,)),
                         Node("lif", (1,)), Node("linear", (2,), 4, 2)))
    return (graph, init_params(graph, 0, 1.0, "float64"), init_buffers(graph, "float64"),
            np.ones((2, 3)), np.array([0, 1]))


def test_parameter_and_buffer_keys_are_checked() -> None:
    graph, params, buffers, x, y = _small()
    lif = LIFParams()
    missing = {k: v for k, v in params.items() if k != "bn0.gamma"}
    with pytest.raises(ValueError, match=r"missing \['bn0.gamma'\]"):
        snn.forward_backward(graph, missing, buffers, x, y, lif)
    with pytest.raises(ValueError, match=r"unexpected \['layer0.bias'\]"):
        snn.forward_backward(graph, {**params, "layer0.bias": np.zeros(4)}, buffers, x, y, lif)
    with pytest.raises(ValueError, match=r"buffers .* missing \['bn0.running_var'\]"):
        snn.evaluate(graph, params, {"bn0.running_mean": np.zeros(4)}, x, y, lif)
    with pytest.raises(ValueError, match="layer1.weight has shape"):
        snn.forward_backward(graph, {**params, "layer1.weight": np.zeros((2, 5))}, buffers, x,
                             y, lif)
    with pytest.raises(TypeError, match="input x is float32"):
        snn.forward_backward(graph, params, buffers, x.astype(np.float32), y, lif)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        snn.forward_backward(graph, {**params, "bn0.beta": [0.0] * 4}, buffers, x, y, lif)
    with pytest.raises(ValueError, match=r"label 2 is out of range.*\[0, 2\)"):
        snn.forward_backward(graph, params, buffers, x, np.array([0, 2]), lif)
    with pytest.raises(ValueError, match="label -1"):
        snn.evaluate(graph, params, buffers, x, np.array([-1, 0]), lif)
    with pytest.raises(ValueError, match="holds no samples"):
        snn.evaluate(graph, params, buffers, x[:0], y[:0], lif)
    with pytest.raises(TypeError, match="LIFParams"):
        snn.forward_backward(graph, params, buffers, x, y, {"beta": 0.5})


def test_bn_needs_two_entries_per_channel_in_train_mode_S4_13() -> None:
    graph, params, buffers, _, _ = _small()
    one = np.ones((1, 1, 3))
    with pytest.raises(ValueError, match=r"bn0 \(node 1\).*n = T \* B \* H \* W = 1"):
        snn.forward_backward(graph, params, buffers, one, np.array([0]),
                             LIFParams(time_steps=1))
    # a direct-encoded sample counts T times; eval mode needs no batch statistics
    res = snn.forward_backward(graph, params, buffers, one[0], np.array([0]), LIFParams())
    assert np.isfinite(res.loss)
    assert snn.evaluate(graph, params, buffers, one, np.array([0]),
                        LIFParams(time_steps=1)).count == 1


def test_eid_requests_are_checked() -> None:
    graph, params, buffers, x, y = _small()
    lif = LIFParams()
    w = params["layer1.weight"]
    with pytest.raises(ValueError, match=r"eid layer 2 is not a layer ordinal.*\[0, 2\)"):
        snn.forward_backward(graph, params, buffers, x, y, lif, EIDRequest((2,), (w,), .5))
    with pytest.raises(ValueError, match="expected a numpy array of shape"):
        snn.forward_backward(graph, params, buffers, x, y, lif, EIDRequest((0,), (w,), .5))
    with pytest.raises(ValueError, match="one dense weight per layer"):
        snn.forward_backward(graph, params, buffers, x, y, lif, EIDRequest((1,), (), .5))
    with pytest.raises(ValueError, match="requested twice"):
        snn.forward_backward(graph, params, buffers, x, y, lif, EIDRequest((1, 1), (w, w), .5))
    with pytest.raises(ValueError, match="decay"):
        snn.forward_backward(graph, params, buffers, x, y, lif, EIDRequest((1,), (w,), 1.5))
