"""Data-parallel JAX training: every batch sharded over K devices with ``jax.sharding``
(SPEC S4.16, ``run.devices``).

JAX fixes its device count when it is imported, so the two-device runs happen in one
subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``, in
float64 (``jax_enable_x64``).  There, on the same global batches:

* the trainer (`spikenm.train.loop.train`, SpikeNM 2:4 with EID credits on the digits
  MLP of tests/test_energy.py, 24 steps) with ``run.devices=1`` and ``=2``;
* a small network with batch norm after a conv and after a linear layer, trained by
  12 SGD steps through the model backend's ``forward_backward`` with EID credits on a
  conv and a linear layer, for a direct-encoded input (batch axis 0) and a time-major
  Poisson input ``(T, B, ...)`` (batch axis 1; S4.1, S4.7).

The final parameters, batch-norm running statistics and summed credits of 1 and 2
devices must agree within S0.6's float64 tolerance ``4 sqrt(eps) = 5.96e-8`` (only the
order of the batch sums differs: measured differences are ~1e-15); masks, correct counts
and accuracies are equal.  `spikenm.backends.jax.snn_shard.SHARDINGS` shows that XLA
really split the input along its batch axis (a fully replicated input would mean the
sharding is off), and an indivisible batch (an eval's last batch, a training batch of 7)
runs replicated with the same numbers.  The errors of ``run.devices`` are checked in this
process, where JAX has one CPU device.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from spikenm.backends.jax import snn, snn_shard
from spikenm.cli import main
from spikenm.train.config import (ConfigError, OptimConfig, RunConfig, TrainConfig, check_devices,
                                  load_config)

TOL64 = 4 * math.sqrt(float(np.finfo(np.float64).eps))
"""float64 agreement of 1 and 2 devices, SPEC S0.6 (5.96e-8)."""

WORKER = r'''
import json, warnings
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
from spikenm.backends.jax import snn, snn_shard
from spikenm.snn import EIDRequest, Graph, LIFParams, Node, init_buffers, init_params
from spikenm.train.config import DataConfig, load_config
from spikenm.train.data import load_dataset
from spikenm.train.loop import train

out = {"devices": [str(d) for d in jax.devices()]}

# -- the trainer: digits MLP, SpikeNM 2:4 with EID, 24 steps, eval batches 100 + 99
base = ["run.backend=jax", "run.dtype=float64", "run.quiet=true", "run.eval_every=0",
        "run.eval_batch_size=100", "data.test_limit=199", "sampler.variance_draws=0",
        "model.hidden=32,32", "optim.batch_size=32", "data.train_limit=256",
        "optim.epochs=3"]
runs = {}
for k in (1, 2):
    runs[k] = train(load_config(None, base + [f"run.devices={k}"]), stream=None)
one, two = runs[1], runs[2]
out["trainer"] = {
    "steps": one.records[-1]["step"],
    "param_diff": max(float(np.max(np.abs(one.params[key] - two.params[key])))
                      for key in one.params),
    "masks_equal": sorted(one.masks) == sorted(two.masks) and all(
        np.array_equal(one.masks[k], two.masks[k]) for k in one.masks),
    "masked": sorted(one.masks),
    "acc": [one.summary["test_acc"], two.summary["test_acc"]],
    "test_count": two.summary["test_count"],
    "loss_diff": max(abs(a["loss"] - b["loss"]) for a, b in zip(one.records, two.records)
                     if a["type"] == "train"),
}
from spikenm.train.setup import build_setup
out["trainer_device"] = build_setup(load_config(None, base + ["run.devices=2"])).model.device

# -- batch norm and EID credits through forward_backward, 12 SGD steps
g = Graph((1, 8, 8), (Node("conv", (-1,), 1, 4, 3, 1, 1, bias=False), Node("bn", (0,)),
                      Node("lif", (1,)), Node("pool", (2,), window=2), Node("flatten", (3,)),
                      Node("linear", (4,), 64, 16, bias=False), Node("bn", (5,)),
                      Node("lif", (6,)), Node("linear", (7,), 16, 10)))
lif = LIFParams(time_steps=3)
data = load_dataset(DataConfig())
images = data.x_train.astype(np.float64) / data.pixel_max


def batch(s, size, poisson):
    x = images[s * size:(s + 1) * size]
    if poisson:
        x = (np.random.default_rng(s).random((3,) + x.shape) < x).astype(np.float64)
    return x, data.y_train[s * size:(s + 1) * size]


def sgd(be, steps, size, poisson):
    p = {k: be.from_numpy(v) for k, v in init_params(g, 0, 2.0, "float64").items()}
    b = {k: be.from_numpy(v) for k, v in init_buffers(g, "float64").items()}
    credit, seen = None, []
    for s in range(steps):
        x, y = batch(s, size, poisson)
        eid = EIDRequest((0, 1), (p["layer0.weight"], p["layer1.weight"]), 0.6, False)
        r = be.forward_backward(g, p, b, be.from_numpy(x), be.from_numpy(y), lif, eid)
        seen.append((r.correct, r.firing_rates))
        p = {k: p[k] - 0.5 * r.grads[k] for k in p}
        b = r.buffers
        c = {k: np.asarray(v) for k, v in r.credits.items()}
        credit = c if credit is None else {k: credit[k] + c[k] for k in c}
    out_sharding = [str(r.grads["layer0.weight"].sharding.spec)
                    if hasattr(r.grads["layer0.weight"].sharding, "spec") else "single"]
    return {k: np.asarray(v) for k, v in {**p, **b}.items()}, credit, seen, out_sharding


one, two = snn.model_backend("cpu"), snn.model_backend("cpu", 2)
out["backends"] = [type(one).__name__, type(two).__name__, two.device,
                   type(snn.model_backend("cpu", 0)).__name__]
for poisson in (False, True):
    a, ca, sa, _ = sgd(one, 12, 16, poisson)
    b, cb, sb, spec = sgd(two, 12, 16, poisson)
    out[f"bn_poisson_{poisson}"] = {
        "param_diff": max(float(np.max(np.abs(a[k] - b[k]))) for k in a),
        "bn_keys": sorted(k for k in a if k.startswith("bn")),
        "credit_diff": max(float(np.max(np.abs(ca[k] - cb[k])) / np.max(np.abs(ca[k])))
                           for k in ca),
        "counts_rates_equal": [s[0] for s in sa] == [s[0] for s in sb] and all(
            abs(u - v) <= 1e-12 for s, t in zip(sa, sb) for u, v in zip(s[1], t[1])),
        "grad_sharding": spec,
    }

# -- an indivisible batch of 7 runs replicated, with the same numbers
x, y = batch(0, 7, True)
res = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for be in (one, two):
        p = {k: be.from_numpy(v) for k, v in init_params(g, 0, 2.0, "float64").items()}
        bf = {k: be.from_numpy(v) for k, v in init_buffers(g, "float64").items()}
        res.append(be.forward_backward(g, p, bf, be.from_numpy(x), be.from_numpy(y), lif))
out["odd_warnings"] = [str(w.message) for w in caught]
out["odd_diff"] = max([abs(res[0].loss - res[1].loss)] + [
    float(np.max(np.abs(np.asarray(res[0].grads[k]) - np.asarray(res[1].grads[k]))))
    for k in res[0].grads])

# -- what XLA did with the input: split along the batch axis, or replicated
out["shardings"] = [[key[0], key[-1], not v["x"].is_fully_replicated,
                     not v["y"].is_fully_replicated,
                     list(v["x"].shard_shape((3, 16, 1, 8, 8) if key[-1] == 1 else (16, 1, 8, 8)))]
                    for key, v in snn_shard.SHARDINGS.items()]

# -- the device count errors
errors = []
for device, k in (("cpu", 3), ("cpu:1", 2)):
    try:
        snn.model_backend(device, k)
    except ValueError as exc:
        errors.append(str(exc))
out["errors"] = errors
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def two_devices() -> dict:
    """The subprocess's measurements (module docstring)."""
    # two CPU devices; LLVM's cheapest code generation (it compiles in about half the
    # time and leaves the partitioned program, the subject here, as it is)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2 "
                         "--xla_backend_optimization_level=0")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", WORKER], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_S4_16_trainer_two_devices_give_the_parameters_of_one(two_devices: dict) -> None:
    r = two_devices["trainer"]
    assert len(two_devices["devices"]) == 2
    assert two_devices["trainer_device"] == "cpu:0,cpu:1"
    assert r["steps"] == 24 and r["masked"] == [1]
    assert r["param_diff"] <= TOL64, r
    assert r["loss_diff"] <= TOL64
    assert r["masks_equal"]
    # eval batches of 100 (sharded) and 99 (replicated) give the same accuracy
    assert r["test_count"] == 199 and r["acc"][0] == r["acc"][1]


