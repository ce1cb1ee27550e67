"""Training loop end to end on the reference backend (SPEC S5, S6), over graphs with batch
norm and residual joins (S4.13-S4.15)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spikenm import api
from spikenm.train.checkpoint import load_checkpoint, save_checkpoint
from spikenm.train.config import load_config
from spikenm.train.evaluation import evaluate, final_params
from spikenm.train.loop import CHECKPOINT, initial_state, train
from spikenm.train.setup import build_setup
from spikenm.train.step import train_step

from network_helpers import HostCopyCounter

TINY = ["data.name=digits", "model.hidden=32,32", "optim.batch_size=64", "run.quiet=true",
        "run.eval_every=0"]
SMALL = ["data.name=digits", "data.train_limit=64", "data.test_limit=32",
         "optim.batch_size=16", "model.width_multiplier=0.125", "run.quiet=true",
         "run.eval_every=0"]
"""A few steps of a narrow VGG-11 / ResNet-19 on the 8x8 digits."""


def test_tiny_run_learns_and_reports_S5_11_S6_8() -> None:
    cfg = load_config(None, TINY + ["optim.epochs=5", "sparsity.method=spikenm",
                                    "model.hidden=64,64"])
    result = train(cfg, stream=None)
    assert result.summary["test_acc"] > 0.75  # chance is 0.10
    assert result.summary["flip_rate"] is not None and 0 < result.summary["flip_rate"] < 1
    assert len(result.summary["firing_rates"]) == 2
    assert all(0 < r < 1 for r in result.summary["firing_rates"])
    assert result.summary["eid"] is True and result.summary["device"] == "cpu"


@pytest.mark.parametrize("method, extra", [
    ("dense", []), ("spikenm", []), ("spikenm", ["eid.enabled=false"]), ("srste", []),
    ("asp", []), ("maskllm", []), ("random", [])])
@pytest.mark.parametrize("pattern", ["2:4", "1:8"])
def test_final_weights_satisfy_the_pattern_S5_8_S6_1_S6_2_S6_3(method, extra, pattern) -> None:
    cfg = load_config(None, TINY + ["optim.epochs=1", f"sparsity.method={method}",
                                    f"sparsity.pattern={pattern}", "sparsity.dense_first=false"]
                      + extra)
    result = train(cfg, stream=None)
    n, m = cfg.sparsity.nm
    masked = [] if method == "dense" else [0, 1]
    assert sorted(result.masks) == masked
    for layer in masked:
        w = result.params[f"layer{layer}.weight"]
        mask = result.masks[layer]
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        blocks = api.to_block_layout(mask).reshape(-1, m).sum(axis=1)
        assert (blocks == n).all()  # exactly n kept per block
        api.check_nm(w, n, m)
        packed = api.pack(w, n, m, mask=mask)
        assert np.array_equal(api.unpack(packed), w)
    rows = result.summary["layers"]
    assert [r["masked"] for r in rows] == [i in masked for i in range(3)]
    assert result.summary["method"] == method


def test_resume_after_interrupt_is_bit_identical_S5_12(tmp_path) -> None:
    common = TINY + ["optim.epochs=3", "sparsity.method=spikenm", "data.encoding=poisson",
                     "run.checkpoint_every=7"]
    full = train(load_config(None, common + [f"run.out={tmp_path / 'a'}"]), stream=None)
    out_b = tmp_path / "b"
    cfg_b = load_config(None, common + [f"run.out={out_b}"])
    stopped = train(cfg_b, stop_after=30, stream=None)
    assert stopped.summary == {"stopped_at": 30}
    _, meta = load_checkpoint(out_b / CHECKPOINT)
    assert meta["step"] == 30
    resumed = train(cfg_b, resume=True, stream=None)
    assert full.params.keys() == resumed.params.keys()
    for key in full.params:
        assert np.array_equal(full.params[key], resumed.params[key])
    for layer in full.masks:
        assert np.array_equal(full.masks[layer], resumed.masks[layer])
    assert full.summary["test_acc"] == resumed.summary["test_acc"]
    assert full.summary["flip_rate"] == resumed.summary["flip_rate"]
    a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    b = (out_b / "metrics.jsonl").read_text().splitlines()
    assert len(a) == len(b)
    # the records themselves, the interval cut by the stop included (S5.9, S5.9a)
    timing = ("ms_per_step", "seconds")
    for line_a, line_b in zip(a, b):
        ra, rb = json.loads(line_a), json.loads(line_b)
        assert {k: v for k, v in ra.items() if k not in timing} == \
            {k: v for k, v in rb.items() if k not in timing}
    _, meta = load_checkpoint(out_b / CHECKPOINT)
    assert meta["log"]["sums"]["steps"] == 0  # the final checkpoint closes the interval


@pytest.mark.parametrize("arch, method", [("vgg11", "maskllm"), ("resnet19", "srste")])
def test_resume_with_batch_norm_buffers_is_bit_identical_S4_13_S5_12(tmp_path, arch,
                                                                      method) -> None:
    common = SMALL + [f"model.arch={arch}", "optim.epochs=1", f"sparsity.method={method}",
                      "data.test_limit=16", "sparsity.search_fraction=0.5"]
    full = train(load_config(None, common + [f"run.out={tmp_path / 'a'}"]), stream=None)
    cfg_b = load_config(None, common + [f"run.out={tmp_path / 'b'}"])
    train(cfg_b, stop_after=2, stream=None)
    arrays, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert meta["step"] == 2
    assert any(k.startswith("buffers/bn") for k in arrays)
    assert any(k.startswith("method/") for k in arrays)  # logits or previous masks
    resumed = train(cfg_b, resume=True, stream=None)
    assert full.buffers and full.buffers.keys() == resumed.buffers.keys()
    for table_a, table_b in ((full.params, resumed.params), (full.buffers, resumed.buffers)):
        for key in table_a:
            assert np.array_equal(table_a[key], table_b[key]), key
    assert not np.array_equal(full.buffers["bn0.running_var"], np.ones_like(
        full.buffers["bn0.running_var"]))  # the running statistics were updated


def test_keyboard_interrupt_writes_a_checkpoint(tmp_path, monkeypatch) -> None:
    from spikenm.train import loop

    real = loop.train_step
    calls = {"n": 0}

    def interrupted(setup, state, cache):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(setup, state, cache)

    monkeypatch.setattr(loop, "train_step", interrupted)
    cfg = load_config(None, TINY + ["optim.epochs=1", f"run.out={tmp_path}"])
    with pytest.raises(KeyboardInterrupt):
        train(cfg, stream=None)
    _, meta = load_checkpoint(tmp_path / CHECKPOINT)
    assert meta["step"] == 5


def test_resume_refuses_a_different_configuration(tmp_path) -> None:
    cfg = load_config(None, TINY + ["optim.epochs=1", f"run.out={tmp_path}"])
    train(cfg, stop_after=3, stream=None)
    other = load_config(None, TINY + ["optim.epochs=1", f"run.out={tmp_path}",
                                      "sparsity.pattern=1:4"])
    with pytest.raises(ValueError, match="sparsity.pattern"):
        train(other, resume=True, stream=None)
    with pytest.raises(ValueError, match="run.out"):
        train(load_config(None, TINY), resume=True, stream=None)


def test_checkpoint_files(tmp_path) -> None:
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"a": np.arange(3.0)}, {"step": 4})
    arrays, meta = load_checkpoint(path)
    assert meta["step"] == 4 and np.array_equal(arrays["a"], np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="__meta__"):
        load_checkpoint(tmp_path / "plain.npz")


def test_masked_layer_that_does_not_fit_is_an_error_S5_1() -> None:
    cfg = load_config(None, TINY + ["model.hidden=30,32", "sparsity.pattern=2:4"])
    with pytest.raises(ValueError, match="30 inputs, not a multiple of m=4"):
        train(cfg, stream=None)
    cfg = load_config(None, SMALL + ["model.arch=resnet19", "sparsity.dense_first=false"])
    with pytest.raises(ValueError, match=r"layer 0 \(conv, weight \(16, 1, 3, 3\)\) has 1 "):
        build_setup(cfg)
    # dense masks nothing, so no layer has to fit
    assert build_setup(load_config(None, TINY + ["model.hidden=30,30",
                                                 "sparsity.method=dense"])).layers == ()


def test_masked_layers_are_layer_ordinals_S5_1_S4_14() -> None:
    setup = build_setup(load_config(None, SMALL + ["model.arch=resnet19"]))
    assert len(setup.graph.layers) == 21
    assert setup.layers == tuple(range(1, 20))  # all but the stem and the readout
    setup = build_setup(load_config(None, SMALL + ["model.arch=vgg11",
                                                   "sparsity.dense_last=false"]))
    assert setup.layers == tuple(range(1, len(setup.graph.layers)))


@pytest.mark.parametrize("method", ["spikenm", "maskllm", "srste", "random"])
def test_conv_net_masks_conv_weights_in_block_layout(method) -> None:
    cfg = load_config(None, TINY + ["model.arch=conv", "model.channels=4,8", "model.hidden=16",
                                    "optim.epochs=1", f"sparsity.method={method}"])
    result = train(cfg, stream=None)
    assert sorted(result.masks) == [1, 2]
    w = result.params["layer1.weight"]
    assert w.shape == (8, 4, 3, 3)
    api.check_nm(api.to_block_layout(w), 2, 4)  # blocks along the input channels (S0.2)
    assert (api.to_block_layout(result.masks[1]).reshape(-1, 4).sum(1) == 2).all()
    api.pack(api.to_block_layout(w), 2, 4)
    assert result.summary["test_acc"] > 0.1


@pytest.mark.parametrize("arch", ["vgg11", "resnet19"])
def test_batch_norm_networks_train_and_pass_check_nm_S4_15(arch) -> None:
    result = train(load_config(None, SMALL + [f"model.arch={arch}", "optim.epochs=1"]),
                   stream=None)
    rows = result.summary["layers"]
    masked = [r for r in rows if r["masked"]]
    assert masked and all(r["check"].startswith("ok") for r in masked)
    assert not rows[0]["masked"] and not rows[-1]["masked"]
    for k, mask in result.masks.items():
        api.check_nm(api.to_block_layout(result.params[f"layer{k}.weight"]), 2, 4)
    assert all(k.startswith("bn") for k in result.buffers)
    assert result.summary["steps"] == 4 and result.summary["arch"] == arch


def test_evaluation_is_in_eval_mode_with_the_running_statistics_S4_13() -> None:
    setup = build_setup(load_config(None, SMALL + ["model.arch=vgg11", "optim.epochs=1"]))
    state = initial_state(setup)
    cache: dict[int, np.ndarray] = {}
    for _ in range(2):
        state, _ = train_step(setup, state, cache)
    params, _ = final_params(setup, state)
    before = {k: v.copy() for k, v in state.buffers.items()}
    first = evaluate(setup, params, state.buffers)
    assert evaluate(setup, params, state.buffers) == first
    assert all(np.array_equal(before[k], state.buffers[k]) for k in before)  # unchanged
    shifted = {k: v - 1.0 if k.endswith("running_mean") else v
               for k, v in state.buffers.items()}
    other = evaluate(setup, params, shifted)  # lower running means: more spikes
    assert other["firing_rates"][0] > first["firing_rates"][0]
    assert other["test_loss"] != first["test_loss"]


def test_weight_decay_applies_to_weights_only_S5_7() -> None:
    setup = build_setup(load_config(None, SMALL + ["model.arch=vgg11",
                                                   "optim.weight_decay=0.01"]))
    decay = dict(zip(setup.param_keys, setup.weight_decay))
    assert decay["layer1.weight"] == 0.01 and decay["bn0.gamma"] == 0.0
    assert decay["bn0.beta"] == 0.0 and decay[f"layer{len(setup.graph.layers) - 1}.bias"] == 0


def test_asp_resets_the_optimizer_and_restarts_the_lr_S6_5() -> None:
    setup = build_setup(load_config(None, TINY + ["optim.epochs=1", "sparsity.method=asp"]))
    dense = setup.method.dense_steps(setup.total_steps)
    state = initial_state(setup)
    cache: dict[int, np.ndarray] = {}
    lrs, counts = [], []
    while state.step < setup.total_steps:
        state, info = train_step(setup, state, cache)
        lrs.append(info.lr)
        counts.append(state.weight_opt.count)
    assert counts[dense - 1] == dense and counts[dense] == 1  # a fresh optimizer
    assert lrs[0] == lrs[dense] == setup.cfg.optim.lr
    assert lrs[dense - 1] < lrs[0] / 10
    w = state.params["layer1.weight"]
    assert (api.to_block_layout(w).reshape(-1, 4) != 0).sum(1).max() <= 2


def test_the_hot_loop_makes_no_host_copy_S4_16(monkeypatch) -> None:
    """Outside the model backend, a step validates no array values (which copies them to
    the host) and asks the backend for no NumPy copy; the flip count stays an array."""
    from spikenm import validation

    real = {"nonnegative": validation.nonnegative, "finite": validation.finite}

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the training step copied array values to the host")

    setup = build_setup(load_config(None, TINY + ["optim.epochs=1"]))
    class Counting(HostCopyCounter):
        def forward_backward(self, *args):  # type: ignore[no-untyped-def]
            for name, fn in real.items():  # the backend itself may check its arrays
                monkeypatch.setattr(validation, name, fn)
            try:
                return self.inner.forward_backward(*args)
            finally:
                for name in real:
                    monkeypatch.setattr(validation, name, refuse)

    counter = Counting(setup.model)
    setup = replace(setup, model=counter)
    state = initial_state(setup)
    monkeypatch.setattr(validation, "nonnegative", refuse)
    monkeypatch.setattr(validation, "finite", refuse)
    cache: dict[int, np.ndarray] = {}
    for _ in range(3):
        state, info = train_step(setup, state, cache)
    assert counter.copies == 0
    assert info.compared > 0 and not isinstance(info.changed, float)
    assert state.method.group("credit/")  # EID ran


def test_the_loop_knows_no_method_by_name_S6_0() -> None:
    root = Path(__file__).resolve().parents[1] / "spikenm"
    pattern = re.compile(r"(method|phase)\s*(==|!=|in\s*\()")
    files = sorted((root / "train").glob("*.py")) + [root / "cli.py"]
    hits = [f"{p.name}:{i + 1}" for p in files
            for i, line in enumerate(p.read_text().splitlines()) if pattern.search(line)]
    assert hits == []
