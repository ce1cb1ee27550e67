"""Eligibility-inspired distillation (SPEC S2.1-S2.7, S2.9-S2.12) through `spikenm.api` on
NumPy arrays, and the reference loss VJP (S2.7) against central finite differences: the
credit, signed credit, block scores and gate, the four target variants and their errors.

Expected values come from hand computation or from plain-Python/NumPy formulas written
here, never from the functions under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikenm import api
from spikenm.reference import eid as ref

# -- independent formulas -----------------------------------------------------------------


def credit_py(x: np.ndarray, d: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """S2.1-S2.3 with explicit Python loops."""
    t_steps, batch, k_in = x.shape
    outs = d.shape[2]
    c = np.zeros((outs, k_in))
    trace = np.zeros((batch, k_in))
    for t in range(t_steps):
        trace = [[lam * trace[b][k] + float(x[t, b, k]) for k in range(k_in)] for b in range(batch)]
        for o in range(outs):
            for k in range(k_in):
                c[o, k] += abs(sum(float(d[t, b, o]) * trace[b][k] for b in range(batch)))
    return np.abs(w.astype(np.float64)) * c


def softmax_np(v: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (plain NumPy)."""
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kl_py(logits: np.ndarray, targets: np.ndarray, m: int, scale: float) -> float:
    """S2.6 with Python floats: mean over blocks of sum_i q_i (log q_i - log p_i)."""
    total = 0.0
    rows_v = (scale * logits.astype(np.float64)).reshape(-1, m)
    rows_q = targets.astype(np.float64).reshape(-1, m)
    for v, q in zip(rows_v, rows_q):
        top = max(v)
        log_z = math.log(sum(math.exp(vi - top) for vi in v)) + top
        total += sum(qi * (math.log(qi) - (vi - log_z)) for qi, vi in zip(q, v) if qi != 0)
    return total / rows_v.shape[0]


# -- S2.1-S2.3 credit -----------------------------------------------------------------------


def test_S2_3_credit_hand_case() -> None:
    """x_1 = (1, 0), x_2 = (0, 1), d = (2, -1), lam = 0.5: e_1 = (1, 0), e_2 = (0.5, 1);
    sum_t |d_t e_t| = (2, 0) + (0.5, 1) = (2.5, 1); times |W| = (0.5, 3)."""
    x = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    d = np.array([[[2.0]], [[-1.0]]])
    w = np.array([[0.5, -3.0]])
    np.testing.assert_allclose(api.eligibility_credit(x, d, w, decay=0.5), [[1.25, 3.0]])


def test_S2_3_absolute_value_is_outside_the_batch_sum() -> None:
    """Two samples with opposite learning signals and equal traces cancel: credit 0."""
    x = np.ones((1, 2, 4))
    d = np.array([[[1.0], [-1.0]]])
    w = np.ones((1, 4))
    np.testing.assert_array_equal(api.eligibility_credit(x, d, w, decay=0.9), np.zeros((1, 4)))


def test_S2_1_decay_zero_and_one() -> None:
    """lam = 0: e_t = x_t; lam = 1: e_t = x_1 + ... + x_t (hand-summed)."""
    x = np.array([[[1.0]], [[2.0]], [[3.0]]])
    d = np.ones((3, 1, 1))
    w = np.ones((1, 1))
    assert api.eligibility_credit(x, d, w, decay=0.0)[0, 0] == 6.0  # 1 + 2 + 3
    assert api.eligibility_credit(x, d, w, decay=1.0)[0, 0] == 10.0  # 1 + 3 + 6


def test_S2_3_dense_weight_gives_credit_scaled_by_abs_w() -> None:
    """Credit uses |W| of the dense weight: zero weight -> zero credit, sign ignored."""
    x = np.ones((2, 1, 4))
    d = np.ones((2, 1, 1))
    w = np.array([[0.0, -2.0, 2.0, 1e-3]])
    np.testing.assert_allclose(
        api.eligibility_credit(x, d, w, decay=0.5), [[0.0, 5.0, 5.0, 2.5e-3]]
    )


