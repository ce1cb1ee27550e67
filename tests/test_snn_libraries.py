"""The module path (`spikenm.backends.torch.nn`, SPEC S6.0) on models built with the real SNN
libraries from PyPI: snnTorch, SpikingJelly and Norse (the test extra installs them under
a constraint that keeps the CPU torch).

Each library drives time differently: snnTorch and Norse call the layers once per time
step, SpikingJelly's multi-step mode passes a leading time axis (``time_steps=T``).  The
tests train a small spiking network with SpikeNM (EID on) in each, check that the right
layers are masked, that EID sees credits, that the final weights are exactly ``n:m``
(S0.2) and that the packed modules serve the finished model unchanged; SpikingJelly's two
step modes must give the same run.
"""

from __future__ import annotations

import math

import norse.torch as norse
import pytest
import snntorch
import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import layer as sj_layer
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from spikenm.api import check_nm, to_block_layout
from spikenm.backends.torch.nn import sparsify
from spikenm.backends.torch.packed_modules import PackedConv, PackedLinear, pack_model

T = 4
STEPS = 12


class SnnTorchNet(nn.Module):
    """Linear-Leaky x 2, linear readout averaged over time; one call per step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(16, 32), snntorch.Leaky(beta=0.5)
        self.fc2, self.lif2 = nn.Linear(32, 32), snntorch.Leaky(beta=0.5)
        self.fc3 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m1, m2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        out = 0
        for t in range(x.shape[0]):
            s1, m1 = self.lif1(self.fc1(x[t]), m1)
            s2, m2 = self.lif2(self.fc2(s1), m2)
            out = out + self.fc3(s2)
        return out / x.shape[0]


class NorseNet(nn.Module):
    """Linear-LIFCell x 2, linear readout averaged over time; one call per step.

    Norse's default neuron (``dt = 1 ms``, ``tau_mem = 10 ms``, threshold 1) stays silent
    for 4 steps of this input, so the time constants are shortened to make it fire."""

    def __init__(self) -> None:
        super().__init__()
        p = norse.LIFParameters(tau_syn_inv=torch.tensor(1000.0),
                                tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.3))
        self.fc1, self.lif1 = nn.Linear(16, 32), norse.LIFCell(p)
        self.fc2, self.lif2 = nn.Linear(32, 32), norse.LIFCell(p)
        self.fc3 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = s2 = None
        out = 0
        for t in range(x.shape[0]):
            z, s1 = self.lif1(self.fc1(x[t]), s1)
            z, s2 = self.lif2(self.fc2(z), s2)
            out = out + self.fc3(z)
        return out / x.shape[0]


def spikingjelly_net(step_mode: str) -> nn.Sequential:
    """Conv-LIF, Linear-LIF x 2 and a linear readout in SpikingJelly's layers."""
    net = nn.Sequential(
        sj_layer.Conv2d(1, 8, 3, padding=1), sj_neuron.LIFNode(v_threshold=0.2), sj_layer.Flatten(),
        sj_layer.Linear(8 * 8 * 8, 32), sj_neuron.LIFNode(v_threshold=0.2),
        sj_layer.Linear(32, 32), sj_neuron.LIFNode(v_threshold=0.2),
        sj_layer.Linear(32, 4))
    sj_functional.set_step_mode(net, step_mode)
    return net


def run_spikingjelly(net: nn.Sequential, x: torch.Tensor, step_mode: str) -> torch.Tensor:
    sj_functional.reset_net(net)
    if step_mode == "m":
        return net(x).mean(0)
    return torch.stack([net(x[t]) for t in range(x.shape[0])]).mean(0)


def _data(conv: bool, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (T, 32, 1, 8, 8) if conv else (T, 32, 16)
    x = (torch.rand(shape, generator=g) < 0.3).to(dtype)
    y = torch.randint(0, 4, (32,), generator=g)
    return x, y


def _train(model: nn.Module, forward, x: torch.Tensor, y: torch.Tensor, **kwargs):
    handle = sparsify(model, 2, 4, total_steps=STEPS, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    eid_terms, losses = [], []
    for _ in range(STEPS):
        task = nn.functional.cross_entropy(forward(model, x), y)
        eid = handle.eid_loss()
        loss = task + eid
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()
        eid_terms.append(float(eid.detach()))
        losses.append(float(task.detach()))
    return handle, eid_terms, losses


CASES = {
    "snntorch": (SnnTorchNet, lambda model, x: model(x), False, {}, ["fc2"]),
    "norse": (NorseNet, lambda model, x: model(x), False, {}, ["fc2"]),
    "spikingjelly": (lambda: spikingjelly_net("m"),
                     lambda model, x: run_spikingjelly(model, x, "m"), True,
                     {"time_steps": T}, ["3", "5"]),
}


@pytest.mark.parametrize("library", sorted(CASES))
def test_library_model_trains_to_exact_nm(library: str) -> None:
    """S6.0 / S0.2: the library's layers are found, EID runs, the result is exactly 2:4."""
    build, forward, conv, kwargs, masked = CASES[library]
    torch.manual_seed(1)
    model = build()
    x, y = _data(conv)
    handle, eid_terms, losses = _train(model, forward, x, y, **kwargs)
    assert sorted(handle.layers) == masked
    assert len(handle.dense) == 2 and all("layer" in why for why in handle.dense.values())
    assert all(math.isfinite(v) for v in losses)
    # EID needs the credits of a step to form targets; a layer that got none would keep
    # its EID term at exactly 0 throughout the search phase.
    assert max(eid_terms) > 0.0, eid_terms
    entropy = [s.entropy for s in handle.stats().values()]
    assert all(e is not None and e < math.log(4) - 1e-4 for e in entropy), entropy
    handle.finalize()
    modules = dict(model.named_modules())
    for name in masked:
        w = modules[name].weight.detach()
        check_nm(to_block_layout(w), 2, 4)   # raises naming the first bad block
        assert int((w != 0).sum()) == w.numel() // 2
    served = pack_model(model, 2, 4, dense=handle.dense)
    kinds = {name: type(dict(served.named_modules())[name]) for name in masked}
    assert set(kinds.values()) <= {PackedLinear, PackedConv}, kinds
    with torch.no_grad():
        want = forward(model, x)
        got = forward(served, x)
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


def test_spikingjelly_multi_step_equals_single_step() -> None:
    """The time axis of SpikingJelly's multi-step mode (``time_steps=T``) and T single-step
    calls are the same run: same logits and weights after every step (float64)."""
    x, y = _data(True, torch.float64)
    runs = {}
    for mode in ("m", "s"):
        torch.manual_seed(2)
        model = spikingjelly_net(mode).double()
        kwargs = {"time_steps": T} if mode == "m" else {}
        handle, eid_terms, _ = _train(model, lambda net, xs: run_spikingjelly(net, xs, mode),
                                      x, y, **kwargs)
        runs[mode] = (handle, model, eid_terms)
    (hm, mm, em), (hs, ms, es) = runs["m"], runs["s"]
    assert max(em) > 0.0
    assert em == pytest.approx(es, rel=1e-9, abs=1e-12)
    for a, b in zip(hm.logit_parameters(), hs.logit_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for (name, a), (_, b) in zip(mm.state_dict().items(), ms.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
