"""``spikenm train`` / ``spikenm reproduce`` command lines (smoke tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spikenm import cli
from spikenm.cli import main

FAST = ["--data", "digits", "--hidden", "32,32", "--set", "run.eval_every=0"]


def test_train_writes_metrics_checkpoint_model_and_summary(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--method", "spikenm", "--pattern", "2:4", "--backend", "numpy",
                 "--epochs", "1", "--out", str(out), *FAST, "--set", "run.log_every=5"])
    assert code == 0
    text = capsys.readouterr().out
    assert "step      5/22" in text and "loss" in text and "acc" in text
    assert "test accuracy" in text and "check_nm passed" in text and "mask flip rate" in text
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "train" and records[-1]["type"] == "summary"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "spikenm" and summary["pattern"] == "2:4"
    with np.load(out / "model.npz", allow_pickle=False) as z:
        assert "layer1.mask" in z.files and "layer0.mask" not in z.files
        assert {"layer0.weight", "layer0.bias", "layer2.weight"} <= set(z.files)
        meta = json.loads(str(z["__meta__"]))
    assert [n["op"] for n in meta["graph"]["nodes"]] == ["flatten", "linear", "lif", "linear",
                                                          "lif", "linear"]
    assert (out / "checkpoint.npz").is_file()


def test_train_resume_continues(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--method", "srste", "--epochs", "2", "--out", str(out), "--quiet", *FAST]
    assert main(args) == 0
    first = json.loads((out / "summary.json").read_text())
    assert main(args + ["--resume"]) == 0  # a finished run resumes to the same result
    again = json.loads((out / "summary.json").read_text())
    assert again["test_acc"] == first["test_acc"]


def test_flags_override_the_config_file(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sparsity]\nmethod = "dense"\n[optim]\nepochs = 5\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(out), "--quiet",
                 *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dense" and summary["steps"] == 22


def test_bad_flag_value_exits_2(capsys) -> None:
    assert main(["train", "--pattern", "3:2", "--quiet"]) == 2
    assert "sparsity.pattern='3:2'" in capsys.readouterr().err
    assert main(["reproduce", "--methods", "dense,magic"]) == 2


def test_reproduce_micro_grid(tmp_path, capsys) -> None:
    out = tmp_path / "grid"
    code = main(["reproduce", "--quick", "--out", str(out), "--seeds", "2", "--patterns",
                 "2:4", "--methods", "dense,spikenm,spikenm-noeid,srste", "--set",
                 "optim.epochs=1", "--set", "model.hidden=32,32"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| method | pattern | test acc" in text and "| spikenm | 2:4 |" in text
    assert "(a) 2:4 accuracy" in text and "(b1) EID lowers the mask flip rate" in text
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 2 + 3 * 2
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "flip_rate.png").is_file()


def test_console_script_runs_demo_and_train_help() -> None:
    done = subprocess.run([sys.executable, "-m", "spikenm.cli", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--no-eid" in done.stdout and "--resume" in done.stdout
    done = subprocess.run([sys.executable, "-m", "spikenm.cli", "demo"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "2:4" in done.stdout


def test_train_does_not_import_torch_or_jax(tmp_path) -> None:
    code = ("import sys; from spikenm.cli import main; "
            f"main(['train', '--epochs', '1', '--quiet', '--hidden', '32,32', '--out', "
            f"{str(tmp_path)!r}]); "
            "print('torch' in sys.modules, 'jax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_reproduce_cell_configs_user_settings_win() -> None:
    from spikenm.train.reproduce import FULL, QUICK, cells, run_config

    cfg = run_config(QUICK, "spikenm-noeid", "1:8", 2, "numpy", ("optim.epochs=1",))
    assert cfg.optim.epochs == 1 and cfg.model.hidden == (32, 32)
    assert (cfg.sparsity.method, cfg.sparsity.pattern, cfg.eid.enabled) == ("spikenm", "1:8",
                                                                             False)
    assert cfg.run.seed == 2 and cfg.data.name == "digits"
    assert len(cells(FULL)) == 3 * (1 + 6 * 4)


def test_arch_width_and_device_flags(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--arch", "vgg11", "--width-multiplier", "0.125", "--data", "digits",
                 "--epochs", "1", "--quiet", "--out", str(out), "--device", "cpu",
                 "--set", "data.train_limit=64", "--set", "data.test_limit=32",
                 "--batch-size", "32", "--set", "run.eval_every=0"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arch"] == "vgg11" and summary["width_multiplier"] == 0.125
    assert summary["device"] == "cpu" and summary["steps"] == 2
    assert all(r["check"].startswith("ok") for r in summary["layers"] if r["masked"])
    with np.load(out / "model.npz", allow_pickle=False) as z:
        assert "bn0.running_mean" in z.files and "bn0.gamma" in z.files
        assert z["layer1.weight"].shape == (16, 8, 3, 3)


def test_a_device_the_backend_lacks_is_named(capsys) -> None:
    assert main(["train", "--device", "cuda", "--quiet", *FAST]) == 2
    err = capsys.readouterr().err
    assert "cuda" in err and "numpy" in err


def test_blas_threads_leave_torch_threads_alone() -> None:
    """--blas-threads sets NumPy's OpenBLAS only; --torch-threads sets PyTorch's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}

    def threads(setup: str) -> list[str]:
        code = (f"import os; from spikenm import cli; {setup}; import torch; "
                "print(os.environ.get('OPENBLAS_NUM_THREADS'), torch.get_num_threads()); "
                "cli._set_torch_threads(1); print(torch.get_num_threads())")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    untouched = threads("pass")
    assert threads("cli._limit_blas_threads(1)") == ["1", untouched[1], "1"]
    with pytest.raises(ValueError, match="--torch-threads"):
        cli._set_torch_threads(0)


