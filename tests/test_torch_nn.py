"""``spikenm.backends.torch.nn``: sparsify -> train with step() -> finalize -> export_packed.

Each test names the SPEC clause it checks (S0.2 layout, S1 sampler, S1.9 diagnostics,
S5.1-S5.3 masked layers, seeds and one mask per step, S5.8 final mask).
"""

from __future__ import annotations

from collections.abc import Iterator

import doctest
import io
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikenm import api
from spikenm.backends.torch import nn as snn
from spikenm.backends.torch import nn_mask
from spikenm.seeds import seed_of

N, M = 2, 4


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids spin-waiting on a shared two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


def nm_mask(handle: snn.SpikeNMHandle, name: str) -> nn_mask.NMMask:
    return handle.mask_module(name)


def original(mod: nn.Module) -> torch.Tensor:
    """The unmasked weight ``W`` behind a parametrized layer."""
    w = getattr(mod.parametrizations, "weight").original
    assert isinstance(w, torch.Tensor)
    return w


def weight(mod: nn.Module) -> torch.Tensor:
    w = mod.weight
    assert isinstance(w, torch.Tensor)
    return w


def effective_blocks(mod: nn.Module) -> torch.Tensor:
    """The mask a layer applies, read through ``module.weight`` with the original
    weight set to ones (so the effective weight is the mask), in block layout."""
    with torch.no_grad():
        original(mod).fill_(1.0)
    return api.to_block_layout(weight(mod).detach())


def test_docstring_examples_run() -> None:
    for module in (snn, nn_mask):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- registration and state ---------------------------------------------------------------

def test_S5_1_first_and_last_dense_middle_masked_with_parametrization() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M)
    assert sorted(handle.layers) == ["2", "4"]
    assert handle.dense == {"0": "first layer (dense_first=True)",
                            "6": "last layer (dense_last=True)"}
    assert handle.skipped == {}
    for name in ("2", "4"):
        assert parametrize.is_parametrized(model[int(name)], "weight")
        assert isinstance(getattr(model[int(name)].parametrizations, "weight")[0],
                          nn_mask.NMMask)
    for name in ("0", "6"):
        assert not parametrize.is_parametrized(model[int(name)], "weight")


def test_state_dict_holds_logits_and_buffers() -> None:
    model = mlp()
    snn.sparsify(model, N, M, seed=11)
    sd = model.state_dict()
    prefix = "2.parametrizations.weight."
    assert sd[prefix + "original"].shape == (16, 16)
    assert sd[prefix + "0.logits"].shape == (16, 16)
    assert torch.count_nonzero(sd[prefix + "0.logits"]) == 0            # S5.7: start at 0
    for buf in ("pattern", "layer_index", "seed", "step", "temperature", "scale", "fixed"):
        assert prefix + "0." + buf in sd
    assert sd[prefix + "0.pattern"].tolist() == [N, M]
    assert int(sd[prefix + "0.layer_index"]) == 1 and int(sd["4.parametrizations.weight.0."
                                                             "layer_index"]) == 2
    assert int(sd[prefix + "0.seed"]) == 11


def test_S0_2_conv_logits_channels_last() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M)
    assert sorted(handle.layers) == ["2"]
    assert nm_mask(handle, "2").logits.shape == (8, 3, 3, 8)
    for conv, shape, blocks in ((nn.Conv1d(8, 4, 3), (4, 3, 8), (4, 3, 2, 4)),
                                (nn.Conv3d(4, 2, 2), (2, 2, 2, 2, 4), (2, 2, 2, 2, 1, 4))):
        box = nn.Sequential(conv)
        h = snn.sparsify(box, N, M, dense_first=False, dense_last=False)
        assert h.mask_module("0").logits.shape == shape
        counts = effective_blocks(conv).reshape(blocks).sum(-1)
        assert torch.all(counts == N)


# -- S5.3: the train-mode mask ------------------------------------------------------------

def test_S5_3_train_mask_is_exact_nm_and_equals_the_api_sample() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, seed=5, temperature=0.7, scale=2.0)
    model.train()
    layer = model[2]
    p = nm_mask(handle, "2")
    with torch.no_grad():
        p.logits.normal_()
    blocks = effective_blocks(layer)
    assert torch.all(blocks.reshape(-1, M).sum(-1) == N)
    assert set(blocks.unique().tolist()) == {0.0, 1.0}
    noise = api.gumbel_like(p.logits.detach(), seed_of(5, 0, 0, 1))
    expected = api.sample_mask(p.logits.detach(), N, M, noise=noise, temperature=0.7,
                               scale=2.0)
    assert torch.equal(blocks, expected)


def test_S5_3_one_mask_per_step_new_mask_after_step() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, seed=3)
    layer = model[2]
    first = effective_blocks(layer)
    assert torch.equal(effective_blocks(layer), first)          # same step: same mask
    handle.step()
    assert handle.step_count == 1
    second = effective_blocks(layer)
    assert not torch.equal(second, first)                       # new noise
    noise = api.gumbel_like(torch.zeros(16, 16), seed_of(3, 0, 1, 1))
    assert torch.equal(second, api.topn_mask(noise, N, M))      # logits 0: top-n of noise