@pytest.mark.parametrize("poisson", [False, True])
def test_S4_16_batch_norm_statistics_and_eid_credits_over_the_global_batch(
        two_devices: dict, poisson: bool) -> None:
    r = two_devices[f"bn_poisson_{poisson}"]
    assert r["bn_keys"] == ["bn0.beta", "bn0.gamma", "bn0.running_mean", "bn0.running_var",
                            "bn1.beta", "bn1.gamma", "bn1.running_mean", "bn1.running_var"]
    assert r["param_diff"] <= TOL64, r        # parameters and running statistics
    assert r["credit_diff"] <= TOL64, r       # summed credits, scaled by their largest
    assert r["counts_rates_equal"]
    assert r["grad_sharding"] == ["P()"]  # gradients come back replicated


def test_S4_16_the_input_really_is_sharded(two_devices: dict) -> None:
    assert two_devices["backends"] == ["JaxModelBackend", "ShardedJaxModelBackend",
                                       "cpu:0,cpu:1", "ShardedJaxModelBackend"]
    seen = {(kind, axis): (xs, ys, shape) for kind, axis, xs, ys, shape
            in two_devices["shardings"]}
    # direct input split along axis 0, time-major input along axis 1, labels along 0
    assert seen[("step", 0)] == (True, True, [8, 1, 8, 8])
    assert seen[("step", 1)] == (True, True, [3, 8, 1, 8, 8])
    assert seen[("eval", 0)][:2] == (True, True)
    # indivisible batches (eval's last 99, the training batch of 7) run replicated
    assert seen[("eval", None)][:2] == (False, False)
    assert seen[("step", None)][:2] == (False, False)


