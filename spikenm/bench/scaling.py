"""Scaling benchmark (benchmark topic ``scaling``): time against size for the sampler and
`pack`, from 1e5 weights to 1e8 (1e7 with ``quick``).

For each contender the time per call is measured at every size (min over repeats, the
sizes interleaved round-robin in one process) and the slope of ``log(time)`` against
``log(size)`` is fitted by least squares: 1 is linear, above 1 means per-weight cost
grows with size (cache or memory effects, a quadratic step).  The goal is a slope of at
most 1.05.  Contenders, one thread:

- ``pack fp32`` (NumPy reference): `spikenm.api.pack` of a 2:4 float32 ``(rows, 1024)``
  weight.
- ``sampler torch``: ``sample_mask(hard=True)`` forward and backward on torch
  (`backends.torch.sampler`), 2:4.
- ``sampler numpy``: the reference ``sample_mask`` and ``sample_mask_vjp``, 2:4.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from spikenm import api

from . import Table
from .pack import sparse_weight
from .timing import compare

__all__ = ["tables", "slope"]

GOAL = 1.05
"""Largest slope of log(time) over log(size) called linear."""

_TAU = 0.5


def slope(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of ``log(seconds)`` against ``log(sizes)``.

    Examples
    --------
    >>> round(slope([10, 100, 1000], [1.0, 10.0, 100.0]), 6)
    1.0
    """
    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise ValueError(f"need at least 2 (size, time) pairs, got {len(sizes)} sizes and "
                         f"{len(seconds)} times")
    lx, ly = np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float))
    return float(np.polyfit(lx, ly, 1)[0])


def _pack(size: int) -> Callable[[], Any]:
    w = sparse_weight(size // 1024, 1024, np.float32)
    return lambda: api.pack(w, 2, 4)


def _torch_sampler(size: int) -> Callable[[], Any]:
    import torch

    from spikenm.backends.torch import sampler

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(size // 1024, 1024, generator=gen).requires_grad_()
    noise = torch.randn(size // 1024, 1024, generator=gen)
    cot = torch.randn(size // 1024, 1024, generator=gen)

    def call() -> None:
        sampler.sample_mask(x, noise, 2, 4, _TAU, 1.0, True).backward(cot)
        x.grad = None
    return call


def _numpy_sampler(size: int) -> Callable[[], Any]:
    from spikenm.reference import sampler

    rng = np.random.default_rng(0)
    x = rng.standard_normal((size // 1024, 1024)).astype(np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)

    def call() -> None:
        sampler.sample_mask(x, noise, 2, 4, _TAU, 1.0, True)
        sampler.sample_mask_vjp(x, noise, 2, 4, _TAU, 1.0, True, cot)
    return call


CONTENDERS: dict[str, Callable[[int], Callable[[], Any]]] = {
    "pack fp32": _pack, "sampler torch": _torch_sampler, "sampler numpy": _numpy_sampler}


def tables(quick: bool) -> list[Table]:
    """One table: time per weight at each size and the fitted slope, per contender."""
    top = 7 if quick else 8
    sizes = [10**e // 1024 * 1024 for e in range(5, top + 1)]
    rows = []
    for name, make in CONTENDERS.items():
        calls = {str(s): make(s) for s in sizes}
        t = compare(calls, repeats=3 if quick else 5, min_seconds=0.05)
        times = [t[str(s)].min for s in sizes]
        fit = slope(sizes, times)
        rows.append((name, *(f"{1e9 * sec / s:.2f}" for s, sec in zip(sizes, times)),
                     f"{fit:.3f}", f"<= {GOAL}: {'met' if fit <= GOAL else 'not met'}"))
        del calls
    heads = tuple(f"ns/weight at 1e{round(math.log10(s))}" for s in sizes)
    return [Table(
        title="Scaling: time per weight against size (2:4, float32, one thread)",
        columns=("contender", *heads, "slope", "goal"),
        rows=tuple(rows),
        notes=("Slope of log(min time) over log(size), least squares over the sizes shown; "
               "1 is linear. Sizes are multiples of 1024 (rows of 1024 inputs).",
               "What bends the torch sampler: each call allocates its float32 temporaries "
               "afresh, and glibc serves blocks above its mmap threshold (32 MiB at most) "
               "with new pages, so from about 8e6 weights every call pays page faults. "
               "Measured here at 2**20 / 2**23 weights: 56 / 112 ns per weight by default, "
               "31 / 26 with MALLOC_MMAP_THRESHOLD_=2**40 and MALLOC_TRIM_THRESHOLD_=2**40 "
               "set in the environment (a process-wide setting this library does not make "
               "for its users)."),
    )]