@given(
    st.integers(0, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
    st.floats(0.0, 1.0), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
)
def test_S2_3_credit_matches_python_loops(
    t: int, b: int, k: int, o: int, lam: float, seed: int, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, k)) < 0.5).astype(dtype)  # spikes
    d = rng.standard_normal((t, b, o)).astype(dtype)
    w = rng.standard_normal((o, k)).astype(dtype)
    c = api.eligibility_credit(x, d, w, decay=lam)
    assert c.shape == (o, k) and c.dtype == dtype
    assert np.all(c >= 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, credit_py(x, d, w, lam), rtol=tol, atol=tol)


# -- S2.5 targets ---------------------------------------------------------------------------


def test_S2_5_targets_hand_case_global_mean() -> None:
    """C = (1, 3 | 2, 6): mean 3 over the whole array, z = C / (3 + 1e-12) ~ (1/3, 1 | 2/3, 2).
    A per-block mean would give equal blocks (0.5, 1.5) instead."""
    q = api.eid_targets(np.array([1.0, 3.0, 2.0, 6.0]), 2)
    mean = 3.0 + 1e-12
    e = 1 / (1 + math.exp(2 / mean))
    f = 1 / (1 + math.exp(4 / mean))
    np.testing.assert_allclose(q, [e, 1 - e, f, 1 - f], rtol=1e-14)


def test_S2_5_targets_temperature_divides_z() -> None:
    """C = (1, 3), mean 2, z ~ (0.5, 1.5), tau_e = 0.5: softmax(~1, ~3)."""
    q = api.eid_targets(np.array([1.0, 3.0]), 2, temperature=0.5)
    gap = 2 / (2.0 + 1e-12) / 0.5
    np.testing.assert_allclose(q, [1 / (1 + math.exp(gap)), 1 / (1 + math.exp(-gap))], rtol=1e-14)


def test_S2_5_all_zero_credits_give_uniform_targets() -> None:
    q = api.eid_targets(np.zeros((2, 8), dtype=np.float32), 4)
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, np.full((2, 8), 0.25, dtype=np.float32))


