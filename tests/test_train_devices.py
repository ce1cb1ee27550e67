"""The trainer on the torch and JAX model backends and on devices (SPEC S4.16, S6.0): the
same method objects and loop, arrays kept in the backend's framework."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikenm.cli import main
from spikenm.train.config import load_config
from spikenm.train.loop import initial_state, train
from spikenm.train.setup import build_setup
from spikenm.train.step import train_step

BASE = ["data.name=digits", "data.train_limit=64", "data.test_limit=32",
        "optim.batch_size=16", "run.quiet=true", "run.eval_every=0", "run.dtype=float64"]


def _steps(backend: str, extra: list[str], steps: int = 3):  # type: ignore[no-untyped-def]
    setup = build_setup(load_config(None, BASE + extra + [f"run.backend={backend}"]))
    state = initial_state(setup)
    cache: dict[int, np.ndarray] = {}
    infos = []
    for _ in range(steps):
        state, info = train_step(setup, state, cache)
        infos.append(info)
    return setup, state, infos


@pytest.mark.parametrize("backend, arch, method", [
    ("torch", "vgg11", "srste"), ("torch", "mlp", "random"), ("jax", "mlp", "srste"),
    ("jax", "resnet19", "random")])
def test_steps_on_other_backends_follow_the_reference_in_float64(backend, arch, method) -> None:
    """Methods with backend-independent masks (magnitude, NumPy-drawn random) give the
    reference's numbers on torch and JAX arrays: the loop, method and optimizer run on the
    backend's own arrays."""
    extra = [f"model.arch={arch}", "model.width_multiplier=0.125", "model.hidden=32,32",
             f"sparsity.method={method}"]
    ref_setup, ref, ref_infos = _steps("numpy", extra)
    with contextlib.ExitStack() as stack:
        if backend == "jax":  # float64 arrays need JAX's 64-bit mode
            import jax

            stack.enter_context(jax.enable_x64(True))
        setup, state, infos = _steps(backend, extra)
    first = state.params["layer1.weight"]
    assert type(first).__module__.split(".")[0] in (backend, "jaxlib")
    for a, b in zip(ref_infos, infos):
        assert abs(a.loss - b.loss) <= 1e-9 * max(1.0, abs(a.loss))
        assert a.correct == b.correct and a.lr == b.lr
    for table_ref, table in ((ref.params, state.params), (ref.buffers, state.buffers)):
        for key, value in table_ref.items():
            other = setup.model.to_numpy(table[key])
            scale = max(1.0, float(np.abs(value).max()))
            assert np.abs(other - value).max() <= 1e-8 * scale, key
    if method == "srste":
        changed = [float(i.changed) for i in infos[1:]]
        assert changed == [float(i.changed) for i in ref_infos[1:]]


def test_spikenm_with_eid_trains_on_torch() -> None:
    """The full SpikeNM step (noise, sampler, EID credits, logit Adam) on torch tensors."""
    setup, state, infos = _steps("torch", ["model.hidden=32,32", "run.dtype=float32"], 4)
    assert isinstance(state.method.arrays["logits/1"], torch.Tensor)
    assert isinstance(state.method.arrays["credit/1"], torch.Tensor)
    assert isinstance(infos[-1].changed, torch.Tensor) and infos[-1].compared > 0
    assert all(np.isfinite(i.loss) for i in infos)


def test_a_torch_device_that_does_not_exist_is_named(capsys) -> None:
    code = main(["train", "--backend", "torch", "--device", "cuda:99", "--quiet", "--data",
                 "digits", "--hidden", "32,32", "--epochs", "1"])
    assert code == 2
    assert "cuda:99" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_keeps_everything_on_the_device(tmp_path) -> None:
    cfg = load_config(None, BASE[:-1] + ["run.backend=torch", "run.device=cuda",
                                         "model.arch=vgg11", "model.width_multiplier=0.125",
                                         "optim.epochs=1", f"run.out={tmp_path}"])
    setup = build_setup(cfg)
    state = initial_state(setup)
    state, info = train_step(setup, state, {})
    for table in (state.params, state.buffers, state.method.arrays):
        assert all(v.device.type == "cuda" for v in table.values())
    result = train(cfg, stream=None)
    assert result.summary["device"].startswith("cuda")
    assert all(r["check"].startswith("ok") for r in result.summary["layers"] if r["masked"])


def test_importing_the_trainer_reads_no_data_and_imports_no_framework() -> None:
    code = ("import sys, spikenm.train; from spikenm.train import load_config; "
            "print(sorted(m for m in ('spikenm.train.data', 'spikenm.train.loop', 'torch', "
            "'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
