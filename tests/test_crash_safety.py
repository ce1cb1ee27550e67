"""Crash safety of the trainer and its command line (SPEC S5.12, S5.12a, S5.12b).

Real processes are killed (SIGKILL) or stopped (SIGTERM, SIGINT) at several points of a
short run and resumed; the final weights, checkpoint arrays, ``metrics.jsonl`` and
``summary.json`` must equal those of an uninterrupted run (all but the wall-clock fields
``ms_per_step`` and ``seconds``) and no temporary file may be left.  Run this file as a
script (``python tests/test_crash_safety.py``) to repeat the cycles and print the counts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spikenm.atomic import remove_stale_temps, temp_owner
from spikenm.cli import main
from spikenm.train.checkpoint import load_checkpoint
from spikenm.train.config import load_config
from spikenm.train.loop import (CHECKPOINT, RUN_FILES, Interrupted, prepare_out, stop_signals,
                                train)

RUN = ["train", "--data", "digits", "--hidden", "16,16", "--epochs", "2", "--method",
       "spikenm", "--set", "data.encoding=poisson", "--set", "run.eval_every=1",
       "--set", "run.log_every=5", "--set", "run.checkpoint_every=3"]
"""44 steps of a narrow MLP (about 0.5 s of training): logging intervals of 5 steps cut by
checkpoints every 3, an evaluation after epoch 1, gradient measurements of S5.9a."""
TOTAL = 44
TIMING = ("ms_per_step", "seconds")
"""Wall-clock fields: the only ones a resumed run may write differently."""
DEADLINE = 120.0
STATS: dict[str, int] = {"cycles": 0, "identical": 0, "killed_with_temp": 0,
                         "temps_after_kill": 0, "temps_after_resume": 0}


# -- helpers ---------------------------------------------------------------------------------

def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "spikenm.cli", *args]


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if temp_owner(p.name) is not None) \
        if out.is_dir() else []


def _outcome(out: Path) -> dict[str, Any]:
    """Everything a run leaves that must not depend on interruptions."""
    arrays = {}
    for name in ("model.npz", CHECKPOINT):
        with np.load(out / name, allow_pickle=False) as z:
            # __meta__ holds run.out (and so the checksum differs): compare the arrays
            arrays[name] = {k: z[k] for k in z.files if not k.startswith("__")}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {"arrays": arrays,
            "records": [{k: v for k, v in r.items() if k not in TIMING} for r in records],
            "summary": {k: v for k, v in summary.items() if k not in TIMING}}


def _same(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two outcomes (empty: bit-identical)."""
    diffs = []
    for name in a["arrays"]:
        x, y = a["arrays"][name], b["arrays"][name]
        if x.keys() != y.keys():
            diffs.append(f"{name}: keys")
            continue
        diffs += [f"{name}:{k}" for k in x if x[k].dtype != y[k].dtype
                  or not np.array_equal(x[k], y[k])]
    if a["records"] != b["records"]:
        diffs.append(f"metrics.jsonl ({len(a['records'])} vs {len(b['records'])} records)")
    if a["summary"] != b["summary"]:
        diffs.append("summary.json")
    return diffs


