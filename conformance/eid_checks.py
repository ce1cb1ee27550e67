"""Checks of eligibility-inspired distillation, SPEC S2.1-S2.7 (protocol level)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import DataObject

from . import oracles
from .check import Check
from .conditioning import expand, softmax_blocks_ok
from .strategies import MATH_DTYPES, MAX_ABS, block_shape, floats, logit_arrays, patterns, scales, temperatures
from .tolerance import rtol
from .trial import Trial


def _float_arrays(dtype: str, shape: tuple[int, ...], max_abs: float, zeros: bool = True) -> st.SearchStrategy[np.ndarray]:
    elements = floats(dtype, max_abs)
    if zeros:
        elements = st.one_of(elements, st.just(0.0))
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


# -- S2.1-S2.3 ---------------------------------------------------------------------------------


def credit(trial: Trial, data: DataObject | None) -> None:
    """``eligibility_credit``: ``|W| * sum_t |d_t^T e_t|`` with ``e_t = lam e_{t-1} + x_t``."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    t, b = data.draw(st.integers(1, 4), label="T"), data.draw(st.integers(1, 3), label="B")
    o, k = data.draw(st.integers(1, 4), label="O"), data.draw(st.integers(1, 8), label="K")
    spikes = data.draw(st.booleans(), label="x are spikes")
    if spikes:
        x = data.draw(hnp.arrays(np.dtype(dtype), (t, b, k), elements=st.sampled_from([0.0, 1.0])), label="x")
    else:
        x = data.draw(_float_arrays(dtype, (t, b, k), 4.0), label="x")
    d = data.draw(_float_arrays(dtype, (t, b, o), 100.0), label="d")
    w = data.draw(_float_arrays(dtype, (o, k), 10.0), label="weight")
    decay = data.draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0)), label="decay")
    xs, ds, ws = trial.array("x", x), trial.array("d", d), trial.array("weight", w)
    c = trial.result(trial.call("eligibility_credit", xs, ds, ws, decay), "eligibility_credit", dtype=dtype, shape=(o, k))
    if not bool(np.all(c >= 0)):
        trial.fail("eligibility_credit has negative entries; expected |W| * sum_t |...| >= 0", got=c)
    # The magnitude of the summands: |W| * sum_t sum_b |d| |e|, with the trace in float64.
    trace = np.zeros((b, k))
    magnitude = np.zeros((o, k))
    for step in range(t):
        trace = decay * trace + x[step].astype(np.float64)
        magnitude += np.abs(d[step].astype(np.float64)).T @ np.abs(trace)
    magnitude *= np.abs(w.astype(np.float64))
    trial.expect_close(trial.ref.eligibility_credit(x, d, w, decay), c, dtype,
                       "eligibility_credit against the reference", scale=float(magnitude.max(initial=0.0)) + 1e-300)


def credit_golden(trial: Trial) -> None:
    """``x = 1``, ``d = 1``, ``W = -2``, ``lam = 0.5`` over two steps: ``2 * (1 + 1.5) = 5``."""
    for dtype in MATH_DTYPES:
        trial.new_case()
        x = trial.array("x", np.ones((2, 1, 4), dtype=dtype))
        d = trial.array("d", np.ones((2, 1, 1), dtype=dtype))
        w = trial.array("weight", np.full((1, 4), -2.0, dtype=dtype))
        c = trial.result(trial.call("eligibility_credit", x, d, w, 0.5), "eligibility_credit", dtype=dtype, shape=(1, 4))
        trial.expect_close(np.full((1, 4), 5.0), c, dtype, "eligibility_credit of the SPEC example")


# -- S2.5 ---------------------------------------------------------------------------------------


