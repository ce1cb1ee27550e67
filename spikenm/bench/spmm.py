"""Packed N:M products against dense NumPy matmul (SPEC S3.6; benchmark topic ``spmm``).

A 2:4 float32 ``(O, K)`` weight (4096x4096, 2048x2048 with ``quick``) times 0/1 spikes at
20% firing for batch widths 1, 4, 16, 64 through `spikenm.api.spmm` (which picks the
event-driven kernel for these inputs), and times a real-valued batch-1 ``x`` (the float
kernel), each interleaved with dense ``W @ x`` (`spikenm.bench.timing.compare`).  A
second table runs the event kernel alone over firing rates to show where dense wins.
"""

from __future__ import annotations

import time

import numpy as np

from .. import api
from ..reference import spmm_kernels as kernels
from ..reference.spmm_2of4 import interleaved_view
from . import Table
from .timing import compare, ratio_row

GOALS = {1: 3.0, 4: 1.5, 16: 1.0}
"""Goals of the issue table: dense time / spmm time at 20% firing, by batch width."""

FLOAT_GOAL = 1.3
"""Goal for a real-valued batch-1 input."""


def _weights(size: int, rng: np.random.Generator) -> tuple[np.ndarray, object]:
    """Dense 2:4 float32 ``(size, size)`` (largest two of each block kept) and its pack."""
    w = rng.standard_normal((size, size)).astype(np.float32)
    blocks = w.reshape(size, size // 4, 4)
    order = np.argsort(-np.abs(blocks), axis=-1)
    keep = np.zeros(blocks.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :2], True, axis=-1)
    w = np.where(keep, blocks, 0).reshape(size, size).astype(np.float32)
    return w, api.pack(w, 2, 4)


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f}"


def tables(quick: bool) -> list[Table]:
    """The ``spmm`` tables: spikes by batch width, float batch 1, and the firing sweep."""
    size = 2048 if quick else 4096
    repeats = 5 if quick else 15
    rng = np.random.default_rng(0)
    w, packed = _weights(size, rng)
    dense_bytes = w.nbytes
    packed_bytes = packed.values.nbytes + packed.indices.nbytes
    bound = dense_bytes / packed_bytes
    t0 = time.perf_counter()
    view = kernels.column_view(packed.values, packed.indices, 2, 4)
    build = time.perf_counter() - t0
    rows = []
    for p in (1, 4, 16, 64):
        x = (rng.random((size, p)) < 0.2).astype(np.float32)
        if p == 1:
            x = x[:, 0]
        t = compare({"dense": lambda: w @ x, "spmm": lambda: api.spmm(packed, x)},
                    repeats=repeats, min_seconds=0.01)
        ratio = ratio_row(t, "dense")["spmm"]
        goal = GOALS.get(p)
        met = "-" if goal is None else f">= {goal:g}x: {'met' if ratio >= goal else 'not met'}"
        rows.append(("0/1 spikes, 20% firing", str(p), kernels.choose_kernel(x),
                     _ms(t["dense"].min), _ms(t["dense"].median), _ms(t["spmm"].min),
                     _ms(t["spmm"].median), f"{ratio:.2f}x", met))
    xf = rng.standard_normal(size).astype(np.float32)
    t0 = time.perf_counter()
    inter = interleaved_view(packed.values, packed.indices, np.float32)
    build2 = time.perf_counter() - t0
    bound2 = dense_bytes / inter.nbytes
    t = compare({"dense": lambda: w @ xf, "spmm": lambda: api.spmm(packed, xf)},
                repeats=repeats, min_seconds=0.01)
    ratio = ratio_row(t, "dense")["spmm"]
    read_gbs = inter.nbytes / t["spmm"].min / 1e9
    rows.append(("float input", "1", kernels.choose_kernel(xf), _ms(t["dense"].min),
                 _ms(t["dense"].median), _ms(t["spmm"].min), _ms(t["spmm"].median),
                 f"{ratio:.2f}x",
                 f">= {FLOAT_GOAL:g}x: {'met' if ratio >= FLOAT_GOAL else 'not met'}"))
    main = Table(
        title=f"spmm: packed 2:4 float32 {size}x{size} vs dense NumPy W @ x",
        columns=("input", "batch", "kernel", "dense min ms", "dense median ms",
                 "spmm min ms", "spmm median ms", "dense/spmm", "goal"),
        rows=tuple(rows),
        notes=(
            "`api.spmm(packed, x)` (reference backend) and `W @ x` interleaved in one "
            "process; ratio by median (above 1: spmm is faster).",
            f"Byte-ratio bound for a kernel streaming the packed arrays: {bound:.2f}x with "
            f"uint8 indices, {bound2:.2f}x with the 2-bit layout (S3.8) the float batch-1 "
            f"kernel reads, at {read_gbs:.1f} GB/s here (layout built on its first call in "
            f"{1e3 * build2:.0f} ms, {inter.nbytes / 2**20:.0f} MiB, cached).",
            f"The event kernel adds rows of the transposed weights ({view.nbytes / 2**20:.0f}"
            f" MiB float32 beside {packed_bytes / 2**20:.0f} MiB packed), built on its "
            f"first call in {1e3 * build:.0f} ms and cached; the timings above exclude it.",
            "For spikes, where dense wins: see the firing sweep below.",
        ),
    )
    return [main, _sweep(w, packed, size, repeats, rng), _torch_module(w, repeats, rng)]


