"""EID in the PyTorch module path: credits from hooks (SPEC S2.1-S2.3, S2.9 signed, S5.5)
for both time conventions, the ``handle.eid_loss()`` term (S2.6-S2.7) and the warning
when it is missing; and one float64 step of a hand-written spiking conv net against the
torch model backend on the same graph (same ``G``, same credits)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikenm import api, reference
from spikenm.backends.torch import nn as snn
from spikenm.backends.torch.nn_credit import CreditCollector, conv_credit, conv_weight_grad
from spikenm.methods.spikenm import SpikeNM
from spikenm.registry import model_backend
from spikenm.snn.archs import conv_net
from spikenm.snn.graph import init_params
from spikenm.snn.model import EIDRequest
from spikenm.snn.neuron import LIFParams

from torch_helpers import ATanSpike

N, M = 2, 4
F64 = torch.float64


class Recorder:
    """A method that forwards to ``inner`` and records the arguments of every ``update``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.updates: list[dict[str, Any]] = []
        for call in ("init", "masks", "weight_grads", "eid_targets", "final_masks"):
            setattr(self, call, getattr(inner, call))

    def update(self, setup: Any, state: Any, sm: Any, weights: Any, grads: Any, credits: Any,
               step: int, logit_grads: Any = None) -> Any:
        self.updates.append(dict(sm=sm, weights=dict(weights), grads=dict(grads),
                                 credits=dict(credits), logit_grads=logit_grads))
        return self.inner.update(setup, state, sm, weights, grads, credits, step,
                                 logit_grads=logit_grads)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def brute_conv_credit(x: torch.Tensor, d: torch.Tensor, w: torch.Tensor, stride: int,
                      padding: int, decay: float, signed: bool = False) -> torch.Tensor:
    """S2.3 literally on the im2col input: ``|W| * sum_t |sum_{b, l} d e_unf|``; S2.9
    (``signed``): ``|W| * |sum_t sum_{b, l} d e_unf|``."""
    o, c, k, _ = w.shape
    e = torch.zeros_like(x[0])
    total = torch.zeros(o, c * k * k, dtype=x.dtype)
    for t in range(x.shape[0]):
        e = decay * e + x[t]
        cols = F.unfold(e, k, padding=padding, stride=stride)           # (B, C*k*k, L)
        dt = d[t].reshape(d.shape[1], o, -1)                             # (B, O, L)
        step = torch.einsum("bol,bjl->oj", dt, cols)
        total += step if signed else torch.abs(step)
    return api.to_block_layout(w.abs() * total.abs().reshape(o, c, k, k))


# -- the collector on single layers ----------------------------------------------------------

@pytest.mark.parametrize("signed", [False, True], ids=["abs", "signed"])
@pytest.mark.parametrize("mode", ["calls", "leading", "flat"])
def test_S2_3_linear_credit_equals_eligibility_credit(mode: str, signed: bool) -> None:
    """S2.3 / S2.9: a Linear layer's credit is the reference `eligibility_credit` of its
    inputs and ``dL/dI_t``, in every time convention."""
    t_steps, b, k, o = 3, 5, 8, 4
    torch.manual_seed(0)
    lin = nn.Linear(k, o).double()
    x = rand(t_steps, b, k)
    target = randn(t_steps, b, o, seed=1)
    col = CreditCollector({1: ("fc", lin)}, 0.7, t_steps if mode == "flat" else None,
                          signed=signed)
    col.attach()
    col.active = frozenset({1})
    if mode == "calls":
        out = torch.stack([lin(x[t]) for t in range(t_steps)])
    elif mode == "leading":
        out = lin(x)
    else:
        out = lin(x.reshape(t_steps * b, k)).reshape(t_steps, b, o)
    (out * target + out.square()).sum().backward()
    d = (target + 2 * out).detach()
    credit = col.reduce({1: lin.weight})[1]
    expected = reference.eligibility_credit(x.numpy(), d.numpy(),
                                            lin.weight.detach().numpy(), 0.7, signed)
    np.testing.assert_allclose(credit.numpy(), expected, rtol=1e-13, atol=1e-15)
    if signed:   # S2.9 never exceeds S2.3, and differs from it here
        plain = api.eligibility_credit(x.numpy(), d.numpy(), lin.weight.detach().numpy(),
                                       decay=0.7)
        assert np.all(expected <= plain + 1e-15) and not np.allclose(expected, plain)