@given(
    st.sampled_from([2, 4, 8]), st.integers(1, 3), st.integers(1, 4), st.floats(0.2, 5.0),
    st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
)
def test_S2_5_targets_match_numpy_formula(
    m: int, rows: int, groups: int, tau: float, seed: int, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    c = (rng.random((rows, groups * m)) * 10).astype(dtype)
    q = api.eid_targets(c, m, temperature=tau)
    assert q.dtype == dtype and q.shape == c.shape
    c64 = c.astype(np.float64)
    z = c64 / (c64.mean() + 1e-12)
    expected = softmax_np((z / tau).reshape(rows, groups, m)).reshape(c.shape)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(q, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(q.reshape(-1, m).sum(axis=1), 1.0, rtol=tol)


def test_S2_5_targets_axis_argument() -> None:
    """axis=0 blocks run down the columns; the mean is still over every entry."""
    c = np.arange(1.0, 9.0).reshape(4, 2)
    q = api.eid_targets(c, 2, axis=0)
    z = c / (c.mean() + 1e-12)
    expected = np.concatenate([softmax_np(z[0:2].T).T, softmax_np(z[2:4].T).T])
    np.testing.assert_allclose(q, expected, rtol=1e-14)


# -- S2.6 loss ------------------------------------------------------------------------------


def test_S2_6_loss_hand_cases() -> None:
    """q = (1, 0), p = (1/2, 1/2): KL = log 2, the 0 log 0 term is 0.  Two blocks, the
    second with q == p: mean (log 2 + 0) / 2."""
    loss = api.eid_loss(np.zeros(2), np.array([1.0, 0.0]), 2)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == np.float64
    assert float(loss) == pytest.approx(math.log(2), rel=1e-15)
    two = api.eid_loss(np.zeros(4), np.array([1.0, 0.0, 0.5, 0.5]), 2)
    assert float(two) == pytest.approx(math.log(2) / 2, rel=1e-15)


def test_S2_6_scale_multiplies_logits() -> None:
    """logits (0, log 3), scale 2: p = (1/10, 9/10); q = (1/2, 1/2):
    KL = 0.5 log(0.5/0.1) + 0.5 log(0.5/0.9)."""
    loss = api.eid_loss(np.array([0.0, math.log(3.0)]), np.array([0.5, 0.5]), 2, scale=2.0)
    expected = 0.5 * math.log(5.0) + 0.5 * math.log(5.0 / 9.0)
    assert float(loss) == pytest.approx(expected, rel=1e-14)


def test_S2_6_loss_stays_finite_where_p_underflows() -> None:
    """logits (0, -1000): p_1 = e^-1000 underflows, log p_1 = -1000 does not.
    q = (0, 1): KL = log 1 - log p_1 = 1000; q = (1, 0): KL = -log p_0 ~ 0."""
    logits = np.array([0.0, -1000.0])
    assert float(api.eid_loss(logits, np.array([0.0, 1.0]), 2)) == pytest.approx(1000.0)
    assert float(api.eid_loss(logits, np.array([1.0, 0.0]), 2)) == pytest.approx(0.0, abs=1e-300)


@given(
    st.sampled_from([2, 4, 8]), st.integers(1, 3), st.integers(1, 3), st.floats(0.2, 4.0),
    st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]), st.booleans(),
)
def test_S2_6_loss_matches_python_formula(
    m: int, rows: int, groups: int, scale: float, seed: int, dtype: type, zeros: bool
) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((rows, groups * m)).astype(dtype)
    q = softmax_np(rng.standard_normal((rows, groups, m)))
    if zeros:
        q[..., 0] = 0.0
        q /= q.sum(axis=-1, keepdims=True)
    q = q.reshape(logits.shape).astype(dtype)
    loss = api.eid_loss(logits, q, m, scale=scale)
    assert loss.shape == () and loss.dtype == dtype
    assert float(loss) >= -1e-6
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert float(loss) == pytest.approx(kl_py(logits, q, m, scale), rel=tol, abs=tol)


def test_S2_6_loss_is_zero_when_targets_equal_probs_and_axis_is_honored() -> None:
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((8, 3))
    blocks = np.moveaxis(logits, 0, -1).reshape(3, 2, 4)
    p_axis0 = np.moveaxis(softmax_np(blocks).reshape(3, 8), -1, 0)
    assert abs(float(api.eid_loss(logits, p_axis0, 4, axis=0))) < 1e-15
    assert float(api.eid_loss(logits, p_axis0, 4, axis=0)) < float(
        api.eid_loss(logits, np.full((8, 3), 0.25), 4, axis=0)
    )


# -- S2.7 loss gradient -------------------------------------------------------------------------


