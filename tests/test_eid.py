"""Eligibility-inspired distillation (SPEC S2.1-S2.7) through `spikenm.api` on NumPy arrays,
and the reference loss VJP (S2.7) against central finite differences.

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
    targets = rng.random((2, 2 * m)) * 2
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