class MultiStepConv(nn.Conv2d):
    """A conv over ``(T, B, C, H, W)`` inputs, as SpikingJelly's multi-step layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x.flatten(0, 1))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


@pytest.mark.parametrize("signed", [False, True], ids=["abs", "signed"])
@pytest.mark.parametrize("mode", ["calls", "leading", "flat"])
def test_S2_3_conv_credit_equals_the_im2col_formula(mode: str, signed: bool) -> None:
    """S2.3 / S2.9: a conv layer's credit is the formula on the unfolded input (signed:
    the weight gradient of the stacked steps equals the per-step sum)."""
    t_steps, b = 3, 2
    torch.manual_seed(0)
    conv = (MultiStepConv if mode == "leading" else nn.Conv2d)(4, 8, 3, stride=2,
                                                               padding=1).double()
    x = rand(t_steps, b, 4, 6, 6)
    col = CreditCollector({0: ("conv", conv)}, 0.5, t_steps if mode == "flat" else None,
                          signed=signed)
    col.attach()
    col.active = frozenset({0})
    if mode == "calls":
        out = torch.stack([conv(x[t]) for t in range(t_steps)])
    elif mode == "leading":
        out = conv(x)
    else:
        out = conv(x.flatten(0, 1)).reshape(t_steps, b, 8, 3, 3)
    target = randn(*out.shape, seed=2)
    (out * target).sum().backward()
    credit = col.reduce({0: conv.weight})[0]
    expected = brute_conv_credit(x, target, conv.weight.detach(), 2, 1, 0.5, signed)
    torch.testing.assert_close(credit, expected, rtol=1e-12, atol=1e-14)
    if signed:
        plain = brute_conv_credit(x, target, conv.weight.detach(), 2, 1, 0.5)
        assert bool((expected <= plain + 1e-14).all()) and not torch.allclose(expected, plain)


def test_conv_weight_grad_general_padding_equals_the_explicit_padding() -> None:
    torch.manual_seed(0)
    e, w = rand(2, 3, 5, 5), randn(4, 3, 3, 3, seed=1)
    same = nn.Conv2d(3, 4, 3, padding="same").double()
    zeros = nn.Conv2d(3, 4, 3, padding=1).double()
    d = randn(2, 4, 5, 5, seed=2)
    torch.testing.assert_close(conv_weight_grad(same, e, d, w), conv_weight_grad(zeros, e, d, w))
    reflect = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect").double()
    padded = F.pad(e, (1, 1, 1, 1), mode="reflect")
    valid = nn.Conv2d(3, 4, 3, padding=0).double()
    torch.testing.assert_close(conv_weight_grad(reflect, e, d, w),
                               conv_weight_grad(valid, padded, d, w))
    conv1d = nn.Conv1d(4, 2, 3, padding=1, groups=2).double()
    x1, d1 = rand(2, 1, 4, 7), randn(2, 1, 2, 7, seed=3)
    got = conv_credit(conv1d, x1, d1, conv1d.weight.detach(), 0.0)
    ref = sum(torch.abs(torch.nn.grad.conv1d_weight(x1[t], conv1d.weight.shape, d1[t],
                                                    padding=1, groups=2)) for t in range(2))
    torch.testing.assert_close(got, conv1d.weight.detach().abs() * ref)
    # S2.9: one weight gradient of the stacked steps = |sum over t of the per-step ones|,
    # for zero padding (no forward pass) and for the module's own convolution (reflect)
    xs, ds = rand(3, 2, 3, 5, 5, seed=4), randn(3, 2, 4, 5, 5, seed=5)
    for module in (zeros, reflect):
        got = conv_credit(module, xs, ds, w, 0.6, signed=True)
        e, total = torch.zeros_like(xs[0]), torch.zeros_like(w)
        for t in range(3):
            e = 0.6 * e + xs[t]
            total = total + conv_weight_grad(module, e, ds[t], w)
        torch.testing.assert_close(got, w.abs() * total.abs(), rtol=1e-12, atol=1e-14)


def test_sequences_restart_the_trace_after_backward_and_on_request() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(8, 4).double()
    col = CreditCollector({0: ("fc", lin)}, 0.5, None)
    col.attach()
    col.active = frozenset({0})
    xa, xb = rand(2, 3, 8, seed=1), rand(2, 3, 8, seed=2)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([lin(x[t]) for t in range(2)])
        return out

    def credit(x: torch.Tensor, d: torch.Tensor) -> np.ndarray:
        return api.eligibility_credit(x.numpy(), d.numpy(), lin.weight.detach().numpy(),
                                      decay=0.5)

    run(xa).sum().backward()                     # sequence a, then backward
    run(xb).square().sum().backward()            # next forward: new sequence
    d_b = 2 * run(xb).detach()
    col.clear()
    run(xa).sum().backward()
    run(xb).square().sum().backward()
    got = col.reduce({0: lin.weight})[0].numpy()
    expected = credit(xa, torch.ones(2, 3, 4, dtype=F64)) + credit(xb, d_b)
    np.testing.assert_allclose(got, expected, rtol=1e-13)

    out = run(xa).sum()                          # two sequences, one backward:
    col.new_sequence()                           # ... split by hand
    out = out + run(xb).sum()
    out.backward()
    got = col.reduce({0: lin.weight})[0].numpy()
    ones = torch.ones(2, 3, 4, dtype=F64)
    np.testing.assert_allclose(got, credit(xa, ones) + credit(xb, ones), rtol=1e-13)

    out = run(xa).sum() + run(xb).sum()          # without new_sequence: one 4-step trace
    out.backward()
    got = col.reduce({0: lin.weight})[0].numpy()
    np.testing.assert_allclose(got, credit(torch.cat([xa, xb]), torch.ones(4, 3, 4,
                                                                           dtype=F64)),
                               rtol=1e-13)


def test_calls_without_gradients_or_in_eval_mode_are_not_recorded() -> None:
    lin = nn.Linear(8, 4).double()
    col = CreditCollector({0: ("fc", lin)}, 0.5, None)
    col.attach()
    col.active = frozenset({0})
    with torch.no_grad():
        lin(rand(3, 8))
    lin.eval()
    lin(rand(3, 8)).sum().backward()
    lin.train()
    lin(rand(3, 8))                              # no backward: no credit
    assert col.reduce({0: lin.weight}) == {}
    col.active = frozenset()
    lin(rand(3, 8)).sum().backward()
    assert col.reduce({0: lin.weight}) == {}


def test_collector_refuses_inputs_it_cannot_read() -> None:
    lin = nn.Linear(8, 4).double()
    col = CreditCollector({0: ("fc", lin)}, 0.5, 3)
    col.attach()
    col.active = frozenset({0})
    with pytest.raises(ValueError, match=r"layer 'fc' got a flattened input of shape \(4, 8\)"):
        lin(rand(4, 8))
    with pytest.raises(ValueError, match=r"leading time axis has 2 steps; .*time_steps=3"):
        lin(rand(2, 3, 8))
    with pytest.raises(ValueError, match=r"layer 'fc' got an input of shape \(1, 2, 3, 8\)"):
        lin(rand(1, 2, 3, 8))
    with pytest.raises(ValueError, match="eid_decay must be a number in"):
        CreditCollector({}, 2.0, None)


# -- a spiking conv net written by hand, against the torch model backend -------------------

def lif(v: torch.Tensor, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = 0.5 * v + current
    s = ATanSpike.apply(h)
    return s, h * (1.0 - s)


class ConvSNN(nn.Module):
    """``conv_net((1, 8, 8), 10, (4, 8), hidden=(8,))`` of `spikenm.snn.archs` (S4.2)."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(1, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 8, 3, padding=1)
        self.f2 = nn.Linear(32, 8)
        self.f3 = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor, t_steps: int, leading: bool = False) -> torch.Tensor:
        if leading:                              # every layer sees all T steps at once
            xs = x.expand(t_steps, *x.shape)
            i0 = self.c0(xs.flatten(0, 1)).reshape(t_steps, *x.shape[:1], 4, 8, 8)
            s0 = F.avg_pool2d(self.lif_seq(i0).flatten(0, 1), 2)
            i1 = self.c1(s0).reshape(t_steps, -1, 8, 4, 4)
            s1 = F.avg_pool2d(self.lif_seq(i1).flatten(0, 1), 2).reshape(t_steps, -1, 32)
            s2 = self.lif_seq(self.f2(s1))
            return self.f3(s2).mean(0)
        v = [torch.zeros(())] * 3
        out = []
        for _ in range(t_steps):                 # one call per time step
            s, v[0] = lif(v[0], self.c0(x))
            s, v[1] = lif(v[1], self.c1(F.avg_pool2d(s, 2)))
            s, v[2] = lif(v[2], self.f2(F.avg_pool2d(s, 2).flatten(1)))
            out.append(self.f3(s))
        return torch.stack(out).mean(0)

    @staticmethod
    def lif_seq(current: torch.Tensor) -> torch.Tensor:
        v = torch.zeros(())
        spikes = []
        for t in range(current.shape[0]):
            s, v = lif(v, current[t])
            spikes.append(s)
        return torch.stack(spikes)


