"""Data-parallel training with torch (SPEC S5.14): 2 gloo processes give the numbers of
1 process on the same global batch.

One ``torchrun`` launch (``python -m torch.distributed.run --standalone
--nproc_per_node=2 tests/test_ddp_torch.py FOLDER``) runs `_worker` on 2 processes:

* ``spikenm train`` (`spikenm.cli.main`, the entry point of ``torchrun -m spikenm``) of
  the digits MLP (even batch of 64, signed credits, the gradient-variance points of
  S5.9a), and a resumed run with an uneven batch of 45 (23 + 22), Poisson input
  (time-major batches) and evaluations during the run, from the checkpoint of a
  1-process run stopped at step 8; and a run stopped by a SIGTERM that reaches rank 1
  only;
* the model backend on a conv net with batch norm (S4.13) and EID credits (S2.3 and the
  signed S2.9), batch 7 (4 + 3);
* the PyTorch module path (`spikenm.backends.torch.nn.sparsify`) under the user's own
  ``DistributedDataParallel``.

Rank 1 records every file it opens for writing, renames or removes (an audit hook):
only rank 0 may write a run's files.  The tolerance: float64, ``max |a - b| <= 1e-10 *
max(1, max |b|)`` (S0.6's float64 agreement); the figures measured are printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10
"""Relative float64 tolerance of 2-process results against 1-process ones (S5.14)."""

MLP_EVEN = ["data.name=digits", "model.hidden=32,32", "optim.batch_size=64",
            "optim.epochs=1", "run.backend=torch", "run.dtype=float64", "run.eval_every=0",
            "run.log_every=5", "eid.credit=signed", "sampler.variance_draws=2"]
MLP_UNEVEN = ["data.name=digits", "model.hidden=32,32", "optim.batch_size=45",
              "data.train_limit=450", "data.test_limit=150", "run.eval_batch_size=100",
              "optim.epochs=2", "run.backend=torch", "run.dtype=float64",
              "data.encoding=poisson", "sampler.variance_points=", "run.log_every=4",
              "run.checkpoint_every=4"]
STOP_AT = 8
NN_STEPS, NN_BATCH, NN_T = 7, 8, 3


def _close(a: Any, b: Any) -> float:
    """``max |a - b|``, asserting it is within the tolerance of `TOL`."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert diff <= TOL * max(1.0, float(np.max(np.abs(b))) if b.size else 1.0), diff
    return diff


# -- the pieces run by both sides --------------------------------------------------------
def _bn_graph() -> Any:
    from spikenm.snn.archs import GraphBuilder

    b = GraphBuilder((1, 8, 8))
    b.conv(4, 3, batch_norm=True); b.lif(); b.pool(2)
    b.conv(8, 3, batch_norm=True); b.lif(); b.pool(2)
    b.flatten(); b.linear(8, batch_norm=True); b.lif(); b.linear(3)
    return b.graph()


def _bn_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"static": rng.uniform(0, 1, (7, 1, 8, 8)),
            "timed": (rng.uniform(0, 1, (4, 7, 1, 8, 8)) < 0.4).astype(np.float64),
            "y": rng.integers(0, 3, 7)}


def _bn_calls(mb: Any) -> dict[str, np.ndarray]:
    """forward_backward (static and time-major input, abs and signed credits) and
    evaluate of the batch-norm graph on ``mb``, flattened to NumPy."""
    from spikenm.snn import EIDRequest, LIFParams, init_buffers, init_params

    g = _bn_graph()
    p = {k: mb.from_numpy(v) for k, v in init_params(g, 0, 2.0, "float64").items()}
    buf = {k: mb.from_numpy(v) for k, v in init_buffers(g, "float64").items()}
    data = _bn_inputs()
    y = mb.from_numpy(data["y"])
    out: dict[str, np.ndarray] = {}
    for case, signed in (("static", False), ("timed", True)):
        eid = EIDRequest((1, 2), (p["layer1.weight"], p["layer2.weight"]), 0.5, signed)
        r = mb.forward_backward(g, p, buf, mb.from_numpy(data[case]), y, LIFParams(), eid)
        out[f"{case}/loss"] = np.array(r.loss)
        out[f"{case}/correct"] = np.array(r.correct)
        out[f"{case}/rates"] = np.array(r.firing_rates)
        for k, v in {**r.grads, **r.buffers}.items():
            out[f"{case}/{k}"] = mb.to_numpy(v)
        for k, v in r.credits.items():
            out[f"{case}/credit{k}"] = mb.to_numpy(v)
        ev = mb.evaluate(g, p, buf, mb.from_numpy(data[case]), y, LIFParams())
        out[f"{case}/eval"] = np.array([ev.loss_sum, ev.correct, ev.count, *ev.spike_sums,
                                        *ev.spike_counts])
    return out