def _torch_module(w: np.ndarray, repeats: int, rng: np.random.Generator) -> Table:
    """`PackedLinear` (`spikenm.backends.torch.packed_modules`) against the dense
    ``nn.Linear`` it came from, under ``torch.no_grad``."""
    import torch
    from torch import nn

    from ..backends.torch.packed_modules import pack_model

    size = w.shape[0]
    dense = nn.Linear(size, size)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(w))
    packed = pack_model(dense, 2, 4)
    rows = []
    with torch.no_grad():
        for p, kind in ((1, "spikes"), (4, "spikes"), (16, "spikes"), (1, "float")):
            x = (torch.from_numpy(rng.random((p, size)) < 0.2).float() if kind == "spikes"
                 else torch.from_numpy(rng.standard_normal((p, size)).astype(np.float32)))
            t = compare({"dense": lambda: dense(x), "packed": lambda: packed(x)},
                        repeats=repeats, min_seconds=0.01)
            goal = GOALS.get(p) if kind == "spikes" else FLOAT_GOAL
            ratio = ratio_row(t, "dense")["packed"]
            rows.append((("0/1 spikes, 20% firing" if kind == "spikes" else "float input"),
                         str(p), _ms(t["dense"].median), _ms(t["packed"].median),
                         f"{ratio:.2f}x",
                         f">= {goal:g}x: {'met' if ratio >= goal else 'not met'}"))
    return Table(
        title=f"PyTorch inference: PackedLinear vs nn.Linear ({size}x{size} 2:4 float32, "
              f"torch.no_grad)",
        columns=("input", "batch", "nn.Linear median ms", "PackedLinear median ms",
                 "Linear/Packed", "goal (as api.spmm)"),
        rows=tuple(rows),
        notes=("`pack_model(model, 2, 4)` of the dense layer; its forward runs the reference "
               "kernels on the tensors' memory (S3.6, S3.8); torch threads as pinned above.",),
    )


def _sweep(w: np.ndarray, packed: object, size: int, repeats: int,
           rng: np.random.Generator) -> Table:
    """Event kernel alone vs dense over firing rates at batch 1 and 16."""
    rows = []
    for p in (1, 16, 64):
        for rate in (0.1, 0.2, 0.35, 0.5, 0.7):
            x = rng.random((size, p)) < rate
            if p == 1:
                x = x[:, 0]
            xf = x.astype(np.float32)
            values, indices = packed.values, packed.indices  # type: ignore[attr-defined]
            t = compare({"dense": lambda: w @ xf,
                         "events": lambda: kernels.spmm_events(values, indices, 2, 4, x)},
                        repeats=max(3, repeats // 3), min_seconds=0.01)
            rows.append((str(p), f"{rate:g}", _ms(t["dense"].median), _ms(t["events"].median),
                         f"{ratio_row(t, 'dense')['events']:.2f}x",
                         kernels.choose_kernel(xf)))
    return Table(
        title=f"spmm: event kernel vs dense over firing rates ({size}x{size} 2:4 float32)",
        columns=("batch", "firing", "dense median ms", "events median ms", "dense/events",
                 "api.spmm picks"),
        rows=tuple(rows),
        notes=(
            "Dense wins where dense/events < 1. `api.spmm` takes the event kernel up to "
            "the firing rates of `EVENT_MAX_DENSITY` (always below batch 16, 0.6 from 16, "
            "0.35 from 64), and the float kernel above.",
        ),
    )
