"""Error-catalogue cases of the command line (SPEC S5.12b): each command x each kind of bad
input.

Every case runs ``spikenm.cli.main`` in this process (its arguments may name files in a
fresh temporary folder, ``{tmp}`` in an argument).  The command must exit with status 2
after exactly one line ``spikenm COMMAND: message`` on stderr: the call then raises
`Exit2` with that line as its message, which the case's regex must match.  Exit status 0
returns (a silent case); any other status or more than one line raises `AssertionError`
(an unclear case); an exception escaping ``main`` is a bug and escapes the call.
`tests/test_crash_safety.py` runs every case.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Callable

import numpy as np

from error_catalogue import Case
from spikenm.cli import main
from spikenm.train.checkpoint import load_checkpoint, save_checkpoint

Prepare = Callable[[Path], None]


class Exit2(Exception):
    """The command exited with status 2 after one line on stderr (this message)."""


def _command(argv: list[str], prepare: Prepare | None = None) -> Callable[[], None]:
    def call() -> None:
        folder = Path(tempfile.mkdtemp(prefix="spikenm-errors-"))
        try:
            if prepare is not None:
                prepare(folder)
            args = [a.replace("{tmp}", str(folder)) for a in argv]
            err = io.StringIO()
            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                try:
                    status = main(args)
                except SystemExit as exc:  # argparse's usage errors
                    status = exc.code if isinstance(exc.code, int) else 1
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        lines = err.getvalue().splitlines()
        if status == 0:
            return
        prog = "spikenm" if args[0].startswith("-") or args[0] not in (
            "demo", "train", "reproduce", "report", "export") else f"spikenm {args[0]}"
        if status != 2 or len(lines) != 1 or not lines[0].startswith(prog + ": "):
            raise AssertionError(f"exit status {status}, stderr {err.getvalue()!r}")
        raise Exit2(lines[0])
    return call


TRAIN = ["train", "--data", "digits", "--hidden", "16,16", "--epochs", "1", "--quiet",
         "--set", "run.eval_every=0"]
_RUN: dict[str, Path] = {}


def _a_run(folder: Path, stop_after: int | None = None) -> Path:
    """A copy of one small run's folder (trained once per process) in ``folder/run``."""
    key = f"stopped{stop_after}"
    if key not in _RUN:
        from spikenm.train.config import load_config
        from spikenm.train.loop import train

        source = Path(tempfile.mkdtemp(prefix="spikenm-errors-run-")) / "run"
        cfg = load_config(None, ["data.name=digits", "model.hidden=16,16", "optim.epochs=1",
                                 "run.quiet=true", "run.eval_every=0", f"run.out={source}"])
        train(cfg, stop_after=stop_after, stream=None)
        _RUN[key] = source
    shutil.copytree(_RUN[key], folder / "run")
    return folder / "run"


def _rewrite_checkpoint(folder: Path, change: Callable[[dict[str, np.ndarray]], None]
                        ) -> None:
    run = _a_run(folder, stop_after=4)
    arrays, meta = load_checkpoint(run / "checkpoint.npz")
    change(arrays)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "arrays")}
    save_checkpoint(run / "checkpoint.npz", arrays, meta)


def _to_float64(arrays: dict[str, np.ndarray]) -> None:
    arrays["params/layer0.weight"] = arrays["params/layer0.weight"].astype(np.float64)


def _flip_bytes(folder: Path) -> None:
    path = _a_run(folder, stop_after=4) / "checkpoint.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    path = _a_run(folder, stop_after=4) / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:1000])


def _bad_gzip_mnist(folder: Path) -> None:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(b"not a gzip stream")


