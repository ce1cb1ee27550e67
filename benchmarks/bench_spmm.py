"""Packed N:M product vs dense matmul on this machine (reference backend, CPU).

Prints, for each layer shape, pattern and batch width P, the median wall time of
``spikenm.api.spmm(packed, x)`` and of NumPy's dense ``W @ x`` measured in the same run,
their ratio (dense / packed: above 1 means the packed product is faster), and the bytes
each reads for the weights.  On CPU, N:M can only win where weights dominate memory
traffic (small P); this script shows where that is, it asserts nothing.

Run: ``python benchmarks/bench_spmm.py [--repeats 20]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spikenm import api


def _median_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (and Numba compilation on the first call)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| shape (O x K) | n:m | P | dense ms | packed ms | dense/packed | weight bytes packed/dense |")
    print("|---|---|---|---|---|---|---|")
    for o, k in ((1024, 1024), (4096, 1024)):
        for n, m in ((2, 4), (1, 4), (2, 8)):
            logits = rng.normal(size=(o, k)).astype(np.float32)
            mask = api.final_mask(logits, n, m)
            w = (rng.normal(size=(o, k)).astype(np.float32) * mask)
            packed = api.pack(w, n, m)
            byte_ratio = (packed.values.nbytes + packed.indices.nbytes) / w.nbytes
            for p in (1, 8, 64):
                x = (rng.random(size=(k, p)) < 0.2).astype(np.float32)  # spike-like input
                t_dense = _median_time(lambda: w @ x, args.repeats)
                t_packed = _median_time(lambda: api.spmm(packed, x), args.repeats)
                print(f"| {o} x {k} | {n}:{m} | {p} | {1e3 * t_dense:.3f} | {1e3 * t_packed:.3f} "
                      f"| {t_dense / t_packed:.2f} | {byte_ratio:.3f} |")


if __name__ == "__main__":
    main()
