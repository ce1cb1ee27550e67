"""The mask sampler (SPEC S1) through `spikenm.api` on NumPy arrays, and the reference
VJPs (S1.5) against central finite differences.

Expected values come from hand computation or from the plain-Python formulas below,
never from the kernels under test.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikenm import api
from spikenm.reference import sampler as ref

Case = tuple[np.ndarray, int, int]
"""(array, n, m) drawn by the strategies below."""
PATTERNS = [(1, 2), (1, 4), (2, 4), (3, 4), (4, 4), (2, 8), (4, 8), (8, 16)]


# -- independent plain-Python formulas ------------------------------------------------


def topn_py(block: list[float], n: int) -> list[float]:
    """S1.2 rule: keep i iff #{j: v_j > v_i} + #{j < i: v_j == v_i} < n."""
    out = []
    for i, vi in enumerate(block):
        ahead = sum(1 for vj in block if vj > vi) + sum(1 for vj in block[:i] if vj == vi)
        out.append(1.0 if ahead < n else 0.0)
    return out


def softmax_py(u: list[float]) -> list[float]:
    top = max(u)
    e = [math.exp(x - top) for x in u]
    total = sum(e)
    return [x / total for x in e]


def successive_softmax_py(block: list[float], n: int, tau: float) -> list[float]:
    """S1.3 in float64 Python arithmetic."""
    alpha = list(block)
    s = [0.0] * len(block)
    for _ in range(n):
        a = softmax_py([x / tau for x in alpha])
        s = [si + ai for si, ai in zip(s, a)]
        alpha = [x + math.log(1.0 - ai) if ai < 1.0 else -math.inf for x, ai in zip(alpha, a)]
    return s