def _truncated_gzip_mnist(folder: Path) -> None:
    _bad_gzip_mnist(folder)
    images = np.zeros((10, 28, 28), np.uint8)
    labels = np.zeros(10, np.uint8)
    for path in (folder / "MNIST" / "raw").iterdir():
        a = images if "images" in path.name else labels
        idx = bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
        data = gzip.compress(idx + a.tobytes())
        path.write_bytes(data[:len(data) // 2])


def _write(name: str, text: str) -> Prepare:
    def prepare(folder: Path) -> None:
        (folder / name).write_text(text)
    return prepare


def _mkdir(name: str) -> Prepare:
    def prepare(folder: Path) -> None:
        (folder / name).mkdir()
    return prepare


def _train_case(kind: str, extra: list[str], message: str, prepare: Prepare | None = None
                ) -> Case:
    return Case("spikenm train", kind, _command(TRAIN + extra, prepare), Exit2, message)


GRID = ["reproduce", "--quick", "--seeds", "1", "--patterns", "2:4", "--methods", "dense",
        "--set", "optim.epochs=1", "--set", "model.hidden=16,16"]


def _grid_case(kind: str, extra: list[str], message: str, prepare: Prepare | None = None
               ) -> Case:
    return Case("spikenm reproduce", kind, _command(GRID + extra, prepare), Exit2, message)


def _copy_run(folder: Path) -> None:
    _a_run(folder)


CASES: list[Any] = [
    # -- spikenm train: flags and configuration
    _train_case("invalid N:M pattern", ["--pattern", "3:2"], r"sparsity\.pattern='3:2'"),
    _train_case("non-numeric flag value", ["--lr", "fast"], r"optim\.lr"),
    _train_case("unknown --set key", ["--set", "optim.speed=2"], r"optim\.speed"),
    _train_case("--set without '='", ["--set", "optim.lr"], r"optim\.lr"),
    _train_case("unknown method", ["--method", "magic"], r"magic"),
    _train_case("method import path that does not exist", ["--method", "nowhere.mod:METHOD"],
                r"nowhere"),
    _train_case("unknown backend", ["--backend", "fortran"], r"fortran"),
    _train_case("device the backend lacks", ["--device", "cuda"], r"cuda"),
    _train_case("--devices on a backend that does not shard", ["--devices", "2"],
                r"run\.devices=2 is invalid; expected 1 with run\.backend='numpy'"),
    _train_case("--devices more than exist", ["--backend", "jax", "--devices", "2"],
                r"devices=2 asks for 2 cpu devices; 1 exist here"),
    _train_case("--batch-size not a multiple of --devices",
                ["--backend", "jax", "--devices", "3", "--batch-size", "64"],
                r"optim\.batch_size=64 is invalid; expected a multiple of run\.devices=3"),
    _train_case("unknown dataset", ["--data", "imagenet"], r"imagenet"),
    _train_case("zero epochs", ["--epochs", "0"], r"optim\.epochs"),
    _train_case("--torch-threads 0", ["--torch-threads", "0"], r"--torch-threads must be >= 1"),
    _train_case("--blas-threads not an integer", ["--blas-threads", "x"],
                r"argument --blas-threads: invalid int value: 'x'"),
    _train_case("unknown flag", ["--speed", "2"], r"unrecognized arguments: --speed"),
    _train_case("--config file missing", ["--config", "{tmp}/none.toml"], r"none\.toml"),
    _train_case("--config not TOML", ["--config", "{tmp}/c.toml"], r"c\.toml",
                _write("c.toml", "[optim\nlr = = 1")),
    _train_case("--config is a folder", ["--config", "{tmp}/c.toml"], r"c\.toml",
                _mkdir("c.toml")),
    # -- spikenm train: data files
    _train_case("--data-root missing", ["--data", "mnist", "--data-root", "{tmp}/none"],
                r"none"),
    _train_case("corrupt .gz dataset file", ["--data", "mnist", "--data-root", "{tmp}"],
                r"idx\d-ubyte", _bad_gzip_mnist),
    _train_case("truncated .gz dataset file", ["--data", "mnist", "--data-root", "{tmp}"],
                r"idx\d-ubyte", _truncated_gzip_mnist),
    # -- spikenm train: output folder and checkpoints
    _train_case("--out is a file", ["--out", "{tmp}/file"],
                r"run\.out \(--out\) '.*file' is a file, expected a folder",
                _write("file", "x")),
    _train_case("--out holds another run", ["--out", "{tmp}/run"],
                r"holds another run's files \(checkpoint\.npz, metrics\.jsonl, model\.npz, "
                r"summary\.json\): continue it with --resume, replace it with --overwrite",
                _copy_run),
    _train_case("--resume with --overwrite", ["--out", "{tmp}/run", "--resume", "--overwrite"],
                r"--resume and --overwrite exclude each other", _copy_run),
    _train_case("--resume without --out", ["--resume"], r"--resume needs run\.out"),
    _train_case("--resume without a checkpoint", ["--out", "{tmp}/empty", "--resume"],
                r"no checkpoint at '.*checkpoint\.npz' to resume from", _mkdir("empty")),
    _train_case("--resume with another configuration",
                ["--out", "{tmp}/run", "--resume", "--pattern", "1:4"],
                r"cannot resume from .*: the configuration differs \(sparsity\.pattern",
                _copy_run),
    _train_case("--resume, checkpoint weight dtype changed", ["--out", "{tmp}/run", "--resume"],
                r"'params/layer0\.weight' is float64 .* the network expects float32",
                lambda f: _rewrite_checkpoint(f, _to_float64)),
    _train_case("--resume, checkpoint entry missing", ["--out", "{tmp}/run", "--resume"],
                r"missing entries \['params/layer0\.bias'\]",
                lambda f: _rewrite_checkpoint(f, lambda a: a.pop("params/layer0.bias"))),
    _train_case("--resume, checkpoint bytes flipped", ["--out", "{tmp}/run", "--resume"],
                r"checkpoint\.npz", _flip_bytes),
    _train_case("--resume, checkpoint truncated", ["--out", "{tmp}/run", "--resume"],
                r"checkpoint\.npz", _truncate),
    # -- spikenm reproduce
    _grid_case("--seeds 0", ["--seeds", "0"], r"--seeds must be >= 1, got 0"),
    _grid_case("unknown method", ["--methods", "dense,magic"], r"unknown method\(s\) \['magic'\]"),
    _grid_case("invalid pattern", ["--patterns", "3:2"], r"3:2"),
    _grid_case("unknown --set key", ["--set", "optim.speed=2"], r"optim\.speed"),
    _grid_case("unknown backend", ["--backend", "fortran", "--out", "{tmp}/g"], r"fortran"),
    _grid_case("--seeds not an integer", ["--seeds", "two"],
               r"argument --seeds: invalid int value: 'two'"),
    _grid_case("--out is a file", ["--out", "{tmp}/file"],
               r"--out '.*file' is a file, expected a folder", _write("file", "x")),
    _grid_case("--out holds a train run", ["--out", "{tmp}/run"],
               r"holds a spikenm train run \(checkpoint\.npz", _copy_run),
    _grid_case("--out holds a foreign runs.json", ["--out", "{tmp}"],
               r"runs\.json is not a spikenm reproduce run file",
               _write("runs.json", '{"something": 1}')),
    _grid_case("--out holds a runs.json that is not JSON", ["--out", "{tmp}"],
               r"runs\.json is not a spikenm reproduce run file",
               _write("runs.json", "{runs: [")),
    # -- spikenm report
    Case("spikenm report", "folder without a finished run", _command(["report", "{tmp}"]),
         Exit2, r"model\.npz' not found: .* is not a finished training run"),
    Case("spikenm report", "unknown --preset",
         _command(["report", "{tmp}/run", "--preset", "3nm"], _copy_run), Exit2,
         r"--preset '3nm' is unknown; expected one of 45nm-fp32"),
    Case("spikenm report", "negative --mac-pj",
         _command(["report", "{tmp}/run", "--mac-pj", "-1"], _copy_run), Exit2,
         r"mac_pj=-1\.0 is invalid; expected a finite number >= 0"),
    Case("spikenm report", "--ac-pj not a number",
         _command(["report", "{tmp}/run", "--ac-pj", "x"]), Exit2,
         r"argument --ac-pj: invalid float value: 'x'"),
    Case("spikenm report", "corrupt summary.json",
         _command(["report", "{tmp}/run"], lambda f: (_copy_run(f),
                                                     (f / "run" / "summary.json").write_text("{"))),
         Exit2, r"summary\.json. is not a training summary"),
    # -- spikenm export
    Case("spikenm export", "folder without a finished run",
         _command(["export", "{tmp}", "--safetensors", "{tmp}/m.safetensors"]), Exit2,
         r"model\.npz' not found: .* is not a finished training run"),
    Case("spikenm export", "no output file named", _command(["export", "{tmp}"]), Exit2,
         r"nothing to write: give --safetensors FILE, --nir FILE or both"),
    Case("spikenm export", "--nir is a folder",
         _command(["export", "{tmp}/run", "--nir", "{tmp}"], _copy_run), Exit2,
         r"is a folder; expected the path of a file to write"),
    Case("spikenm export", "unknown --nir-readers",
         _command(["export", "{tmp}/run", "--nir", "{tmp}/n.nir", "--nir-readers", "lava"],
                  _copy_run), Exit2,
         r"readers=\('lava',\): expected one or more of \('snntorch', 'norse', 'spikenm'\)"),
    Case("spikenm export", "--safetensors is a folder",
         _command(["export", "{tmp}/run", "--safetensors", "{tmp}"], _copy_run), Exit2,
         r"is a folder; expected the path of a file to write"),
    # -- spikenm demo and the command itself
    Case("spikenm demo", "negative --seed", _command(["demo", "--seed", "-1"]), Exit2,
         r"--seed must be >= 0, got -1"),
    Case("spikenm demo", "--seed not an integer", _command(["demo", "--seed", "x"]), Exit2,
         r"argument --seed: invalid int value: 'x'"),
    Case("spikenm", "unknown command", _command(["trian"]), Exit2,
         r"invalid choice: 'trian'"),
]
