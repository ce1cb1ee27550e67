"""Checks of the mask sampler, SPEC S1.1-S1.5 and S1.8 (protocol level)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from . import oracles
from .check import Check
from .conditioning import expand, successive_blocks_ok, vjp_magnitude
from .strategies import (
    MATH_DTYPES,
    SamplerCase,
    block_shape,
    cotangents,
    logit_arrays,
    patterns,
    sampler_case,
    temperatures,
    MAX_ABS,
)
from .tolerance import rtol
from .trial import Trial


def _sample(trial: Trial, case: SamplerCase, hard: bool, logits: object, noise: object) -> np.ndarray:
    out = trial.call(
        "sample_mask", logits, noise, case.n, case.m, case.temperature, case.scale, hard
    )
    return trial.result(out, f"sample_mask(hard={hard})", dtype=case.dtype, shape=case.logits.shape)


def _soft_invariants(trial: Trial, s: np.ndarray, n: int, m: int, dtype: str, what: str) -> None:
    """S1.3: finite, ``0 <= s <= n``, blocks sum to ``n``; ``s <= 1`` when ``n = 1``."""
    tol = rtol(dtype)
    trial.require(bool(np.all(np.isfinite(s))), f"{what} has non-finite entries: {s!r}")
    upper = 1.0 if n == 1 else float(n)
    bad = (s < -tol) | (s > upper + tol)
    if bool(bad.any()):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        trial.fail(f"{what}[{where}] = {float(s[where])!r}; expected a value in [0, {upper:g}] (S1.3)", got=s)
    sums = oracles.block_sums(s, m)
    off = np.abs(sums - n) > tol * n
    if bool(off.any()):
        where = tuple(int(i) for i in np.argwhere(off)[0])
        trial.fail(f"block {where} of {what} sums to {float(sums[where])!r}; expected n = {n} (S1.3)", got=s)


def _exactly_n(trial: Trial, h: np.ndarray, n: int, m: int, what: str) -> None:
    """S1.2: values 0 and 1, exactly ``n`` ones per block."""
    if not bool(np.all((h == 0) | (h == 1))):
        trial.fail(f"{what} holds values other than 0 and 1", got=h)
    counts = oracles.block_sums(h, m)
    if not bool(np.all(counts == n)):
        where = tuple(int(i) for i in np.argwhere(counts != n)[0])
        trial.fail(f"block {where} of {what} keeps {counts[where]:g} entries; expected exactly n = {n}", got=h)


# -- S1.1 keys ---------------------------------------------------------------------------------


def keys(trial: Trial, data: DataObject | None) -> None:
    """``sample_mask`` equals the reference at the keys ``r = scale * logits + noise``."""
    assert data is not None
    case = sampler_case(data)
    logits, noise = trial.array("logits", case.logits), trial.array("noise", case.noise)
    r = case.keys()
    hard = _sample(trial, case, True, logits, noise)
    trial.expect_exact(oracles.topn_rule(r, case.n, case.m), hard,
                       "sample_mask(hard=True) against topn(scale * logits + noise) (S1.1, S1.2)")
    trial.expect_exact(
        trial.ref.sample_mask(case.logits, case.noise, case.n, case.m, case.temperature, case.scale, True),
        hard, "sample_mask(hard=True) against the reference",
    )
    soft = _sample(trial, case, False, logits, noise)
    ok = trial.judged(successive_blocks_ok(r, case.n, case.m, case.temperature, case.dtype))
    want = trial.ref.sample_mask(case.logits, case.noise, case.n, case.m, case.temperature, case.scale, False)
    trial.expect_close(want, soft, case.dtype, "sample_mask(hard=False) against the reference",
                       where=expand(ok, case.m))


# -- S1.2 hard top-n ---------------------------------------------------------------------------


def _score_case(data: DataObject) -> tuple[str, int, int, np.ndarray]:
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    scores = data.draw(logit_arrays(dtype, shape, MAX_ABS[dtype]), label="scores")
    return dtype, n, m, scores


def _topn_against_rule(trial: Trial, scores: np.ndarray, n: int, m: int, dtype: str, name: str) -> None:
    x = trial.array(name, scores)
    out = trial.call("topn_mask", x, n, m)
    got = trial.result(out, "topn_mask", dtype=dtype, shape=scores.shape)
    _exactly_n(trial, got, n, m, "topn_mask")
    trial.expect_exact(oracles.topn_rule(scores, n, m), got,
                       "topn_mask against the rule #{j: v_j > v_i} + #{j < i: v_j == v_i} < n (ties to the lower index)")
    trial.expect_exact(trial.ref.topn_mask(scores, n, m), got, "topn_mask against the reference")


def topn(trial: Trial, data: DataObject | None) -> None:
    """``topn_mask``: exactly n per block, ties to the lower index, input dtype."""
    assert data is not None
    dtype, n, m, scores = _score_case(data)
    _topn_against_rule(trial, scores, n, m, dtype, "scores")


def topn_golden(trial: Trial) -> None:
    """SPEC examples: ``[0.3, 0.1, 0.3, 0.2]`` keeps 0 and 2; ``-0.0`` ties ``0.0``."""
    cases = (
        ([0.3, 0.1, 0.3, 0.2], 2, [1, 0, 1, 0]),
        ([-0.0, 0.0, -1.0, -1.0], 1, [1, 0, 0, 0]),
        ([0.0, -0.0, -1.0, -1.0], 1, [1, 0, 0, 0]),
        ([-1.0, -1.0, -0.0, 0.0], 3, [1, 0, 1, 1]),
    )
    for dtype in MATH_DTYPES:
        for values, n, want in cases:
            trial.new_case()
            scores = np.array(values, dtype=dtype)
            x = trial.array("scores", scores)
            got = trial.result(trial.call("topn_mask", x, n, 4), "topn_mask", dtype=dtype, shape=(4,))
            trial.expect_exact(np.array(want, dtype=dtype), got, f"topn_mask({values}, n={n})")


# -- S1.3 soft mask ----------------------------------------------------------------------------


def _limit_keys(data: DataObject, dtype: str, n: int, m: int) -> tuple[np.ndarray, float]:
    """Keys whose ``min(n + 1, m)`` largest are distinct (gaps of 0.5 to 2, or up to 500
    to span far beyond ``-log(eps)``) and a temperature small enough for ``s`` to be
    within e^-60 of ``h`` (S1.3)."""
    k = min(n + 1, m)
    widest = data.draw(st.sampled_from([2.0, 500.0]), label="largest gap")
    gaps = data.draw(st.lists(st.floats(0.5, widest), min_size=k, max_size=k), label="gaps between top keys")
    top = data.draw(st.floats(-20.0, 20.0), label="largest key")
    levels = top - np.cumsum([0.0] + gaps[:-1])
    floor = levels[-1] - min(gaps)
    rest = data.draw(
        st.lists(st.floats(floor - 5.0, floor), min_size=m - k, max_size=m - k),
        label="other keys",
    )
    block = np.array(list(levels) + rest, dtype=dtype)
    order = data.draw(st.permutations(range(m)), label="positions")
    return block[list(order)], min(gaps) / 60.0


def relaxed(trial: Trial, data: DataObject | None) -> None:
    """``relaxed_topn``: invariants, values against the reference, and the limit ``tau -> 0``."""
    assert data is not None
    dtype, n, m, scores = _score_case(data)
    if data.draw(st.booleans(), label="limit tau -> 0 case"):
        rows = data.draw(st.integers(1, 3), label="blocks")
        built = [_limit_keys(data, dtype, n, m) for _ in range(rows)]
        scores = np.concatenate([b for b, _ in built]).astype(dtype)
        tau = min(t for _, t in built)
        x = trial.array("scores", scores)
        s = trial.result(trial.call("relaxed_topn", x, n, m, tau), "relaxed_topn", dtype=dtype, shape=scores.shape)
        trial.expect_close(oracles.topn_rule(scores, n, m), s, dtype,
                           f"relaxed_topn at temperature {tau!r} against the hard mask (S1.3: s -> h as tau -> 0)")
        return
    tau = data.draw(temperatures(), label="temperature")
    x = trial.array("scores", scores)
    s = trial.result(trial.call("relaxed_topn", x, n, m, tau), "relaxed_topn", dtype=dtype, shape=scores.shape)
    _soft_invariants(trial, s, n, m, dtype, "relaxed_topn")
    ok = trial.judged(successive_blocks_ok(scores, n, m, tau, dtype))
    trial.expect_close(trial.ref.relaxed_topn(scores, n, m, tau), s, dtype,
                       "relaxed_topn against the reference", where=expand(ok, m))


def relaxed_golden(trial: Trial) -> None:
    """The worked examples of S1.3."""
    cases = (
        ("float64", [math.log(0.9), math.log(0.1)], 2, 2, 1.0, [1.4, 0.6]),
        ("float32", [math.log(0.9), math.log(0.1)], 2, 2, 1.0, [1.4, 0.6]),
        ("float64", [1.0, 1.0, 1.0, 0.99], 3, 4, 1e-4, [2 / 3, 2 / 3, 2 / 3, 1.0]),
        ("float32", [100.0, 50.0, 0.0, -10.0], 3, 4, 0.01, [1.0, 1.0, 1.0, 0.0]),
        ("float64", [1000.0, 500.0, 0.0, -100.0], 2, 4, 0.01, [1.0, 1.0, 0.0, 0.0]),
    )
    for dtype, values, n, m, tau, want in cases:
        trial.new_case()
        scores = np.array(values, dtype=dtype)
        x = trial.array("scores", scores)
        s = trial.result(trial.call("relaxed_topn", x, n, m, tau), "relaxed_topn", dtype=dtype, shape=scores.shape)
        trial.expect_close(np.array(want), s, dtype, f"relaxed_topn({values}, n={n}, temperature={tau}) (SPEC S1.3 example)")


# -- S1.4 output -------------------------------------------------------------------------------


def output(trial: Trial, data: DataObject | None) -> None:
    """``hard=True`` gives exactly the values of ``h``; ``hard=False`` gives ``s``."""
    assert data is not None
    case = sampler_case(data)
    logits, noise = trial.array("logits", case.logits), trial.array("noise", case.noise)
    r = case.keys()
    h = _sample(trial, case, True, logits, noise)
    _exactly_n(trial, h, case.n, case.m, "sample_mask(hard=True)")
    trial.expect_exact(oracles.topn_rule(r, case.n, case.m), h,
                       "sample_mask(hard=True) must return exactly the values of h = topn(r) "
                       "(straight-through: h + (s - stop_gradient(s)), not (h + s) - s)")
    s = _sample(trial, case, False, logits, noise)
    _soft_invariants(trial, s, case.n, case.m, case.dtype, "sample_mask(hard=False)")
    keys_x = trial.array("keys", r)
    direct = trial.result(trial.call("relaxed_topn", keys_x, case.n, case.m, case.temperature, out="s_keys"),
                          "relaxed_topn", dtype=case.dtype, shape=r.shape)
    ok = trial.judged(successive_blocks_ok(r, case.n, case.m, case.temperature, case.dtype))
    trial.expect_close(direct, s, case.dtype, "sample_mask(hard=False) against relaxed_topn(keys)",
                       where=expand(ok, case.m))


# -- S1.5 gradient -----------------------------------------------------------------------------

GRADIENT_MARGIN = 64.0
"""Gradients divide by ``1 - a_j``: they are judged on blocks whose forward error
estimate is below ``rtol / 64`` (stricter than the forward's ``rtol / 8``)."""


def gradient(trial: Trial, data: DataObject | None) -> None:
    """``sample_mask_vjp`` and ``relaxed_topn_vjp`` against the reference's hand-written VJP."""
    assert data is not None
    case = sampler_case(data)
    cot_np = data.draw(cotangents(case.dtype, case.logits.shape), label="cotangent")
    logits, noise = trial.array("logits", case.logits), trial.array("noise", case.noise)
    cot = trial.array("cotangent", cot_np)
    r = case.keys()
    ok = trial.judged(successive_blocks_ok(r, case.n, case.m, case.temperature, case.dtype,
                                           margin=GRADIENT_MARGIN))
    where = expand(ok, case.m)
    terms = vjp_magnitude(r, case.n, case.m, case.temperature, case.dtype, cot_np)
    want = trial.ref.sample_mask_vjp(case.logits, case.noise, case.n, case.m, case.temperature,
                                     case.scale, True, cot_np)
    size = _gradient_scale(want, case.scale * terms, where)
    got = {}
    for hard in (True, False):
        out = trial.call("sample_mask_vjp", logits, noise, case.n, case.m, case.temperature,
                         case.scale, hard, cot, out=f"grad_{'hard' if hard else 'soft'}")
        got[hard] = trial.result(out, f"sample_mask_vjp(hard={hard})", dtype=case.dtype, shape=r.shape)
        trial.expect_close(want, got[hard], case.dtype,
                           f"sample_mask_vjp(hard={hard}) against the reference", scale=size, where=where)
    keys_x = trial.array("keys", r)
    out = trial.call("relaxed_topn_vjp", keys_x, case.n, case.m, case.temperature, cot, out="grad_keys")
    g_keys = trial.result(out, "relaxed_topn_vjp", dtype=case.dtype, shape=r.shape)
    want_keys = trial.ref.relaxed_topn_vjp(r, case.n, case.m, case.temperature, cot_np)
    trial.expect_close(want_keys, g_keys, case.dtype, "relaxed_topn_vjp against the reference",
                       scale=_gradient_scale(want_keys, terms, where), where=where)
    trial.expect_close(case.scale * g_keys.astype(np.float64), got[True], case.dtype,
                       "sample_mask_vjp against scale * relaxed_topn_vjp(keys) (S1.5)", scale=size, where=where)


def _gradient_scale(expected: np.ndarray, terms: np.ndarray, where: np.ndarray) -> np.ndarray:
    """S0.6 scales gradients by their largest magnitude; where the gradient cancels, the
    size of its terms (`vjp_magnitude`) is the precision a float computation can reach."""
    top = float(np.max(np.abs(np.where(where, expected.astype(np.float64), 0.0)), initial=0.0))
    return np.maximum(np.where(where, terms, 0.0), top) + 1e-300

def gradient_golden(trial: Trial) -> None:
    """Two gradients worked out by hand: ``p0 (1 - p0)`` with ``p = (1/4, 3/4)`` and,
    with scale 2, ``2 * 0.1 * 0.9``."""
    v = np.array([0.0, math.log(3.0)])
    cot = np.array([1.0, 0.0])
    for dtype in MATH_DTYPES:
        trial.new_case()
        x, g = trial.array("scores", v.astype(dtype)), trial.array("cotangent", cot.astype(dtype))
        got = trial.result(trial.call("relaxed_topn_vjp", x, 1, 2, 1.0, g), "relaxed_topn_vjp", dtype=dtype, shape=(2,))
        trial.expect_close(np.array([0.1875, -0.1875]), got, dtype, "relaxed_topn_vjp([0, log 3], n=1, m=2)")
        trial.new_case()
        x, g = trial.array("logits", v.astype(dtype)), trial.array("cotangent", cot.astype(dtype))
        z = trial.array("noise", np.zeros(2, dtype=dtype))
        for hard in (True, False):
            got = trial.result(trial.call("sample_mask_vjp", x, z, 1, 2, 1.0, 2.0, hard, g),
                               "sample_mask_vjp", dtype=dtype, shape=(2,))
            trial.expect_close(np.array([0.18, -0.18]), got, dtype,
                               f"sample_mask_vjp([0, log 3], scale=2, hard={hard})")


# -- S1.8 final mask ---------------------------------------------------------------------------


def final(trial: Trial, data: DataObject | None) -> None:
    """``final_mask(pi) = topn(pi)`` on trained-looking logits with many exact ties."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    steps = data.draw(st.lists(st.integers(-4, 4), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))),
                      label="logits in quarter steps")
    logits = (np.array(steps, dtype=np.float64) / 4).astype(dtype).reshape(shape)
    _topn_against_rule(trial, logits, n, m, dtype, "logits")


CHECKS = (
    Check("S1.1", ("S1.1",), "sample_mask at the keys scale * logits + noise",
          keys, uses=("sample_mask",), budget=0.6),
    Check("S1.2", ("S1.2",), "topn_mask: exactly n per block, ties to the lower index",
          topn, uses=("topn_mask",), golden=topn_golden),
    Check("S1.3", ("S1.3",), "relaxed_topn: values, invariants, limit tau -> 0",
          relaxed, uses=("relaxed_topn",), golden=relaxed_golden, budget=0.8),
    Check("S1.4", ("S1.4",), "sample_mask output: values of h (hard), s (soft)",
          output, uses=("sample_mask", "relaxed_topn"), budget=0.8),
    Check("S1.5", ("S1.5",), "sample_mask_vjp / relaxed_topn_vjp against the reference VJP",
          gradient, uses=("sample_mask_vjp", "relaxed_topn_vjp"), needs="differentiable",
          golden=gradient_golden, budget=0.6),
    Check("S1.8", ("S1.8",), "final mask: topn of the logits, tie rule",
          final, uses=("topn_mask",), budget=0.6),
)