@pytest.mark.parametrize("credit", ["abs", "signed"])
@pytest.mark.parametrize("leading", [False, True])
def test_S5_5_one_step_matches_the_torch_model_backend(leading: bool, credit: str) -> None:
    """Same graph, parameters and data: the module path's ``G`` of the masked layers and
    its EID credits equal the torch model backend's within S4.11 (float64); with
    ``SpikeNM(eid_credit="signed")`` the signed credits of S2.9 on both sides."""
    graph = conv_net((1, 8, 8), 10, (4, 8), hidden=(8,))
    params = init_params(graph, 3, 2.0, "float64")
    net = ConvSNN().double()
    with torch.no_grad():
        for k, mod in enumerate((net.c0, net.c1, net.f2, net.f3)):
            mod.weight.copy_(torch.from_numpy(params[f"layer{k}.weight"]))
            mod.bias.copy_(torch.from_numpy(params[f"layer{k}.bias"]))
    rec = Recorder(SpikeNM(eid_credit=credit))
    t_steps = 4
    handle = snn.sparsify(net, N, M, total_steps=10, method=rec, seed=2,
                          time_steps=t_steps if leading else None)
    x = torch.from_numpy(np.random.default_rng(5).random((6, 1, 8, 8)) * 3.0)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    loss = F.cross_entropy(net(x, t_steps, leading), y) + handle.eid_loss()
    loss.backward()
    sm = handle.current
    assert sm.eid_signed == (credit == "signed")
    handle.step()
    got = rec.updates[-1]

    be = model_backend("torch")
    eff = {k: be.from_numpy(v) for k, v in params.items()}
    for k in (1, 2):
        eff[f"layer{k}.weight"] = eff[f"layer{k}.weight"] * sm.masks[k].detach()
    dense = tuple(be.from_numpy(params[f"layer{k}.weight"]) for k in (1, 2))
    result = be.forward_backward(graph, eff, {}, x, y, LIFParams(),
                                 EIDRequest((1, 2), dense, 0.5, credit == "signed"))
    assert float(loss.detach()) == pytest.approx(result.loss, rel=1e-12)
    for k in (1, 2):
        g_ref = result.grads[f"layer{k}.weight"]
        scale = float(g_ref.abs().max())
        assert scale > 0
        torch.testing.assert_close(got["grads"][k] / scale, g_ref / scale, rtol=0, atol=1e-12)
        c_ref = result.credits[k]
        assert float(c_ref.abs().max()) > 0
        torch.testing.assert_close(got["credits"][k] / c_ref.max(), c_ref / c_ref.max(),
                                   rtol=0, atol=1e-12)