def targets(trial: Trial, data: DataObject | None) -> None:
    """``eid_targets``: softmax of ``C / (mean(C) + 1e-12) / tau_e`` per block."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    zero = data.draw(st.integers(0, 9), label="all-zero credits when 0") == 0
    credits = np.zeros(shape, dtype=dtype) if zero else data.draw(
        hnp.arrays(np.dtype(dtype), shape, elements=st.one_of(st.just(0.0), st.floats(0.0, 1e3, width=32))),
        label="credits",
    )
    tau = data.draw(temperatures(), label="temperature")
    c = trial.array("credits", credits)
    q = trial.result(trial.call("eid_targets", c, m, tau), "eid_targets", dtype=dtype, shape=shape)
    tol = rtol(dtype)
    sums = oracles.block_sums(q, m)
    if not (bool(np.all(q >= 0)) and bool(np.all(np.abs(sums - 1) <= tol))):
        trial.fail("eid_targets must be probabilities summing to 1 per block", got=q)
    if zero:
        trial.expect_close(np.full(shape, 1.0 / m), q, dtype, "eid_targets of all-zero credits (uniform, S2.5)")
    c64 = credits.astype(np.float64)
    z = c64 / (c64.mean() + 1e-12) / tau
    ulps = 4.0 + np.log2(max(2, credits.size))
    ok = trial.judged(softmax_blocks_ok(z, m, dtype, ulps=ulps))
    trial.expect_close(trial.ref.eid_targets(credits, m, tau), q, dtype,
                       "eid_targets against the reference (mean over the whole array)", where=expand(ok, m))


# -- S2.6 ---------------------------------------------------------------------------------------


def _loss_case(data: DataObject) -> tuple[str, int, tuple[int, ...], np.ndarray, np.ndarray, float]:
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    logits = data.draw(logit_arrays(dtype, shape, MAX_ABS[dtype]), label="logits")
    kind = data.draw(st.sampled_from(["softmax", "one-hot", "sparse"]), label="targets")
    raw = data.draw(_float_arrays("float64", shape, 5.0, zeros=False), label="target logits")
    q = oracles.softmax_blocks(raw, m)
    if kind != "softmax":
        blocks = q.reshape(-1, m)
        keep = blocks >= (blocks.max(axis=1, keepdims=True) if kind == "one-hot" else 1.0 / m)
        blocks = np.where(keep, blocks, 0.0)
        q = (blocks / blocks.sum(axis=1, keepdims=True)).reshape(shape)
    scale = data.draw(scales(), label="scale")
    return dtype, m, shape, logits, q.astype(dtype), scale


def _loss_magnitude(logits: np.ndarray, q: np.ndarray, m: int, scale: float) -> float:
    """``(1/G) sum q (|log q| + |log p| + |v|)``: the size of the summands of S2.6."""
    v = scale * logits.astype(np.float64).reshape(-1, m)
    q64 = q.astype(np.float64).reshape(-1, m)
    shifted = v - v.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore"):
        log_q = np.where(q64 > 0, np.log(np.where(q64 > 0, q64, 1.0)), 0.0)
    return float((q64 * (np.abs(log_q) + np.abs(log_p) + np.abs(v))).sum() / v.shape[0])


def loss(trial: Trial, data: DataObject | None) -> None:
    """``eid_loss``: a 0-d array, mean block ``KL(q || p)`` with ``0 log 0 = 0``."""
    assert data is not None
    dtype, m, shape, logits, q, scale = _loss_case(data)
    x, t = trial.array("logits", logits), trial.array("targets", q)
    value = trial.result(trial.call("eid_loss", x, t, m, scale), "eid_loss", dtype=dtype, shape=())
    tol = rtol(dtype)
    magnitude = _loss_magnitude(logits, q, m, scale)
    trial.require(bool(np.isfinite(value)), f"eid_loss is {value!r}; expected a finite value (S2.6 uses log-softmax)")
    trial.require(float(value) >= -tol * max(1.0, magnitude), f"eid_loss is {float(value)!r}; a KL divergence is >= 0")
    trial.expect_close(trial.ref.eid_loss(logits, q, m, scale), value, dtype,
                       "eid_loss against the reference", scale=max(1.0, magnitude))


def loss_golden(trial: Trial) -> None:
    """``KL((1, 0) || (1/2, 1/2)) = log 2``; and finite where ``p`` underflows."""
    for dtype in MATH_DTYPES:
        trial.new_case()
        x = trial.array("logits", np.zeros(2, dtype=dtype))
        t = trial.array("targets", np.array([1.0, 0.0], dtype=dtype))
        value = trial.result(trial.call("eid_loss", x, t, 2, 1.0), "eid_loss", dtype=dtype, shape=())
        trial.expect_close(np.array(np.log(2.0)), value, dtype, "eid_loss(zeros, (1, 0))")
        trial.new_case()
        x = trial.array("logits", np.array([0.0, -1e4], dtype=dtype))
        t = trial.array("targets", np.array([0.0, 1.0], dtype=dtype))
        value = trial.result(trial.call("eid_loss", x, t, 2, 1.0), "eid_loss", dtype=dtype, shape=())
        trial.expect_close(np.array(1e4), value, dtype, "eid_loss where p underflows to 0 (log-softmax, S2.6)")


# -- S2.7 ---------------------------------------------------------------------------------------


def loss_gradient(trial: Trial, data: DataObject | None) -> None:
    """``eid_loss_vjp = scale * (p * sum_block(q) - q) / G * cotangent``."""
    assert data is not None
    dtype, m, shape, logits, q, scale = _loss_case(data)
    if data.draw(st.booleans(), label="targets not normalised"):
        q = (q * data.draw(st.sampled_from([0.5, 2.0]), label="target scale")).astype(dtype)
    cot_value = data.draw(st.sampled_from([1.0, -0.5, 3.0]), label="cotangent")
    x, t = trial.array("logits", logits), trial.array("targets", q)
    cot = trial.array("cotangent", np.array(cot_value, dtype=dtype))
    g = trial.result(trial.call("eid_loss_vjp", x, t, m, scale, cot), "eid_loss_vjp", dtype=dtype, shape=shape)
    # The gradient is a difference p * sum(q) - q: compared relative to the size of its terms.
    p = oracles.softmax_blocks(scale * logits.astype(np.float64), m).reshape(-1, m)
    q64 = q.astype(np.float64).reshape(-1, m)
    terms = scale * (p * np.abs(q64.sum(axis=1, keepdims=True)) + np.abs(q64)) / p.shape[0] * abs(cot_value)
    size = float(terms.max())
    trial.expect_close(trial.ref.eid_loss_vjp(logits, q, m, scale, np.array(cot_value, dtype=dtype)), g, dtype,
                       "eid_loss_vjp against the reference (tolerance scaled by scale * (p + q) / G)", scale=size)
    args = (np.dtype(dtype).type(scale) * logits).astype(np.float64)
    ok = trial.judged(softmax_blocks_ok(args, m, dtype))
    trial.expect_close(oracles.eid_gradient_rule(logits, q, m, scale, cot_value), g, dtype,
                       "eid_loss_vjp against scale * (p * sum(q) - q) / G * cotangent", scale=size,
                       where=expand(ok, m))

CHECKS = (
    Check("S2.3", ("S2.1", "S2.2", "S2.3"), "eligibility_credit: trace, learning signal, credit",
          credit, uses=("eligibility_credit",), golden=credit_golden, budget=0.6),
    Check("S2.5", ("S2.5",), "eid_targets: block softmax of C / (mean(C) + 1e-12) / tau_e",
          targets, uses=("eid_targets",), budget=0.6),
    Check("S2.6", ("S2.6",), "eid_loss: 0-d mean block KL(q || p), 0 log 0 = 0",
          loss, uses=("eid_loss",), golden=loss_golden, budget=0.6),
    Check("S2.7", ("S2.7",), "eid_loss_vjp: scale * (p * sum(q) - q) / G * cotangent",
          loss_gradient, uses=("eid_loss_vjp",), needs="differentiable", budget=0.6),
)
