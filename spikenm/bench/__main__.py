"""``python -m spikenm.bench [--quick] [--threads N] [--only spmm,pack,...] [--json FILE]``.

Pins the threads, measures this machine's copy bandwidth and float32 matmul peak in the
same run, then prints every topic's tables (`spikenm.bench.TOPICS`) as markdown; ``--json``
also writes them as JSON.  Only ratios measured side by side in this one run are printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import TOPICS
from .timing import machine_limits, pin_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikenm.bench",
                                     description="spikenm benchmarks: ratios in one run")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="threads for BLAS, Numba, "
                        "torch (default 1)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {TOPICS}")
    parser.add_argument("--json", default="", help="also write the tables to this file")
    args = parser.parse_args(argv)
    topics = [t for t in args.only.split(",") if t] or list(TOPICS)
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        parser.error(f"--only {','.join(unknown)} is not a topic; expected some of {TOPICS}")
    if args.json and Path(args.json).is_dir():
        parser.error(f"--json {args.json} is a folder; expected a file name")
    pinned = pin_threads(args.threads)
    limits = machine_limits(repeats=5 if args.quick else 10, size_mb=64 if args.quick else 256)
    print(f"# spikenm benchmarks ({'quick' if args.quick else 'full'})\n")
    print(f"Python {platform.python_version()} on {platform.machine()}, threads {pinned}; "
          f"this run measured copy {limits['copy_gbs']:.1f} GB/s (read + write) and float32 "
          f"matmul {limits['matmul_gflops']:.0f} GFLOP/s. Ratios only: the machine may be "
          f"shared.\n")
    out: dict[str, object] = {"threads": pinned, "limits": limits, "topics": {}}
    t0 = time.perf_counter()
    for topic in topics:
        module = importlib.import_module(f"spikenm.bench.{topic}")
        tables = module.tables(args.quick)
        for table in tables:
            print(table.markdown(), "\n", flush=True)
        out["topics"][topic] = [asdict(t) for t in tables]  # type: ignore[index]
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
