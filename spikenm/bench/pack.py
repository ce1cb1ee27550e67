"""Packing benchmark (issue 9 item 2): `pack` at memory speed, the 2:4 CUTLASS export
against PyTorch's converter, and the torch/jax backends against the reference.

Every comparison is interleaved in one process (`spikenm.bench.timing.compare`) with the
threads the command pinned.  Throughput is GB/s of *dense input* (the bytes of ``w``)
and, as a fraction of the machine's copy bandwidth (``copy_gbs``, bytes read plus
written by ``np.copyto``, measured in the same run), what share of "memory speed" it
reaches.
"""

from __future__ import annotations

from typing import Any, Callable

import numba
import numpy as np

from spikenm import api
from spikenm.bench import Table
from spikenm.bench.timing import Timing, compare, machine_limits
from spikenm.cutlass import to_cutlass
from spikenm.packed import Packed
from spikenm.reference import packing as ref

__all__ = ["tables", "sparse_weight"]


def sparse_weight(rows: int, k: int, dtype: Any, n: int = 2, m: int = 4,
                  seed: int = 0) -> np.ndarray:
    """A ``(rows, k)`` weight with exactly ``n`` random non-zeros per block of ``m``."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows * k // m, m)) + 3.0).astype(dtype)
    drop = np.argsort(rng.random(w.shape), axis=1)[:, : m - n]
    np.put_along_axis(w, drop, 0, axis=1)
    return w.reshape(rows, k)


def _threaded(threads: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` with Numba at ``threads`` threads (at most what it has) and the reference
    kernels' threshold for threads lowered to 1 block, then restored."""
    before, threshold = numba.get_num_threads(), ref.PARALLEL_BLOCKS
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    ref.PARALLEL_BLOCKS = 1
    try:
        return fn()
    finally:
        numba.set_num_threads(before)
        ref.PARALLEL_BLOCKS = threshold


def _gbs(nbytes: int, t: Timing) -> float:
    return nbytes / t.median / 1e9


def _throughput(quick: bool, copy_gbs: float) -> Table:
    size = 2048 if quick else 4096
    repeats = 5 if quick else 15
    rows = []
    for dtype in (np.float32, np.float16):
        w = sparse_weight(size, size, dtype)
        mask = (w != 0).astype(dtype)
        packed = ref.pack(w, w, 2, 4)
        t = compare({
            "kernel pack": lambda: ref.pack(w, w, 2, 4),
            "kernel pack mask=": lambda: ref.pack(w, mask, 2, 4),
            "api.pack": lambda: api.pack(w, 2, 4),
            "api.pack mask=": lambda: api.pack(w, 2, 4, mask=mask),
            "kernel unpack": lambda: ref.unpack(*packed, 2, 4),
            "block_nnz": lambda: ref.block_nnz(w, 4),
            "kernel pack, 2 threads": lambda: _threaded(2, lambda: ref.pack(w, w, 2, 4)),
        }, repeats=repeats)
        for name, timing in t.items():
            gbs = _gbs(w.nbytes, timing)
            rows.append((np.dtype(dtype).name, name, f"{timing.min * 1e3:.2f}",
                         f"{timing.median * 1e3:.2f}", f"{gbs:.2f}",
                         f"{gbs / copy_gbs:.0%}"))
    return Table(
        title=f"pack throughput, {size}x{size} 2:4, GB/s of dense input",
        columns=("dtype", "what", "min ms", "median ms", "GB/s", "of copy bandwidth"),
        rows=tuple(rows),
        notes=(f"copy bandwidth {copy_gbs:.1f} GB/s (read + write, np.copyto, this run); "
               f"numba threads {numba.get_num_threads()}",
               "goal: pack fp32 >= 30% of copy bandwidth",
               "kernel = spikenm.reference.packing (one fused pass: check, compress, "
               "indices, padding); api.pack on NumPy arrays is that pass alone (the block "
               "counts run only after the kernel refuses a block), plus the 0/1 test of "
               "mask=; on torch arrays the api counts blocks first",
               "unpack: GB/s of the dense output"),
    )


