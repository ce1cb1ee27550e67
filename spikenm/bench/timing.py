"""Shared measuring rules of ``python -m spikenm.bench`` (the benchmark command).

Rules every table follows: threads are pinned and stated (`pin_threads`); the contenders of
one comparison are *interleaved* in one process (`compare`: round-robin repeats, so a noisy
neighbour slows all of them alike) and reported as min and median; only ratios measured in
the same run are printed; the machine's own limits (copy bandwidth, float32 matmul peak)
are measured in the same run (`machine_limits`) so a figure can be given as a fraction of
what this machine can do.  Nothing here asserts a speed: timings never go in unit tests.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Timing", "compare", "pin_threads", "machine_limits", "ratio_row"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one contender: ``min`` and ``median`` over the repeats."""

    min: float
    median: float
    repeats: int


def pin_threads(threads: int = 1) -> dict[str, Any]:
    """Pin NumPy's BLAS (threadpoolctl when installed, else the usual environment
    variables, which only act before NumPy loads), Numba and, when it is imported, torch to
    ``threads``; returns what was set, for the report header."""
    if threads < 1:
        raise ValueError(f"threads={threads!r} is invalid; expected an integer >= 1")
    # Numba's own variable is left alone: changing it after its thread pool started makes
    # the next compilation fail; `numba.set_num_threads` below is the supported way.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    info: dict[str, Any] = {"threads": threads}
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
        info["blas"] = "threadpoolctl"
    except ImportError:
        info["blas"] = "environment"
    try:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        info["numba"] = numba.get_num_threads()
    except ImportError:
        pass
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(threads)
        info["torch"] = torch.get_num_threads()
    return info


def compare(contenders: Mapping[str, Callable[[], Any]], repeats: int = 20,
            min_seconds: float = 0.0) -> dict[str, Timing]:
    """Time every contender ``repeats`` times, interleaved round-robin after one warm-up
    call each (compilation, caches); with ``min_seconds`` a call that is faster than that is
    repeated inside one timing so the clock's resolution does not matter (the repeat count
    is set from a second, warm call: a first call that builds a cache must not make it 1)."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} is invalid; expected an integer >= 1")
    inner: dict[str, int] = {}
    for name, fn in contenders.items():
        fn()  # warm-up: compilation, caches built on first use
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        inner[name] = max(1, int(min_seconds / once)) if once > 0 and min_seconds else 1
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            k = inner[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            times[name].append((time.perf_counter() - t0) / k)
    return {name: Timing(min(t), float(np.median(t)), repeats) for name, t in times.items()}


def machine_limits(repeats: int = 10, size_mb: int = 256) -> dict[str, float]:
    """This machine's limits under the pinned threads, measured now: ``copy_gbs`` (bytes
    read plus written per second by ``np.copyto`` of a ``size_mb`` float32 array, in GB/s)
    and ``matmul_gflops`` (float32 1024x1024 @ 1024x1024, best of the repeats)."""
    n = size_mb * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    a = np.ones((1024, 1024), np.float32)
    t = compare({"copy": lambda: np.copyto(dst, src), "matmul": lambda: a @ a},
                repeats=repeats)
    return {"copy_gbs": 2 * src.nbytes / t["copy"].min / 1e9,
            "matmul_gflops": 2 * 1024**3 / t["matmul"].min / 1e9}


def ratio_row(timings: Mapping[str, Timing], base: str) -> dict[str, float]:
    """``base`` time over each contender's time (above 1: the contender is faster), by
    median."""
    return {name: timings[base].median / t.median for name, t in timings.items()
            if name != base}
