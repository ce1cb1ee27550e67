"""The ``spikenm`` console script: ``demo``, ``train``, ``reproduce``, ``report`` and
``export``.

Exit status: 0 done; 2 a usage error or a documented error (a `ValueError`, `TypeError`,
`ImportError` or `OSError` such as `FileNotFoundError`: a bad flag or configuration
value, an unreadable or foreign file, an output folder holding another run), printed
as one line ``spikenm COMMAND: message`` on stderr; 130 stopped by SIGINT (Ctrl-C), 143
stopped by SIGTERM, after the checkpoint of the stop is written (``train``) or the
finished runs are saved (``reproduce``), with one line saying so (S5.12b).  Any other
exception is a bug of spikenm and keeps its traceback.  With the environment variable
``SPIKENM_TRACEBACK=1`` documented errors keep their traceback too (for a bug report).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

TRAIN_FLAGS: dict[str, tuple[str, str]] = {
    # flag dest: (config key, help)
    "method": ("sparsity.method", "dense, spikenm, srste, asp, maskllm, random, or an import "
                                  "path package.module:METHOD"),
    "pattern": ("sparsity.pattern", "N:M pattern, e.g. 2:4, 1:4, 2:8"),
    "backend": ("run.backend", "numpy (reference, default), torch, jax, or an import path "
                               "package.module:FACTORY"),
    "device": ("run.device", "cpu (default), cuda, cuda:1, or a JAX device such as gpu:0"),
    "devices": ("run.devices", "jax backend: shard every batch over the first K devices of "
                               "--device's platform (1 default, 0 all; S4.16)"),
    "data": ("data.name", "digits, mnist5k (shipped), mnist, fashion_mnist, cifar10, cifar100"),
    "data_root": ("data.root", "folder of a local dataset (nothing is downloaded)"),
    "encoding": ("data.encoding", "direct (default) or poisson"),
    "arch": ("model.arch", "one of spikenm.snn.ARCHS: mlp, conv, vgg11, resnet19"),
    "width_multiplier": ("model.width_multiplier", "scale of every width and channel count, "
                                                   "e.g. 0.125 (default 1)"),
    "hidden": ("model.hidden", "hidden Linear widths, e.g. 256,256"),
    "time_steps": ("lif.time_steps", "number of time steps T"),
    "epochs": ("optim.epochs", "training epochs (the whole budget)"),
    "batch_size": ("optim.batch_size", "batch size"),
    "lr": ("optim.lr", "weight learning rate"),
    "seed": ("run.seed", "random seed"),
    "dtype": ("run.dtype", "float32 or float64"),
    "out": ("run.out", "output folder (metrics.jsonl, checkpoint.npz, model.npz, "
                       "summary.json); a folder holding another run is refused unless "
                       "--resume or --overwrite"),
}

EXIT_ERROR = 2
"""Exit status of a usage or documented error."""
DOCUMENTED_ERRORS = (ValueError, TypeError, ImportError, OSError)
"""What a command turns into a one-line error (`spikenm.train.config.ConfigError` is a
`ValueError`; `OSError` covers `FileNotFoundError`, `PermissionError`,
`IsADirectoryError` and `gzip.BadGzipFile`)."""

EPILOG = ("exit status: 0 done, 2 error (one line on stderr), 130 stopped by SIGINT, 143 "
          "stopped by SIGTERM (SIGINT/SIGTERM stop at the next step with a checkpoint; "
          "continue with --resume)")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too: ``PROG: message (see PROG
    --help)`` on stderr, exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _limit_blas_threads(threads: int) -> None:
    """Small matrix products are fastest on one BLAS thread.  Sets NumPy's OpenBLAS only
    (``OPENBLAS_NUM_THREADS``, before NumPy loads its BLAS; else threadpoolctl when
    installed), so PyTorch keeps its own thread count (see ``--torch-threads``)."""
    value = str(threads)
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", value)
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads, user_api="blas")


def _set_torch_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when asked (torch is imported only then)."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--torch-threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train one spiking network with an N:M method",
                       description="Train one SNN. Flags override the --config file.",
                       epilog=EPILOG)
    p.add_argument("--config", help="TOML or JSON configuration file, or the name of a shipped "
                                    "one (e.g. mnist5k_conv; spikenm.train.config."
                                    "bundled_configs())")
    for dest, (key, text) in TRAIN_FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, help=f"{text} [{key}]")
    p.add_argument("--no-eid", action="store_true", help="spikenm without EID [eid.enabled]")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (bit-identical on the same backend)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run files already in OUT (checkpoint.npz, metrics.jsonl, "
                        "model.npz, summary.json) and start afresh")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any other configuration key (repeatable)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="NumPy BLAS threads (default 1)")
    p.add_argument("--torch-threads", type=int,
                   help="PyTorch intra-op threads (default: PyTorch's own choice)")


def _add_reproduce_parser(sub: Any) -> None:
    p = sub.add_parser("reproduce", help="run the method x pattern x seed grid and report",
                       description="Run the comparison grid, print a markdown table, write "
                                   "plots and say which paper claims were reproduced. Every "
                                   "finished run is saved in OUT/runs.json: the same command "
                                   "continues an interrupted grid.",
                       epilog=EPILOG.replace("at the next step with a checkpoint; continue "
                                             "with --resume", "after saving the finished "
                                             "runs; run the same command to continue"))
    p.add_argument("--quick", action="store_true",
                   help="the small grid on the 8x8 digits (a few minutes on 2 cores)")
    p.add_argument("--backend", default="numpy", help="numpy (default), torch or jax")
    p.add_argument("--out", default="spikenm-reproduce",
                   help="output folder (runs.json, results.json, report.md, plots); a "
                        "folder holding a train run is refused")
    p.add_argument("--seeds", type=int, help="number of seeds (default: 5 quick, 3 full)")
    p.add_argument("--patterns", help="comma-separated patterns, e.g. 2:4,1:4,2:8")
    p.add_argument("--methods", help="comma-separated grid variants (default: dense,spikenm,"
                                     "spikenm-noeid,srste,asp,maskllm,random; also the EID "
                                     "variants spikenm-global, spikenm-block, spikenm-gated, "
                                     "spikenm-inclusion, spikenm-signed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="configuration override for every run (repeatable)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="NumPy BLAS threads (default 1)")
    p.add_argument("--torch-threads", type=int,
                   help="PyTorch intra-op threads (default: PyTorch's own choice)")


def _add_report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="operation counts and energy of a finished run",
                       description="Per layer: dense and N:M MACs, synaptic operations from "
                                   "the run's test firing rates, estimated energy (SPEC S7); "
                                   "totals, a markdown table (or JSON) and a PNG chart.",
                       epilog="exit status: 0 done, 2 error (one line on stderr)")
    p.add_argument("run_dir", help="folder of a finished `spikenm train --out` run")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--preset", default="45nm-fp32",
                   help="energy constants: 45nm-fp32 (default), 45nm-fp16, 45nm-int32, "
                        "45nm-int8")
    p.add_argument("--mac-pj", type=float, help="energy of one MAC in pJ (overrides --preset)")
    p.add_argument("--ac-pj", type=float,
                   help="energy of one accumulate in pJ (overrides --preset)")
    p.add_argument("--png", help="chart file (default RUN_DIR/energy.png)")


def _report(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from .energy import PRESETS
    from .runs import load_run

    if args.preset not in PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; expected one of "
                         f"{', '.join(PRESETS)}")
    constants = PRESETS[args.preset]
    if args.mac_pj is not None or args.ac_pj is not None:
        constants = replace(constants, name="custom",
                            mac_pj=constants.mac_pj if args.mac_pj is None else args.mac_pj,
                            ac_pj=constants.ac_pj if args.ac_pj is None else args.ac_pj)
    report = load_run(args.run_dir).energy(constants)
    png = report.plot(Path(args.png) if args.png else Path(args.run_dir) / "energy.png")
    if args.json:
        print(json.dumps({**report.to_dict(), "png": str(png)}, indent=1))
    else:
        print(report.markdown())
        print(f"\nchart: {png}")
    return 0


def _add_export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a finished run's network to a file",
                       description="Export the trained network of a run folder (give "
                                   "--safetensors, --nir or both): --safetensors writes "
                                   "every masked layer packed N:M and the other parameters "
                                   "and batch-norm statistics dense in one file (SPEC "
                                   "S3.7); --nir writes the network as a NIR graph with "
                                   "batch norm folded, for snnTorch's import_from_nir and "
                                   "Norse's from_nir(graph, dt=1e-4) (SPEC S4.12c).",
                       epilog="exit status: 0 done, 2 error (one line on stderr)")
    p.add_argument("run_dir", help="folder of a finished `spikenm train --out` run")
    p.add_argument("--safetensors", metavar="FILE", help="the .safetensors file to write")
    p.add_argument("--nir", metavar="FILE", help="the NIR (HDF5) file to write")
    p.add_argument("--nir-readers", default="snntorch,norse", metavar="NAMES",
                   help="comma-separated importers that must rebuild the network exactly: "
                        "snntorch, norse, spikenm (default snntorch,norse; a conv run with "
                        "pooling needs snntorch, a soft reset spikenm alone)")


def _export(args: argparse.Namespace) -> int:
    from .runs import load_run

    if args.safetensors is None and args.nir is None:
        raise ValueError("nothing to write: give --safetensors FILE, --nir FILE or both")
    run = load_run(args.run_dir)
    if args.nir is not None:
        from .nir_io import export_run

        readers = tuple(r.strip() for r in args.nir_readers.split(","))
        graph = export_run(run, args.nir, readers=readers)
        print(f"wrote {args.nir}: NIR graph of {len(graph.nodes)} nodes for "
              f"{', '.join(readers)} (dt {graph.metadata['spikenm.dt']:g}, T "
              f"{graph.metadata['spikenm.time_steps']}, pattern "
              f"{graph.metadata['spikenm.pattern']})")
    if args.safetensors is not None:
        names = run.export_safetensors(args.safetensors)
        print(f"wrote {args.safetensors}: {len(names['packed'])} packed "
              f"({', '.join(names['packed']) or 'none'}), {len(names['dense'])} dense tensors")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spikenm")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown (not installed)"


def _train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.loop import train

    overrides = [f"{TRAIN_FLAGS[d][0]}={getattr(args, d)}" for d in TRAIN_FLAGS
                 if getattr(args, d) is not None]
    if args.no_eid:
        overrides.append("eid.enabled=false")
    if args.quiet:
        overrides.append("run.quiet=true")
    overrides += args.set
    cfg = load_config(args.config, overrides)
    _set_torch_threads(args.torch_threads)
    train(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from dataclasses import replace

    from .train.config import config_from_dict, load_config
    from .train.reproduce import FULL, QUICK, VARIANTS, run_grid, write_report

    grid = QUICK if args.quick else FULL
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        grid = replace(grid, seeds=tuple(range(args.seeds)))
    if args.patterns:
        grid = replace(grid, patterns=tuple(p.strip() for p in args.patterns.split(",")))
    if args.methods:
        chosen = tuple(v.strip() for v in args.methods.split(","))
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; expected {VARIANTS}")
        grid = replace(grid, variants=chosen)
    overrides = tuple(args.set)
    load_config(None, list(grid.overrides) + list(overrides))
    for p in grid.patterns:
        config_from_dict({"sparsity": {"pattern": p}})
    _set_torch_threads(args.torch_threads)
    print(f"spikenm reproduce ({grid.name}): data {grid.data}, backend {args.backend}, "
          f"seeds {list(grid.seeds)}, patterns {list(grid.patterns)}, "
          f"methods {list(grid.variants)} -> {args.out}", flush=True)
    run_grid(grid, args.backend, args.out, overrides, stream=sys.stdout)
    command = "spikenm " + " ".join(shlex.quote(a) for a in argv)
    print(write_report(grid, args.backend, args.out, command, overrides))
    return 0


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` on one line (the exception's type when it has no message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run a ``train``/``reproduce`` command with SIGINT/SIGTERM stopping it at its next
    safe point (`spikenm.train.loop.stop_signals`)."""
    from .train.loop import stop_signals

    with stop_signals() as stop:
        code = _train(args) if args.command == "train" else _reproduce(args, argv)
    if stop.signum is not None:  # arrived after the last safe point: the work is done
        print(f"spikenm {args.command}: {stop.name} arrived after the work was done",
              file=sys.stderr)
        return 128 + stop.signum
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the console script with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status (see the module docstring).

    The documented errors of every command (`DOCUMENTED_ERRORS`) and the stop of SIGINT
    or SIGTERM become one line on stderr and a non-zero status; any other exception is
    a bug and propagates with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="spikenm", description=__doc__.split("\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"spikenm {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample, pack and export a 2:4 mask for one layer")
    demo.add_argument("--seed", type=int, default=0)
    _add_train_parser(sub)
    _add_reproduce_parser(sub)
    _add_report_parser(sub)
    _add_export_parser(sub)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the subcommand's parser, on one line
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "demo":
            from .demo import print_demo, run_demo

            if args.seed < 0:
                raise ValueError(f"--seed must be >= 0, got {args.seed}")
            print_demo(run_demo(seed=args.seed))
            return 0
        if args.command == "report":
            return _report(args)
        if args.command == "export":
            return _export(args)
        _limit_blas_threads(args.blas_threads)
        return _run(args, argv)
    except KeyboardInterrupt as exc:
        # `spikenm.train.loop.Interrupted` (a stop signal) carries its status; a bare
        # KeyboardInterrupt is Ctrl-C outside the trainer's safe points
        text = _one_line(exc) if str(exc) else "interrupted by SIGINT"
        print(f"spikenm {args.command}: {text}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 130))
    except DOCUMENTED_ERRORS as exc:
        if os.environ.get("SPIKENM_TRACEBACK") == "1":
            raise
        print(f"spikenm {args.command}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