def test_S1_4_gradients_reach_weights_and_logits() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M)
    x = torch.randn(6, 8)
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    layer = model[2]
    p = nm_mask(handle, "2")
    w = original(layer)
    assert w.grad is not None and p.logits.grad is not None
    assert torch.count_nonzero(p.logits.grad) > 0
    mask = api.from_block_layout(p.sampled)
    assert w.grad is not None
    assert torch.count_nonzero(w.grad * (1 - mask)) == 0  # dL/dW = G * h (S5.4)
    assert torch.count_nonzero(w.grad) > 0


def test_S1_5_logit_gradient_is_the_sampler_vjp() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, seed=2, temperature=0.5, scale=3.0)
    layer = model[2]
    p = nm_mask(handle, "2")
    with torch.no_grad():
        p.logits.normal_()
    g = torch.randn(16, 16)
    (weight(layer) * g).sum().backward()
    w = original(layer).detach()
    noise = api.gumbel_like(p.logits.detach(), seed_of(2, 0, 0, 1))
    logits = p.logits.detach().clone().requires_grad_(True)
    mask = api.sample_mask(logits, N, M, noise=noise, temperature=0.5, scale=3.0)
    (mask * (g * w)).sum().backward()
    torch.testing.assert_close(p.logits.grad, logits.grad)


# -- S1.8 / S5.8: eval mode and fixed masks -------------------------------------------------

def test_S1_8_eval_uses_final_mask_deterministically() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M)
    p = nm_mask(handle, "2")
    with torch.no_grad():
        p.logits.normal_()
    model.eval()
    final = api.final_mask(p.logits.detach(), N, M)
    assert torch.equal(effective_blocks(model[2]), final)
    handle.step()
    handle.step()
    assert torch.equal(effective_blocks(model[2]), final)       # independent of the step
    x = torch.randn(4, 8)
    assert torch.equal(model(x), model(x))


def test_S5_8_fix_masks_trains_weights_only() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M)
    p = nm_mask(handle, "2")
    with torch.no_grad():
        p.logits.normal_()
    handle.fix_masks()
    model.train()
    final = api.final_mask(p.logits.detach(), N, M)
    model(torch.randn(3, 8)).sum().backward()
    assert p.logits.grad is None
    grad = original(model[2]).grad
    assert grad is not None
    assert torch.count_nonzero(grad * (1 - api.from_block_layout(final))) == 0
    assert bool(model.state_dict()["2.parametrizations.weight.0.fixed"])


# -- finalize and export ------------------------------------------------------------------

def test_finalize_squashes_masks_and_removes_parametrizations() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M)
    p = nm_mask(handle, "2")
    with torch.no_grad():
        p.logits.normal_()
    w = original(model[2])
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    before = model(x)
    masks = handle.finalize()
    assert sorted(masks) == ["2"]
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())
    assert model[2].weight is w and isinstance(w, nn.Parameter)
    assert not any("logits" in k or "parametrizations" in k for k in model.state_dict())
    api.check_nm(api.to_block_layout(w.detach()), N, M)
    assert torch.equal(masks["2"], api.from_block_layout(api.final_mask(p.logits.detach(), N, M)))
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="finalized"):
        handle.step()


def test_export_packed_lists_dense_layers_and_refuses_unfinalized() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M)
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
    handle = snn.sparsify(model, N, M)
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
        snn.sparsify(model, N, M)
    assert not any(parametrize.is_parametrized(mod) for mod in model.modules())


def test_S0_2_skip_unfit_lists_and_warns() -> None:
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match=r"keeps 1 layer\(s\) dense.*'1'"):
        handle = snn.sparsify(model, N, M, skip_unfit=True)
    assert list(handle.skipped) == ["1"] and "(8, 6)" in handle.skipped["1"]
    assert handle.dense["1"].startswith("skipped:")
    assert list(handle.layers) == ["2"]
    assert not parametrize.is_parametrized(model[1], "weight")


