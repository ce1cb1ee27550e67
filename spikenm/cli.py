"""The ``spikenm`` console script: ``demo``, ``train`` and ``reproduce``."""

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
    "out": ("run.out", "output folder (metrics.jsonl, checkpoint.npz, model.npz, summary.json)"),
}


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
                       description="Train one SNN. Flags override the --config file.")
    p.add_argument("--config", help="TOML or JSON configuration file")
    for dest, (key, text) in TRAIN_FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, help=f"{text} [{key}]")
    p.add_argument("--no-eid", action="store_true", help="spikenm without EID [eid.enabled]")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (bit-identical on the same backend)")
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
                                   "plots and say which paper claims were reproduced.")
    p.add_argument("--quick", action="store_true",
                   help="the small grid on the 8x8 digits (a few minutes on 2 cores)")
    p.add_argument("--backend", default="numpy", help="numpy (default), torch or jax")
    p.add_argument("--out", default="spikenm-reproduce", help="output folder")
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


def _train(args: argparse.Namespace) -> int:
    from .train.config import ConfigError, load_config
    from .train.loop import train

    overrides = [f"{TRAIN_FLAGS[d][0]}={getattr(args, d)}" for d in TRAIN_FLAGS
                 if getattr(args, d) is not None]
    if args.no_eid:
        overrides.append("eid.enabled=false")
    if args.quiet:
        overrides.append("run.quiet=true")
    overrides += args.set
    try:
        cfg = load_config(args.config, overrides)
        _set_torch_threads(args.torch_threads)
        train(cfg, resume=args.resume)
    except (ConfigError, ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"spikenm train: {exc}", file=sys.stderr)
        return 2
    return 0


def _reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from dataclasses import replace

    from .train.config import ConfigError, config_from_dict, load_config
    from .train.reproduce import FULL, QUICK, VARIANTS, run_grid, write_report

    grid = QUICK if args.quick else FULL
    if args.seeds is not None:
        if args.seeds < 1:
            print(f"spikenm reproduce: --seeds must be >= 1, got {args.seeds}", file=sys.stderr)
            return 2
        grid = replace(grid, seeds=tuple(range(args.seeds)))
    if args.patterns:
        grid = replace(grid, patterns=tuple(p.strip() for p in args.patterns.split(",")))
    if args.methods:
        chosen = tuple(v.strip() for v in args.methods.split(","))
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            print(f"spikenm reproduce: unknown method(s) {unknown}; expected {VARIANTS}",
                  file=sys.stderr)
            return 2
        grid = replace(grid, variants=chosen)
    overrides = tuple(args.set)
    try:
        load_config(None, list(grid.overrides) + list(overrides))
        for p in grid.patterns:
            config_from_dict({"sparsity": {"pattern": p}})
        _set_torch_threads(args.torch_threads)
    except (ConfigError, ValueError) as exc:
        print(f"spikenm reproduce: {exc}", file=sys.stderr)
        return 2
    print(f"spikenm reproduce ({grid.name}): data {grid.data}, backend {args.backend}, "
          f"seeds {list(grid.seeds)}, patterns {list(grid.patterns)}, "
          f"methods {list(grid.variants)} -> {args.out}", flush=True)
    run_grid(grid, args.backend, args.out, overrides, stream=sys.stdout)
    command = "spikenm " + " ".join(shlex.quote(a) for a in argv)
    print(write_report(grid, args.backend, args.out, command, overrides))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="spikenm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample, pack and export a 2:4 mask for one layer")
    demo.add_argument("--seed", type=int, default=0)
    _add_train_parser(sub)
    _add_reproduce_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import print_demo, run_demo

        print_demo(run_demo(seed=args.seed))
        return 0
    _limit_blas_threads(args.blas_threads)
    if args.command == "train":
        return _train(args)
    return _reproduce(args, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