def fd_loss_gradient(logits: np.ndarray, targets: np.ndarray, m: int, scale: float,
                     h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (float(api.eid_loss(up, targets, m, scale=scale))
                     - float(api.eid_loss(down, targets, m, scale=scale))) / (2 * h)
    return grad


@pytest.mark.parametrize(("m", "scale"), [(2, 1.0), (4, 0.7), (8, 2.5)])
def test_S2_7_vjp_matches_finite_differences_for_unnormalized_targets(m: int, scale: float) -> None:
    """Targets that do not sum to 1 (and one zero): the exact p * sum(q) - q form."""
    rng = np.random.default_rng(m)
    logits = rng.standard_normal((2, 2 * m))
    targets = rng.random((2, 2 * m))  # in [0, 1) (S0.8), block sums other than 1
    targets[0, 0] = 0.0
    cot = 1.7
    got = ref.eid_loss_vjp(logits, targets, m, scale, np.array(cot))
    fd = cot * fd_loss_gradient(logits, targets, m, scale)
    size = np.abs(fd).max()
    np.testing.assert_allclose(got / size, fd / size, atol=1e-7)


@given(
    st.sampled_from([2, 4, 8]), st.integers(1, 3), st.floats(0.2, 4.0), st.integers(0, 2**31),
    st.sampled_from([np.float32, np.float64]),
)
def test_S2_7_vjp_is_scale_p_minus_q_over_g_for_normalized_targets(
    m: int, groups: int, scale: float, seed: int, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((2, groups * m)).astype(dtype)
    q = softmax_np(rng.standard_normal((2, groups, m))).reshape(logits.shape).astype(dtype)
    got = ref.eid_loss_vjp(logits, q, m, scale, np.array(1.0, dtype=dtype))
    assert got.dtype == dtype and got.shape == logits.shape
    p = softmax_np(scale * logits.astype(np.float64).reshape(2, groups, m)).reshape(logits.shape)
    expected = scale * (p - q.astype(np.float64)) / (2 * groups)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_S2_7_cotangent_scales_and_must_be_scalar() -> None:
    logits = np.array([0.0, 0.0])
    q = np.array([1.0, 0.0])
    # p = (1/2, 1/2), G = 1: (p - q) = (-1/2, 1/2)
    np.testing.assert_allclose(ref.eid_loss_vjp(logits, q, 2, 1.0, 3.0), [-1.5, 1.5])
    np.testing.assert_allclose(ref.eid_loss_vjp(logits, q, 2, 1.0, np.array(-2.0)), [1.0, -1.0])
    with pytest.raises(ValueError, match=r"scalar or 0-d array, got shape \(2,\)"):
        ref.eid_loss_vjp(logits, q, 2, 1.0, np.ones(2))


def test_S2_float32_in_float32_out() -> None:
    x = np.ones((2, 3, 8), dtype=np.float32)
    d = np.ones((2, 3, 4), dtype=np.float32)
    w = np.ones((4, 8), dtype=np.float32)
    c = api.eligibility_credit(x, d, w, decay=0.5)
    q = api.eid_targets(c, 4)
    loss = api.eid_loss(w, q, 4)
    assert c.dtype == q.dtype == loss.dtype == np.float32
    assert ref.eid_loss_vjp(w, q, 4, 1.0, np.float32(1)).dtype == np.float32


def test_S2_reference_docstring_examples_run() -> None:
    """The examples of `spikenm.reference.eid` (S2.3, S2.5-S2.7, S2.9, S2.10) run and
    print what they show."""
    import doctest

    import spikenm.reference.eid as module

    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0, result


# -- S2.9 signed credit -----------------------------------------------------------------------


def signed_credit_py(x: np.ndarray, d: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """S2.9 with explicit Python loops: |W| * |sum_t sum_b d_t[b, o] e_t[b, k]|."""
    t_steps, batch, k_in = x.shape
    outs = d.shape[2]
    total = [[0.0] * k_in for _ in range(outs)]
    trace = [[0.0] * k_in for _ in range(batch)]
    for t in range(t_steps):
        trace = [[lam * trace[b][k] + float(x[t, b, k]) for k in range(k_in)] for b in range(batch)]
        for o in range(outs):
            for k in range(k_in):
                total[o][k] += sum(float(d[t, b, o]) * trace[b][k] for b in range(batch))
    return np.abs(w.astype(np.float64)) * np.abs(np.array(total).reshape(outs, k_in))


def test_S2_9_signed_credit_hand_case() -> None:
    """The S2.3 hand case signed: d_1 e_1 = (2, 0), d_2 e_2 = (-0.5, -1); the time sum
    (1.5, -1) comes before |.|, so |W| * (1.5, 1) = (0.75, 3) against (1.25, 3)."""
    x = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    d = np.array([[[2.0]], [[-1.0]]])
    w = np.array([[0.5, -3.0]])
    np.testing.assert_allclose(api.eligibility_credit(x, d, w, decay=0.5, signed=True), [[0.75, 3.0]])
    np.testing.assert_allclose(api.eligibility_credit(x, d, w, decay=0.5), [[1.25, 3.0]])


def test_S2_9_alternating_learning_signal_cancels() -> None:
    """Zero-mean noise over time: d = (+1, -1) with a constant trace (lam = 0) cancels
    exactly in the signed credit, while the S2.3 credit adds it up (2 * |W|)."""
    x = np.ones((2, 3, 4))
    d = np.array([[[1.0]] * 3, [[-1.0]] * 3])
    w = np.full((1, 4), -0.5)
    np.testing.assert_array_equal(api.eligibility_credit(x, d, w, decay=0.0, signed=True), np.zeros((1, 4)))
    np.testing.assert_allclose(api.eligibility_credit(x, d, w, decay=0.0), np.full((1, 4), 3.0))


@given(
    st.integers(0, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
    st.floats(0.0, 1.0), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
)
def test_S2_9_signed_credit_matches_python_loops_and_never_exceeds_S2_3(
    t: int, b: int, k: int, o: int, lam: float, seed: int, dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, k)) < 0.5).astype(dtype)
    d = rng.standard_normal((t, b, o)).astype(dtype)
    w = rng.standard_normal((o, k)).astype(dtype)
    signed = api.eligibility_credit(x, d, w, decay=lam, signed=True)
    plain = api.eligibility_credit(x, d, w, decay=lam)
    assert signed.shape == (o, k) and signed.dtype == dtype and np.all(signed >= 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    size = max(1.0, float(np.abs(credit_py(x, d, w, lam)).max(initial=0.0)))
    np.testing.assert_allclose(signed, signed_credit_py(x, d, w, lam), rtol=tol, atol=tol * size)
    assert np.all(signed <= plain + tol * size)   # triangle inequality (S2.9)
    same_sign = api.eligibility_credit(x, np.abs(d), w, decay=lam, signed=True)
    np.testing.assert_allclose(same_sign, api.eligibility_credit(x, np.abs(d), w, decay=lam),
                               rtol=tol, atol=tol * size)   # no sign changes: equal


def test_S2_9_signed_must_be_a_bool() -> None:
    x, d, w = np.ones((1, 1, 2)), np.ones((1, 1, 1)), np.ones((1, 2))
    with pytest.raises(TypeError, match=r"signed=1 is invalid; expected True or False"):
        api.eligibility_credit(x, d, w, decay=0.5, signed=1)


# -- S2.10 block scores and gate --------------------------------------------------------------


def scores_py(c: np.ndarray, m: int, gated: bool) -> np.ndarray:
    """S2.10 with Python floats: z = C / mean_block, times E_b / (E_b + E_med)."""
    blocks = [[float(v) for v in row] for row in c.reshape(-1, m)]
    masses = [sum(row) for row in blocks]
    median = sorted(masses)[(len(masses) - 1) // 2] if masses else 0.0
    out = []
    for row, mass in zip(blocks, masses):
        mean = mass / m
        z = [v / mean if mean > 0 else 0.0 for v in row]
        if gated:
            gate = mass / (mass + median) if mass + median > 0 else 0.0
            z = [v * gate for v in z]
        out.append(z)
    return np.array(out).reshape(c.shape)


def test_S2_10_scores_are_scale_free_per_block() -> None:
    """C = (1e-9, 3e-9 | 2, 6): both blocks score (0.5, 1.5): a near-silent block is as
    decisive as an active one (the global mean of S2.5 would give it ~0)."""
    z = api.credit_scores(np.array([1e-9, 3e-9, 2.0, 6.0]), 2)
    np.testing.assert_allclose(z, [0.5, 1.5, 0.5, 1.5], rtol=1e-15)
    np.testing.assert_allclose(api.credit_scores(np.array([1e-9, 3e-9, 2.0, 6.0]) * 7.3, 2), z, rtol=1e-15)


def test_S2_10_gate_uses_the_lower_median_of_the_block_masses() -> None:
    """Masses (4, 0, 4): sorted (0, 4, 4), E_med = 4: gates 1/2, 0, 1/2.  Masses (1, 3)
    (G = 2): the lower median is 1 (rank (2 - 1) // 2 = 0), not 3 or the mean 2, so the
    gates are 1/2 and 3/4."""
    z = api.credit_scores(np.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0]), 2, gated=True)
    np.testing.assert_allclose(z, [0.25, 0.75, 0.0, 0.0, 0.5, 0.5], rtol=1e-15)
    z = api.credit_scores(np.array([0.5, 0.5, 1.5, 1.5]), 2, gated=True)
    np.testing.assert_allclose(z, [0.5, 0.5, 0.75, 0.75], rtol=1e-15)


def test_S2_10_all_zero_credits_give_zero_scores() -> None:
    """An all-zero block scores 0; all-zero credits give 0 gated (E_b + E_med = 0) or not."""
    for gated in (False, True):
        z = api.credit_scores(np.zeros((2, 8), dtype=np.float32), 4, gated=gated)
        assert z.dtype == np.float32
        np.testing.assert_array_equal(z, np.zeros((2, 8), dtype=np.float32))
    z = api.credit_scores(np.array([0.0, 0.0, 1.0, 3.0]), 2, gated=True)   # E_med = 0
    np.testing.assert_allclose(z, [0.0, 0.0, 0.5, 1.5], rtol=1e-15)        # gate 1 for E_b > 0


def test_S2_10_silent_and_loud_blocks_gate_towards_0_and_1() -> None:
    """Masses (1e-6, 1, 1e6): E_med = 1, gates ~0, 1/2, ~1."""
    c = np.array([1e-6, 0.0, 1.0, 0.0, 1e6, 0.0])
    sums = api.credit_scores(c, 2, gated=True).reshape(3, 2).sum(axis=1) / 2
    np.testing.assert_allclose(sums, [1e-6 / (1 + 1e-6), 0.5, 1e6 / (1e6 + 1)], rtol=1e-14)


@given(
    st.sampled_from([2, 3, 4, 8]), st.integers(1, 3), st.integers(1, 4), st.booleans(),
    st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]), st.floats(1e-3, 1e3),
)
def test_S2_10_scores_match_python_formula_and_bounds(
    m: int, rows: int, groups: int, gated: bool, seed: int, dtype: type, factor: float
) -> None:
    rng = np.random.default_rng(seed)
    c = rng.random((rows, groups * m)) * 10
    c[rng.random(c.shape) < 0.3] = 0.0
    c[:, :m] *= rng.integers(0, 2)          # sometimes an all-zero block
    c = c.astype(dtype)
    z = api.credit_scores(c, m, gated=gated)
    assert z.dtype == dtype and z.shape == c.shape
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(z, scores_py(c, m, gated), rtol=tol, atol=tol)
    sums = z.reshape(-1, m).sum(axis=1)
    live = c.reshape(-1, m).sum(axis=1) > 0
    assert np.all(z >= 0) and np.all(z <= m * (1 + tol))
    assert np.all(sums[~live] == 0)
    if not gated:
        np.testing.assert_allclose(sums[live], m, rtol=tol)
    scaled = api.credit_scores((c.astype(np.float64) * factor).astype(dtype), m, gated=gated)
    np.testing.assert_allclose(scaled, z, rtol=10 * tol, atol=10 * tol)