# -- the EID term -----------------------------------------------------------------------

def two_layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(),
                         nn.Linear(8, 3)).double()


@pytest.mark.parametrize("variant", ["global", "gated"])
def test_S2_6_eid_loss_and_its_gradient_reach_the_update(variant: str) -> None:
    """The EID term of the module path for a variant without and one with logits in
    its targets (S2.11; the default is ``gated``)."""
    model = two_layer()
    method = SpikeNM(eid_variant=variant, eid_weight=1.0)
    rec = Recorder(method)
    handle = snn.sparsify(model, N, M, total_steps=20, method=rec, seed=1)
    x = randn(6, 8)
    assert float(handle.eid_loss()) == 0.0                     # step 0: no credit yet
    model(x).square().mean().backward()
    handle.step()
    credit = rec.updates[0]["credits"][1]
    running = handle._state.arrays["credit/1"]
    torch.testing.assert_close(running, credit)                 # C = c at the first update
    search = method.search_steps(20)
    lam = method.eid_lambda(1, search)
    tau_e, kappa = method.eid_temperature.at(1, search), method.scale.at(1, search)
    pi = handle.logit_parameters()[0].detach().clone()
    q = api.eid_targets(running, M, temperature=tau_e, variant=variant, n=N,
                        logits=pi if variant == "gated" else None, scale=kappa)
    term = handle.eid_loss()
    expected = lam * api.eid_loss(pi, q, M, scale=kappa)
    assert float(term.detach()) == pytest.approx(float(expected), rel=1e-12)
    model(x).square().mean().backward()
    term.backward()
    sm = handle.current
    w = handle._snapshot[1].clone()
    handle.step()
    got = rec.updates[1]
    task = reference.sample_mask_vjp(pi.numpy(), sm.aux[1].numpy(), N, M, sm.temperature,
                                     sm.scale, True,
                                     api.to_block_layout(got["grads"][1] * w).numpy())
    eid = lam * reference.eid_loss_vjp(pi.numpy(), q.numpy(), M, kappa, 1.0)
    np.testing.assert_allclose(got["logit_grads"][1].numpy(), task + eid, rtol=1e-10,
                               atol=1e-14)