def _cutlass(quick: bool) -> Table:
    import torch
    from torch.sparse._semi_structured_conversions import (
        sparse_semi_structured_from_dense_cutlass,
    )

    size = 1024 if quick else 4096
    w = sparse_weight(size, size, np.float16)
    wt = torch.from_numpy(w)
    def fused() -> Any:  # the kernel's one pass, no separate api check
        values, indices = ref.pack(w, w, 2, 4)
        return to_cutlass(Packed(values, indices, 2, 4, w.shape, 1))

    packed = api.pack(w, 2, 4)
    t = compare({
        "spikenm api.pack + to_cutlass": lambda: to_cutlass(api.pack(w, 2, 4)),
        "fused kernel + to_cutlass": fused,
        "to_cutlass alone": lambda: to_cutlass(packed),
        "spikenm api.pack + to_cutlass (torch tensor)":
            lambda: to_cutlass(api.pack(wt, 2, 4)),
        "torch sparse_semi_structured_from_dense_cutlass":
            lambda: sparse_semi_structured_from_dense_cutlass(wt),
    }, repeats=3 if quick else 7)
    base = t["torch sparse_semi_structured_from_dense_cutlass"]
    rows = tuple((name, f"{x.min * 1e3:.2f}", f"{x.median * 1e3:.2f}",
                  f"{base.median / x.median:.1f}x") for name, x in t.items())
    return Table(
        title=f"pack + to_cutlass, float16 {size}x{size} 2:4, vs torch's CPU converter",
        columns=("contender", "min ms", "median ms", "speed-up vs torch"),
        rows=rows,
        notes=("goal: >= 10x torch's sparse_semi_structured_from_dense_cutlass",
               "fused kernel = spikenm.reference.packing.pack (check, compress, indices in "
               "one pass) wrapped in a Packed: api.pack's NumPy path without its argument "
               "checks",
               "torch.sparse.to_sparse_semi_structured needs a CUDA device; its CPU "
               "converter is the function timed here (same output on full 2:4 blocks)"),
    )


def _backends(quick: bool) -> Table:
    import jax.numpy as jnp
    import torch

    from spikenm.backends.jax import packing as jp
    from spikenm.backends.torch import packing as tp

    size = 1024 if quick else 4096
    rows = []
    for dtype in (np.float32, np.float16):
        w = sparse_weight(size, size, dtype)
        wt, wj = torch.from_numpy(w), jnp.asarray(w)
        host: dict[str, Callable[[], Any]] = {
            "reference": lambda: ref.pack(w, w, 2, 4),
            "torch": lambda: tp.pack(wt, wt, 2, 4),
            "jax": lambda: [a.block_until_ready() for a in jp.pack(wj, wj, 2, 4)],
        }
        device: dict[str, Callable[[], Any]] = {
            "reference": host["reference"],
            "torch device path": lambda: tp._pack_on_device(wt, wt, 2, 4),  # noqa: SLF001
            "jax jit path": lambda: [a.block_until_ready()
                                     for a in jp._pack(wj, wj, 2, 4)],  # noqa: SLF001
        }
        for label, contenders in (("CPU arrays", host), ("device/jit paths", device)):
            t = compare(contenders, repeats=3 if quick else 7)
            base = t["reference"]
            for name, x in t.items():
                rows.append((np.dtype(dtype).name, label, name, f"{x.min * 1e3:.2f}",
                             f"{x.median * 1e3:.2f}", f"{base.median / x.median:.2f}"))
    return Table(
        title=f"backend pack of CPU arrays, {size}x{size} 2:4, vs the reference kernel",
        columns=("dtype", "comparison", "backend", "min ms", "median ms",
                 "speed vs reference"),
        rows=tuple(rows),
        notes=("goal: torch and jax not slower than the reference on CPU arrays (they run "
               "the reference kernel on the host memory; the device/jit paths are what "
               "CUDA tensors and traced arrays take, timed in a separate comparison so their "
               "large temporaries do not disturb the first)",),
    )


def tables(quick: bool) -> list[Table]:
    """The packing tables (see the module docstring)."""
    copy_gbs = machine_limits(repeats=5 if quick else 10,
                              size_mb=64 if quick else 256)["copy_gbs"]
    return [_throughput(quick, copy_gbs), _cutlass(quick), _backends(quick)]