def _start(out: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(_command(RUN + ["--out", str(out), *extra]), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(proc: subprocess.Popen[str], pattern: str) -> str:
    """Read the child's progress lines until one matches ``pattern``."""
    assert proc.stdout is not None
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the run ended before a line matching {pattern!r}")
        if re.search(pattern, line):
            return line
    raise AssertionError("no progress")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, err


def _resume(out: Path) -> None:
    done = subprocess.run(_command(RUN + ["--out", str(out), "--resume", "--quiet"]),
                          capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr


def _cycle(reference: dict[str, Any], out: Path, kill: Any, extra: tuple[str, ...] = ()
           ) -> tuple[int, str]:
    """Start a run, stop it with ``kill(proc, out)``, resume it, compare; returns the
    stopped run's exit status and stderr."""
    proc = _start(out, extra)
    try:
        kill(proc, out)
        code, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    temps = _temps(out)
    STATS["cycles"] += 1
    STATS["temps_after_kill"] += len(temps)
    STATS["killed_with_temp"] += bool(temps)
    _resume(out)
    left = _temps(out)
    STATS["temps_after_resume"] += len(left)
    diffs = _same(reference, _outcome(out))
    STATS["identical"] += not diffs
    assert not left, f"temporary files left after the resume: {left}"
    assert not diffs, f"the resumed run differs: {diffs}"
    return code, err


def _kill_after(pattern: str, sig: int, delay: float = 0.0) -> Any:
    def kill(proc: subprocess.Popen[str], out: Path) -> None:
        _read_until(proc, pattern)
        if delay:
            time.sleep(delay)
        proc.send_signal(sig)
    return kill


def _kill_while_writing(proc: subprocess.Popen[str], out: Path) -> None:
    """SIGKILL as soon as a checkpoint's temporary file exists (a write in progress),
    after the first checkpoint (a run killed before it has nothing to resume)."""
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < DEADLINE:
        if (out / CHECKPOINT).is_file() and any(temp_owner(n) for n in os.listdir(out)):
            proc.send_signal(signal.SIGKILL)
            return
    raise AssertionError("the run ended without a checkpoint write being seen")


def _stop_with(sig: int, pattern: str, seen: dict[str, Any]) -> Any:
    """A ``kill`` for `_cycle`: ``sig`` after a progress line matching ``pattern``; the
    exit status, stderr and the checkpoint's step go to ``seen``."""
    def stop(proc: subprocess.Popen[str], out: Path) -> None:
        _kill_after(pattern, sig)(proc, out)
        code, err = _finish(proc)
        seen.update(code=code, err=err)
        if code == 128 + sig:  # the checkpoint of the stop, read before the resume
            seen["step"] = load_checkpoint(out / CHECKPOINT)[1]["step"]
    return stop


def _reference_run(out: Path) -> dict[str, Any]:
    done = subprocess.run(_command(RUN + ["--out", str(out), "--quiet"]), capture_output=True,
                          text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert _temps(out) == []
    return _outcome(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _reference_run(tmp_path_factory.mktemp("crash") / "reference")


KILL_POINTS = [
    (r"step +5/44", 0.0),               # first interval open, checkpoint of step 3
    (r"epoch +1/2 +test loss", 0.003),  # just after the evaluation of epoch 1
    (r"step +35/44", 0.001),            # late in the search
]
"""SIGKILL after the progress line matching the pattern, and a delay (seconds)."""
SIGNAL_POINTS = [(signal.SIGTERM, 143, r"step +10/44"), (signal.SIGINT, 130, r"step +25/44")]
"""SIGTERM/SIGINT, the exit status they must give, and the progress line to send after."""


# -- SIGKILL, SIGTERM and SIGINT of real processes ------------------------------------------

@pytest.mark.parametrize("pattern, delay", KILL_POINTS)
def test_S5_12a_sigkill_and_resume_is_identical(reference, tmp_path, pattern, delay) -> None:
    code, _ = _cycle(reference, tmp_path / "run", _kill_after(pattern, signal.SIGKILL, delay))
    assert code == -signal.SIGKILL


def test_S5_12b_sigkill_during_a_checkpoint_write_leaves_no_temporary_after_resume(
        reference, tmp_path) -> None:
    """A checkpoint every step, killed while one is written: the temporary file it leaves
    is removed by the resume, which continues identically."""
    caught = 0
    for attempt in range(3):  # the write takes a millisecond: a few tries catch one
        out = tmp_path / f"run{attempt}"
        before = STATS["killed_with_temp"]
        _cycle(reference, out, _kill_while_writing, ("--set", "run.checkpoint_every=1"))
        caught += STATS["killed_with_temp"] - before
        if caught:
            break
    assert caught, "no kill landed during a checkpoint write in 3 tries"


@pytest.mark.parametrize("sig, status, pattern", SIGNAL_POINTS)
def test_S5_12b_sigterm_and_sigint_checkpoint_and_exit_with_one_line(
        reference, tmp_path, sig, status, pattern) -> None:
    out = tmp_path / "run"
    seen: dict[str, Any] = {}
    _cycle(reference, out, _stop_with(sig, pattern, seen))
    code, err = seen["code"], seen["err"]
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    name = signal.Signals(sig).name
    match = re.fullmatch(rf"spikenm train: stopped by {name} at step (\d+)/{TOTAL}; checkpoint "
                         rf"written to (.+); continue with --resume\n", err)
    assert match, err
    assert int(match.group(1)) == seen["step"] and match.group(2) == str(out / CHECKPOINT)


def test_S5_12b_reproduce_stops_on_sigterm_and_continues(tmp_path) -> None:
    out = tmp_path / "grid"
    args = ["reproduce", "--quick", "--out", str(out), "--seeds", "1", "--patterns", "2:4",
            "--methods", "dense,srste", "--set", "optim.epochs=2",
            "--set", "model.hidden=16,16"]
    proc = subprocess.Popen(_command(args), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _read_until(proc, r"^\[1/2\] dense")
        proc.send_signal(signal.SIGTERM)
        code, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code == 0:
        pytest.fail(f"the grid finished before SIGTERM arrived: {err}")
    assert code == 143, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(r"spikenm reproduce: stopped by SIGTERM (in run 2 \(srste 2:4 seed 0\)"
                        r"|before run 2); 1 of 2 runs are saved in .*runs.json: run the same "
                        r"command to continue\n", err), err
    assert len(json.loads((out / "runs.json").read_text())["runs"]) == 1
    assert not (out / "results.json").exists() and _temps(out) == []
    done = subprocess.run(_command(args), capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("saved run reused") == 1
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 2


# -- in-process: signals at exact steps, folders, temporary files --------------------------

TINY = ["data.name=digits", "model.hidden=16,16", "run.quiet=true", "run.eval_every=0",
        "optim.epochs=1", "run.log_every=4", "run.checkpoint_every=5",
        "sparsity.method=spikenm"]


def _signal_at(monkeypatch: pytest.MonkeyPatch, sig: int, call: int) -> None:
    """Send ``sig`` to this process during train step number ``call`` (1-based)."""
    from spikenm.train import loop

    real, calls = loop.train_step, {"n": 0}

    def step(setup, state, cache):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == call:
            # never the default action (SIGTERM would end the test process)
            assert signal.getsignal(sig) not in (signal.SIG_DFL, signal.default_int_handler)
            os.kill(os.getpid(), sig)
        return real(setup, state, cache)

    monkeypatch.setattr(loop, "train_step", step)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_S5_12b_a_signal_stops_after_the_step_it_arrived_in(tmp_path, monkeypatch, sig
                                                            ) -> None:
    full = train(load_config(None, TINY + [f"run.out={tmp_path / 'a'}"]), stream=None)
    cfg = load_config(None, TINY + [f"run.out={tmp_path / 'b'}"])
    _signal_at(monkeypatch, sig, 7)
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as info:
        train(cfg, stream=None)
    assert signal.getsignal(sig) is before  # the handlers are restored
    assert info.value.signum == sig and info.value.exit_status == 128 + sig
    assert info.value.checkpoint == tmp_path / "b" / CHECKPOINT
    _, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert meta["step"] == 7  # the step in flight completes, then the stop
    assert meta["log"]["sums"]["steps"] == 3  # interval 5-8 open: steps 5, 6, 7
    monkeypatch.undo()
    resumed = train(cfg, resume=True, stream=None)
    for key in full.params:
        assert np.array_equal(full.params[key], resumed.params[key]), key
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in full.records]
    assert [{k: v for k, v in r.items() if k not in TIMING}
            for r in json.loads("[" + ",".join(
                (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) + "]")] == strip


def test_S5_12b_cli_exit_status_and_one_line_for_signals(tmp_path, monkeypatch, capsys
                                                          ) -> None:
    args = ["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1", "--quiet",
            "--set", "run.eval_every=0", "--out", str(tmp_path / "r")]
    _signal_at(monkeypatch, signal.SIGTERM, 3)
    assert main(args) == 143
    err = capsys.readouterr().err
    assert err == (f"spikenm train: stopped by SIGTERM at step 3/22; checkpoint written to "
                   f"{tmp_path / 'r' / CHECKPOINT}; continue with --resume\n")
    _signal_at(monkeypatch, signal.SIGINT, 2)
    assert main(args + ["--resume"]) == 130
    assert "stopped by SIGINT at step 5/22" in capsys.readouterr().err  # steps 4 and 5
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["steps"] == 22


def test_S5_12b_a_second_signal_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match="second SIGINT") as info:
        with stop_signals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stop.signum == signal.SIGINT and stop.name == "SIGINT"
            with stop_signals() as inner:  # nested: the same request
                assert inner is stop
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert info.value.exit_status == 130
    assert signal.getsignal(signal.SIGINT) is before


def test_S5_12b_an_ignored_signal_stays_ignored() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stop_signals() as stop:
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert stop.signum is None
    finally:
        signal.signal(signal.SIGTERM, before)


def test_S5_12b_out_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys
                                                                        ) -> None:
    out = tmp_path / "r"
    args = ["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1", "--quiet",
            "--set", "run.eval_every=0", "--out", str(out)]
    assert main(args) == 0
    first = (out / "summary.json").read_text()
    stamp = (out / "model.npz").stat().st_mtime_ns
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"spikenm train: run.out (--out) {str(out)!r} holds another run's files "
                   f"(checkpoint.npz, metrics.jsonl, model.npz, summary.json): continue it with "
                   f"--resume, replace it with --overwrite, or choose another folder\n")
    assert (out / "summary.json").read_text() == first  # untouched
    assert (out / "model.npz").stat().st_mtime_ns == stamp
    assert main(args + ["--resume"]) == 0
    assert main(args + ["--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 1 and (out / "notes.txt").read_text() == "mine"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["train", "summary"]  # no old records
    # a folder with only other files is not a run: a new run goes in beside them
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    assert main(args[:-1] + [str(other)]) == 0
    assert (other / "data.csv").read_text() == "1,2"


def test_S5_12b_out_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["train", "--quiet", "--out", str(path)]) == 2
    assert capsys.readouterr().err == (f"spikenm train: run.out (--out) {str(path)!r} is a "
                                       f"file, expected a folder (new or holding a run)\n")
    assert main(["reproduce", "--quick", "--out", str(path)]) == 2
    assert "is a file, expected a folder" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "--quiet", "--data", "digits", "--hidden", "16,16", "--epochs", "1",
                 "--out", str(run)]) == 0
    assert main(["reproduce", "--quick", "--out", str(run)]) == 2
    assert "holds a spikenm train run" in capsys.readouterr().err


def test_S5_12b_reproduce_removes_its_stale_temporary_files(tmp_path) -> None:
    import io

    from spikenm.train import reproduce

    out = tmp_path / "grid"
    out.mkdir()
    dead = _dead_pid()
    stale = [f".runs.json.spikenm-{dead}-a1b2c3d4.tmp", ".results.json.q1w2e3r4.tmp",
             f".report.md.spikenm-{dead}-a1b2c3d4.tmp"]
    kept = [f".checkpoint.npz.spikenm-{dead}-a1b2c3d4.tmp", "tmpa1b2c3d4.tmp"]
    for name in stale + kept:
        (out / name).write_text("x")
    grid = reproduce.Grid("micro", "digits", (0,), ("2:4",), ("dense",),
                          ("optim.epochs=1", "model.hidden=16,16"))
    stream = io.StringIO()
    reproduce.run_grid(grid, "numpy", out, stream=stream)
    assert "removed 3 stale temporary file(s) of a killed grid" in stream.getvalue()
    assert sorted(p.name for p in out.iterdir()) == sorted(kept + ["results.json",
                                                                   "runs.json"])


def _dead_pid() -> int:
    """A pid no process can have (above the kernel's pid_max)."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_S5_12b_only_our_stale_temporary_files_are_removed(tmp_path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    dead = _dead_pid()
    ours = [f".checkpoint.npz.spikenm-{dead}-a1b2c3d4.tmp",
            f".metrics.jsonl.spikenm-{dead}-zz_9y8x7.tmp",
            ".model.npz.k2j4h6g8.tmp",            # the pid-less form of earlier versions
            f".summary.json.spikenm-{dead}-00000000.tmp"]
    foreign = [f".checkpoint.npz.spikenm-{os.getpid()}-a1b2c3d4.tmp",  # a live writer
               f".checkpoint.npz.spikenm-{os.getppid()}-a1b2c3d4.tmp",
               f".data.npz.spikenm-{dead}-a1b2c3d4.tmp",  # not a file of a run
               ".checkpoint.npz.tmp", "checkpoint.npz.a1b2c3d4.tmp", "notes.tmp",
               f".checkpoint.npz.spikenm-{dead}-a1b2c3d4.tmp.keep",
               ".checkpoint.npz.A1B2C3D4.tmp"]
    for name in ours + foreign:
        (out / name).write_bytes(b"x" * 10)
    link = out / f".model.npz.spikenm-{dead}-linklink.tmp"
    link.symlink_to(tmp_path / "elsewhere")  # a link is never deleted
    folder = out / f".model.npz.spikenm-{dead}-dirdirdi.tmp"
    folder.mkdir()
    removed = prepare_out(out)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in out.iterdir()) == sorted(foreign + [link.name, folder.name])
    assert remove_stale_temps(tmp_path / "missing", RUN_FILES) == []


def test_S5_12b_a_run_removes_them_at_start_and_says_so(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert main(["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1", "--quiet",
                 "--set", "run.eval_every=0", "--out", str(out)]) == 0
    stale = out / f".checkpoint.npz.spikenm-{_dead_pid()}-a1b2c3d4.tmp"
    stale.write_bytes(b"x" * 1000)
    assert main(["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1",
                 "--set", "run.eval_every=0", "--out", str(out), "--resume"]) == 0
    assert f"removed 1 stale temporary file(s) of a killed run: {stale.name}" in \
        capsys.readouterr().out
    assert _temps(out) == []


def test_S5_12b_a_checkpoint_of_another_dtype_is_refused_by_name(tmp_path) -> None:
    from spikenm.train.checkpoint import save_checkpoint

    cfg = load_config(None, TINY + [f"run.out={tmp_path}"])
    train(cfg, stop_after=6, stream=None)
    arrays, meta = load_checkpoint(tmp_path / CHECKPOINT)
    arrays["params/layer1.weight"] = arrays["params/layer1.weight"].astype(np.float64)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "arrays")}
    save_checkpoint(tmp_path / CHECKPOINT, arrays, meta)
    with pytest.raises(ValueError, match=r"entry 'params/layer1.weight' is float64 of shape "
                                         r"\(16, 16\); the network expects float32"):
        train(cfg, resume=True, stream=None)
    del arrays["params/layer1.weight"]
    save_checkpoint(tmp_path / CHECKPOINT, arrays, meta)
    with pytest.raises(ValueError, match=r"does not fit the network: missing entries "
                                         r"\['params/layer1.weight'\]"):
        train(cfg, resume=True, stream=None)


def test_S5_12a_resumed_timing_counts_every_session(tmp_path) -> None:
    """``seconds`` and ``ms_per_step`` of a resumed run include the earlier session."""
    cfg = load_config(None, TINY + [f"run.out={tmp_path}"])
    train(cfg, stop_after=6, stream=None)
    _, meta = load_checkpoint(tmp_path / CHECKPOINT)
    elapsed = meta["log"]["elapsed"]
    assert elapsed > 0 and meta["log"]["sums"]["seconds"] > 0
    result = train(cfg, resume=True, stream=None)
    assert result.summary["seconds"] > elapsed


def test_S5_12b_a_bug_keeps_its_traceback_and_errors_can_show_theirs(monkeypatch, capsys
                                                                    ) -> None:
    from spikenm import cli

    def broken(args, argv):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["train"])
    monkeypatch.undo()
    assert main(["train", "--pattern", "3:2"]) == 2 and capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("SPIKENM_TRACEBACK", "1")
    with pytest.raises(ValueError, match="sparsity.pattern"):
        main(["train", "--pattern", "3:2"])
    monkeypatch.setattr(cli, "_run", lambda args, argv: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.delenv("SPIKENM_TRACEBACK")
    assert main(["train"]) == 130
    assert capsys.readouterr().err == "spikenm train: interrupted by SIGINT\n"


def _cli_cases() -> list[Any]:
    import error_cases_cli

    return error_cases_cli.CASES


@pytest.mark.parametrize("case", _cli_cases(), ids=lambda c: f"{c.function}: {c.kind}")
def test_S5_12b_every_cli_error_is_one_line_and_exit_2(case) -> None:
    """Each case of tests/error_cases_cli.py: exit status 2, one line naming the problem."""
    from error_catalogue import run

    outcome = run(case)
    assert outcome.verdict == "clear", (outcome.raised, outcome.text)


def test_zz_report_counts(capsys) -> None:
    """Print the kill/resume figures of this module (``pytest -s`` shows them)."""
    with capsys.disabled():
        print(f"\nkill/resume cycles {STATS['cycles']}: resumed identically "
              f"{STATS['identical']}; killed with a temporary file present "
              f"{STATS['killed_with_temp']} ({STATS['temps_after_kill']} files); "
              f"temporary files left after resume {STATS['temps_after_resume']}")
    assert STATS["identical"] == STATS["cycles"] and STATS["temps_after_resume"] == 0


def _script(rounds: int) -> int:
    """Repeat every kill/resume cycle of this module ``rounds`` times and print the
    counts (a failed comparison is counted, not raised)."""
    import tempfile

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ref = _reference_run(root / "reference")
        kills: list[tuple[Any, tuple[str, ...]]] = [
            (_kill_after(p, signal.SIGKILL, d), ()) for p, d in KILL_POINTS]
        kills.append((_kill_while_writing, ("--set", "run.checkpoint_every=1")))
        statuses = []
        for r in range(rounds):
            for sig, status, pattern in SIGNAL_POINTS:
                seen: dict[str, Any] = {}
                statuses.append((status, seen))
                kills.append((_stop_with(sig, pattern, seen), ()))
            for i, (kill, extra) in enumerate(kills):
                try:
                    _cycle(ref, root / f"r{r}-{i}", kill, extra)
                except AssertionError as exc:
                    failures += 1
                    print(f"cycle {r}-{i}: {exc}")
            kills = kills[:len(KILL_POINTS) + 1]
        clean = sum(seen.get("code") == status and len(seen.get("err", "").splitlines()) == 1
                    and "Traceback" not in seen.get("err", "") for status, seen in statuses)
    print(f"kill/resume cycles {STATS['cycles']}: resumed identically {STATS['identical']}; "
          f"killed with a temporary file present {STATS['killed_with_temp']} "
          f"({STATS['temps_after_kill']} files); temporary files left after resume "
          f"{STATS['temps_after_resume']}; SIGTERM/SIGINT stops with the documented status and "
          f"one line: {clean} of {len(statuses)}; failed cycles {failures}")
    return 1 if failures or clean != len(statuses) else 0


if __name__ == "__main__":  # python tests/test_crash_safety.py [ROUNDS]
    sys.exit(_script(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
