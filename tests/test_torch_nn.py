"""``spikenm.backends.torch.nn``: sparsify -> train with eid_loss/step -> finalize ->
export_packed, driven by the method objects of `spikenm.methods` (SPEC S6.0).

Each test names the SPEC clause it checks (S0.2 layout, S1.9 diagnostics, S5.1-S5.4
masked layers, seeds, one mask per step and gradients, S5.6-S5.8 schedules and phases,
S6.4 SR-STE).  EID credits and the EID term are in ``test_torch_nn_eid.py``.
"""

from __future__ import annotations

from typing import Any

import doctest
import io
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikenm import api
from spikenm import reference
from spikenm.backends.torch import nn as snn
from spikenm.backends.torch import nn_credit, nn_handle, nn_mask
from spikenm.methods.spikenm import SpikeNM
from spikenm.methods.srste import SRSTE
from spikenm.seeds import seed_of

N, M = 2, 4


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).to(dtype)


def convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


def original(mod: nn.Module) -> torch.Tensor:
    """The unmasked weight ``W`` behind a parametrized layer."""
    return nn_handle.dense_weight(mod)


def weight(mod: nn.Module) -> torch.Tensor:
    w = mod.weight
    assert isinstance(w, torch.Tensor)
    return w


def applied_blocks(mod: nn.Module) -> torch.Tensor:
    """The mask a layer applies, read through ``module.weight`` with the original weight
    set to ones (so the effective weight is the mask), in block layout."""
    with torch.no_grad():
        original(mod).fill_(1.0)
    return api.to_block_layout(weight(mod).detach())