def test_S4_16_indivisible_batch_runs_replicated(two_devices: dict) -> None:
    assert two_devices["odd_diff"] <= TOL64
    assert two_devices["odd_warnings"] == [
        "a training batch of 7 samples does not divide over 2 devices; it runs replicated "
        "on each (S4.16)"]


def test_S4_16_device_count_errors(two_devices: dict) -> None:
    few, index = two_devices["errors"]
    assert "devices=3 asks for 3 cpu devices; 2 exist here (cpu:0, cpu:1)" in few
    assert "xla_force_host_platform_device_count=3" in few
    assert "give the platform alone ('cpu')" in index
    # in this process JAX has one CPU device
    with pytest.raises(ValueError, match=r"devices=2 asks for 2 cpu devices; 1 exist here"):
        snn.model_backend("cpu", 2)
    with pytest.raises(ValueError, match=r"devices=-1 is invalid"):
        snn.model_backend("cpu", -1)
    with pytest.raises(TypeError, match=r"devices must be an integer"):
        snn.model_backend("cpu", 2.0)  # type: ignore[arg-type]
    assert snn_shard.device_mesh("cpu", 0).devices.size == 1
    assert type(snn.model_backend("cpu", 0)) is snn.JaxModelBackend  # all = the one here
    assert type(snn.model_backend("cpu", 1)) is snn.JaxModelBackend
    assert len(jax.devices("cpu")) == 1


def test_S4_16_run_devices_config(tmp_path: Path) -> None:
    assert RunConfig().devices == 1
    assert load_config(None, ["run.backend=jax", "run.devices=0"]).run.devices == 0
    cfg = load_config(None, ["run.backend=jax", "run.devices=4", "optim.batch_size=32"])
    assert cfg.run.devices == 4
    with pytest.raises(ConfigError, match=r"run\.devices=-2 is invalid; expected 1 \(one"):
        load_config(None, ["run.backend=jax", "run.devices=-2"])
    with pytest.raises(ConfigError, match=r"run\.devices=2 is invalid; expected 1 with "
                                          r"run\.backend='torch'.*torchrun"):
        load_config(None, ["run.backend=torch", "run.devices=2"])
    with pytest.raises(ConfigError, match=r"run\.devices='two' is invalid; expected an int"):
        load_config(None, ["run.backend=jax", "run.devices=two"])
    with pytest.raises(ConfigError, match=r"optim\.batch_size=64 is invalid; expected a "
                                          r"multiple of run\.devices=3"):
        load_config(None, ["run.backend=jax", "run.devices=3"])
    # checked after the file and the flags: a flag may fix the file's batch size
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\nbackend = "jax"\ndevices = 3\n[optim]\nbatch_size = 64\n')
    assert load_config(toml, ["optim.batch_size=48"]).optim.batch_size == 48
    with pytest.raises(ConfigError, match=r"optim\.batch_size=64 is invalid"):
        load_config(toml)
    check_devices(TrainConfig())
    with pytest.raises(ConfigError, match=r"multiple of run\.devices=2"):
        check_devices(TrainConfig(run=RunConfig(backend="jax", devices=2),
                                  optim=OptimConfig(batch_size=5)))


def test_S4_16_cli_devices_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1", "--quiet",
            "--backend", "jax", "--devices", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikenm train: devices=2 asks for 2 cpu devices; 1 exist here")
    assert main(args[:8] + ["--devices", "2"]) == 2
    assert "run.devices=2 is invalid; expected 1 with run.backend='numpy'" in \
        capsys.readouterr().err