def test_S2_10_axis_argument() -> None:
    """axis=0: blocks run down the columns; the median is over every block."""
    c = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 5.0], [2.0, 5.0]])
    z = api.credit_scores(c, 2, gated=True, axis=0)
    want = scores_py(np.ascontiguousarray(c.T), 2, True).T
    np.testing.assert_allclose(z, want, rtol=1e-15)


def test_S2_10_errors() -> None:
    c = np.ones(4)
    with pytest.raises(TypeError, match=r"gated=1 is invalid; expected True or False"):
        api.credit_scores(c, 2, gated=1)
    with pytest.raises(ValueError, match=r"credits.*negative"):
        api.credit_scores(np.array([1.0, -1.0]), 2)
    with pytest.raises(ValueError, match=r"multiple of m"):
        api.credit_scores(np.ones(6), 4)
    with pytest.raises(TypeError, match=r"float32"):
        api.credit_scores(np.ones(4, dtype=np.float16), 2)
    with pytest.raises(ValueError, match=r"credits contains NaN or inf \(first at index \(1,\)"):
        api.credit_scores(np.array([1.0, np.nan]), 2, gated=True)


# -- S2.11 target variants, S2.12 N-of-M ----------------------------------------------------


def test_S2_11_global_is_the_S2_5_targets() -> None:
    c = np.array([1.0, 3.0, 2.0, 6.0])
    np.testing.assert_array_equal(api.eid_targets(c, 2, variant="global"), api.eid_targets(c, 2))