def per_block(x: np.ndarray, m: int, fn: Callable[[list[float]], list[float]]) -> np.ndarray:
    """Apply a block formula to every block of ``m`` along the last axis."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, m)
    return np.array([fn([float(v) for v in row]) for row in rows]).reshape(x.shape)


# -- strategies -------------------------------------------------------------------------


@st.composite
def block_arrays(
    draw: st.DrawFn,
    values: st.SearchStrategy[float] | None = None,
    dtypes: tuple[type, ...] = (np.float64,),
    patterns: list[tuple[int, int]] = PATTERNS,
) -> tuple[np.ndarray, int, int]:
    """(array, n, m): shape (*lead, G*m), values from ``values`` (default moderate floats)."""
    n, m = draw(st.sampled_from(patterns))
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    groups = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(dtypes))
    size = int(np.prod(lead, dtype=np.int64)) * groups * m
    elements = values if values is not None else st.floats(-6, 6, allow_subnormal=False)
    flat = draw(st.lists(elements, min_size=size, max_size=size))
    return np.array(flat, dtype=dtype).reshape(*lead, groups * m), n, m


few_values = st.integers(-2, 2).map(float)  # many ties


# -- S1.1 keys ----------------------------------------------------------------------------


def test_S1_1_keys_are_scale_times_logits_plus_noise() -> None:
    """Hand case: the noise and the scale both change which entry wins."""
    logits = np.array([1.0, 0.0, 0.5, 0.2])
    noise = np.array([0.0, 0.9, 0.0, 0.0])
    # scale 1: keys (1, 0.9, 0.5, 0.2) -> entry 0; scale 0.5: keys (0.5, 0.9, 0.25, 0.1) -> 1
    np.testing.assert_array_equal(
        api.sample_mask(logits, 1, 4, noise=noise, scale=1.0), [1.0, 0.0, 0.0, 0.0]
    )
    np.testing.assert_array_equal(
        api.sample_mask(logits, 1, 4, noise=noise, scale=0.5), [0.0, 1.0, 0.0, 0.0]
    )
    soft = api.sample_mask(logits, 2, 4, noise=noise, scale=0.5, temperature=0.7, hard=False)
    keys = [0.5, 0.9, 0.25, 0.1]
    np.testing.assert_allclose(soft, successive_softmax_py(keys, 2, 0.7), rtol=1e-13)


# -- S1.2 hard top-n and the tie rule ---------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "n", "expected"),
    [
        ([0.3, 0.1, 0.3, 0.2], 2, [1, 0, 1, 0]),
        ([0.0, 2.0, 2.0, 1.0], 1, [0, 1, 0, 0]),
        ([2.0, 2.0, 2.0, 2.0], 1, [1, 0, 0, 0]),
        ([2.0, 2.0, 2.0, 2.0], 3, [1, 1, 1, 0]),
        ([-1.0, 5.0, -1.0, -1.0], 2, [1, 1, 0, 0]),
        ([4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0], 2, [1, 1, 0, 0, 0, 0, 1, 1]),
        ([-0.0, 0.0], 1, [1, 0]),
        ([0.0, -0.0], 1, [1, 0]),
        ([1.0, 2.0, 3.0, 4.0], 4, [1, 1, 1, 1]),
    ],
)
def test_S1_2_topn_hand_cases_and_ties_go_to_lower_index(
    scores: list[float], n: int, expected: list[int]
) -> None:
    m = 4 if len(scores) % 4 == 0 else 2
    out = api.topn_mask(np.array(scores), n, m)
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float64))


@given(block_arrays(values=few_values, dtypes=(np.float32, np.float64)))
def test_S1_2_topn_follows_rank_rule_with_exactly_n_ones(case: Case) -> None:
    x, n, m = case
    out = api.topn_mask(x, n, m)
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_array_equal(out, per_block(x, m, lambda b: topn_py(b, n)))
    np.testing.assert_array_equal(out.reshape(-1, m).sum(axis=1), n)


@given(block_arrays(values=few_values))
def test_S1_2_ties_go_to_lower_index_within_equal_keys(case: Case) -> None:
    """Among equal scores, a kept entry never has a dropped one at a lower index."""
    x, n, m = case
    out = api.topn_mask(x, n, m).reshape(-1, m)
    for row, mask in zip(x.reshape(-1, m), out):
        for i in range(m):
            for j in range(i):
                if row[i] == row[j] and mask[i] == 1:
                    assert mask[j] == 1


# -- S1.3 soft mask ---------------------------------------------------------------------


def test_S1_3_n1_is_softmax_hand_case() -> None:
    np.testing.assert_allclose(
        api.relaxed_topn(np.array([0.0, math.log(3.0)]), 1, 2, temperature=1.0),
        [0.25, 0.75], rtol=1e-15,
    )
    # tau = 0.5 doubles the logits: softmax(0, 2 log 3) = (1/10, 9/10)
    np.testing.assert_allclose(
        api.relaxed_topn(np.array([0.0, math.log(3.0)]), 1, 2, temperature=0.5),
        [0.1, 0.9], rtol=1e-14,
    )


def test_S1_3_two_steps_hand_case_exceeds_one() -> None:
    """r = (log .9, log .1), n = m = 2, tau = 1: a_1 = (.9, .1); alpha_2 = (log .09, log .09)
    so a_2 = (.5, .5) and s = (1.4, 0.6): s is not bounded by 1 (S1.3)."""
    s = api.relaxed_topn(np.log(np.array([0.9, 0.1])), 2, 2, temperature=1.0)
    np.testing.assert_allclose(s, [1.4, 0.6], rtol=1e-14)


def test_S1_3_picked_entry_leaves_the_block_hand_case() -> None:
    """keys (500, 0, 0, 0), tau = 1, n = 2: a_1 = (1, 0, 0, 0) exactly, so 1 - a_1 = 0 and
    alpha_2 = (-inf, 0, 0, 0): a_2 = (0, 1/3, 1/3, 1/3)."""
    s = api.relaxed_topn(np.array([500.0, 0.0, 0.0, 0.0]), 2, 4, temperature=1.0)
    np.testing.assert_allclose(s, [1.0, 1 / 3, 1 / 3, 1 / 3], rtol=1e-14)
    assert np.all(np.isfinite(s))


@given(block_arrays(), st.floats(0.05, 5.0))
def test_S1_3_relaxed_matches_python_formula(case: Case, tau: float) -> None:
    x, n, m = case
    out = api.relaxed_topn(x, n, m, temperature=tau)
    expected = per_block(x, m, lambda b: successive_softmax_py(b, n, tau))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-13)


@given(block_arrays(dtypes=(np.float32, np.float64)), st.floats(0.05, 5.0))
def test_S1_3_soft_mask_sums_to_n_and_lies_in_0_n(case: Case, tau: float) -> None:
    x, n, m = case
    s = api.relaxed_topn(x, n, m, temperature=tau)
    assert s.dtype == x.dtype and s.shape == x.shape
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(s.reshape(-1, m).sum(axis=1), n, rtol=tol)
    assert np.all(s >= 0) and np.all(s <= n * (1 + tol))
    if n == 1:
        assert np.all(s <= 1 + tol)


@st.composite
def distinct_blocks(draw: st.DrawFn, spread: int) -> tuple[np.ndarray, int, int]:
    """Blocks with distinct integer keys in [-spread, spread]."""
    n, m = draw(st.sampled_from(PATTERNS))
    groups = draw(st.integers(1, 4))
    rows = [
        draw(st.lists(st.integers(-spread, spread), min_size=m, max_size=m, unique=True))
        for _ in range(groups)
    ]
    return np.array(rows, dtype=np.float64).reshape(1, groups * m), n, m


@given(distinct_blocks(spread=20), st.sampled_from([np.float32, np.float64]))
def test_S1_3_soft_tends_to_hard_as_temperature_goes_to_zero(case: Case, dtype: type) -> None:
    """Distinct keys (gap >= 1): at tau = 0.01, s == h to 1e-6."""
    x, n, m = case
    x = x.astype(dtype)
    s = api.relaxed_topn(x, n, m, temperature=0.01)
    np.testing.assert_allclose(s, per_block(x, m, lambda b: topn_py(b, n)), atol=1e-6)


def test_S1_3_limit_differs_from_hard_with_ties_only() -> None:
    """S1.3: tied kept keys change the limit; wide float32 keys do not (a picked entry with
    a_j == 1 leaves the block instead of being lowered by a finite clamp)."""
    tied = api.relaxed_topn(np.array([1.0, 1.0, 1.0, 0.99]), 3, 4, temperature=1e-3)
    np.testing.assert_allclose(tied, [2 / 3, 2 / 3, 2 / 3, 1.0], atol=1e-4)
    wide = np.array([100.0, 50.0, 0.0, -10.0])
    np.testing.assert_allclose(api.relaxed_topn(wide, 3, 4, temperature=0.01), [1, 1, 1, 0])
    np.testing.assert_allclose(
        api.relaxed_topn(wide.astype(np.float32), 3, 4, temperature=0.01), [1, 1, 1, 0]
    )
    huge = np.array([1e4, 5e3, 0.0, -1e4], dtype=np.float32)
    np.testing.assert_array_equal(api.relaxed_topn(huge, 3, 4, temperature=0.2), [1, 1, 1, 0])


# -- S1.4 output --------------------------------------------------------------------------


@given(
    block_arrays(dtypes=(np.float32, np.float64)),
    st.integers(0, 2**32 - 1), st.floats(0.1, 4.0), st.floats(0.2, 3.0),
)
def test_S1_4_hard_is_topn_of_keys_and_soft_is_relaxed_keys(
    case: Case, seed: int, tau: float, scale: float
) -> None:
    x, n, m = case
    g = api.gumbel_like(x, seed)
    keys = scale * x.astype(np.float64) + g.astype(np.float64)
    hard = api.sample_mask(x, n, m, noise=g, temperature=tau, scale=scale, hard=True)
    soft = api.sample_mask(x, n, m, noise=g, temperature=tau, scale=scale, hard=False)
    assert hard.dtype == soft.dtype == x.dtype
    np.testing.assert_array_equal(hard.reshape(-1, m).sum(axis=1), n)
    if x.dtype == np.float64:  # float32 keys round differently: compare values only in float64
        np.testing.assert_array_equal(hard, per_block(keys, m, lambda b: topn_py(b, n)))
        expected = per_block(keys, m, lambda b: successive_softmax_py(b, n, tau))
        np.testing.assert_allclose(soft, expected, rtol=1e-11, atol=1e-12)
    else:
        keys32 = np.float32(scale) * x + g
        np.testing.assert_array_equal(hard, per_block(keys32, m, lambda b: topn_py(b, n)))


# -- S1.5 gradients -----------------------------------------------------------------------


def finite_difference(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, cot: np.ndarray, m: int,
    h: float = 1e-6,
) -> np.ndarray:
    """Central differences of sum(cot * fn(x)), one position per block at a time (blocks are
    independent, so perturbing entry i of every block at once gives all their derivatives)."""
    grad = np.zeros_like(x)
    flat = x.reshape(-1, m)
    for i in range(m):
        step = np.zeros_like(flat)
        step[:, i] = h
        up = (cot * fn((flat + step).reshape(x.shape))).reshape(-1, m).sum(axis=1)
        down = (cot * fn((flat - step).reshape(x.shape))).reshape(-1, m).sum(axis=1)
        grad.reshape(-1, m)[:, i] = (up - down) / (2 * h)
    return grad


def assert_gradients_close(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-6) -> None:
    """S0.6: gradients compared after scaling by their largest magnitude."""
    size = max(float(np.abs(expected).max()), 1e-12)
    np.testing.assert_allclose(got / size, expected / size, atol=rtol)


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (3, 4), (4, 4), (3, 8)])
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_S1_5_relaxed_topn_vjp_matches_finite_differences(n: int, m: int, tau: float) -> None:
    rng = np.random.default_rng(n * 100 + m + int(tau * 10))
    x = rng.standard_normal((3, 2 * m))
    cot = rng.standard_normal(x.shape)
    got = ref.relaxed_topn_vjp(x, n, m, tau, cot)
    fd = finite_difference(lambda v: api.relaxed_topn(v, n, m, temperature=tau), x, cot, m)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert_gradients_close(got, fd)


def test_S1_5_vjp_hand_case_is_softmax_jacobian() -> None:
    """n = 1: d s_0 / d v = p_0 (e_0 - p) with p = (1/4, 3/4)."""
    got = ref.relaxed_topn_vjp(np.array([0.0, math.log(3.0)]), 1, 2, 1.0, np.array([1.0, 0.0]))
    np.testing.assert_allclose(got, [0.1875, -0.1875], rtol=1e-14)


def test_S1_5_clamped_step_passes_no_gradient_through_log() -> None:
    """keys (500, x1, x2, x3): 1 - a_1 == 0 exactly, so only the direct path remains."""
    rng = np.random.default_rng(5)
    x = np.array([[500.0, 0.3, -0.2, 0.1]])
    cot = rng.standard_normal(x.shape)
    got = ref.relaxed_topn_vjp(x, 2, 4, 1.0, cot)
    fd = finite_difference(lambda v: api.relaxed_topn(v, 2, 4, temperature=1.0), x, cot, 4)
    assert_gradients_close(got, fd)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 4), (2, 8)])
def test_S1_5_sample_mask_vjp_soft_matches_finite_differences(n: int, m: int) -> None:
    rng = np.random.default_rng(7 + n + m)
    logits = rng.standard_normal((2, 2 * m))
    noise = api.gumbel_like(logits, seed=3)
    cot = rng.standard_normal(logits.shape)
    scale, tau = 2.5, 0.8
    got = ref.sample_mask_vjp(logits, noise, n, m, tau, scale, False, cot)
    fd = finite_difference(
        lambda v: api.sample_mask(v, n, m, noise=noise, temperature=tau, scale=scale, hard=False),
        logits, cot, m,
    )
    assert_gradients_close(got, fd)


@given(block_arrays(dtypes=(np.float32, np.float64)), st.floats(0.2, 3.0), st.floats(0.2, 3.0))
def test_S1_5_hard_gradient_is_soft_gradient_is_scale_times_relaxed_vjp(
    case: Case, tau: float, scale: float
) -> None:
    x, n, m = case
    noise = api.gumbel_like(x, seed=11)
    cot = np.cos(np.arange(x.size, dtype=x.dtype)).reshape(x.shape)
    hard = ref.sample_mask_vjp(x, noise, n, m, tau, scale, True, cot)
    soft = ref.sample_mask_vjp(x, noise, n, m, tau, scale, False, cot)
    assert hard.dtype == x.dtype
    np.testing.assert_array_equal(hard, soft)
    keys = x.dtype.type(scale) * x + noise
    expected = scale * ref.relaxed_topn_vjp(keys, n, m, tau, cot).astype(np.float64)
    assert_gradients_close(hard.astype(np.float64), expected, rtol=1e-5)


def test_S1_5_float32_vjp_is_float32_and_close_to_float64() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8))
    cot = rng.standard_normal(x.shape)
    g64 = ref.relaxed_topn_vjp(x, 2, 4, 0.7, cot)
    g32 = ref.relaxed_topn_vjp(x.astype(np.float32), 2, 4, 0.7, cot.astype(np.float32))
    assert g32.dtype == np.float32
    assert_gradients_close(g32.astype(np.float64), g64, rtol=4 * math.sqrt(2.0**-23))


def test_S1_5_vjp_rejects_a_cotangent_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"cotangent has shape \(4,\); expected .*\(8,\)"):
        ref.relaxed_topn_vjp(np.zeros(8), 2, 4, 1.0, np.zeros(4))


# -- S1.7 block probabilities, S1.8 final mask ----------------------------------------------


def test_S1_7_block_probs_hand_cases() -> None:
    x = np.array([0.0, math.log(3.0), 1000.0, 0.0])
    np.testing.assert_allclose(api.block_probs(x, 2), [0.25, 0.75, 1.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(
        api.block_probs(x, 2, scale=2.0), [0.1, 0.9, 1.0, 0.0], rtol=1e-14
    )


@given(block_arrays(dtypes=(np.float32, np.float64)), st.floats(0.1, 10.0))
def test_S1_7_block_probs_is_softmax_of_scaled_logits(case: Case, scale: float) -> None:
    x, _, m = case
    p = api.block_probs(x, m, scale=scale)
    assert p.dtype == x.dtype
    expected = per_block(x, m, lambda b: softmax_py([scale * v for v in b]))
    tol = 1e-5 if x.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(p, expected, rtol=tol, atol=tol)


@given(block_arrays(values=few_values, dtypes=(np.float32, np.float64)))
def test_S1_8_final_mask_is_topn_of_logits(case: Case) -> None:
    x, n, m = case
    out = api.final_mask(x, n, m)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, per_block(x, m, lambda b: topn_py(b, n)))


def test_S1_8_final_mask_hand_case() -> None:
    np.testing.assert_array_equal(
        api.final_mask(np.array([0.5, 2.0, -1.0, 2.0]), 2, 4), [0.0, 1.0, 0.0, 1.0]
    )


# -- axis= (notation: moved last before S1.x apply, moved back after) ------------------------


@given(
    st.sampled_from([(1, 2), (2, 4), (3, 4)]), st.integers(0, 2), st.integers(0, 2**31),
    st.sampled_from([np.float32, np.float64]),
)
def test_S1_axis_moves_block_axis_last_and_back(
    pattern: tuple[int, int], axis: int, seed: int, dtype: type
) -> None:
    n, m = pattern
    shape = [2, 3, 5]
    shape[axis] = 2 * m
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    g = api.gumbel_like(x, seed)

    def last(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, axis, -1)

    def back(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, -1, axis)

    cases = [
        (api.topn_mask(x, n, m, axis=axis), api.topn_mask(last(x), n, m)),
        (api.final_mask(x, n, m, axis=axis - 3), api.final_mask(last(x), n, m)),
        (api.relaxed_topn(x, n, m, temperature=0.5, axis=axis),
         api.relaxed_topn(last(x), n, m, temperature=0.5)),
        (api.block_probs(x, m, scale=1.5, axis=axis), api.block_probs(last(x), m, scale=1.5)),
        (api.sample_mask(x, n, m, noise=g, hard=False, axis=axis),
         api.sample_mask(last(x), n, m, noise=last(g), hard=False)),
    ]
    for got, moved in cases:
        assert got.shape == x.shape and got.dtype == x.dtype
        np.testing.assert_array_equal(got, back(moved))
    # the blocks really run along `axis`: each block of the hard mask has n ones there
    np.testing.assert_array_equal(last(api.topn_mask(x, n, m, axis=axis)).reshape(-1, m).sum(1), n)


# -- S0.4 dtypes ---------------------------------------------------------------------------


def test_S1_float32_in_float32_out_for_every_sampler_function() -> None:
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    g = api.gumbel_like(x, 1)
    assert g.dtype == np.float32
    for out in (
        api.topn_mask(x, 2, 4), api.final_mask(x, 2, 4),
        api.relaxed_topn(x, 2, 4, temperature=0.3), api.block_probs(x, 4),
        api.sample_mask(x, 2, 4, noise=g), api.sample_mask(x, 2, 4, noise=g, hard=False),
        ref.relaxed_topn_vjp(x, 2, 4, 0.3, x), ref.sample_mask_vjp(x, g, 2, 4, 0.3, 1.0, True, x),
    ):
        assert out.dtype == np.float32 and out.shape == x.shape


def test_S1_3_float32_soft_mask_is_float32_arithmetic() -> None:
    """keys (20, 0, 0), n = 2, tau = 1.  float64: 1 - a_1[0] = 2e^-20 / (1 + 2e^-20), so
    alpha_2 ~ (log 2, 0, 0) and s ~ (1.5, 0.25, 0.25).  float32: a_1[0] rounds to 1, the
    clamp lowers key 0 by 87.3 and s ~ (1, 0.5, 0.5).  A float32 call computed in float64
    and then cast would give the float64 answer."""
    x = np.array([20.0, 0.0, 0.0])
    s64 = api.relaxed_topn(x, 2, 3, temperature=1.0)
    s32 = api.relaxed_topn(x.astype(np.float32), 2, 3, temperature=1.0)
    np.testing.assert_allclose(s64, [1.5, 0.25, 0.25], atol=1e-8)
    np.testing.assert_allclose(s32, [1.0, 0.5, 0.5], atol=1e-6)
    assert s32.dtype == np.float32


# -- large inputs run in parallel with identical results --------------------------------------


def test_S1_parallel_kernels_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """S1.2/S1.3/S1.5/S1.7: inputs above the size threshold use the parallel kernels."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 64))
    cot = rng.standard_normal(x.shape)
    runs = []
    for threshold in (1, 1 << 60):
        monkeypatch.setattr(ref, "PARALLEL_MIN_ENTRIES", threshold)
        runs.append((
            ref.topn_mask(x, 2, 4), ref.relaxed_topn(x, 3, 8, 0.5), ref.block_probs(x, 4, 2.0),
            ref.relaxed_topn_vjp(x, 3, 8, 0.5, cot),
        ))
    for parallel, serial in zip(*runs):
        np.testing.assert_array_equal(parallel, serial)
