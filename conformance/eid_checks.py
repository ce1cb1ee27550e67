"""Checks of eligibility-inspired distillation, SPEC S2.1-S2.12 (protocol level)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import DataObject

from spikenm import eid_variants

from . import oracles
from .check import Check
from .conditioning import expand, softmax_blocks_ok, successive_blocks_ok
from .strategies import MATH_DTYPES, MAX_ABS, block_shape, floats, logit_arrays, patterns, scales, temperatures
from .tolerance import rtol
from .trial import Trial


def _float_arrays(dtype: str, shape: tuple[int, ...], max_abs: float, zeros: bool = True) -> st.SearchStrategy[np.ndarray]:
    elements = floats(dtype, max_abs)
    if zeros:
        elements = st.one_of(elements, st.just(0.0))
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


# -- S2.1-S2.3 ---------------------------------------------------------------------------------


def _credit_case(data: DataObject) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, float]:
    """``(dtype, x, d, weight, decay)`` of one credit call: spikes or analog ``x``."""
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
    return dtype, x, d, w, decay


def credit_magnitude(x: np.ndarray, d: np.ndarray, w: np.ndarray, decay: float) -> float:
    """The size of the summands of a credit: ``max |W| * sum_t sum_b |d| |e|`` with the
    trace in float64 (sums are compared relative to it, S0.6)."""
    trace = np.zeros(x.shape[1:])
    magnitude = np.zeros(w.shape)
    for step in range(x.shape[0]):
        trace = decay * trace + x[step].astype(np.float64)
        magnitude += np.abs(d[step].astype(np.float64)).T @ np.abs(trace)
    magnitude *= np.abs(w.astype(np.float64))
    return float(magnitude.max(initial=0.0)) + 1e-300


def credit(trial: Trial, data: DataObject | None) -> None:
    """``eligibility_credit``: ``|W| * sum_t |d_t^T e_t|`` with ``e_t = lam e_{t-1} + x_t``."""
    assert data is not None
    dtype, x, d, w, decay = _credit_case(data)
    shape = (d.shape[2], x.shape[2])
    xs, ds, ws = trial.array("x", x), trial.array("d", d), trial.array("weight", w)
    c = trial.result(trial.call("eligibility_credit", xs, ds, ws, decay), "eligibility_credit", dtype=dtype, shape=shape)
    if not bool(np.all(c >= 0)):
        trial.fail("eligibility_credit has negative entries; expected |W| * sum_t |...| >= 0", got=c)
    trial.expect_close(trial.ref.eligibility_credit(x, d, w, decay), c, dtype,
                       "eligibility_credit against the reference", scale=credit_magnitude(x, d, w, decay))


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

# -- S2.9 ---------------------------------------------------------------------------------------


def signed_credit(trial: Trial, data: DataObject | None) -> None:
    """``eligibility_credit(..., signed=True)``: ``|W| * |sum_t d_t^T e_t|``, never above the
    S2.3 credit of the same inputs."""
    assert data is not None
    dtype, x, d, w, decay = _credit_case(data)
    if data.draw(st.booleans(), label="learning signal alternates in sign over t"):
        d = (d * np.where(np.arange(d.shape[0]) % 2 == 1, -1.0, 1.0)[:, None, None]).astype(dtype)
    shape = (d.shape[2], x.shape[2])
    xs, ds, ws = trial.array("x", x), trial.array("d", d), trial.array("weight", w)
    signed = trial.result(trial.call("eligibility_credit", xs, ds, ws, decay, signed=True, out="signed"),
                          "eligibility_credit(signed=True)", dtype=dtype, shape=shape)
    if not bool(np.all(signed >= 0)):
        trial.fail("eligibility_credit(signed=True) has negative entries; expected |W| * |...| >= 0", got=signed)
    magnitude = credit_magnitude(x, d, w, decay)
    trial.expect_close(trial.ref.eligibility_credit(x, d, w, decay, signed=True), signed, dtype,
                       "eligibility_credit(signed=True) against the reference", scale=magnitude)
    trial.expect_close(oracles.signed_credit_rule(x, d, w, decay), signed, dtype,
                       "eligibility_credit(signed=True) against |W| * |sum_t d_t^T e_t| in float64 (S2.9)",
                       scale=magnitude)
    plain = trial.result(trial.call("eligibility_credit", xs, ds, ws, decay, signed=False, out="plain"),
                         "eligibility_credit(signed=False)", dtype=dtype, shape=shape)
    excess = signed.astype(np.float64) - plain.astype(np.float64)
    allowed = 2 * rtol(dtype) * magnitude
    if not bool(np.all(excess <= allowed)):
        where = np.unravel_index(int(np.argmax(excess)), excess.shape)
        trial.fail(f"the signed credit exceeds the S2.3 credit at {tuple(int(i) for i in where)} by "
                   f"{float(excess[where]):.6g} (allowed rounding {allowed:.3g}); S2.9 says it never is "
                   f"larger (triangle inequality)", expected=plain, got=signed)


def signed_credit_golden(trial: Trial) -> None:
    """``x = 1``, ``d = (1, -1)``, ``W = -2``: with ``lam = 0.5`` the traces are ``(1, 1.5)``,
    signed ``2 * |1 - 1.5| = 1`` against ``2 * (1 + 1.5) = 5``; with ``lam = 0`` the two
    steps cancel exactly (0 against 4)."""
    for dtype in MATH_DTYPES:
        for decay, want_signed, want_plain in ((0.5, 1.0, 5.0), (0.0, 0.0, 4.0)):
            trial.new_case()
            x = trial.array("x", np.ones((2, 1, 4), dtype=dtype))
            d = trial.array("d", np.array([[[1.0]], [[-1.0]]], dtype=dtype))
            w = trial.array("weight", np.full((1, 4), -2.0, dtype=dtype))
            c = trial.result(trial.call("eligibility_credit", x, d, w, decay, signed=True, out="signed"),
                             "eligibility_credit(signed=True)", dtype=dtype, shape=(1, 4))
            trial.expect_close(np.full((1, 4), want_signed), c, dtype,
                               f"eligibility_credit(signed=True) of the S2.9 example, decay={decay}")
            c = trial.result(trial.call("eligibility_credit", x, d, w, decay, signed=False, out="plain"),
                             "eligibility_credit(signed=False)", dtype=dtype, shape=(1, 4))
            trial.expect_close(np.full((1, 4), want_plain), c, dtype,
                               f"eligibility_credit(signed=False) of the S2.9 example, decay={decay}")


# -- S2.10 --------------------------------------------------------------------------------------

CREDIT_KINDS = ("spread", "ties", "silent blocks", "near-silent blocks", "all zero")
"""Running credits of `credit_arrays`: values spread over twelve decades, a few tied
values, some all-zero blocks, some blocks ``1e-9`` times quieter than the rest, or all
zero."""


def credit_arrays(data: DataObject, dtype: str, shape: tuple[int, ...], m: int) -> np.ndarray:
    """Non-negative running credits of ``shape`` (labelled draws).  Non-zero entries stay
    at least ``1e-15``, far above float32's subnormal range, so ``mean_block`` never
    underflows (and flush-to-zero arithmetic cannot change the result)."""
    kind = data.draw(st.sampled_from(CREDIT_KINDS), label="credits")
    if kind == "all zero":
        return np.zeros(shape, dtype=dtype)
    magnitude = data.draw(st.sampled_from([1e-3, 1.0, 1e3]), label="credit magnitude")
    elements = st.sampled_from([0.0, 1.0, 2.0]) if kind == "ties" else st.one_of(
        st.just(0.0), st.floats(1e-3, 1e3))
    c = data.draw(hnp.arrays(np.float64, shape, elements=elements), label="credit values") * magnitude
    blocks = c.reshape(-1, m)
    if kind in ("silent blocks", "near-silent blocks"):
        quiet = np.asarray(data.draw(st.lists(st.booleans(), min_size=blocks.shape[0], max_size=blocks.shape[0]),
                                     label="quiet blocks"))
        blocks = np.where(quiet[:, None], blocks * (0.0 if kind == "silent blocks" else 1e-9), blocks)
    return blocks.reshape(shape).astype(dtype)


def scores(trial: Trial, data: DataObject | None) -> None:
    """``credit_scores``: ``C / mean_block(C)`` (0 in an all-zero block), gated by
    ``E_b / (E_b + E_med)``; scale-free, ``0 <= z <= m``, block sums ``m`` or 0."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    credits = credit_arrays(data, dtype, shape, m)
    gated = data.draw(st.booleans(), label="gated")
    factor = data.draw(st.one_of(st.sampled_from([1e-3, 0.5, 3.0, 1e3]), st.floats(1e-3, 1e3)), label="scale factor")
    c = trial.array("credits", credits)
    z = trial.result(trial.call("credit_scores", c, m, gated, out="z"), "credit_scores", dtype=dtype, shape=shape)
    tol = rtol(dtype)
    masses = oracles.block_masses(credits, m)
    sums = oracles.block_sums(z, m).reshape(-1)
    if not (bool(np.all(z >= 0)) and bool(np.all(z <= m * (1 + tol)))):
        trial.fail(f"credit_scores must lie in [0, m] = [0, {m}] (S2.10)", got=z)
    silent = masses == 0
    if not bool(np.all(sums[silent] == 0)):
        trial.fail("an all-zero block of credits must get scores 0 (S2.10)", got=z)
    if not gated and not bool(np.all(np.abs(sums[~silent] - m) <= tol * m)):
        trial.fail(f"every block of ungated credit_scores with credit must sum to m = {m} (S2.10)", got=z)
    if gated and not bool(np.all(sums <= m * (1 + tol))):
        trial.fail(f"every block of gated credit_scores must sum to m * g_b <= m = {m} (S2.10)", got=z)
    if gated and masses.size:
        median = oracles.lower_median_block(masses)
        if masses[median] > 0 and not abs(sums[median] / m - 0.5) <= tol:
            trial.fail(f"block {median} holds the lower median mass of the credits, so its gate is 1/2 and its "
                       f"scores sum to m / 2; they sum to {float(sums[median])!r} (S2.10)", got=z)
    trial.expect_close(trial.ref.credit_scores(credits, m, gated), z, dtype,
                       f"credit_scores(gated={gated}) against the reference")
    trial.expect_close(oracles.credit_scores_rule(credits, m, gated), z, dtype,
                       f"credit_scores(gated={gated}) against C / mean_block(C) * gate in float64 (S2.10)")
    scaled = trial.array("scaled", (credits.astype(np.float64) * factor).astype(dtype))
    z2 = trial.result(trial.call("credit_scores", scaled, m, gated, out="z_scaled"), "credit_scores",
                      dtype=dtype, shape=shape)
    trial.expect_close(z, z2, dtype, f"credit_scores of {factor!r} * C against those of C (scale-free, S2.10)")