def test_include_exclude_patterns_and_typos() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, include=["2", "6"], dense_last=False)
    assert sorted(handle.layers) == ["2", "6"] and handle.dense["0"] == "not matched by include"
    model = mlp()
    handle = snn.sparsify(model, N, M, exclude=["4"])
    assert list(handle.layers) == ["2"] and handle.dense["4"] == "matched by exclude"
    with pytest.raises(ValueError, match=r"exclude entry 'nope' matches no Linear/ConvNd"):
        snn.sparsify(mlp(), N, M, exclude=["nope"])
    with pytest.raises(ValueError, match=r"include names '1', a ReLU"):
        snn.sparsify(mlp(), N, M, include=["1"])
    with pytest.raises(ValueError, match=r"include names '0', the first layer.*dense_first"):
        snn.sparsify(mlp(), N, M, include=["0", "2"])
    with pytest.raises(TypeError, match="write exclude=\\['2'\\]"):
        snn.sparsify(mlp(), N, M, exclude="2")
    nested = nn.Sequential(nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)),
                           nn.Linear(8, 2))
    handle = snn.sparsify(nested, N, M, include=["1.*"])
    assert sorted(handle.layers) == ["1.0", "1.1"]


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no layer left to mask"):
        snn.sparsify(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), N, M)
    with pytest.raises(TypeError, match=r"layer '2' has a torch.float16 weight"):
        snn.sparsify(mlp().half(), N, M)
    with pytest.raises(ValueError, match=r"n must satisfy"):
        snn.sparsify(mlp(), 5, 4)
    model = mlp()
    snn.sparsify(model, N, M)
    with pytest.raises(ValueError, match=r"layer '2' already has a parametrization"):
        snn.sparsify(model, N, M)
    lazy = nn.Sequential(nn.Linear(8, 8), nn.LazyLinear(8), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"layer '1' \(LazyLinear\) is lazy"):
        snn.sparsify(lazy, N, M)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        snn.sparsify(mlp(), N, M, temperature=0.0)


# -- S5.6 schedules and S1.9 diagnostics -----------------------------------------------------

def test_S5_6_step_advances_schedules() -> None:
    model = mlp()
    tau = snn.Schedule("exp", 1.0, 0.2, 5)
    kappa = snn.Schedule("linear", 1.0, 10.0, 5)
    handle = snn.sparsify(model, N, M, temperature=tau, scale=kappa)
    p = nm_mask(handle, "4")
    for s in range(7):
        assert handle.step_count == s
        assert float(p.temperature) == pytest.approx(tau.at(s))
        assert float(p.scale) == pytest.approx(kappa.at(s))
        handle.step()
    assert float(p.temperature) == pytest.approx(0.2) and float(p.scale) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="unknown"):
        snn.Schedule("step", 1.0, 0.5, 3)


def test_S1_9_flip_rate_and_entropy() -> None:
    model = mlp()
    handle = snn.sparsify(model, N, M, seed=1)
    stats = handle.stats()
    assert stats["2"].flip_rate is None
    assert stats["2"].entropy == pytest.approx(math.log(M), rel=1e-6)   # uniform logits
    x = torch.randn(2, 8)
    model(x)
    m0 = nm_mask(handle, "2").sampled.clone()
    handle.step()
    assert handle.stats()["2"].flip_rate is None                 # one step seen so far
    model(x)
    m1 = nm_mask(handle, "2").sampled.clone()
    handle.step()
    expected = float((m0 != m1).float().mean())
    assert handle.stats()["2"].flip_rate == pytest.approx(expected)
    assert 0 < expected < 1
    assert handle.flip_rate is not None and 0 < handle.flip_rate < 1
    with torch.no_grad():
        nm_mask(handle, "2").logits.copy_(torch.tensor([50.0, 50.0, 0.0, 0.0]).repeat(16, 4))
    assert handle.stats()["2"].entropy < 1e-6 + math.log(2)     # two entries share the mass


# -- training and checkpoints -------------------------------------------------------------

def test_short_training_reduces_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(128, 8)
    teacher = torch.randn(8, 3)
    y = (x @ teacher).argmax(-1)
    model = mlp(1)
    handle = snn.sparsify(model, N, M, temperature=snn.Schedule("exp", 1.0, 0.2, 60),
                          scale=snn.Schedule("linear", 1.0, 10.0, 60))
    logits = handle.logit_parameters()
    ids = {id(p) for p in logits}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-2}, {"params": logits, "lr": 5e-2}])
    loss_fn = nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        start = float(loss_fn(model(x), y))
    model.train()
    for _ in range(80):
        loss = loss_fn(model(x), y)
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


def test_state_dict_round_trip_reproduces_masks() -> None:
    model = convnet()
    handle = snn.sparsify(model, N, M, seed=9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        handle.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    train_mask = effective_blocks_copy(model[2])
    model.eval()
    eval_mask = effective_blocks_copy(model[2])

    clone = convnet(seed=123)
    handle2 = snn.sparsify(clone, N, M, seed=0)
    buffer.seek(0)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    assert handle2.step_count == 3
    assert torch.equal(effective_blocks_copy(clone[2]), train_mask)
    clone.eval()
    assert torch.equal(effective_blocks_copy(clone[2]), eval_mask)
    model.eval()
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


def effective_blocks_copy(mod: nn.Module) -> torch.Tensor:
    """The mask a layer applies without touching its weight."""
    p = getattr(mod.parametrizations, "weight")[0]
    assert isinstance(p, nn_mask.NMMask)
    return p.block_mask().detach().clone()


def test_load_refuses_another_pattern() -> None:
    model = mlp()
    snn.sparsify(model, N, M)
    other = mlp()
    snn.sparsify(other, 1, M)
    with pytest.raises(ValueError, match=r"'2\.parametrizations\.weight\.0\.pattern' is \[2, 4\]"):
        other.load_state_dict(model.state_dict())
