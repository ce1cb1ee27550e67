"""Checks of the noise and the block probabilities, SPEC S1.6 and S1.7.

The statistical tests use fixed seeds, so their outcome is deterministic for a given
backend; each test has significance level `ALPHA` (a correct backend fails one with
probability ``ALPHA`` per seed, over the choice of seeds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from . import oracles
from .check import Check
from .conditioning import expand, softmax_blocks_ok
from .strategies import MATH_DTYPES, MAX_ABS, block_shape, logit_arrays, patterns, scales
from .tolerance import rtol
from .trial import Trial

ALPHA = 1e-4
"""Significance level of every KS and chi-square test."""

SAMPLES = (100, 200)
"""Shape of each Gumbel draw tested (20 000 values)."""

KS_SEEDS = (0, 1, 2**32 - 1)
"""Seeds of the KS tests (the largest is the top of the 32-bit range of S5.2)."""

ROWS = 20_000
"""Blocks sampled by each chi-square test."""


def _stats() -> Any:
    """``scipy.stats``, imported when a statistical check runs."""
    import scipy.stats

    return scipy.stats


def _zeros(trial: Trial, shape: tuple[int, ...], dtype: str) -> object:
    return trial.array("x", np.zeros(shape, dtype=dtype), source=f"np.zeros({shape!r}, dtype=np.{dtype})")


# -- S1.6 ---------------------------------------------------------------------------------------


def gumbel(trial: Trial, data: DataObject | None) -> None:
    """``gumbel_like``: type/dtype/shape, finite, reproducible per seed, Gumbel-distributed
    (KS test against ``F(g) = exp(-exp(-g))`` at level `ALPHA`)."""
    stats = _stats()
    for dtype in MATH_DTYPES:
        for shape in ((3,), (2, 3, 4)):
            trial.new_case()
            x = _zeros(trial, shape, dtype)
            trial.result(trial.call("gumbel_like", x, 5), "gumbel_like", dtype=dtype, shape=shape)
        for seed in KS_SEEDS:
            trial.new_case()
            x = _zeros(trial, SAMPLES, dtype)
            g = trial.result(trial.call("gumbel_like", x, seed, out="g"), "gumbel_like", dtype=dtype, shape=SAMPLES)
            if not bool(np.all(np.isfinite(g))):
                trial.fail(f"gumbel_like(seed={seed}) returned non-finite values (u must lie in the open interval (0, 1))")
            again = trial.result(trial.call("gumbel_like", x, seed, out="g_again"), "gumbel_like", dtype=dtype, shape=SAMPLES)
            if not np.array_equal(g, again):
                trial.fail(f"gumbel_like(seed={seed}) gave different numbers on a second call with the same seed (S1.6)")
            other = trial.result(trial.call("gumbel_like", x, seed ^ 1, out="g_other"), "gumbel_like", dtype=dtype, shape=SAMPLES)
            if np.mean(g == other) > 0.01:
                trial.fail(f"gumbel_like gave the same numbers for seeds {seed} and {seed ^ 1}")
            sample = g.astype(np.float64).reshape(-1)
            result = stats.kstest(sample, lambda t: np.exp(-np.exp(-t)))
            if result.pvalue < ALPHA:
                trial.fail(
                    f"gumbel_like(seed={seed}, {dtype}) is not standard Gumbel: KS statistic "
                    f"{result.statistic:.4g}, p-value {result.pvalue:.3g} < {ALPHA} over {sample.size} "
                    f"draws (mean {sample.mean():.4g}, expected 0.5772; std {sample.std():.4g}, expected 1.2825)"
                )


# -- S1.7 ---------------------------------------------------------------------------------------


def probs(trial: Trial, data: DataObject | None) -> None:
    """``block_probs = softmax_block(scale * logits)``: sums to 1, against the reference."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    logits = data.draw(logit_arrays(dtype, shape, MAX_ABS[dtype]), label="logits")
    scale = data.draw(scales(), label="scale")
    x = trial.array("logits", logits)
    p = trial.result(trial.call("block_probs", x, m, scale), "block_probs", dtype=dtype, shape=shape)
    tol = rtol(dtype)
    if not bool(np.all((p >= 0) & (p <= 1 + tol))):
        trial.fail("block_probs has entries outside [0, 1]", got=p)
    sums = oracles.block_sums(p, m)
    if not bool(np.all(np.abs(sums - 1) <= tol)):
        where = tuple(int(i) for i in np.argwhere(np.abs(sums - 1) > tol)[0])
        trial.fail(f"block {where} of block_probs sums to {float(sums[where])!r}; expected 1", got=p)
    args = (np.dtype(dtype).type(scale) * logits).astype(np.float64)
    ok = trial.judged(softmax_blocks_ok(args, m, dtype))
    trial.expect_close(trial.ref.block_probs(logits, m, scale), p, dtype,
                       "block_probs against the reference", where=expand(ok, m))