def scores_golden(trial: Trial) -> None:
    """The examples of S2.10: ``(1, 3 | 0, 0 | 2e-9, 0)`` scores ``(0.5, 1.5 | 0, 0 | 2, 0)``;
    gated ``(1, 3 | 0, 0 | 2, 2)`` (masses 4, 0, 4, lower median 4) gives
    ``(0.25, 0.75 | 0, 0 | 0.5, 0.5)``; masses ``(1, 3)`` (lower median 1, not 2 or 3) give
    gates ``1/2, 3/4``; all-zero credits give 0."""
    cases = (
        ([1.0, 3.0, 0.0, 0.0, 2e-9, 0.0], False, [0.5, 1.5, 0.0, 0.0, 2.0, 0.0]),
        ([1.0, 3.0, 0.0, 0.0, 2.0, 2.0], True, [0.25, 0.75, 0.0, 0.0, 0.5, 0.5]),
        ([0.5, 0.5, 1.5, 1.5], True, [0.5, 0.5, 0.75, 0.75]),
        ([0.0, 0.0, 0.0, 0.0], True, [0.0, 0.0, 0.0, 0.0]),
        ([0.0, 0.0, 0.0, 0.0], False, [0.0, 0.0, 0.0, 0.0]),
    )
    for dtype in MATH_DTYPES:
        for credits, gated, want in cases:
            trial.new_case()
            c = trial.array("credits", np.array(credits, dtype=dtype))
            z = trial.result(trial.call("credit_scores", c, 2, gated, out="z"), "credit_scores", dtype=dtype,
                             shape=(len(credits),))
            trial.expect_close(np.array(want), z, dtype, f"credit_scores({credits}, 2, gated={gated})")
            if not any(credits):
                trial.expect_exact(np.zeros(len(credits), dtype=dtype), z, "credit_scores of all-zero credits")