class _TimeNet(nn.Module):
    """A small conv net run over ``NN_T`` steps inside one forward (x_t = x, t = 0..T-1,
    a decaying state: repeated calls of every layer, `nn_credit`)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(4, 8, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                  nn.Linear(512, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = [self.body(x * (1.0 - 0.2 * t)) for t in range(NN_T)]
        return torch.stack(steps).sum(dim=0) / NN_T


def _nn_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand((NN_STEPS, NN_BATCH, 1, 8, 8), generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 4, (NN_STEPS, NN_BATCH), generator=gen)


def _nn_run(rank: int, world: int) -> dict[str, np.ndarray]:
    """`sparsify` SpikeNM (EID on) 2:4 over ``NN_STEPS + 1`` steps (6 in the search
    phase, 1 fixed), ``NN_STEPS`` Adam steps of them on this rank's shard of
    every global batch; 2 processes wrap the model in DistributedDataParallel."""
    from spikenm.backends.torch.nn import sparsify

    torch.manual_seed(0)
    model = _TimeNet().double()
    handle = sparsify(model, 2, 4, total_steps=NN_STEPS + 1, progress=world > 1)
    run = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = _nn_data()
    lo, hi = rank * NN_BATCH // world, (rank + 1) * NN_BATCH // world
    for s in range(NN_STEPS):
        loss = F.cross_entropy(run(xs[s, lo:hi]), ys[s, lo:hi]) + handle.eid_loss()
        opt.zero_grad(); loss.backward(); opt.step()
        handle.step()
    state = handle.state_dict()
    out = {f"state/{k}": v.detach().numpy() for k, v in state["arrays"].items()
           if isinstance(v, torch.Tensor) and v.is_floating_point()}
    bar = np.array(handle._progress.has_bar)  # only rank 0 keeps its bar
    handle.finalize()
    out.update({f"weight/{k}": v.detach().numpy() for k, v in model.state_dict().items()})
    return out if world == 1 else {**out, "bar": bar}


# -- the worker of the torchrun launch ----------------------------------------------------
def _worker(folder: Path) -> None:
    import torch.distributed  # noqa: F401  (loaded before the CLI: its rank decides)

    from spikenm.cli import main

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    writes: list[str] = []
    recording = [rank != 0]

    inside = os.path.realpath(folder)

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if not recording[0] or not args or not isinstance(args[0], (str, os.PathLike)):
            return
        if not os.path.realpath(args[0]).startswith(inside):
            return  # e.g. the interpreter's __pycache__
        if event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)):
                writes.append(f"open {args[0]}")
        elif event in ("os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir"):
            writes.append(f"{event} {args[0]}")

    sys.addaudithook(audit)
    settings = [f"--set={o}" for o in MLP_EVEN + [f"run.out={folder / 'even'}"]]
    assert main(["train", *settings]) == 0
    settings = [f"--set={o}" for o in MLP_UNEVEN + [f"run.out={folder / 'resumed'}"]]
    assert main(["train", "--resume", *settings]) == 0
    import spikenm.train.loop as loop

    plain = loop.train_step

    def signalled(setup: Any, state: Any, cache: Any) -> Any:
        if rank == 1 and state.step == STOP_AT - 1:  # SIGTERM reaches rank 1 only
            os.kill(os.getpid(), signal.SIGTERM)
        return plain(setup, state, cache)

    loop.train_step = signalled  # type: ignore[assignment]
    settings = [f"--set={o}" for o in MLP_EVEN + ["sampler.variance_points=",
                                                   f"run.out={folder / 'stopped'}"]]
    status = main(["train", *settings])
    loop.train_step = plain  # type: ignore[assignment]
    from spikenm.backends.torch.snn import model_backend

    mb = model_backend("cpu")
    assert type(mb).__name__ == "DDPModelBackend" and mb.world_size == world
    results = _bn_calls(mb)
    results["stop_status"] = np.array(status)
    from spikenm.snn import LIFParams, init_params, mlp

    g = mlp((4,), 3, (8,))
    p = {k: mb.from_numpy(v) for k, v in init_params(g, 0, 2.0, "float64").items()}
    try:  # one sample for two processes
        mb.forward_backward(g, p, {}, mb.from_numpy(np.ones((1, 4))),
                            mb.from_numpy(np.zeros(1, dtype=np.int64)), LIFParams())
        results["small_batch"] = np.array("accepted")
    except ValueError as exc:
        results["small_batch"] = np.array(str(exc))
    results.update(_nn_run(rank, world))
    recording[0] = False
    np.savez(folder / f"rank{rank}.npz", **results)
    (folder / f"rank{rank}.writes.json").write_text(json.dumps(writes))


# -- the tests ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 1-process references (in this process) and the 2-process torchrun launch."""
    from spikenm.train.config import load_config
    from spikenm.train.loop import train

    folder = tmp_path_factory.mktemp("ddp")
    stopped = folder / "resumed"
    train(load_config(None, MLP_UNEVEN + [f"run.out={stopped}"]), stop_after=STOP_AT,
          stream=None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).resolve()), str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:  # the references while the workers run
        refs = {"even": train(load_config(None, MLP_EVEN), stream=None),
                "uneven": train(load_config(None, MLP_UNEVEN), stream=None)}
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    ranks = [dict(np.load(folder / f"rank{r}.npz")) for r in range(2)]
    writes = [json.loads((folder / f"rank{r}.writes.json").read_text()) for r in range(2)]
    return {"folder": folder, "stdout": stdout, "stderr": stderr, "refs": refs,
            "ranks": ranks,
            "writes": writes}


