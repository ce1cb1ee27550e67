"""``spikenm train`` / ``spikenm reproduce`` command lines (smoke tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

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
        assert "layer1/mask" in z.files and "layer0/mask" not in z.files
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
    assert cfg.optim.epochs == 1 and cfg.model.hidden == (128, 128, 128)
    assert (cfg.sparsity.method, cfg.sparsity.pattern, cfg.eid.enabled) == ("spikenm", "1:8",
                                                                             False)
    assert cfg.run.seed == 2 and cfg.data.name == "digits"
    assert len(cells(FULL)) == 3 * (1 + 6 * 4)
