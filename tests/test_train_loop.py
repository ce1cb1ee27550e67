"""Training loop end to end on the reference backend (SPEC S5, S6)."""

from __future__ import annotations

import numpy as np
import pytest

from spikenm import api
from spikenm.train.checkpoint import load_checkpoint, save_checkpoint
from spikenm.train.config import load_config
from spikenm.train.loop import CHECKPOINT, train

TINY = ["data.name=digits", "model.hidden=32,32", "optim.batch_size=64", "run.quiet=true",
        "run.eval_every=0"]


def test_tiny_run_learns_and_reports_S5_11_S6_8() -> None:
    cfg = load_config(None, TINY + ["optim.epochs=5", "sparsity.method=spikenm",
                                    "model.hidden=64,64"])
    result = train(cfg, stream=None)
    assert result.summary["test_acc"] > 0.75  # chance is 0.10
    assert result.summary["flip_rate"] is not None and 0 < result.summary["flip_rate"] < 1
    assert len(result.summary["firing_rates"]) == 2
    assert all(0 < r < 1 for r in result.summary["firing_rates"])


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
        w = result.weights[layer][0]
        mask = result.masks[layer]
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        blocks = api.to_block_layout(mask).reshape(-1, m).sum(axis=1)
        assert (blocks == n).all()  # exactly n kept per block
        api.check_nm(w, n, m)
        packed = api.pack(w, n, m, mask=mask)
        assert np.array_equal(api.unpack(packed), w)
    rows = result.summary["layers"]
    assert [r["masked"] for r in rows] == [i in masked for i in range(3)]


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
    for (wa, ba), (wb, bb) in zip(full.weights, resumed.weights):
        assert np.array_equal(wa, wb) and np.array_equal(ba, bb)
    for layer in full.masks:
        assert np.array_equal(full.masks[layer], resumed.masks[layer])
    assert full.summary["test_acc"] == resumed.summary["test_acc"]
    assert full.summary["flip_rate"] == resumed.summary["flip_rate"]
    a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    b = (out_b / "metrics.jsonl").read_text().splitlines()
    assert len(a) == len(b)


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


def test_masked_layer_that_does_not_fit_is_an_error() -> None:
    cfg = load_config(None, TINY + ["model.hidden=30,32", "sparsity.pattern=2:4"])
    with pytest.raises(ValueError, match="30 inputs, not a multiple of m=4"):
        train(cfg, stream=None)


@pytest.mark.parametrize("method", ["spikenm", "maskllm", "srste", "random"])
def test_conv_net_masks_conv_weights_in_block_layout(method) -> None:
    cfg = load_config(None, TINY + ["model.arch=conv", "model.channels=4,8", "model.hidden=16",
                                    "optim.epochs=1", f"sparsity.method={method}"])
    result = train(cfg, stream=None)
    assert sorted(result.masks) == [1, 2]
    w = result.weights[1][0]
    assert w.shape == (8, 4, 3, 3)
    api.check_nm(api.to_block_layout(w), 2, 4)  # blocks along the input channels (S0.2)
    assert (api.to_block_layout(result.masks[1]).reshape(-1, 4).sum(1) == 2).all()
    api.pack(api.to_block_layout(w), 2, 4)
    assert result.summary["test_acc"] > 0.1