def test_reproduce_reuses_saved_runs_and_never_writes_a_partial_grid(tmp_path, monkeypatch
                                                                      ) -> None:
    """Re-running a grid reuses every finished run; an interrupted grid continues where it
    stopped and leaves the last complete results.json alone."""
    import io

    from spikenm.train import reproduce

    out = tmp_path / "grid"
    grid = reproduce.Grid("micro", "digits", (0, 1), ("2:4",), ("dense", "random"),
                          ("optim.epochs=1", "model.hidden=16,16"))
    real_train = reproduce.train
    calls: list[int] = []

    def counting(cfg, **kw):
        calls.append(cfg.run.seed)
        return real_train(cfg, **kw)

    monkeypatch.setattr(reproduce, "train", counting)
    first = reproduce.run_grid(grid, "numpy", out)
    assert len(first) == 4 and len(calls) == 4
    complete = (out / "results.json").read_text()

    stream = io.StringIO()
    again = reproduce.run_grid(grid, "numpy", out, stream=stream)
    assert len(calls) == 4, "a saved run was trained again"
    assert stream.getvalue().count("saved run reused") == 4
    assert [r["test_acc"] for r in again] == [r["test_acc"] for r in first]

    # a larger grid, interrupted after one new run: the new run is kept in runs.json,
    # results.json still holds the last complete grid
    bigger = reproduce.Grid("micro", "digits", (0, 1, 2), ("2:4",), ("dense", "random"),
                            grid.overrides)

    def interrupted(cfg, **kw):
        if len(calls) == 5:
            raise KeyboardInterrupt
        return counting(cfg, **kw)

    monkeypatch.setattr(reproduce, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_grid(bigger, "numpy", out)
    assert len(calls) == 5
    assert (out / "results.json").read_text() == complete
    assert len(json.loads((out / "runs.json").read_text())["runs"]) == 5

    monkeypatch.setattr(reproduce, "train", counting)
    final = reproduce.run_grid(bigger, "numpy", out)
    assert len(calls) == 6, "only the one missing cell may run"
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == len(final) == 6
    assert saved["key"]["grid"]["seeds"] == [0, 1, 2]


def test_reproduce_refuses_a_foreign_runs_file(tmp_path) -> None:
    from spikenm.train import reproduce

    out = tmp_path / "grid"
    out.mkdir()
    (out / "runs.json").write_text('{"something": 1}')
    grid = reproduce.Grid("micro", "digits", (0,), ("2:4",), ("dense",), ("optim.epochs=1",))
    with pytest.raises(ValueError, match="runs.json is not a spikenm reproduce run file"):
        reproduce.run_grid(grid, "numpy", out)
    assert (out / "runs.json").read_text() == '{"something": 1}'