def train(handle: snn.SpikeNMHandle, model: nn.Module, steps: int, with_eid: bool,
          backprop_eid: bool = True) -> None:
    x = randn(6, 8)
    for _ in range(steps):
        loss = model(x).square().mean()
        if with_eid:
            term = handle.eid_loss()
            if backprop_eid:
                loss = loss + term
        loss.backward()
        handle.step()


def test_missing_eid_loss_warns_exactly_once() -> None:
    model = two_layer()
    handle = snn.sparsify(model, N, M, total_steps=10)
    with pytest.warns(UserWarning) as record:
        train(handle, model, 5, with_eid=False)
    messages = [str(w.message) for w in record if "eid_loss" in str(w.message)]
    assert len(messages) == 1
    assert "at step 1 handle.eid_loss() was not called" in messages[0]
    assert "loss = task_loss + handle.eid_loss()" in messages[0]

    model = two_layer()
    handle = snn.sparsify(model, N, M, total_steps=10)
    with pytest.warns(UserWarning, match="was not back-propagated"):
        train(handle, model, 3, with_eid=True, backprop_eid=False)

    for method in ("spikenm", SpikeNM(eid=False), "srste"):
        model = two_layer()
        handle = snn.sparsify(model, N, M, total_steps=10, method=method)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            train(handle, model, 4, with_eid=method == "spikenm")


@pytest.mark.parametrize("credit", ["abs", "signed"])
def test_eid_decay_argument_sets_the_trace_decay(credit: str) -> None:
    """``sparsify(eid_decay=...)`` sets the trace decay and the method's ``eid_credit``
    the formula: the credit is the reference `eligibility_credit` (S2.3, or S2.9 signed)
    of the layer's inputs and its ``dL/dI_t`` by autograd."""
    model = two_layer()
    rec = Recorder(SpikeNM(eid_credit=credit))
    handle = snn.sparsify(model, N, M, total_steps=10, method=rec, eid_decay=0.9)
    x = randn(2, 3, 8)
    inputs = []
    hook = model[2].register_forward_hook(lambda mod, a, out: inputs.append(a[0].detach()))
    outs = [model(x[t]) for t in range(2)]
    hook.remove()
    sum(o.sum() for o in outs).backward()
    handle.step()
    xs = torch.stack(inputs)
    # d_t of layer 2 (a Linear before a Tanh and the readout) by autograd
    w = rec.updates[0]["weights"][1]
    got = rec.updates[0]["credits"][1]
    d = []
    for t in range(2):
        i = (xs[t] @ (w * rec.updates[0]["sm"].masks[1].detach()).T + model[2].bias).detach()
        i.requires_grad_(True)
        model[4](torch.tanh(i)).sum().backward()
        d.append(i.grad)
    expected = reference.eligibility_credit(xs.numpy(), torch.stack(d).numpy(), w.numpy(),
                                            0.9, credit == "signed")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    plain = api.eligibility_credit(xs.numpy(), torch.stack(d).numpy(), w.numpy(), decay=0.9)
    assert np.allclose(expected, plain) == (credit == "abs")