def _model(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}


def test_S5_14_trainer_two_processes_match_one(launch: dict[str, Any]) -> None:
    """S5.14: ``spikenm train`` on 2 gloo processes (even batch) ends with the 1-process
    parameters, batch-norm-free MLP with signed EID credits; every train record's loss,
    accuracy, firing rates and gradient-variance figures agree."""
    ref = launch["refs"]["even"]
    got = _model(launch["folder"] / "even" / "model.npz")
    diffs = {k: _close(got[k], ref.params[k]) for k in ref.params}
    assert set(got) >= set(ref.params)
    print(f"trainer, even batch: max |2 proc - 1 proc| over parameters = "
          f"{max(diffs.values()):.3g}")
    lines = (launch["folder"] / "even" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    mine = [r for r in ref.records]
    assert [r["step"] for r in records] == [r["step"] for r in mine]  # no record twice
    for a, b in zip(records, mine):
        for key in ("loss", "acc", "flip_rate", "grad_variance", "grad_snr", "test_acc"):
            if b.get(key) is not None:
                _close(a[key], b[key])
        if b.get("firing_rates"):
            _close(a["firing_rates"], b["firing_rates"])
    assert any(r.get("grad_points") for r in records)


def test_S5_14_uneven_split_and_resume(launch: dict[str, Any]) -> None:
    """S5.14, S5.12: a 1-process checkpoint at step 8 resumed on 2 processes with an
    uneven batch (45 = 23 + 22, Poisson input, evaluations split over the processes)
    ends with the uninterrupted 1-process run's parameters and test figures."""
    ref = launch["refs"]["uneven"]
    out = launch["folder"] / "resumed"
    got = _model(out / "model.npz")
    diff = max(_close(got[k], ref.params[k]) for k in ref.params)
    print(f"trainer, uneven batch + resume: max |2 proc - 1 proc| = {diff:.3g}")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == ref.summary["steps"] == 20
    _close(summary["test_loss"], ref.summary["test_loss"])
    assert summary["test_count"] == 150 and summary["test_acc"] == ref.summary["test_acc"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    ref_evals = [r for r in ref.records if r["type"] == "eval"]
    assert len(evals) == len(ref_evals) == 1
    _close(evals[0]["test_loss"], ref_evals[0]["test_loss"])
    assert [r["step"] for r in records] == [r["step"] for r in ref.records]


def test_S5_14_only_rank_0_writes(launch: dict[str, Any]) -> None:
    """S5.14: rank 1 opens no file for writing, renames and removes nothing; progress
    is printed once."""
    assert launch["writes"][1] == []
    assert launch["stdout"].count("spikenm train: method spikenm") == 3  # 3 runs, rank 0
    assert launch["stdout"].count("resumed from") == 1
    assert sorted(p.name for p in (launch["folder"] / "even").iterdir()) == [
        "checkpoint.npz", "metrics.jsonl", "model.npz", "summary.json"]


def test_S5_14_a_stop_signal_of_one_process_stops_all(launch: dict[str, Any]) -> None:
    """S5.14, S5.12b: SIGTERM delivered to rank 1 alone stops both processes after the
    same step (exit status 143 on both) and rank 0 writes the checkpoint of that step."""
    from spikenm.train.checkpoint import load_checkpoint

    assert [int(r["stop_status"]) for r in launch["ranks"]] == [143, 143]
    _, meta = load_checkpoint(launch["folder"] / "stopped" / "checkpoint.npz")
    assert meta["step"] == STOP_AT, meta.get("step")
    assert launch["stdout"].count("stopped by SIGTERM at step") == 0  # printed on stderr
    assert "stopped by SIGTERM at step 8/22" in launch["stderr"]


def test_S5_14_backend_batch_norm_and_credits(launch: dict[str, Any]) -> None:
    """S5.14, S4.13, S2.3, S2.9: the data-parallel model backend on batch 7 (4 + 3) of a
    conv net with batch norm gives the 1-process loss, gradients, running statistics,
    firing rates, credits (summed over processes before the absolute value) and
    evaluation sums; both processes hold identical results."""
    from spikenm.backends.torch.snn import TorchModelBackend

    ref = _bn_calls(TorchModelBackend("cpu"))
    r0, r1 = launch["ranks"]
    diffs = []
    for key, value in ref.items():
        diffs.append(_close(r0[key], value))
        assert np.array_equal(r0[key], r1[key]), key
    assert {"static/credit1", "static/credit2", "timed/credit1", "timed/bn0.running_var",
            "static/bn2.running_mean"} <= set(ref)
    print(f"backend (bn, EID): max |2 proc - 1 proc| = {max(diffs):.3g}")


def test_S5_14_credit_abs_after_the_process_sum() -> None:
    """S5.14: the per-process credits summed (abs before the sum over processes) differ
    from the credit of the global batch, which `step_sums` + `credit_from_sums` give."""
    from spikenm.backends.torch.snn_credit import credit_from_sums, layer_credit, step_sums
    from spikenm.snn import mlp

    node = mlp((4,), 3, (2,)).layer_node(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((3, 6, 4), generator=gen, dtype=torch.float64)
    d = torch.randn((3, 6, 2), generator=gen, dtype=torch.float64)
    w = torch.randn((2, 4), generator=gen, dtype=torch.float64)
    for signed in (False, True):
        whole = layer_credit(node, x, False, d, w, 0.5, signed)
        parts = [(x[:, :4], d[:, :4]), (x[:, 4:], d[:, 4:])]
        sums = sum(step_sums(node, a, False, b, w, 0.5, signed) for a, b in parts)
        naive = sum(layer_credit(node, a, False, b, w, 0.5, signed) for a, b in parts)
        _close(credit_from_sums(node, sums, w), whole)
        assert float((naive - whole).abs().max()) > 1e-3


def test_S5_14_module_path_under_user_ddp(launch: dict[str, Any]) -> None:
    """S5.14: `sparsify` under the user's DistributedDataParallel (2 processes, 4 + 4
    samples) ends with the 1-process weights and logits on the 8-sample batches; the
    logits and ``handle.state_dict()`` arrays are identical on both processes; only
    rank 0 shows a progress bar."""
    ref = _nn_run(0, 1)
    r0, r1 = launch["ranks"]
    diffs = {}
    for key, value in ref.items():
        diffs[key] = _close(r0[key], value)
        assert np.array_equal(r0[key], r1[key]), key
    assert bool(r0["bar"]) and not bool(r1["bar"])
    logits = [k for k in ref if k.startswith("state/logits/")]
    credits = [k for k in ref if k.startswith("state/credit")]
    assert logits and credits, sorted(ref)
    print(f"module path: max |2 proc - 1 proc| weights "
          f"{max(v for k, v in diffs.items() if k.startswith('weight/')):.3g}, logits "
          f"{max(diffs[k] for k in logits):.3g}")


def test_S5_14_batch_smaller_than_the_group(launch: dict[str, Any]) -> None:
    """S5.14: a training batch with fewer samples than processes is refused on every
    process."""
    for r in launch["ranks"]:
        assert "1 samples for 2 data-parallel processes" in str(r["small_batch"])


def test_S5_14_bad_settings_are_named() -> None:
    """S5.14: ``WORLD_SIZE > 1`` outside torchrun, a non-integer ``WORLD_SIZE`` and bad
    ``sparsify(distributed=...)`` values are clear errors; the examples of the new
    modules run."""
    import doctest

    from spikenm.backends.torch import snn_credit, snn_ddp
    from spikenm.backends.torch.nn import sparsify
    from spikenm.backends.torch.snn import model_backend
    from spikenm.train import distributed

    for module in (snn_ddp, snn_credit, distributed):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__
    saved = {k: os.environ.pop(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK",
                                            "WORLD_SIZE") if k in os.environ}
    try:
        os.environ["WORLD_SIZE"] = "2"
        with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT, RANK are not set"):
            model_backend("cpu")
        os.environ["WORLD_SIZE"] = "two"
        with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
            model_backend("cpu")
    finally:
        os.environ.pop("WORLD_SIZE", None)
        os.environ.update(saved)
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.raises(TypeError, match="distributed='yes' is invalid"):
        sparsify(net, 2, 4, total_steps=2, distributed="yes")  # type: ignore[arg-type]
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    handle = sparsify(net, 2, 4, total_steps=2, distributed=True, progress=False)
    net(torch.ones(2, 4)).sum().backward()
    with pytest.raises(ValueError, match="needs an initialized torch.distributed"):
        handle.step()
    assert sparsify(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)), 2, 4,
                    total_steps=2, progress=False).world_size() == 1


def test_S5_14_one_process_refuses_and_main_module() -> None:
    """S5.14: ``python -m spikenm`` is the console script; the trainer refuses
    WORLD_SIZE > 1 with a backend that does not split batches."""
    from spikenm.train import distributed

    proc = subprocess.run([sys.executable, "-m", "spikenm", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0 and proc.stdout.startswith("spikenm ")

    class Single:
        name = "numpy"

    os.environ["WORLD_SIZE"] = "2"
    try:
        with pytest.raises(ValueError, match="needs run.backend=torch"):
            distributed.check_model(Single())
        assert distributed.world() == (0, 2) and distributed.is_writer()
    finally:
        del os.environ["WORLD_SIZE"]
    assert distributed.world() == (0, 1)


def test_S5_14_reproduce_refuses_a_data_parallel_process(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """S5.14: a reproduce grid runs in one process; under torchrun every rank would
    write the grid's files, so it is refused before anything is written."""
    from spikenm.train.reproduce import QUICK, run_grid

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="reproduce runs in one process, but this is rank 1 "
                                         "of 2"):
        run_grid(QUICK, "torch", tmp_path / "grid")
    assert not (tmp_path / "grid").exists()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