def randomize_logits(handle: snn.SpikeNMHandle, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for logits in handle.logit_parameters():
            logits.copy_(torch.randn(logits.shape, generator=gen, dtype=logits.dtype))


class Recorder:
    """A method that forwards to ``inner`` and records every ``update`` and
    ``final_masks`` call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.updates: list[dict[str, Any]] = []
        self.final_calls = 0

    def init(self, *a: Any) -> Any:
        return self.inner.init(*a)

    def masks(self, *a: Any) -> Any:
        return self.inner.masks(*a)

    def weight_grads(self, *a: Any) -> Any:
        return self.inner.weight_grads(*a)

    def eid_targets(self, *a: Any) -> Any:
        return self.inner.eid_targets(*a)

    def final_masks(self, *a: Any) -> Any:
        self.final_calls += 1
        return self.inner.final_masks(*a)

    def update(self, setup: Any, state: Any, sm: Any, weights: Any, grads: Any, credits: Any,
               step: int, logit_grads: Any = None) -> Any:
        self.updates.append(dict(setup=setup, state=state, sm=sm, weights=dict(weights),
                                 grads=dict(grads), credits=dict(credits), step=step,
                                 logit_grads=logit_grads))
        return self.inner.update(setup, state, sm, weights, grads, credits, step,
                                 logit_grads=logit_grads)


def test_docstring_examples_run() -> None:
    for module in (snn, nn_mask, nn_handle, nn_credit):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(snn).attempted > 0


# -- registration and state ---------------------------------------------------------------

def test_S5_1_first_and_last_dense_middle_masked_without_new_parameters() -> None:
    model = mlp()
    before = [id(p) for p in model.parameters()]
    handle = snn.sparsify(model, N, M, total_steps=10)
    assert sorted(handle.layers) == ["2", "4"] and handle.ordinals == {"2": 1, "4": 2}
    assert handle.dense == {"0": "first layer (dense_first=True)",
                            "6": "last layer (dense_last=True)"}
    assert handle.skipped == {} and handle.method.name == "spikenm"
    for name in ("2", "4"):
        assert parametrize.is_parametrized(model[int(name)], "weight")
        assert isinstance(model[int(name)].parametrizations["weight"][0], nn_mask.NMMask)
    for name in ("0", "6"):
        assert not parametrize.is_parametrized(model[int(name)], "weight")
    assert sorted(id(p) for p in model.parameters()) == sorted(before)   # logits elsewhere
    assert not any("logits" in k for k in model.state_dict())
    assert model.state_dict()["2.parametrizations.weight.original"].shape == (16, 16)
    logits = handle.logit_parameters()
    assert [tuple(p.shape) for p in logits] == [(16, 16), (8, 16)]
    assert all(torch.count_nonzero(p) == 0 for p in logits)             # S5.7: start at 0


def test_S0_2_conv_logits_channels_last_and_other_conv_ranks() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, total_steps=5)
    assert sorted(handle.layers) == ["2"]
    assert handle.logit_parameters()[0].shape == (8, 3, 3, 8)
    for conv, shape, blocks in ((nn.Conv1d(8, 4, 3), (4, 3, 8), (4, 3, 2, 4)),
                                (nn.Conv3d(4, 2, 2), (2, 2, 2, 2, 4), (2, 2, 2, 2, 1, 4))):
        box = nn.Sequential(conv)
        h = snn.sparsify(box, N, M, total_steps=5, dense_first=False, dense_last=False)
        assert h.logit_parameters()[0].shape == shape
        counts = applied_blocks(conv).reshape(blocks).sum(-1)
        assert torch.all(counts == N)


# -- S5.3 / S5.4: the masks and gradients of a step -----------------------------------------

def test_S5_3_train_mask_is_the_methods_sample_of_the_step() -> None:
    model = convnet()
    method = SpikeNM(temperature=snn_ramp(0.7, 0.2), scale=snn_ramp(2.0, 10.0))
    handle = snn.sparsify(model, N, M, total_steps=10, method=method, seed=5)
    randomize_logits(handle)
    pi = handle.logit_parameters()[0].clone()
    blocks = applied_blocks(model[2])
    assert torch.all(blocks.reshape(-1, M).sum(-1) == N)
    noise = api.gumbel_like(pi, seed_of(5, 0, 0, 1))                   # layer ordinal 1
    expected = api.sample_mask(pi, N, M, noise=noise, temperature=0.7, scale=2.0)
    assert torch.equal(blocks, expected)
    assert handle.current.temperature == pytest.approx(0.7)
    assert handle.current.scale == pytest.approx(2.0)


def snn_ramp(start: float, end: float) -> Any:
    from spikenm.methods.common import Ramp
    return Ramp(start, end, "linear")


def test_S5_3_one_mask_per_step_new_mask_after_step() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=10, seed=3)
    first = applied_blocks(model[2])
    assert torch.equal(applied_blocks(model[2]), first)             # same step: same mask
    handle.step()
    assert handle.step_count == 1
    second = applied_blocks(model[2])
    assert not torch.equal(second, first)                            # new noise
    noise = api.gumbel_like(torch.zeros(16, 16), seed_of(3, 0, 1, 1))
    assert torch.equal(second, api.topn_mask(noise, N, M))           # logits 0: top-n


def test_S5_4_weight_gradient_is_G_times_mask_over_several_calls() -> None:
    model = mlp(dtype=torch.float64)
    handle = snn.sparsify(model, N, M, total_steps=10)
    randomize_logits(handle)
    layer = model[2]
    g1, g2 = torch.randn(16, 16, dtype=torch.float64), torch.randn(16, 16, dtype=torch.float64)
    (weight(layer) * g1).sum().backward()
    (weight(layer) * g2).sum().backward()                           # second access, same step
    mask = api.from_block_layout(handle.current.masks[1].detach())
    assert original(layer).grad is not None
    torch.testing.assert_close(original(layer).grad, (g1 + g2) * mask, rtol=0, atol=1e-15)


def test_S5_4_task_logit_gradient_equals_the_reference_vjp() -> None:
    """Three forward calls and two backward passes in one step: the logit gradient the
    handle passes to ``update`` is ``kappa * VJP_s(G * W)`` of the summed ``G`` (NumPy
    reference of S1.5), and the logits' Adam step equals the method's own VJP route."""
    model = mlp(dtype=torch.float64)
    inner = SpikeNM(eid=False)
    rec = Recorder(inner)
    handle = snn.sparsify(model, N, M, total_steps=10, method=rec, seed=4)
    randomize_logits(handle, 1)
    handle.step()                                      # step 1: nonzero schedules' u
    pi = {k: v.clone() for k, v in handle._state.group("logits/").items()}
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    for t in range(2):
        model(x[t]).square().mean().backward()
    model(x[2]).sum().backward()
    sm = handle.current
    w = {k: original(handle._module[k]).detach().clone() for k in (1, 2)}
    handle.step()
    rec_update = rec.updates[-1]
    for k in (1, 2):
        gmask = api.to_block_layout(rec_update["grads"][k] * w[k]).numpy()
        expected = reference.sample_mask_vjp(pi[k].numpy(), sm.aux[k].numpy(), N, M,
                                             sm.temperature, sm.scale, True, gmask)
        got = rec_update["logit_grads"][k].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    own = inner.update(rec_update["setup"], rec_update["state"], rec_update["sm"],
                       rec_update["weights"], rec_update["grads"], {}, 1)
    for key, value in own.arrays.items():
        torch.testing.assert_close(handle._state.arrays[key], value.detach(), rtol=1e-12,
                                   atol=1e-14)


# -- S5.6 / S5.8: schedules and phases -------------------------------------------------------

def test_S5_8_phases_switch_at_the_right_step_and_pruned_weights_stay_zero() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=10)             # S_search = 8
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    search = SpikeNM().search_steps(10)
    assert search == 8
    phases, temps = [], []
    for s in range(10):
        sm = handle.current
        phases.append(sm.phase)
        temps.append(sm.temperature)
        loss = model(torch.randn(4, 8)).square().mean() + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()
        if s >= search:
            for k, name in ((1, "2"), (2, "4")):
                mask = handle.current.masks[k]
                w = original(model.get_submodule(name)).detach()
                assert torch.count_nonzero(w * (1 - mask)) == 0          # S5.8
    assert phases == ["search"] * 8 + ["fixed"] * 2
    assert temps[0] == pytest.approx(1.0) and temps[7] == pytest.approx(0.2)   # exp 1 -> 0.2
    fixed = {k: v.clone() for k, v in handle.current.masks.items()}
    handle.step()
    assert all(torch.equal(handle.current.masks[k], fixed[k]) for k in fixed)


def test_S5_11_eval_uses_final_masks_computed_once_per_step() -> None:
    model = mlp()
    rec = Recorder(SpikeNM())
    handle = snn.sparsify(model, N, M, total_steps=10, method=rec)
    randomize_logits(handle)
    model.eval()
    x = torch.randn(4, 8)
    out = [model(x) for _ in range(3)]
    assert rec.final_calls == 1                                     # cached
    assert torch.equal(out[0], out[2])
    final = api.final_mask(handle.logit_parameters()[0].detach(), N, M)
    assert torch.equal(applied_blocks(model[2]), final)
    handle.step()
    model(x)
    assert rec.final_calls == 2                                     # a new step recomputes


# -- finalize and export ------------------------------------------------------------------

def test_finalize_squashes_masks_exactly_nm_and_removes_everything() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, total_steps=5)
    randomize_logits(handle)
    w = original(model[2])
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    before = model(x)
    masks = handle.finalize()
    assert sorted(masks) == ["2"]
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())
    assert not model[2]._forward_hooks                               # EID hooks gone
    assert model[2].weight is w and isinstance(w, nn.Parameter)
    assert not any("parametrizations" in k for k in model.state_dict())
    api.check_nm(api.to_block_layout(w.detach()), N, M)
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="finalized"):
        handle.step()
    with pytest.raises(RuntimeError, match="finalized"):
        handle.eid_loss()


def test_export_packed_lists_dense_layers_and_refuses_unfinalized() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=5)
    with pytest.raises(ValueError, match="still parametrized"):
        snn.export_packed(model, N, M, dense=handle.dense)
    handle.finalize()
    with pytest.raises(ValueError, match=r"0\.weight is not 2:4 sparse.*list '0' in dense="):
        snn.export_packed(model, N, M)
    with pytest.raises(ValueError, match=r"dense names \['9'\]"):
        snn.export_packed(model, N, M, dense=["9", *handle.dense])
    packed = snn.export_packed(model, N, M, dense=handle.dense)
    assert sorted(packed) == ["2.weight", "4.weight"]
    for key, pk in packed.items():
        dense = weight(model.get_submodule(key[:-len(".weight")])).detach()
        assert pk.axis == 1 and pk.shape == tuple(dense.shape)
        assert torch.equal(api.unpack(pk), dense)


def test_export_packed_conv_round_trip() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, total_steps=5)
    handle.finalize()
    packed = snn.export_packed(model, N, M, dense=handle.dense)
    pk = packed["2.weight"]
    assert pk.shape == (8, 8, 3, 3) and pk.values.shape == (8, 3, 3, 4)
    assert torch.equal(api.unpack(pk), weight(model[2]).detach())


# -- selection and errors (S0.2, S5.1) -------------------------------------------------------

def test_S0_2_unfit_layer_raises_naming_it() -> None:
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"layer '1' \(Linear, weight \(8, 6\)\) has 6 inputs, "
                                         r"not a multiple of m=4"):
        snn.sparsify(model, N, M, total_steps=5)
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())
    assert not any(mod._forward_hooks for mod in model.modules())


def test_S0_2_skip_unfit_lists_and_warns() -> None:
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match=r"keeps 1 layer\(s\) dense.*'1'"):
        handle = snn.sparsify(model, N, M, total_steps=5, skip_unfit=True)
    assert list(handle.skipped) == ["1"] and "(8, 6)" in handle.skipped["1"]
    assert handle.dense["1"].startswith("skipped:")
    assert list(handle.layers) == ["2"] and handle.ordinals == {"2": 2}
    assert not parametrize.is_parametrized(model[1], "weight")


def test_include_exclude_patterns_and_typos() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, total_steps=5, include=["2", "6"], dense_last=False)
    assert sorted(handle.layers) == ["2", "6"] and handle.dense["0"] == "not matched by include"
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=5, exclude=["4"])
    assert list(handle.layers) == ["2"] and handle.dense["4"] == "matched by exclude"
    with pytest.raises(ValueError, match=r"exclude entry 'nope' matches no Linear/ConvNd"):
        snn.sparsify(mlp(), N, M, total_steps=5, exclude=["nope"])
    with pytest.raises(ValueError, match=r"include names '1', a ReLU"):
        snn.sparsify(mlp(), N, M, total_steps=5, include=["1"])
    with pytest.raises(ValueError, match=r"include names '0', the first layer.*dense_first"):
        snn.sparsify(mlp(), N, M, total_steps=5, include=["0", "2"])
    with pytest.raises(TypeError, match="write exclude=\\['2'\\]"):
        snn.sparsify(mlp(), N, M, total_steps=5, exclude="2")
    nested = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)),
                           nn.Linear(8, 2))
    handle = snn.sparsify(nested, N, M, total_steps=5, include=["1.*"])
    assert sorted(handle.layers) == ["1.0", "1.1"]


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no layer left to mask"):
        snn.sparsify(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), N, M, total_steps=5)
    with pytest.raises(TypeError, match=r"layer '2' has a torch.float16 weight"):
        snn.sparsify(mlp().half(), N, M, total_steps=5)
    with pytest.raises(ValueError, match=r"n must satisfy"):
        snn.sparsify(mlp(), 5, 4, total_steps=5)
    model = mlp()
    snn.sparsify(model, N, M, total_steps=5)
    with pytest.raises(ValueError, match=r"layer '2' already has a parametrization"):
        snn.sparsify(model, N, M, total_steps=5)
    lazy = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"layer '1' \(LazyLinear\) is lazy"):
        snn.sparsify(lazy, N, M, total_steps=5)
    for bad in (0, 2.5, True, None):
        with pytest.raises(ValueError, match=r"total_steps must be .* integer >= 1, got"):
            snn.sparsify(mlp(), N, M, total_steps=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown method 'nope'"):
        snn.sparsify(mlp(), N, M, total_steps=5, method="nope")
    with pytest.raises(ValueError, match=r"method 'dense' masks no layer"):
        snn.sparsify(mlp(), N, M, total_steps=5, method="dense")
    with pytest.raises(TypeError, match=r"lacking name \(a str\), init"):
        snn.sparsify(mlp(), N, M, total_steps=5, method=object())
    with pytest.raises(ValueError, match=r"time_steps must be None .* or an integer >= 1"):
        snn.sparsify(mlp(), N, M, total_steps=5, time_steps=0)
    with pytest.raises(ValueError, match=r"eid_decay"):
        snn.sparsify(mlp(), N, M, total_steps=5, eid_decay=1.5)
    model = mlp()
    with pytest.raises(ValueError, match=r"several dtypes/devices"):
        model[4].double()
        snn.sparsify(model, N, M, total_steps=5)


def test_method_by_import_path() -> None:
    handle = snn.sparsify(mlp(), N, M, total_steps=5, method="spikenm.methods.srste:from_config")
    assert handle.method.name == "srste"


# -- S1.9 diagnostics ----------------------------------------------------------------------

def test_S1_9_flip_rate_and_entropy() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=20, seed=1)
    stats = handle.stats()
    assert stats["2"].flip_rate is None and handle.flip_rate is None
    assert stats["2"].entropy == pytest.approx(math.log(M), rel=1e-6)   # uniform logits
    x = torch.randn(2, 8)
    model(x)
    m0 = handle.current.hard[1].detach().clone()
    handle.step()
    assert handle.stats()["2"].flip_rate is None                 # one step seen so far
    model(x)
    m1 = handle.current.hard[1].detach().clone()
    handle.step()
    expected = float((m0 != m1).float().mean())
    assert handle.stats()["2"].flip_rate == pytest.approx(expected)
    assert 0 < expected < 1
    assert handle.flip_rate is not None and 0 < handle.flip_rate < 1
    with torch.no_grad():
        handle.logit_parameters()[0].copy_(torch.tensor([50.0, 50.0, 0.0, 0.0]).repeat(16, 4))
    assert handle.stats()["2"].entropy < 1e-6 + math.log(2)      # two entries share the mass
    srste = snn.sparsify(mlp(), N, M, total_steps=5, method="srste")
    assert srste.stats()["2"].entropy is None                     # no block logits


# -- S6.4: SR-STE through the module path --------------------------------------------------

def test_S6_4_srste_magnitude_masks_straight_through_and_decay_once_per_step() -> None:
    model = mlp(dtype=torch.float64)
    decay = 0.01
    handle = snn.sparsify(model, N, M, total_steps=5, method=SRSTE(decay=decay))
    layer = model[2]
    w = original(layer).detach().clone()
    mask = api.from_block_layout(api.topn_mask(api.to_block_layout(w.abs()), N, M))
    assert torch.equal(handle.current.masks[1], mask)
    g = [torch.randn(16, 16, dtype=torch.float64) for _ in range(3)]
    for gi in g:                                                    # three calls, one step
        (weight(layer) * gi).sum().backward()
    expected = sum(g) + decay * (1 - mask) * w                       # decay counted once
    assert original(layer).grad is not None
    torch.testing.assert_close(original(layer).grad, expected, rtol=1e-12, atol=1e-14)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.step()
    handle.step()
    w2 = original(layer).detach()
    mask2 = api.from_block_layout(api.topn_mask(api.to_block_layout(w2.abs()), N, M))
    assert torch.equal(handle.current.masks[1], mask2)              # recomputed every step
    assert torch.count_nonzero(w2 * (1 - mask2)) > 0                 # weights stay dense
    handle.finalize()
    api.check_nm(api.to_block_layout(weight(layer).detach()), N, M)
    assert torch.equal(weight(layer).detach(), w2 * mask2)


# -- training and checkpoints -------------------------------------------------------------

def teacher_data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=gen)
    return x, (x @ torch.randn(8, 3, generator=gen)).argmax(-1)


def test_short_training_reduces_loss_and_ends_exactly_nm() -> None:
    x, y = teacher_data()
    model = mlp(1)
    handle = snn.sparsify(model, N, M, total_steps=80)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        start = float(loss_fn(model(x), y))
    model.train()
    for _ in range(80):
        loss = loss_fn(model(x), y) + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()
    handle.finalize()
    model.eval()
    with torch.no_grad():
        end = float(loss_fn(model(x), y))
    assert end < 0.6 * start, (start, end)
    for name in ("2", "4"):
        api.check_nm(api.to_block_layout(weight(model.get_submodule(name)).detach()), N, M)


def run_steps(model: nn.Module, handle: snn.SpikeNMHandle, opt: torch.optim.Optimizer,
              steps: range) -> None:
    x, y = teacher_data(32)
    x = x.to(torch.float64)
    for s in steps:
        xb = x[(s % 4) * 8:(s % 4 + 1) * 8]
        yb = y[(s % 4) * 8:(s % 4 + 1) * 8]
        loss = nn.functional.cross_entropy(model(xb), yb) + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()


def test_state_dict_round_trip_continues_identically() -> None:
    model = mlp(dtype=torch.float64)
    handle = snn.sparsify(model, N, M, total_steps=12, seed=9)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    run_steps(model, handle, opt, range(4))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "handle": handle.state_dict()}, buffer)
    run_steps(model, handle, opt, range(4, 12))
    reference_weights = {k: v.clone() for k, v in model.state_dict().items()}
    reference_logits = [p.clone() for p in handle.logit_parameters()]

    clone = mlp(seed=123, dtype=torch.float64)
    handle2 = snn.sparsify(clone, N, M, total_steps=12, seed=9)
    opt2 = torch.optim.Adam(clone.parameters(), lr=1e-2)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    handle2.load_state_dict(saved["handle"])
    assert handle2.step_count == 4
    run_steps(clone, handle2, opt2, range(4, 12))
    for key, value in clone.state_dict().items():
        assert torch.equal(value, reference_weights[key]), key
    for a, b in zip(handle2.logit_parameters(), reference_logits):
        assert torch.equal(a, b)
    assert handle2.flip_rate == handle.flip_rate


def test_load_refuses_another_run() -> None:
    handle = snn.sparsify(mlp(), N, M, total_steps=10)
    other = snn.sparsify(mlp(), 1, M, total_steps=10)
    with pytest.raises(ValueError, match=r"state_dict has pattern=\[2, 4\], but this handle "
                                         r"was made with pattern=\[1, 4\]"):
        other.load_state_dict(handle.state_dict())
    longer = snn.sparsify(mlp(), N, M, total_steps=20)
    with pytest.raises(ValueError, match=r"total_steps=10"):
        longer.load_state_dict(handle.state_dict())
    with pytest.raises(ValueError, match="not a SpikeNMHandle state_dict"):
        longer.load_state_dict({"step": 3})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_S4_16_state_and_masks_live_on_the_models_device() -> None:
    model = mlp().cuda()
    handle = snn.sparsify(model, N, M, total_steps=4)
    loss = model(torch.randn(3, 8, device="cuda")).sum() + handle.eid_loss()
    loss.backward()
    handle.step()
    assert all(v.device.type == "cuda" for v in handle._state.arrays.values())
    assert handle.current.masks[1].device.type == "cuda"


def test_module_path_does_not_import_the_trainer() -> None:
    import subprocess
    import sys

    code = ("import sys, spikenm.backends.torch.nn as m; "
            "m.sparsify(m.nn.Sequential(m.nn.Linear(4, 4), m.nn.Linear(4, 4), "
            "m.nn.Linear(4, 2)), 2, 4, total_steps=2); "
            "print(sorted(k for k in sys.modules if k.startswith('spikenm.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_S6_5_asp_dense_phase_then_one_prune_with_optimizer_reset_and_lr_restart() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, total_steps=10, method="asp")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    for s in range(10):
        sm = handle.current
        seen.append((sm.phase, sm.reset_optimizer, round(handle.lr_factor(), 6)))
        if sm.phase == "dense":
            assert weight(model[2]) is original(model[2])            # no mask at all
        loss = model(torch.randn(4, 8)).square().mean() + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()
    assert [p for p, _, _ in seen] == ["dense"] * 5 + ["fixed"] * 5
    assert [r for _, r, _ in seen] == [False] * 5 + [True] + [False] * 4
    assert seen[0][2] == 1.0 and seen[5][2] == 1.0 and 0 < seen[4][2] < 1   # restart
    mask = handle.current.masks[1]
    assert torch.count_nonzero(original(model[2]).detach() * (1 - mask)) == 0
    handle.finalize()
    api.check_nm(api.to_block_layout(weight(model[2]).detach()), N, M)