def test_S2_11_block_targets_hand_case() -> None:
    """C = (1, 3 | 2e-9, 6e-9): both blocks score (0.5, 1.5); tau_e = 0.5 gives
    softmax(1, 3) = (1, e^2) / (1 + e^2) in each block."""
    q = api.eid_targets(np.array([1.0, 3.0, 2e-9, 6e-9]), 2, temperature=0.5, variant="block")
    a = 1 / (1 + math.exp(2.0))
    np.testing.assert_allclose(q, [a, 1 - a, a, 1 - a], rtol=1e-14)


def test_S2_11_gated_targets_hand_case_and_silent_block_keeps_p() -> None:
    """C = (1, 3 | 0, 0 | 2, 2), masses (4, 0, 4), gates (1/2, 0, 1/2), z_g = (0.25, 0.75 |
    0, 0 | 0.5, 0.5); logits pi, scale 2: q = softmax(2 pi + z_g).  The silent block
    (gate 0) gets q = p = block_probs(pi, scale=2): no EID pull."""
    c = np.array([1.0, 3.0, 0.0, 0.0, 2.0, 2.0])
    pi = np.array([0.1, -0.2, 0.3, 1.1, 0.0, 0.5])
    q = api.eid_targets(c, 2, variant="gated", logits=pi, scale=2.0)
    v = 2 * pi + np.array([0.25, 0.75, 0.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(q, softmax_np(v.reshape(3, 2)).reshape(6), rtol=1e-14)
    np.testing.assert_allclose(q[2:4], api.block_probs(pi, 2, scale=2.0)[2:4], rtol=1e-15)
    grad = ref.eid_loss_vjp(pi, q, 2, 2.0, np.array(1.0))
    np.testing.assert_allclose(grad[2:4], 0.0, atol=1e-16)


def test_S2_11_S2_12_inclusion_targets() -> None:
    """The api example: C = (4, 3, 0, 1), n = 2, tau_e = 0.1: t ~ (1, 1, 0, 0) keeps the
    two most credited entries; q = t / n ~ (1/2, 1/2, 0, 0) sums to 1 (S2.12).  For n = 1
    the inclusion targets are the block targets."""
    c = np.array([4.0, 3.0, 0.0, 1.0])
    q = api.eid_targets(c, 4, temperature=0.1, variant="inclusion", n=2)
    np.testing.assert_allclose(q.sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(q, [0.5, 0.5, 0.0, 0.0], atol=5e-3)
    z = api.credit_scores(c, 4)
    np.testing.assert_allclose(q, api.relaxed_topn(z, 2, 4, temperature=0.1) / 2, rtol=1e-15)
    for tau in (0.3, 1.0, 4.0):
        np.testing.assert_allclose(api.eid_targets(c, 4, temperature=tau, variant="inclusion", n=1),
                                   api.eid_targets(c, 4, temperature=tau, variant="block"), rtol=1e-14)


@given(
    st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8), (4, 8)]), st.integers(1, 3),
    st.sampled_from(["global", "block", "gated", "inclusion"]), st.floats(0.2, 4.0),
    st.floats(0.3, 3.0), st.integers(0, 2**31), st.sampled_from([np.float32, np.float64]),
)
def test_S2_11_S2_12_every_variant_sums_to_one_and_trains_with_p_minus_q(
    nm: tuple[int, int], groups: int, variant: str, tau: float, scale: float, seed: int,
    dtype: type,
) -> None:
    """Every variant's targets are probabilities summing to 1 per block, so the S2.7
    gradient of their loss is scale * (p - q) / G (S2.12: q = t / n for inclusion)."""
    n, m = nm
    rng = np.random.default_rng(seed)
    c = (rng.random((2, groups * m)) * 5).astype(dtype)
    pi = rng.standard_normal(c.shape).astype(dtype)
    kwargs = {"logits": pi, "scale": scale} if variant == "gated" else {}
    q = api.eid_targets(c, m, temperature=tau, variant=variant, n=n, **kwargs)
    assert q.dtype == dtype and q.shape == c.shape and np.all(q >= 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(q.reshape(-1, m).sum(axis=1), 1.0, rtol=tol)
    grad = ref.eid_loss_vjp(pi, q, m, scale, np.array(1.0, dtype=dtype))
    p = softmax_np(scale * pi.astype(np.float64).reshape(-1, m)).reshape(c.shape)
    np.testing.assert_allclose(grad, scale * (p - q) / (c.size // m), rtol=10 * tol, atol=10 * tol)


def test_S2_12_uniform_on_the_target_set_keeps_it_under_every_draw() -> None:
    """p uniform on S = {0, 2} (logits -1e4 elsewhere, so p = q = t / n there): every
    Gumbel top-2 draw keeps exactly S, so the inclusion variance is 0."""
    c = np.array([5.0, 0.0, 5.0, 0.0])
    q = api.eid_targets(c, 4, temperature=0.05, variant="inclusion", n=2)
    np.testing.assert_allclose(q, [0.5, 0.0, 0.5, 0.0], atol=1e-11)
    logits = np.where(q > 0.25, 0.0, -1e4)
    for seed in range(50):
        noise = api.gumbel_like(logits, seed=seed)
        mask = api.sample_mask(logits, 2, 4, noise=noise)
        np.testing.assert_array_equal(mask, [1.0, 0.0, 1.0, 0.0])


def test_S2_11_variant_errors() -> None:
    c = np.ones(8)
    with pytest.raises(ValueError, match=r"variant='nope' is invalid; expected one of"):
        api.eid_targets(c, 4, variant="nope")
    with pytest.raises(ValueError, match=r"variant='gated' needs logits="):
        api.eid_targets(c, 4, variant="gated")
    with pytest.raises(ValueError, match=r"variant='inclusion' needs n"):
        api.eid_targets(c, 4, variant="inclusion")
    for variant in ("global", "block", "inclusion"):
        with pytest.raises(ValueError, match=rf"logits= is used by the variants \('gated',\) only, not '{variant}'"):
            api.eid_targets(c, 4, variant=variant, n=2, logits=np.zeros(8))
    with pytest.raises(ValueError, match=r"1 <= n <= m=4, got n=5"):
        api.eid_targets(c, 4, variant="inclusion", n=5)
    with pytest.raises(ValueError, match=r"1 <= n <= m=4, got n=0"):
        api.eid_targets(c, 4, variant="block", n=0)
    with pytest.raises(ValueError, match=r"shapes must match \(credits: \(8,\), logits: \(4,\)\)"):
        api.eid_targets(c, 4, variant="gated", logits=np.zeros(4))
    with pytest.raises(TypeError, match=r"dtypes must match \(credits: float64, logits: float32\)"):
        api.eid_targets(c, 4, variant="gated", logits=np.zeros(8, dtype=np.float32))
    with pytest.raises(ValueError, match=r"scale must be finite and > 0, got -1.0"):
        api.eid_targets(c, 4, variant="gated", logits=np.zeros(8), scale=-1.0)
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(2,\)"):
        api.eid_targets(c, 4, variant="gated", logits=np.array([0, 0, np.inf, 0, 0, 0, 0, 0.0]))