SAMPLING_CASES = (
    ("float32", (0.0, 0.5, 1.0, -1.0), 1, 1.5, 11),
    ("float64", (0.0, 0.5, 1.0, -1.0), 2, 1.5, 12),
    ("float64", (0.3, 0.3, -0.2, 1.1, 0.0, -2.0, 0.7, 0.3), 1, 1.0, 13),
    ("float32", (0.3, 0.3, -0.2, 1.1, 0.0, -2.0, 0.7, 0.3), 2, 0.7, 14),
)
"""``(dtype, block logits, n, scale, seed)`` of the Gumbel-top-k tests."""


def sampling(trial: Trial, data: DataObject | None) -> None:
    """Top-n of ``scale * logits + gumbel_like`` draws from ``p = softmax(scale * logits)``:
    chi-square of the first pick (``n = 1``) or of the pair (``n = 2``) at level `ALPHA`."""
    stats = _stats()
    for dtype, block, n, scale, seed in SAMPLING_CASES:
        trial.new_case()
        m = len(block)
        row = np.array(block, dtype=dtype)
        logits = trial.array("logits", np.tile(row, (ROWS, 1)),
                             source=f"np.tile(np.array({list(block)!r}, dtype=np.{dtype}), ({ROWS}, 1))")
        x = _zeros(trial, (ROWS, m), dtype)
        noise = trial.call("gumbel_like", x, seed, out="noise")
        mask = trial.result(trial.call("sample_mask", logits, noise, n, m, 1.0, scale, True, out="mask"),
                            "sample_mask", dtype=dtype, shape=(ROWS, m))
        p = oracles.softmax_blocks(scale * row.astype(np.float64), m)
        if n == 1:
            observed = np.bincount(np.argmax(mask, axis=1), minlength=m).astype(np.float64)
            expected = ROWS * p
            what = "first pick"
        else:
            pairs = oracles.pair_probabilities(p)
            index = {pair: k for k, pair in enumerate(pairs)}
            chosen = [tuple(int(i) for i in np.flatnonzero(r)) for r in mask]
            observed = np.zeros(len(pairs))
            for pair in chosen:
                observed[index[pair]] += 1
            expected = ROWS * np.array(list(pairs.values()))
            what = "pair"
        result = stats.chisquare(observed, expected)
        if result.pvalue < ALPHA:
            trial.fail(
                f"the {what} of top-{n} over scale * logits + gumbel_like(seed={seed}) does not follow "
                f"softmax(scale * logits) (S1.7): chi-square {result.statistic:.4g}, p-value "
                f"{result.pvalue:.3g} < {ALPHA}; observed {observed.astype(int).tolist()}, expected "
                f"{np.round(expected, 1).tolist()}"
            )


CHECKS = (
    Check("S1.6", ("S1.6",), f"gumbel_like: reproducible, KS test vs Gumbel at alpha={ALPHA}",
          gumbel, uses=("gumbel_like",), kind="fixed"),
    Check("S1.7", ("S1.7",), "block_probs: softmax(scale * logits), sums to 1",
          probs, uses=("block_probs",), budget=0.6),
    Check("S1.7:sampling", ("S1.7",), f"Gumbel-top-k draws follow softmax: chi-square at alpha={ALPHA}",
          sampling, uses=("gumbel_like", "sample_mask"), kind="fixed"),
)