# -- S2.11, S2.12 -------------------------------------------------------------------------------


def variant_blocks_ok(variant: str, credits: np.ndarray, n: int, m: int, tau: float, dtype: str,
                      logits: np.ndarray | None, scale: float) -> np.ndarray:
    """Per block: are the targets of ``variant`` well-conditioned in ``dtype`` (S0.6)?  The
    scores carry about ``m + 4`` roundings (block sum, mean, division, gate)."""
    ulps = float(m + 8)
    if variant == "global":
        c64 = credits.astype(np.float64)
        z = c64 / (c64.mean() + 1e-12) / tau
        return softmax_blocks_ok(z, m, dtype, ulps=4.0 + np.log2(max(2, credits.size)))
    z = oracles.credit_scores_rule(credits, m, variant == "gated")
    if variant == "block":
        return softmax_blocks_ok(z / tau, m, dtype, ulps=ulps)
    if variant == "gated":
        assert logits is not None
        return softmax_blocks_ok(scale * logits.astype(np.float64) + z / tau, m, dtype, ulps=ulps)
    return successive_blocks_ok(z, n, m, tau, dtype, margin=2.0 * (m + 4))


def variants(trial: Trial, data: DataObject | None) -> None:
    """The four target variants of S2.11 composed from the backend's primitives
    (`spikenm.eid_variants.targets`): equal to the reference's, probabilities summing to
    1 per block (``q = t / n`` for ``inclusion``, S2.12)."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    credits = credit_arrays(data, dtype, shape, m)
    variant = data.draw(st.sampled_from(eid_variants.VARIANTS), label="variant")
    tau = data.draw(temperatures(), label="temperature")
    logits, scale = None, 1.0
    c = trial.array("credits", credits)
    if variant == "gated":
        logits = data.draw(logit_arrays(dtype, shape, 100.0), label="logits")
        scale = data.draw(scales(), label="scale")
        pi = trial.array("logits", logits)
        q = trial.call("targets", variant, c, n, m, tau, pi, scale, core="eid_variants", out="q")
    else:
        q = trial.call("targets", variant, c, n, m, tau, core="eid_variants", out="q")
    got = trial.result(q, f"eid_variants.targets({variant!r})", dtype=dtype, shape=shape)
    tol = rtol(dtype)
    sums = oracles.block_sums(got, m)
    if not (bool(np.all(got >= 0)) and bool(np.all(np.abs(sums - 1) <= tol))):
        trial.fail(f"the {variant!r} targets must be probabilities summing to 1 per block (S2.11)", got=got)
    ok = trial.judged(variant_blocks_ok(variant, credits, n, m, tau, dtype, logits, scale))
    want = eid_variants.targets(trial.ref, variant, credits, n, m, tau, logits, scale)
    trial.expect_close(want, got, dtype, f"the {variant!r} targets against the reference's (S2.11)",
                       where=expand(ok, m))
    if variant == "gated":
        assert logits is not None
        gate_zero = oracles.credit_scores_rule(credits, m, True).reshape(-1, m).sum(axis=1) == 0
        p = trial.ref.block_probs(logits, m, scale)
        trial.expect_close(p, got, dtype, "gated targets of a block with gate 0 equal its own block_probs "
                           "(S2.11: q = p)", where=expand(ok & gate_zero.reshape(ok.shape), m))
    if variant == eid_variants.INCLUSION and n == 1:
        block = eid_variants.targets(trial.ref, "block", credits, n, m, tau)
        trial.expect_close(block, got, dtype, "inclusion targets for n = 1 equal the 'block' targets (S2.11)",
                           where=expand(ok, m))


def variants_golden(trial: Trial) -> None:
    """S2.11 by hand for credits ``(1, 3)``, scores ``z = (0.5, 1.5)``, ``tau_e = 1``:
    ``block`` is ``a = softmax(z) = (1, e) / (1 + e)``; ``inclusion`` with ``n = m = 2``
    takes a second step at ``z + log(1 - a) = (1.5 - log(1 + e)) * (1, 1)``, a tie, so
    ``t = a + (1/2, 1/2)`` and ``q = t / 2`` (``t_1 = 1.23 > 1``: S1.3 does not bound the
    soft mask by 1); ``gated`` on this single block (its own median, gate 1/2) with
    logits 0 is ``softmax(0.25, 0.75)``."""
    e = float(np.e)
    a = np.array([1.0, e]) / (1.0 + e)
    s = 1.0 / (1.0 + np.exp(0.5))
    cases = (
        ("block", 1, None, a),
        ("inclusion", 2, None, (a + 0.5) / 2),
        ("gated", 1, [0.0, 0.0], np.array([s, 1.0 - s])),
    )
    for dtype in MATH_DTYPES:
        for variant, n, logits, want in cases:
            trial.new_case()
            c = trial.array("credits", np.array([1.0, 3.0], dtype=dtype))
            if logits is None:
                q = trial.call("targets", variant, c, n, 2, 1.0, core="eid_variants", out="q")
            else:
                pi = trial.array("logits", np.array(logits, dtype=dtype))
                q = trial.call("targets", variant, c, n, 2, 1.0, pi, 1.0, core="eid_variants", out="q")
            got = trial.result(q, f"eid_variants.targets({variant!r})", dtype=dtype, shape=(2,))
            trial.expect_close(want, got, dtype, f"the {variant!r} targets of credits (1, 3) (S2.11)")


CHECKS = (
    Check("S2.3", ("S2.1", "S2.2", "S2.3"), "eligibility_credit: trace, learning signal, credit",
          credit, uses=("eligibility_credit",), golden=credit_golden, budget=0.6),
    Check("S2.5", ("S2.5",), "eid_targets: block softmax of C / (mean(C) + 1e-12) / tau_e",
          targets, uses=("eid_targets",), budget=0.6),
    Check("S2.6", ("S2.6",), "eid_loss: 0-d mean block KL(q || p), 0 log 0 = 0",
          loss, uses=("eid_loss",), golden=loss_golden, budget=0.6),
    Check("S2.7", ("S2.7",), "eid_loss_vjp: scale * (p * sum(q) - q) / G * cotangent",
          loss_gradient, uses=("eid_loss_vjp",), needs="differentiable", budget=0.6),
    Check("S2.9", ("S2.9",), "eligibility_credit(signed=True): |W| * |sum_t d_t^T e_t| <= S2.3 credit",
          signed_credit, uses=("eligibility_credit",), golden=signed_credit_golden, budget=0.6),
    Check("S2.10", ("S2.10",), "credit_scores: C / mean_block(C), gate E_b / (E_b + E_med), scale-free",
          scores, uses=("credit_scores",), golden=scores_golden, budget=0.6),
    Check("S2.11", ("S2.11", "S2.12"), "eid_variants.targets: global, block, gated, inclusion from primitives",
          variants, uses=("eid_targets", "credit_scores", "block_probs", "relaxed_topn"),
          golden=variants_golden, budget=0.6),
)
