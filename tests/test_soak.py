"""Bounded soak: repeated api calls, training steps and short runs keep memory flat.

Memory is measured with `tracemalloc`, which sees every Python object and every NumPy
buffer (NumPy reports its allocations to it); PyTorch and JAX tensors are seen through
their Python objects.  Each test warms up first (caches, compiled kernels, first-use
imports), then repeats the same work in two equal rounds and requires that the memory
still held after the second round exceeds that after the first by less than a stated
bound: a leak of one of the arrays a call makes (8 KiB here) would exceed it several
times over, while the allocators' own caches (NumPy keeps freed small buffers) stay
below it.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
import torch

from spikenm import api
from spikenm.train.config import load_config
from spikenm.train.loop import initial_state, train
from spikenm.train.setup import build_setup
from spikenm.train.step import train_step

KIB = 1024


def _held_growth(work: Callable[[], None], warmup: int, rounds: int) -> int:
    """Bytes still held after two more rounds of ``rounds`` calls minus after one (after
    ``warmup`` calls)."""
    for _ in range(warmup):
        work()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(rounds):
            work()
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            work()
        gc.collect()
        second = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return second - first


def _api_work(xp: Callable[[np.ndarray], object], tmp: Path) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    logits = xp(rng.standard_normal((32, 64)).astype(np.float32))
    x = xp(rng.standard_normal((64, 8)).astype(np.float32))
    bad = xp(np.full((32, 6), np.nan, np.float32))
    path = tmp / "w.npz"
    calls = {"n": 0}

    def work() -> None:
        calls["n"] += 1
        noise = api.gumbel_like(logits, seed=calls["n"] % 7)
        mask = api.sample_mask(logits, 2, 4, noise=noise, temperature=0.5, scale=2.0)
        api.block_probs(logits, 4, scale=2.0)
        final = api.final_mask(logits, 2, 4)
        packed = api.pack(logits * final, 2, 4, mask=final)
        api.unpack(packed)
        api.spmm(packed, x)
        assert mask.shape == logits.shape
        for call in (lambda: api.final_mask(bad, 2, 4),       # not a multiple of m
                     lambda: api.sample_mask(logits, 5, 4, noise=noise)):  # n > m
            with pytest.raises(ValueError):
                call()
        if calls["n"] % 5 == 0 and isinstance(logits, np.ndarray):
            api.save_packed(path, packed)
            api.load_packed(path)

    return work


@pytest.mark.parametrize("name, xp, rounds", [
    ("numpy", np.asarray, 60),
    ("torch", torch.from_numpy, 20),
    ("jax", jax.numpy.asarray, 20),
])
def test_repeated_api_calls_hold_no_memory(tmp_path, name, xp, rounds) -> None:
    """Sampling, packing, spmm, file I/O (numpy) and refused inputs, ``2 * rounds``
    times: under 64 KiB more held after the second ``rounds`` than after the first."""
    growth = _held_growth(_api_work(xp, tmp_path), warmup=15, rounds=rounds)
    assert growth < 64 * KIB, f"{name}: {growth / KIB:.1f} KiB more held after {rounds} calls"


def test_repeated_training_steps_hold_no_memory() -> None:
    """100 training steps of a small network (numpy reference backend, S5): under 128 KiB
    more held after the second 50 than after the first."""
    setup = build_setup(load_config(None, ["data.name=digits", "model.hidden=16,16",
                                           "run.quiet=true", "optim.epochs=20"]))
    holder = {"state": initial_state(setup)}
    cache: dict[int, np.ndarray] = {}

    def step() -> None:
        holder["state"], _ = train_step(setup, holder["state"], cache)

    growth = _held_growth(step, warmup=10, rounds=50)
    assert growth < 128 * KIB, f"{growth / KIB:.1f} KiB more held after 50 steps"


def test_repeated_short_runs_hold_no_memory(tmp_path) -> None:
    """Short runs with checkpoints, a stop and a resume, repeated: under 256 KiB more
    held after the second 2 than after the first."""
    base = ["data.name=digits", "model.hidden=16,16", "run.quiet=true", "optim.epochs=1",
            "run.eval_every=0", "data.train_limit=192", "data.test_limit=64",
            "run.checkpoint_every=1"]
    runs = {"n": 0}

    def run() -> None:
        runs["n"] += 1
        cfg = load_config(None, base + [f"run.out={tmp_path / str(runs['n'])}"])
        train(cfg, stop_after=2, stream=None)
        train(cfg, resume=True, stream=None)

    growth = _held_growth(run, warmup=1, rounds=2)
    assert growth < 256 * KIB, f"{growth / KIB:.1f} KiB more held after 2 runs"


def test_the_measure_sees_a_leak_of_one_array_per_call() -> None:
    """The bound of the api soak is far above noise and far below a real leak."""
    kept: list[np.ndarray] = []
    growth = _held_growth(lambda: kept.append(np.ones((32, 64), np.float32)), warmup=15,
                          rounds=30)
    assert growth > 3 * 64 * KIB
    assert _held_growth(lambda: np.ones((32, 64), np.float32), warmup=15,
                        rounds=30) < 8 * KIB
