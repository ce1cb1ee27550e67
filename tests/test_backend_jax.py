"""The JAX backend against SPEC.md and the NumPy reference, through `spikenm.api`; and
the JAX model backend (`spikenm.backends.jax.snn`, SPEC S4) on its own: devices, compiled
step caching, float32 runs, batch norm and credits by hand (its float64 agreement with the
NumPy reference is `tests/test_train_backends.py`).

Every test names the clause it checks.  Values are compared with the tolerances of
SPEC S0.6: masks, indices and packed values exactly; other floats with
``rtol = atol = 4 * sqrt(eps)``; gradients after scaling by their largest magnitude.

64-bit types: each test runs inside ``with jax.enable_x64(True):`` (an autouse fixture),
so float64 stays float64 here without changing the global flag for other test modules;
tests about the 32-bit default enter ``jax.enable_x64(False)`` themselves.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import spikenm.backends.jax as jb
import spikenm.reference as ref
from spikenm import api, registry
from spikenm.backends.jax import snn as jsnn
from spikenm.backends.jax.snn_credit import conv_credit
from spikenm.packed import Packed
from spikenm.protocol import Backend, missing_members
from spikenm.snn import (EIDRequest, Graph, LIFParams, ModelBackend, Node, init_buffers,
                         init_params)

from network_helpers import random_params

FLOATS = (np.float32, np.float64)
PATTERNS = ((1, 2), (1, 4), (2, 4), (3, 4), (4, 4), (2, 8), (4, 8), (3, 3), (8, 16))
SHORT_PATTERNS = ((1, 2), (2, 4), (3, 3), (4, 8))
"""For the compile-heavy tests (gradients, packing): n = 1, n = m, odd m and 4:8."""
PACK_DTYPES = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.int8)
PACK_CASES = tuple(
    (nm, dtype) for dtype, patterns in (
        (np.float16, ((1, 2), (4, 8))), (ml_dtypes.bfloat16, ((2, 4), (3, 3))),
        (np.float32, ((2, 4), (3, 4), (8, 16))), (np.float64, ((1, 4), (4, 8))),
        (np.int8, ((2, 4), (3, 3))),
    ) for nm in patterns
)
"""(pattern, dtype) pairs for the packed format: every dtype, two or three patterns each
(the packing logic does not depend on the dtype; each pair costs a compilation)."""


@pytest.fixture(autouse=True)
def _x64() -> Iterator[None]:
    """64-bit types for this test only (a thread-local context, not the global flag)."""
    with jax.enable_x64(True):
        yield


# -- comparison helpers -------------------------------------------------------------------

def _rtol(dtype: Any) -> float:
    """``4 * sqrt(eps(dtype))`` (SPEC S0.6)."""
    return 4.0 * math.sqrt(float(ml_dtypes.finfo(dtype).eps))


def _assert_jax(got: Any, dtype: Any, shape: tuple[int, ...]) -> None:
    """A JAX array of the caller's dtype and the expected shape (jax in, jax out)."""
    assert isinstance(got, jax.Array), f"expected a jax.Array, got {type(got)}"
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == shape, f"shape {got.shape}, expected {shape}"


def _assert_close(got: Any, want: np.ndarray, dtype: Any) -> None:
    """``|a - b| <= atol + rtol * |b|`` with ``atol = rtol`` (order-one quantities)."""
    tol = _rtol(dtype)
    np.testing.assert_allclose(jb.to_numpy(got), want, rtol=tol, atol=tol)


def _assert_grad_close(got: Any, want: np.ndarray, dtype: Any) -> None:
    """Gradients compared after scaling by their largest magnitude (SPEC S0.6)."""
    got_np = jb.to_numpy(got)
    assert got_np.shape == want.shape
    scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(got_np - want))) / scale
    assert err <= _rtol(dtype), f"scaled gradient error {err} > {_rtol(dtype)}"


def _normal(seed: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _ties(seed: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Scores from {-1, -0, 0, 1}: most blocks have ties, and -0.0 == 0.0."""
    choices = np.array([-1.0, -0.0, 0.0, 1.0])
    return np.random.default_rng(seed).choice(choices, size=shape).astype(dtype)


def _gumbel(seed: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return ref.gumbel_like(np.zeros(shape, dtype), seed)


def _j(a: np.ndarray) -> jax.Array:
    return jb.from_numpy(a)


pattern = st.sampled_from(PATTERNS)
short_pattern = st.sampled_from(SHORT_PATTERNS)
float_dtype = st.sampled_from(FLOATS)
seed = st.integers(0, 2**32 - 1)
rows = st.just(2)
blocks = st.just(2)
"""Hypothesis varies values, pattern, dtype and parameters; the array shape is fixed at
``(2, 2 * m)`` because every new shape, dtype or pattern costs an XLA compilation (other
shapes and axes are covered by the dedicated tests)."""
temperature = st.sampled_from((0.25, 0.5, 1.0, 2.0))
scale = st.sampled_from((1.0, 0.5, 3.0))


# -- protocol and array plumbing ----------------------------------------------------------

def test_protocol_backend_module_is_complete() -> None:
    """protocol.Backend: the module is the backend object, with every member."""
    assert jb.BACKEND is jb
    assert jb.name == "jax"
    assert jb.differentiable is True
    assert missing_members(jb) == []
    assert isinstance(jb, Backend)
    assert api.backend_for(x=jnp.zeros(2)) is jb


@pytest.mark.parametrize(
    "dtype, expected",
    [(jnp.float32, "float32"), (jnp.float64, "float64"), (jnp.bfloat16, "bfloat16"),
     (jnp.float16, "float16"), (jnp.int8, "int8"), (jnp.uint8, "uint8"),
     (jnp.int32, "int32"), (jnp.bool_, "bool")],
)
def test_S0_4_dtype_name_is_canonical(dtype: Any, expected: str) -> None:
    """S0.4: dtypes are named canonically, for arrays and tracers alike."""
    x = jnp.zeros(3, dtype)
    assert jb.dtype_name(x) == expected
    seen: list[str] = []
    jax.jit(lambda v: seen.append(jb.dtype_name(v)) or v)(x)
    assert seen == [expected]


def test_S0_5_all_finite_bool_for_values_none_for_tracers() -> None:
    """S0.5: all_finite is a Python bool on values and None on tracers (check skipped)."""
    assert jb.all_finite(jnp.array([1.0, 2.0])) is True
    assert jb.all_finite(jnp.array([1.0, jnp.nan])) is False
    assert jb.all_finite(jnp.array([-jnp.inf], jnp.float32)) is False
    assert jb.all_finite(jnp.arange(3)) is True
    seen: list[Any] = []
    jax.jit(lambda v: seen.append(jb.all_finite(v)) or v)(jnp.ones(2))
    jax.grad(lambda v: seen.append(jb.all_finite(v)) or jnp.sum(v))(jnp.ones(2))
    jax.vmap(lambda v: seen.append(jb.all_finite(v)) or v)(jnp.ones((2, 2)))
    assert seen == [None, None, None]


@pytest.mark.parametrize("dtype", PACK_DTYPES + (np.bool_, np.uint8))
def test_S0_4_numpy_round_trip_keeps_dtype_and_bits(dtype: Any) -> None:
    """S0.4: from_numpy/to_numpy keep dtype and bits; bfloat16 comes back as uint16 bits."""
    a = np.array([0.0, -0.0, 1.5, -2.0, 3.0, 0.0]).astype(dtype)
    x = jb.from_numpy(a)
    assert isinstance(x, jax.Array) and x.dtype == a.dtype
    back = jb.to_numpy(x)
    if np.dtype(dtype) == np.dtype(ml_dtypes.bfloat16):
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, a.view(np.uint16))
    else:
        assert back.dtype == a.dtype
        np.testing.assert_array_equal(back.view(np.uint8), a.view(np.uint8))
    back[0] = 1  # a writeable copy
    like = jb.from_numpy(a[:1], like=x)
    assert like.devices() == x.devices()


def test_S0_4_from_numpy_refuses_silent_64_bit_truncation() -> None:
    """S0.4: float64 input stays float64; with 64-bit types off that is an error, not a cast."""
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match=r"float64 .*jax_enable_x64"):
            jb.from_numpy(np.zeros(2, np.float64))
        with pytest.raises(TypeError, match="int64"):
            jb.from_numpy(np.zeros(2, np.int64))
        assert jb.from_numpy(np.zeros(2, np.float32)).dtype == np.float32
    assert jb.from_numpy(np.zeros(2, np.float64)).dtype == np.float64


def test_S0_4_S0_5_api_errors_on_jax_arrays() -> None:
    """S0.4/S0.5: bad dtypes, mixed frameworks, NaN and bad scalars raise clear errors."""
    g = jnp.zeros(8, jnp.float32)
    with pytest.raises(TypeError, match="cast to float32"):
        api.sample_mask(jnp.zeros(8, jnp.bfloat16), 2, 4, noise=g.astype(jnp.bfloat16))
    with pytest.raises(TypeError, match="cast to float32"):
        api.topn_mask(jnp.zeros(8, jnp.float16), 2, 4)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        api.block_probs(jnp.zeros(8, jnp.int32), 4)
    with pytest.raises(TypeError, match="different frameworks"):
        api.sample_mask(np.zeros(8, np.float32), 2, 4, noise=g)
    with pytest.raises(TypeError, match="dtypes must match"):
        api.sample_mask(jnp.zeros(8, jnp.float64), 2, 4, noise=g)
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(5,\)"):
        api.sample_mask(g.at[5].set(jnp.nan), 2, 4, noise=g)
    with pytest.raises(ValueError, match="positive multiple of m=4"):
        api.topn_mask(jnp.zeros(6, jnp.float32), 2, 4)
    with pytest.raises(ValueError, match=r"temperature=1e-50 is 0.0 in float32"):
        api.relaxed_topn(g, 2, 4, temperature=1e-50)
    with pytest.raises(ValueError, match=r"scale=1e\+300 is inf in float32"):
        api.block_probs(g, 4, scale=1e300)


def test_S0_5_value_checks_are_skipped_under_jit() -> None:
    """S0.5: inside jax.jit the NaN check cannot run on traced arguments and is skipped;
    a concrete array closed over by the traced function still has values and is checked."""
    bad = jnp.zeros(8, jnp.float32).at[1].set(jnp.nan)
    out = jax.jit(lambda l: api.topn_mask(l, 2, 4))(bad)
    assert out.shape == (8,)
    with pytest.raises(ValueError, match=r"noise contains NaN or inf \(first at index \(1,\)"):
        jax.jit(lambda l: api.sample_mask(l, 2, 4, noise=bad))(jnp.zeros(8, jnp.float32))


# -- S1.6 Gumbel noise ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_6_gumbel_reproducible_finite_and_shaped(dtype: Any) -> None:
    """S1.6: same seed, same numbers; another seed, other numbers; x's shape and dtype."""
    x = jnp.zeros((7, 12), dtype)
    g1, g2, g3 = api.gumbel_like(x, 3), api.gumbel_like(x, 3), api.gumbel_like(x, 4)
    _assert_jax(g1, dtype, (7, 12))
    np.testing.assert_array_equal(jb.to_numpy(g1), jb.to_numpy(g2))
    assert not np.array_equal(jb.to_numpy(g1), jb.to_numpy(g3))
    assert bool(jnp.isfinite(g1).all())
    jitted = jax.jit(lambda v: api.gumbel_like(v, 3))(x)
    _assert_close(jitted, jb.to_numpy(g1), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_6_gumbel_matches_prngkey_of_the_seed(dtype: Any) -> None:
    """S1.6: JAX noise is -log(-log u), u uniform from PRNGKey(seed), on (tiny, 1)."""
    for s in (0, 12345, 2**40 + 7):
        key = jax.random.PRNGKey(s)
        u = jax.random.uniform(key, (5, 4), dtype, minval=np.finfo(dtype).tiny, maxval=1.0)
        want = -jnp.log(-jnp.log(u))
        np.testing.assert_array_equal(
            jb.to_numpy(api.gumbel_like(jnp.zeros((5, 4), dtype), s)), jb.to_numpy(want)
        )


def test_S1_6_gumbel_float32_ignores_the_x64_flag_and_large_seeds() -> None:
    """S1.6: float32 noise of a seed is the same with 64-bit types on or off, also for
    seeds >= 2**32 (which PRNGKey truncates when they are off); seeds >= 2**64 raise."""
    x64_on = [jb.to_numpy(api.gumbel_like(jnp.zeros(6, jnp.float32), s)) for s in (9, 2**40)]
    with jax.enable_x64(False):
        x64_off = [jb.to_numpy(api.gumbel_like(jnp.zeros(6, jnp.float32), s)) for s in (9, 2**40)]
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64 - 1\]"):
            api.gumbel_like(jnp.zeros(6, jnp.float32), 2**64)
    for on, off in zip(x64_on, x64_off):
        np.testing.assert_array_equal(on, off)
    assert not np.array_equal(x64_on[0], x64_on[1])
    with pytest.raises(ValueError, match="non-negative integer"):
        api.gumbel_like(jnp.zeros(6, jnp.float32), -1)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_6_gumbel_distribution_ks(dtype: Any) -> None:
    """S1.6: KS test against F(g) = exp(-exp(-g)) (fixed seed: deterministic)."""
    g = jb.to_numpy(api.gumbel_like(jnp.zeros(20_000, dtype), 2024)).astype(np.float64)
    result = scipy.stats.kstest(g, lambda t: np.exp(-np.exp(-t)))
    assert result.pvalue > 1e-3, result
    assert abs(g.mean() - np.euler_gamma) < 0.03


# -- S1.1-S1.5, S1.7 sampler -----------------------------------------------------------------

@given(pattern, float_dtype, seed, rows, blocks, st.booleans())
def test_S1_2_topn_matches_reference_with_ties(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, block_axis_first: bool,
) -> None:
    """S1.2: exactly the reference's mask (ties to the lower index, -0.0 == 0.0), along
    either axis, n ones per block, the input's dtype."""
    n, m = nm
    scores = (_ties if s % 2 else _normal)(s, (r, g * m), dtype)
    axis = 1
    if block_axis_first:
        scores, axis = np.ascontiguousarray(scores.T), 0
    got = api.topn_mask(_j(scores), n, m, axis=axis)
    _assert_jax(got, dtype, scores.shape)
    want = api.topn_mask(scores, n, m, axis=axis)
    np.testing.assert_array_equal(jb.to_numpy(got), want)
    per_block = np.moveaxis(jb.to_numpy(got), axis, -1).reshape(-1, m).sum(-1)
    assert np.all(per_block == n)


def test_S1_2_S1_8_tie_rule_examples() -> None:
    """S1.2/S1.8: lower index wins a tie; -0.0 ties with 0.0; final_mask is topn."""
    got = api.topn_mask(jnp.array([0.3, 0.1, 0.3, 0.2, 0.0, -0.0, 0.0, -1.0]), 2, 4)
    np.testing.assert_array_equal(jb.to_numpy(got), [1, 0, 1, 0, 1, 1, 0, 0])
    got = api.final_mask(jnp.array([0.5, 2.0, -1.0, 2.0]), 1, 4)
    np.testing.assert_array_equal(jb.to_numpy(got), [0, 1, 0, 0])


@given(pattern, float_dtype, seed, rows, blocks, temperature)
def test_S1_3_relaxed_topn_matches_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float,
) -> None:
    """S1.3: the successive-softmax soft mask equals the reference; blocks sum to n."""
    n, m = nm
    scores = _normal(s, (r, g * m), dtype) * 2
    got = api.relaxed_topn(_j(scores), n, m, temperature=tau)
    _assert_jax(got, dtype, scores.shape)
    _assert_close(got, api.relaxed_topn(scores, n, m, temperature=tau), dtype)
    sums = jb.to_numpy(got).reshape(-1, m).sum(-1)
    np.testing.assert_allclose(sums, n, rtol=_rtol(dtype))


@given(pattern, float_dtype, seed, rows, blocks, st.sampled_from((0.1, 0.5, 1.5)),
       st.sampled_from((10.0, 20.0, 32.0, 60.0, 100.0)))
def test_S1_3_saturating_blocks_match_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float, lead: float,
) -> None:
    """S1.3: blocks with one dominant key, where a_j rounds to exactly 1 (the entry then
    leaves the block) or only nearly so, equal the reference (the backend's compiled
    block code is where XLA fuses operations, which must not move a_j off 1)."""
    n, m = nm
    keys = _normal(s, (r, g * m), dtype)
    keys[..., ::m] += np.asarray(lead, dtype)
    want = api.relaxed_topn(keys, n, m, temperature=tau)
    _assert_close(api.relaxed_topn(_j(keys), n, m, temperature=tau), want, dtype)


@pytest.mark.parametrize("x64", [False, True])
def test_S1_3_picked_entry_leaves_the_block_under_jit(x64: bool) -> None:
    """S1.3: keys (34.4, 1.3, ...) at tau 1.5: a_1 of the first entry rounds to 1 in
    float32, so it is picked once (s_0 = 1), not again (s_0 = 2.83), also under jit."""
    keys = np.array([34.413059, 1.3084118, -0.47984916, 0.13620746, 2.3140712, 0.5663033,
                     0.4275517, 1.748455], np.float32)
    want = ref.relaxed_topn(keys, 4, 8, 1.5)
    with jax.enable_x64(x64):
        eager = api.relaxed_topn(_j(keys), 4, 8, temperature=1.5)
        jitted = jax.jit(lambda v: api.sample_mask(
            v, 4, 8, noise=jnp.zeros_like(v), temperature=1.5, hard=False))(_j(keys))
    for got in (eager, jitted):
        assert float(got[0]) == 1.0
        _assert_close(got, want, np.float32)


def test_S1_3_relaxed_topn_tends_to_hard_mask() -> None:
    """S1.3: s -> h as tau -> 0 when the top n + 1 keys are distinct, also for keys that
    span more than 87.3 in float32 (an entry whose a_j rounds to 1 leaves the block:
    (100, 50, 0, -10), n = 3 gives (1, 1, 1, 0), not (2, 1, 0, 0))."""
    v = jnp.array([3.0, 0.0, 2.0, -1.0, 0.5, 0.25, 1.0, 2.5])
    s = api.relaxed_topn(v, 2, 4, temperature=0.01)
    np.testing.assert_allclose(jb.to_numpy(s), jb.to_numpy(api.topn_mask(v, 2, 4)), atol=1e-6)
    wide = jnp.array([100.0, 50.0, 0.0, -10.0], jnp.float32)
    for tau in (0.1, 0.01):
        np.testing.assert_allclose(
            jb.to_numpy(api.relaxed_topn(wide, 3, 4, temperature=tau)), [1, 1, 1, 0], atol=1e-6
        )


@given(pattern, float_dtype, seed, rows, blocks, temperature, scale, st.booleans())
def test_S1_4_sample_mask_matches_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float, kappa: float,
    hard: bool,
) -> None:
    """S1.1/S1.4: hard masks equal the reference exactly, soft masks within S0.6."""
    n, m = nm
    shape = (r, g * m)
    logits = (_ties if s % 3 == 0 else _normal)(s, shape, dtype)
    noise = _gumbel(s, shape, dtype) if s % 3 else np.zeros(shape, dtype)
    kwargs = dict(noise=None, temperature=tau, scale=kappa, hard=hard)
    got = api.sample_mask(_j(logits), n, m, **{**kwargs, "noise": _j(noise)})
    want = api.sample_mask(logits, n, m, **{**kwargs, "noise": noise})
    _assert_jax(got, dtype, shape)
    if hard:
        np.testing.assert_array_equal(jb.to_numpy(got), want)
    else:
        _assert_close(got, want, dtype)


@given(short_pattern, float_dtype, seed, rows, blocks, temperature, scale, st.booleans())
def test_S1_5_sample_mask_vjp_equals_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float, kappa: float,
    hard: bool,
) -> None:
    """S1.5: the protocol's sample_mask_vjp (jax.vjp over sample_mask) equals the
    reference's hand-written scale * VJP_s, for hard=True (straight-through) and False."""
    n, m = nm
    shape = (r, g * m)
    logits, noise = _normal(s, shape, dtype), _gumbel(s, shape, dtype)
    cot = _normal(s + 1, shape, dtype)
    want = ref.sample_mask_vjp(logits, noise, n, m, tau, kappa, hard, cot)
    got = jb.sample_mask_vjp(_j(logits), _j(noise), n, m, tau, kappa, hard, _j(cot))
    _assert_jax(got, dtype, shape)
    _assert_grad_close(got, want, dtype)


@given(st.sampled_from(((2, 4), (4, 4), (3, 3))), float_dtype, seed, rows, blocks, temperature)
def test_S1_5_relaxed_topn_vjp_equals_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float,
) -> None:
    """S1.5: VJP_s by jax.vjp over relaxed_topn equals the reference's reverse recursion."""
    n, m = nm
    scores, cot = _normal(s, (r, g * m), dtype), _normal(s + 1, (r, g * m), dtype)
    want = ref.relaxed_topn_vjp(scores, n, m, tau, cot)
    _assert_grad_close(jb.relaxed_topn_vjp(_j(scores), n, m, tau, _j(cot)), want, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("hard", [True, False])
def test_S1_4_S1_5_jax_grad_through_api_equals_reference_vjp(dtype: Any, hard: bool) -> None:
    """S1.4/S1.5: jax.grad of a loss through api.sample_mask (and api.relaxed_topn, along
    axis 0) equals the reference's hand-written VJPs; the output is jax, of the input dtype."""
    n, m, shape = 2, 4, (3, 8)
    logits, noise = _normal(10, shape, dtype), _gumbel(11, shape, dtype)
    cot = _normal(12, shape, dtype)

    def loss(l: jax.Array) -> jax.Array:
        out = api.sample_mask(l, n, m, noise=_j(noise), temperature=0.6, scale=2.0, hard=hard)
        _assert_jax(out, dtype, shape)
        return jnp.sum(_j(cot) * out)

    got = jax.grad(loss)(_j(logits))
    _assert_jax(got, dtype, shape)
    _assert_grad_close(got, ref.sample_mask_vjp(logits, noise, n, m, 0.6, 2.0, hard, cot), dtype)

    scores_t, cot_t = np.ascontiguousarray(logits.T), np.ascontiguousarray(cot.T)
    got_t = jax.grad(
        lambda v: jnp.sum(_j(cot_t) * api.relaxed_topn(v, n, m, temperature=0.3, axis=0))
    )(_j(scores_t))
    want_t = ref.relaxed_topn_vjp(logits, n, m, 0.3, cot).T
    _assert_grad_close(got_t, want_t, dtype)


def test_S1_5_vjp_cotangent_shape_is_checked() -> None:
    """S1.5: a cotangent of the wrong shape raises ValueError naming both shapes."""
    x = jnp.zeros(8, jnp.float32)
    expected = r"cotangent has shape \(4,\); expected the output shape \(8,\)"
    with pytest.raises(ValueError, match=expected):
        jb.sample_mask_vjp(x, x, 2, 4, 1.0, 1.0, True, jnp.ones(4, jnp.float32))
    expected = r"cotangent has shape \(2,\); expected the output shape \(\)"
    with pytest.raises(ValueError, match=expected):
        jb.eid_loss_vjp(x, x, 4, 1.0, jnp.ones(2, jnp.float32))


@pytest.mark.parametrize(
    "keys, cot, n, tau",
    [([1.338275, 5.8261604, -1.8260124, -1.4382085],
      [-0.96896297, 1.0848511, 1.6577462, 0.49879888], 2, 0.25),
     ([200.0, 0.0, -50.0, 1.0], [1.0, -2.0, 0.5, 3.0], 2, 0.1),
     ([30.0, 29.0, -5.0, 0.0], [4.0, -3.0, 2.0, -1.0], 3, 0.05)],
)
def test_S1_5_saturated_blocks_have_finite_gradients(
    keys: list[float], cot: list[float], n: int, tau: float,
) -> None:
    """S1.5: where 1 - a_j is exactly 0 the clamp branch has zero derivative: gradients
    stay finite and equal the reference, eagerly and under jit (a clamp written with
    jnp.maximum gives NaN here: its derivative multiplies an overflowing G / eps by 0)."""
    k = np.array([keys], np.float32)
    c = np.array([cot], np.float32)
    want = ref.relaxed_topn_vjp(k, n, 4, tau, c)

    def loss(v: jax.Array) -> jax.Array:
        return jnp.sum(_j(c) * api.relaxed_topn(v, n, 4, temperature=tau))

    for got in (jax.grad(loss)(_j(k)), jax.jit(jax.grad(loss))(_j(k)),
                jb.relaxed_topn_vjp(_j(k), n, 4, tau, _j(c))):
        assert bool(jnp.isfinite(got).all()), got
        _assert_grad_close(got, want, np.float32)


def test_S1_5_noise_and_hard_mask_receive_no_gradient() -> None:
    """S1.5: the noise gets a zero gradient; hard and soft masks give the same gradient."""
    logits, noise = jnp.asarray(_normal(1, (2, 8), np.float32)), api.gumbel_like(
        jnp.zeros((2, 8), jnp.float32), 1
    )
    cot = jnp.asarray(_normal(2, (2, 8), np.float32))

    def loss(l: jax.Array, g: jax.Array, hard: bool) -> jax.Array:
        return jnp.sum(cot * api.sample_mask(l, 2, 4, noise=g, scale=2.0, hard=hard))

    gl_hard, gg = jax.grad(loss, argnums=(0, 1))(logits, noise, True)
    gl_soft = jax.grad(loss)(logits, noise, False)
    np.testing.assert_array_equal(jb.to_numpy(gg), 0.0)
    np.testing.assert_array_equal(jb.to_numpy(gl_hard), jb.to_numpy(gl_soft))


@given(pattern, float_dtype, seed, rows, blocks, scale)
def test_S1_7_block_probs_matches_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, kappa: float,
) -> None:
    """S1.7: p = softmax_block(scale * logits) equals the reference."""
    _, m = nm
    logits = _normal(s, (r, g * m), dtype) * 3
    got = api.block_probs(_j(logits), m, scale=kappa)
    _assert_jax(got, dtype, logits.shape)
    _assert_close(got, api.block_probs(logits, m, scale=kappa), dtype)


# -- jit / grad / vmap through the api -------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_4_sample_mask_under_jit_grad_vmap(dtype: Any) -> None:
    """S1.4/S1.5 under jax.jit, jax.grad and jax.vmap, through the api as a user writes it."""
    shape = (5, 16)
    logits, noise = _normal(7, shape, dtype), _gumbel(7, shape, dtype)
    want = api.sample_mask(logits, 2, 4, noise=noise)
    jitted = jax.jit(lambda l, g: api.sample_mask(l, 2, 4, noise=g))(_j(logits), _j(noise))
    _assert_jax(jitted, dtype, shape)
    np.testing.assert_array_equal(jb.to_numpy(jitted), want)

    batched = jax.vmap(lambda l, g: api.sample_mask(l, 2, 4, noise=g))(_j(logits), _j(noise))
    np.testing.assert_array_equal(jb.to_numpy(batched), want)
    batched_soft = jax.vmap(
        lambda l, g: api.sample_mask(l, 2, 4, noise=g, hard=False, temperature=0.5)
    )(_j(logits), _j(noise))
    _assert_close(batched_soft, api.sample_mask(logits, 2, 4, noise=noise, hard=False,
                                                temperature=0.5), dtype)

    cot = _normal(8, shape, dtype)
    grad = jax.jit(jax.grad(
        lambda l: jnp.sum(_j(cot) * api.sample_mask(l, 2, 4, noise=_j(noise), scale=2.0))
    ))(_j(logits))
    _assert_grad_close(grad, ref.sample_mask_vjp(logits, noise, 2, 4, 1.0, 2.0, True, cot), dtype)
    per_example = jax.vmap(jax.grad(
        lambda l, g, c: jnp.sum(c * api.sample_mask(l, 2, 4, noise=g, scale=2.0))
    ))(_j(logits), _j(noise), _j(cot))
    _assert_grad_close(
        per_example, ref.sample_mask_vjp(logits, noise, 2, 4, 1.0, 2.0, True, cot), dtype
    )


def test_S1_6_S1_4_sampling_inside_jit_with_fresh_noise() -> None:
    """S1.6/S1.4: noise drawn inside the jitted function gives the eager mask."""
    logits = jnp.asarray(_normal(3, (4, 8), np.float32))

    def step(l: jax.Array) -> jax.Array:
        return api.sample_mask(l, 1, 4, noise=api.gumbel_like(l, 11))

    eager = step(logits)
    jitted = jax.jit(step)(logits)
    np.testing.assert_array_equal(jb.to_numpy(jitted), jb.to_numpy(eager))


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_S2_every_math_function_traces_under_jit_and_vmap(dtype: Any) -> None:
    """S1.2, S1.3, S1.7, S2.3, S2.5, S2.6: jit and vmap give the eager (reference) values."""
    logits = _normal(5, (3, 8), dtype)
    targets = ref.eid_targets(np.abs(_normal(6, (3, 8), dtype)), 4, 1.0)
    x, d, w = _normal(1, (4, 2, 8), dtype), _normal(2, (4, 2, 3), dtype), _normal(3, (3, 8), dtype)
    cases = [
        (lambda l: api.topn_mask(l, 2, 4), (logits,), True),
        (lambda l: api.relaxed_topn(l, 2, 4, temperature=0.5), (logits,), False),
        (lambda l: api.block_probs(l, 4, scale=2.0), (logits,), False),
        (lambda c: api.eid_targets(c, 4, temperature=0.5), (np.abs(logits),), False),
        (lambda l, q: api.eid_loss(l, q, 4, scale=2.0), (logits, targets), False),
        (lambda a, b, c: api.eligibility_credit(a, b, c, decay=0.5), (x, d, w), False),
    ]
    for fn, args, exact in cases:
        want = fn(*args)
        got = jax.jit(fn)(*map(_j, args))
        _assert_jax(got, dtype, np.shape(want))
        if exact:
            np.testing.assert_array_equal(jb.to_numpy(got), want)
        else:
            _assert_close(got, want, dtype)
    batched = jax.vmap(lambda l, q: api.eid_loss(l, q, 4))(_j(logits), _j(targets))
    want = [api.eid_loss(logits[i], targets[i], 4) for i in range(3)]
    _assert_close(batched, np.array(want), dtype)
    xs, ds = np.stack([x, 2 * x]), np.stack([d, -d])
    stacked = jax.vmap(lambda a, b: api.eligibility_credit(a, b, _j(w), decay=0.5))(
        _j(xs), _j(ds)
    )
    for i in range(2):
        _assert_close(stacked[i], api.eligibility_credit(xs[i], ds[i], w, decay=0.5), dtype)


# -- S2 EID ------------------------------------------------------------------------------

@given(float_dtype, seed, st.just(3), st.just(2), st.just(3),
       st.sampled_from((0.0, 0.5, 0.9, 1.0)), st.booleans())
def test_S2_3_eligibility_credit_matches_reference(
    dtype: Any, s: int, t: int, b: int, o: int, decay: float, spikes: bool,
) -> None:
    """S2.1-S2.3: trace recursion and credit equal the reference (spikes or analog x)."""
    k = 8
    x = _normal(s, (t, b, k), dtype)
    if spikes:
        x = (x > 0).astype(dtype)
    d, w = _normal(s + 1, (t, b, o), dtype), _normal(s + 2, (o, k), dtype)
    got = api.eligibility_credit(_j(x), _j(d), _j(w), decay=decay)
    _assert_jax(got, dtype, (o, k))
    want = api.eligibility_credit(x, d, w, decay=decay)
    tol = _rtol(dtype) * max(1.0, float(np.max(want)))
    np.testing.assert_allclose(jb.to_numpy(got), want, rtol=_rtol(dtype), atol=tol)
    assert bool((got >= 0).all())


@pytest.mark.parametrize("t, b, k, o", [(1, 1, 4, 1), (6, 3, 12, 2)])
def test_S2_3_eligibility_credit_other_shapes(t: int, b: int, k: int, o: int) -> None:
    """S2.1-S2.3: one time step (e_1 = x_1) and longer sequences equal the reference."""
    x = (_normal(t, (t, b, k), np.float64) > 0).astype(np.float64)
    d, w = _normal(1, (t, b, o), np.float64), _normal(2, (o, k), np.float64)
    got = api.eligibility_credit(_j(x), _j(d), _j(w), decay=0.5)
    _assert_close(got, api.eligibility_credit(x, d, w, decay=0.5), np.float64)


@given(pattern, float_dtype, seed, rows, blocks, temperature, st.booleans())
def test_S2_5_eid_targets_match_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, tau: float, zeros: bool,
) -> None:
    """S2.5: q = softmax_block(C / (mean C + 1e-12) / tau_e), also for all-zero credits."""
    _, m = nm
    credits = np.zeros((r, g * m), dtype) if zeros else np.abs(_normal(s, (r, g * m), dtype))
    got = api.eid_targets(_j(credits), m, temperature=tau)
    _assert_jax(got, dtype, credits.shape)
    _assert_close(got, api.eid_targets(credits, m, temperature=tau), dtype)


@given(short_pattern, float_dtype, seed, rows, blocks, scale, st.booleans())
def test_S2_6_S2_7_eid_loss_and_vjp_match_reference(
    nm: tuple[int, int], dtype: Any, s: int, r: int, g: int, kappa: float, one_hot: bool,
) -> None:
    """S2.6: the 0-d loss equals the reference (0 log 0 = 0 with one-hot targets);
    S2.7: eid_loss_vjp (jax.vjp over eid_loss) equals the reference's gradient."""
    _, m = nm
    shape = (r, g * m)
    logits = _normal(s, shape, dtype) * 2
    if one_hot:
        targets = ref.topn_mask(_normal(s + 1, shape, dtype), 1, m)
    else:
        targets = ref.eid_targets(np.abs(_normal(s + 1, shape, dtype)), m, 1.0)
    loss = api.eid_loss(_j(logits), _j(targets), m, scale=kappa)
    _assert_jax(loss, dtype, ())
    _assert_close(loss, api.eid_loss(logits, targets, m, scale=kappa), dtype)
    want = ref.eid_loss_vjp(logits, targets, m, kappa, np.asarray(3.0, dtype))
    got = jb.eid_loss_vjp(_j(logits), _j(targets), m, kappa, jnp.asarray(3.0, dtype))
    _assert_grad_close(got, want, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S2_7_jax_grad_through_api_and_targets_get_none(dtype: Any) -> None:
    """S2.7: jax.grad through api.eid_loss gives scale * (p * sum(q) - q) / G times the
    cotangent (targets summing to 1 or not), and the targets receive no gradient."""
    logits = _normal(3, (2, 8), dtype)
    for targets in (ref.eid_targets(np.abs(_normal(4, (2, 8), dtype)), 4, 1.0),
                    np.abs(_normal(5, (2, 8), dtype))):
        grad_l, grad_q = jax.grad(
            lambda l, q: 2.5 * api.eid_loss(l, q, 4, scale=1.7), argnums=(0, 1)
        )(_j(logits), _j(targets))
        want = ref.eid_loss_vjp(logits, targets, 4, 1.7, np.asarray(2.5, dtype))
        _assert_grad_close(grad_l, want, dtype)
        np.testing.assert_array_equal(jb.to_numpy(grad_q), 0.0)
    assert jb.eid_loss_vjp(_j(logits), _j(targets), 4, 1.0, 1).dtype == np.dtype(dtype)


# -- S2.9-S2.12 signed credit, block scores and gate, target variants ----------------------

def _credits(seed_: int, shape: tuple[int, ...], m: int, dtype: Any) -> np.ndarray:
    """Running credits with an all-zero block, a near-silent block (1e-9) and a zero entry."""
    c = np.abs(_normal(seed_, shape, dtype)).reshape(-1, m)
    c[0] = 0.0
    c[1] *= 1e-9
    c[2, 0] = 0.0
    return c.reshape(shape).astype(dtype)


def test_S2_eid_docstring_examples_run() -> None:
    """The examples of the JAX EID module (S2.3, S2.5-S2.7, S2.9, S2.10) run and print
    what they show (in JAX's default 32-bit mode, as they are written)."""
    import doctest
    import importlib

    with jax.enable_x64(False):
        result = doctest.testmod(importlib.import_module("spikenm.backends.jax.eid"),
                                 optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0, result


@given(float_dtype, seed, st.sampled_from((0.0, 0.5, 1.0)), st.booleans())
def test_S2_9_signed_credit_matches_reference(dtype: Any, s: int, decay: float, alternate: bool) -> None:
    """S2.9: |W| * |sum_t d_t^T e_t| equals the reference (a learning signal alternating in
    sign over t, or not) and never exceeds the S2.3 credit."""
    x = (_normal(s, (4, 2, 8), dtype) > 0).astype(dtype)
    d = _normal(s + 1, (4, 2, 3), dtype)
    if alternate:
        d = d * np.array([1, -1, 1, -1], dtype=dtype)[:, None, None]
    w = _normal(s + 2, (3, 8), dtype)
    got = api.eligibility_credit(_j(x), _j(d), _j(w), decay=decay, signed=True)
    _assert_jax(got, dtype, (3, 8))
    size = max(1.0, float(np.max(ref.eligibility_credit(x, d, w, decay))))
    tol = _rtol(dtype)
    np.testing.assert_allclose(jb.to_numpy(got), ref.eligibility_credit(x, d, w, decay, signed=True),
                               rtol=tol, atol=tol * size)
    plain = jb.eligibility_credit(_j(x), _j(d), _j(w), decay)
    assert bool((got <= plain + tol * size).all())


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("gated", [False, True])
def test_S2_10_credit_scores_match_reference(dtype: Any, gated: bool) -> None:
    """S2.10: z = C / mean_block(C) (0 in an all-zero block), gated by E_b / (E_b + E_med)
    with the lower median (even G = 8); eager, under jax.jit, and with axis=."""
    credits = _credits(7, (4, 8), 4, dtype)
    want = ref.credit_scores(credits, 4, gated)
    got = api.credit_scores(_j(credits), 4, gated=gated)
    _assert_jax(got, dtype, (4, 8))
    _assert_close(got, want, dtype)
    jitted = jax.jit(lambda c: api.credit_scores(c, 4, gated=gated))(_j(credits))
    _assert_close(jitted, want, dtype)
    along = api.credit_scores(_j(np.ascontiguousarray(credits.T)), 4, gated=gated, axis=0)
    _assert_close(along, want.T, dtype)
    zeros = api.credit_scores(jnp.zeros((2, 8), dtype), 4, gated=gated)
    np.testing.assert_array_equal(jb.to_numpy(zeros), 0.0)


def test_S2_10_gate_lower_median_example() -> None:
    """Masses (1, 3): lower median 1, gates 1/2 and 3/4 (SPEC S2.10)."""
    z = jb.credit_scores(jnp.array([0.5, 0.5, 1.5, 1.5], jnp.float64), 2, True)
    np.testing.assert_array_equal(jb.to_numpy(z), [0.5, 0.5, 0.75, 0.75])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("variant", ("global", "block", "gated", "inclusion"))
def test_S2_11_every_target_variant_matches_reference(dtype: Any, variant: str) -> None:
    """S2.11: api.eid_targets(variant=...) on jax arrays, eager and under jax.jit, equals
    the reference's composition and sums to 1 per block (S2.12)."""
    from spikenm import eid_variants

    credits = _credits(8, (3, 16), 4, dtype)
    logits = _normal(9, (3, 16), dtype)
    want = eid_variants.targets(ref, variant, credits, 2, 4, 0.7,
                                logits if variant == "gated" else None, 1.5)

    def targets(c: jax.Array, l: jax.Array) -> jax.Array:
        kwargs = {"logits": l, "scale": 1.5} if variant == "gated" else {}
        return api.eid_targets(c, 4, temperature=0.7, variant=variant, n=2, **kwargs)

    for fn in (targets, jax.jit(targets)):
        got = fn(_j(credits), _j(logits))
        _assert_jax(got, dtype, (3, 16))
        _assert_close(got, want, dtype)
        _assert_close(got.reshape(-1, 4).sum(-1), np.ones(12), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S2_11_gated_targets_give_no_gradient_to_the_logits(dtype: Any) -> None:
    """S2.11: the gated targets are built from the logits but are constants
    (lax.stop_gradient): their own gradient is 0, and the EID loss gradient is S2.7's
    kappa * (p - q) / G with q held fixed, also under jax.jit."""
    from spikenm import eid_variants

    credits = _j(_credits(10, (2, 16), 4, dtype))
    logits = _normal(11, (2, 16), dtype)
    weights = _j(_normal(12, (2, 16), dtype))

    def through_targets(l: jax.Array) -> jax.Array:
        return jnp.sum(api.eid_targets(credits, 4, variant="gated", logits=l, scale=1.5) * weights)

    np.testing.assert_array_equal(jb.to_numpy(jax.grad(through_targets)(_j(logits))), 0.0)

    def loss(l: jax.Array) -> jax.Array:
        q = api.eid_targets(credits, 4, variant="gated", logits=l, scale=1.5)
        return api.eid_loss(l, q, 4, scale=1.5)

    q_ref = eid_variants.targets(ref, "gated", jb.to_numpy(credits), 1, 4, 1.0, logits, 1.5)
    want = ref.eid_loss_vjp(logits, q_ref, 4, 1.5, np.asarray(1.0, dtype))
    for grad in (jax.grad(loss), jax.jit(jax.grad(loss))):
        _assert_grad_close(grad(_j(logits)), want, dtype)
    no_stop = type("NoStop", (), {n: staticmethod(getattr(jb, n))
                                  for n in ("credit_scores", "block_probs")})()
    leaky = jax.grad(lambda l: jnp.sum(
        eid_variants.targets(no_stop, "gated", credits, 1, 4, 1.0, l, 1.5) * weights))
    assert float(jnp.max(jnp.abs(leaky(_j(logits))))) > 0


def test_S2_11_stop_gradient_is_lax_stop_gradient() -> None:
    """The optional protocol member: the value passes, the derivative is 0."""
    x = jnp.arange(4.0)
    np.testing.assert_array_equal(jb.to_numpy(jb.stop_gradient(x)), jb.to_numpy(x))
    grad = jax.grad(lambda v: jnp.sum(jb.stop_gradient(v) ** 2 + v))(x)
    np.testing.assert_array_equal(jb.to_numpy(grad), 1.0)


# -- S3 packed format --------------------------------------------------------------------

def _sparse(s: int, shape: tuple[int, ...], n: int, m: int, dtype: Any) -> np.ndarray:
    """An array with at most n non-zeros per block (some blocks fewer, some -0.0)."""
    rng = np.random.default_rng(s)
    keep = ref.topn_mask(rng.normal(size=shape), n, m).astype(bool)
    keep &= rng.random(shape) < 0.8
    vals = rng.integers(-5, 6, size=shape).astype(np.float64)
    vals[vals == 0] = 7.0
    out = np.where(keep, vals, np.where(rng.random(shape) < 0.3, -0.0, 0.0))
    return out.astype(dtype)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(f"u{np.asarray(a).dtype.itemsize}")


@given(st.sampled_from(PACK_CASES), seed, rows, blocks, st.booleans())
def test_S3_1_S3_3_pack_unpack_match_reference_bitwise(
    case: tuple[tuple[int, int], Any], s: int, r: int, g: int, use_mask: bool,
) -> None:
    """S3.1-S3.3: values (bits), indices and the unpacked dense equal the reference, for
    every dtype, with and without a mask; padding per S3.2."""
    (n, m), dtype = case
    w = _sparse(s, (r, g * m), n, m, dtype)
    mask = None
    if use_mask:
        w = _normal(s, (r, g * m), np.float64).astype(dtype)
        mask = ref.topn_mask(np.random.default_rng(s + 1).normal(size=w.shape), n, m)
        mask = mask.astype(dtype)
    got = api.pack(_j(w), n, m, mask=None if mask is None else _j(mask))
    want = api.pack(w, n, m, mask=mask)
    assert isinstance(got, Packed) and isinstance(got.values, jax.Array)
    assert (got.n, got.m, got.shape, got.axis) == (want.n, want.m, want.shape, want.axis)
    assert got.values.dtype == np.dtype(dtype) and got.indices.dtype == np.uint8
    np.testing.assert_array_equal(_bits(np.asarray(got.values)), _bits(want.values))
    np.testing.assert_array_equal(jb.to_numpy(got.indices), want.indices)
    dense = api.unpack(got)
    assert dense.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(_bits(np.asarray(dense)), _bits(api.unpack(want)))
    np.testing.assert_array_equal(
        jb.to_numpy(jb.block_nnz(_j(w), m)), ref.block_nnz(w, m)
    )


def test_S3_3_block_nnz_is_int64_and_counts_nonzeros() -> None:
    """S3.3: block_nnz counts x != 0 per block (-0.0 is zero, NaN is not), as int64 (the
    widest integer JAX has: int32 while 64-bit types are disabled)."""
    x = jnp.array([[0.0, -0.0, jnp.nan, 1.0, 2.0, 0.0, 0.0, 0.0]])
    got = jb.block_nnz(x, 4)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(jb.to_numpy(got), [[2, 1]])
    with jax.enable_x64(False):
        assert jb.block_nnz(jnp.ones((2, 8)), 4).dtype == np.int32


def test_S3_1_empty_leading_dimensions() -> None:
    """S3.1: leading dimensions may be empty."""
    w = jnp.zeros((0, 3, 8), jnp.float32)
    p = api.pack(w, 2, 4)
    assert p.values.shape == (0, 3, 4) and p.indices.dtype == np.uint8
    assert api.unpack(p).shape == (0, 3, 8)


def test_S3_2_padding_examples_and_axis() -> None:
    """S3.2: short blocks are padded with 0 at the smallest unused indices, sorted; the
    block axis may be any axis."""
    w = jnp.array([[0.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0],
                   [5.0, 0.0, 0.0, 0.0], [0.0, -0.0, 0.0, -0.0]], jnp.float32)
    p = api.pack(w, 2, 4)
    np.testing.assert_array_equal(
        jb.to_numpy(p.values), [[0.0, 5.0], [0.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 0.0]]
    )
    np.testing.assert_array_equal(
        jb.to_numpy(p.indices), [[0, 3], [0, 1], [0, 2], [0, 1], [0, 1]]
    )
    assert not np.signbit(jb.to_numpy(api.unpack(p))).any()  # -0.0 is not kept (S3.3)
    p0 = api.pack(w.T, 2, 4, axis=0)
    assert p0.axis == 0 and p0.shape == (4, 5)
    np.testing.assert_array_equal(jb.to_numpy(api.unpack(p0)), jb.to_numpy(w.T))


def test_S3_3_pack_refuses_dense_blocks_and_bad_masks() -> None:
    """S3.3: more than n kept entries, or a mask with other values, raise ValueError."""
    w = jnp.array([[1.0, 2.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match=r"block 1 at \[0, 4:8\] keeps 3 entries"):
        api.pack(w, 2, 4)
    with pytest.raises(ValueError, match="mask must contain only 0 and 1, found"):
        api.pack(w, 2, 4, mask=jnp.array([[2.0, 0, 0, 0, 0, 0, 0, 0]]))
    assert api.is_nm(w, 3, 4) and not api.is_nm(w, 2, 4)
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        api.check_nm(w, 2, 4, name="x")


def test_S3_3_pack_under_jit_api_refuses_backend_works() -> None:
    """S3.3/S0.5: the api's pack needs values for its N:M check and says so under jit;
    the backend's pack itself traces and equals the eager result."""
    w = jnp.asarray(_sparse(0, (3, 8), 2, 4, np.float32))
    with pytest.raises(ValueError, match=r"pack needs the values of w.*traced under jit"):
        jax.jit(lambda a: api.pack(a, 2, 4).values)(w)
    with pytest.raises(ValueError, match=r"pack needs the values of mask.*traced under jit"):
        jax.jit(lambda a: api.pack(a, 2, 4, mask=(a != 0).astype(a.dtype)).values)(w)
    with pytest.raises(ValueError, match="an N:M check needs the values of x"):
        jax.jit(lambda a: jnp.asarray(api.is_nm(a, 2, 4)))(w)
    eager = jb.pack(w, w, 2, 4)
    traced = jax.jit(jb.pack, static_argnames=("n", "m"))(w, w, n=2, m=4)
    for a, b in zip(eager, traced):
        np.testing.assert_array_equal(jb.to_numpy(a), jb.to_numpy(b))
    batched = jax.vmap(lambda a: jb.pack(a, a, 2, 4))(w)
    np.testing.assert_array_equal(jb.to_numpy(batched[1]), jb.to_numpy(eager[1]))


def test_S3_1_unpack_refuses_out_of_range_indices() -> None:
    """S3.1/S0.5: a concrete index >= m raises instead of being dropped by the scatter."""
    bad = Packed(jnp.ones((1, 2)), jnp.array([[1, 4]], jnp.uint8), 2, 4, (1, 4), 1)
    expected = r"indices\[0, 1\] \(block 0 of row 0\) is 4; expected a value in \[0, 4\)"
    with pytest.raises(ValueError, match=expected):
        api.unpack(bad)
    with pytest.raises(ValueError, match=r"is 4; expected a value in \[0, 4\)"):
        api.spmm(bad, jnp.ones(4))


@given(st.sampled_from(PACK_CASES), seed, rows, blocks)
def test_S3_6_spmm_matches_reference(
    case: tuple[tuple[int, int], Any], s: int, r: int, g: int,
) -> None:
    """S3.6: spmm(packed, x) equals the reference: exactly for int8 (wrapping), within
    S0.6 scaled by |W| @ |x| for floats (16-bit floats accumulate in float32)."""
    (n, m), dtype = case
    w = _sparse(s, (r, g * m), n, m, dtype)
    rng = np.random.default_rng(s + 1)
    if np.dtype(dtype).kind in "iu":
        x = rng.integers(-9, 10, size=(g * m, 3)).astype(dtype)
    else:
        x = rng.normal(size=(g * m, 3)).astype(dtype)
    got = api.spmm(api.pack(_j(w), n, m), _j(x))
    want = api.spmm(api.pack(w, n, m), x)
    _assert_jax(got, dtype, want.shape)
    if np.dtype(dtype).kind in "iu":
        np.testing.assert_array_equal(jb.to_numpy(got), want)
    else:
        w64, x64 = w.astype(np.float64), x.astype(np.float64)
        bound = _rtol(dtype) * (1.0 + np.abs(w64) @ np.abs(x64))
        err = np.abs(np.asarray(got).astype(np.float64) - want.astype(np.float64))
        assert np.all(err <= bound), (err, bound)


@pytest.mark.parametrize("dtype", (np.float32, np.int8))
def test_S3_6_spmm_vector_and_dense_product(dtype: Any) -> None:
    """S3.6: a 1-D x gives shape (O,); the result equals unpack(packed) @ x."""
    w = _sparse(4, (5, 16), 2, 4, dtype)
    x = np.arange(16).astype(dtype) % 5
    got = api.spmm(api.pack(_j(w), 2, 4), _j(x))
    _assert_jax(got, dtype, (5,))
    np.testing.assert_array_equal(jb.to_numpy(got), (w.astype(np.int64) @ x).astype(dtype))


def test_S3_packed_is_a_pytree_through_jit() -> None:
    """S3.1: a Packed crosses jax.jit: arrays are leaves, n, m, shape, axis static."""
    w = jnp.asarray(_sparse(3, (4, 16), 2, 8, np.float32))
    p = api.pack(w, 2, 8)
    leaves, treedef = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 2 and leaves[0] is p.values and leaves[1] is p.indices
    same = jax.jit(lambda q: q)(p)
    assert isinstance(same, Packed)
    assert (same.n, same.m, same.shape, same.axis) == (2, 8, (4, 16), 1)
    np.testing.assert_array_equal(jb.to_numpy(jax.jit(api.unpack)(p)), jb.to_numpy(w))
    x = jnp.asarray(_normal(4, (16, 3), np.float32))
    _assert_close(jax.jit(api.spmm)(p, x), jb.to_numpy(w) @ jb.to_numpy(x), np.float32)
    doubled = jax.tree_util.tree_map(lambda a: a, p)
    assert jax.tree_util.tree_structure(doubled) == treedef
    other = api.pack(w.reshape(8, 8), 2, 8)
    assert jax.tree_util.tree_structure(other) != treedef


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_S3_3_subnormal_weights_count_and_pack(dtype: str) -> None:
    """S3.3: ``x != 0`` holds for subnormals even though XLA on CPU flushes them in float
    comparisons; they are counted, rejected by check_nm and packed bit for bit."""
    tiny = np.array([np.finfo(dtype).smallest_subnormal] * 4 + [0.0] * 4, dtype=dtype)
    x = jnp.asarray(tiny)
    assert not api.is_nm(x, 2, 4)
    with pytest.raises(ValueError, match="block 0 at \\[0:4\\] has 4 non-zeros"):
        api.check_nm(x, 2, 4)
    packed = api.pack(x, 4, 4)
    np.testing.assert_array_equal(np.asarray(api.unpack(packed)).view(np.uint8), tiny.view(np.uint8))


# -- the model backend (SPEC S4, S4.13-S4.16) ---------------------------------------------

LIF3 = LIFParams(time_steps=3)
SMALL = Graph((2, 6, 6), (
    Node("conv", (-1,), 2, 4, 3, 2, 1, bias=False),  # 0  layer0: stride 2, static
    Node("bn", (0,)),                                # 1  bn0 on a static map (4, 3, 3)
    Node("lif", (1,)),                               # 2  lif0
    Node("conv", (2,), 4, 4, 3, 1, 1),               # 3  layer1
    Node("add", (3, 2)),                             # 4  residual join (identity)
    Node("pool", (4,), window=0),                    # 5  global pooling -> (4, 1, 1)
    Node("flatten", (5,)),                           # 6
    Node("linear", (6,), 4, 6, bias=False),          # 7  layer2
    Node("bn", (7,)),                                # 8  bn1 on features
    Node("lif", (8,)),                               # 9  lif1
    Node("linear", (9,), 6, 3),                      # 10 layer3: readout
))
"""Batch norm on maps and features, a strided conv, a residual add, global pooling; small,
to compile fast."""


def _net_arrays(graph: Graph, dtype: str, seed: int = 0, batch: int = 4,
                time_major: bool = False, t_steps: int = 3
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray,
                           np.ndarray]:
    """S4.10 weights (gain 2.5), non-zero biases and bn affine parameters, non-trivial
    running statistics and a batch, drawn in float64 and cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    params, buffers = random_params(graph, seed, rng)
    x = rng.random(((t_steps,) if time_major else ()) + (batch,) + graph.input_shape)
    y = rng.integers(0, graph.num_classes, batch).astype(np.int64)
    return ({k: v.astype(dtype) for k, v in params.items()},
            {k: v.astype(dtype) for k, v in buffers.items()}, x.astype(dtype), y)


def _on(mb: Any, table: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: mb.from_numpy(v) for k, v in table.items()}


def _eid_all(graph: Graph, params: dict[str, Any], decay: float = 0.6) -> EIDRequest:
    layers = tuple(range(len(graph.layers)))
    return EIDRequest(layers, tuple(params[f"layer{k}.weight"] for k in layers), decay)


def _scaled(got: np.ndarray, want: np.ndarray) -> float:
    """``max |got - want| / max |want|`` (S0.6 scaling)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))


def _run_python(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (a failure shows its stderr)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_S4_16_device_names_and_missing_devices() -> None:
    """S4.16: ``cpu``/``cpu:0`` are the canonical ``cpu:0``; a device that does not exist
    is a ValueError naming it and the available JAX devices; a malformed name is a
    ValueError and a non-string a TypeError."""
    mb = jsnn.model_backend()
    assert (mb.name, mb.device) == ("jax", "cpu:0") and isinstance(mb, ModelBackend)
    assert jsnn.model_backend("cpu").device == jsnn.model_backend("CPU:0").device == "cpu:0"
    assert registry.model_backend("jax", "cpu:0").device == "cpu:0"
    available = jsnn.available_devices()
    assert available[0] == "cpu:0" and len(available) >= len(jax.devices())
    missing = [f"cpu:{len(jax.devices('cpu'))}", "gpu:64", "cuda:64"]
    if not any(d.startswith("gpu:") for d in available):
        missing += ["gpu", "cuda", "cuda:0"]
    for device in missing:
        with pytest.raises(ValueError, match=rf"device '{device}' \(\w+:\d+\) does not exist "
                                             rf"here; available JAX devices: \['cpu:0'"):
            jsnn.model_backend(device)
    with pytest.raises(ValueError, match="'gpu:64' .*does not exist"):
        registry.model_backend("jax", "gpu:64")
    for bad in ("gpu0", "npu:0", "cpu:-1", "", "cpu:0:1"):
        with pytest.raises(ValueError, match=rf"device '{bad}' is not a JAX device name; "
                                             r"expected platform\[:index\].*available: "):
            jsnn.model_backend(bad)
    with pytest.raises(TypeError, match="device must be a string.*int 0"):
        jsnn.model_backend(0)  # type: ignore[arg-type]


def test_S4_16_arrays_and_results_live_on_the_chosen_device() -> None:
    """S4.16 with two host devices (a fresh interpreter with XLA's forced host device
    count): a ``cpu:1`` backend puts data there, refuses arrays on ``cpu:0`` naming them,
    and returns gradients, buffers and credits on ``cpu:1``; ``cpu:2`` is named missing."""
    code = """
import jax, numpy as np
from spikenm.backends.jax import snn
from spikenm.snn import EIDRequest, LIFParams, init_buffers, init_params
from spikenm.snn.archs import GraphBuilder
b = GraphBuilder((1, 4, 4)); b.conv(3, 3, batch_norm=True); b.lif(); b.flatten(); b.linear(4)
graph = b.graph()
one = jax.devices("cpu")[1]
mb = snn.model_backend("cpu:1")
assert mb.device == "cpu:1" and mb.jax_device == one, mb.device
try:
    snn.model_backend("cpu:2")
except ValueError as e:
    assert "['cpu:0', 'cpu:1']" in str(e), e
else:
    raise AssertionError("cpu:2 accepted")
ps = {k: mb.from_numpy(v) for k, v in init_params(graph, 0, 2.0, "float32").items()}
bs = {k: jax.device_put(v, jax.devices("cpu")[0])
      for k, v in init_buffers(graph, "float32").items()}
x = mb.from_numpy(np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32))
y = mb.from_numpy(np.array([0, 1, 3]))
assert all(a.devices() == {one} for a in (*ps.values(), x, y))
try:
    mb.forward_backward(graph, ps, bs, x, y, LIFParams())
except ValueError as e:
    assert str(e).startswith("buffers['bn0.running_mean'] is on device cpu:0; this backend "
                             "runs on 'cpu:1'"), e
else:
    raise AssertionError("buffers on cpu:0 accepted")
bs = {k: jax.device_put(v, one) for k, v in bs.items()}
r = mb.forward_backward(graph, ps, bs, x, y, LIFParams(),
                        EIDRequest((0, 1), (ps["layer0.weight"], ps["layer1.weight"]), 0.5))
arrays = [*r.grads.values(), *r.buffers.values(), *r.credits.values()]
assert len(arrays) == 5 + 2 + 2 and all(a.devices() == {one} for a in arrays), \\
    [a.devices() for a in arrays]
e = mb.evaluate(graph, ps, bs, x, y, LIFParams())
assert e.count == 3
print("ok")
"""
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    assert _run_python(code, {"XLA_FLAGS": flags}).split() == ["ok"]


def test_S4_16_no_trainer_import() -> None:
    """The JAX model backend imports the core (`spikenm.snn`), never the trainer."""
    code = """
import sys
import numpy as np
from spikenm.registry import model_backend
import spikenm.backends.jax.snn, spikenm.backends.jax.snn_graph
from spikenm.snn import LIFParams, init_buffers, init_params, mlp
mb = model_backend("jax")
g = mlp((4,), 2, (4,))
r = mb.forward_backward(g, {k: mb.from_numpy(v) for k, v in init_params(g, 0, 1.0,
                        "float32").items()}, {}, mb.from_numpy(np.ones((2, 4), np.float32)),
                        mb.from_numpy(np.array([0, 1])), LIFParams())
bad = sorted(m for m in sys.modules if m.startswith("spikenm.train"))
assert not bad, bad
print("ok")
"""
    assert _run_python(code).split() == ["ok"]


def test_S4_compiled_step_is_traced_once_per_configuration() -> None:
    """One jitted function per (graph, lif, EID layers, input kind, dtype): a second call,
    new parameter values and an equal graph built anew reuse it without retracing; another
    EID request, input kind or neuron is its own function."""
    graph = Graph((3,), (Node("linear", (-1,), 3, 4), Node("bn", (0,)), Node("lif", (1,)),
                         Node("linear", (2,), 4, 2)))
    lif = LIFParams(time_steps=2, beta=0.37)  # a configuration no other test uses
    mb = jsnn.model_backend()
    params, buffers, x, y = _net_arrays(graph, "float64", t_steps=2)
    ps, bs, xs, ys = _on(mb, params), _on(mb, buffers), mb.from_numpy(x), mb.from_numpy(y)
    eid = EIDRequest((1,), (ps["layer1.weight"],), 0.5)
    key = ("step", graph, lif, (1,), True, "float64")
    assert jsnn.TRACES[key] == 0
    first = mb.forward_backward(graph, ps, bs, xs, ys, lif, eid)
    assert jsnn.TRACES[key] == 1
    rebuilt = Graph(graph.input_shape, tuple(Node(**vars(n)) for n in graph.nodes))
    assert rebuilt is not graph and hash(rebuilt) == hash(graph)
    again = mb.forward_backward(rebuilt, ps, bs, xs, ys, LIFParams(time_steps=2, beta=0.37),
                                eid)
    scaled = {k: v * 1.5 for k, v in ps.items()}
    mb.forward_backward(graph, scaled, first.buffers, xs, ys, lif,
                        EIDRequest((1,), (scaled["layer1.weight"],), 0.9))
    assert jsnn.TRACES[key] == 1
    assert again.loss == first.loss
    assert jsnn.step_function(rebuilt, lif, (1,), True, "float64") is \
        jsnn.step_function(graph, lif, (1,), True, "float64")
    mb.forward_backward(graph, ps, bs, xs, ys, lif)
    assert jsnn.TRACES[("step", graph, lif, (), True, "float64")] == 1
    repeated = mb.from_numpy(np.ascontiguousarray(np.broadcast_to(x, (2,) + x.shape)))
    mb.forward_backward(graph, ps, bs, repeated, ys, lif, eid)
    assert jsnn.TRACES[("step", graph, lif, (1,), False, "float64")] == 1
    for _ in range(2):
        mb.evaluate(graph, ps, bs, xs, ys, lif)
    assert jsnn.TRACES[("eval", graph, lif, True, "float64")] == 1
    assert jsnn.TRACES[key] == 1


def _float32_step(x64: bool) -> tuple[Any, Any]:
    """`SMALL` in float32 with EID on every layer, inside ``jax.enable_x64(x64)``: the
    step, the eval pass and the labels' dtype."""
    params, buffers, x, y = _net_arrays(SMALL, "float32")
    with jax.enable_x64(x64):
        mb = jsnn.model_backend()
        ps, bs, xs, ys = _on(mb, params), _on(mb, buffers), mb.from_numpy(x), mb.from_numpy(y)
        r = mb.forward_backward(SMALL, ps, bs, xs, ys, LIF3, _eid_all(SMALL, ps))
        e = mb.evaluate(SMALL, ps, bs, xs, ys, LIF3)
        return (r, e), str(ys.dtype)


def test_S4_S0_6_float32_runs_without_x64() -> None:
    """float32 in JAX's default 32-bit mode: int64 labels become int32, every result is a
    float32 array of the parameter's shape (credits in block layout), and the numbers equal
    the float32 run with 64-bit types on; a smooth (LIF-free) batch-norm network agrees
    with its float64 run within S0.6."""
    params, buffers, _, _ = _net_arrays(SMALL, "float32")
    ((r32, e32), labels32), ((r_x64, e_x64), labels64) = _float32_step(False), \
        _float32_step(True)
    assert (labels32, labels64) == ("int32", "int64")
    assert isinstance(r32.loss, float) and isinstance(r32.correct, int)
    assert math.isfinite(r32.loss) and len(r32.firing_rates) == len(SMALL.neurons)
    assert all(0 < f < 1 for f in r32.firing_rates), r32.firing_rates
    assert sorted(r32.grads) == sorted(params) and sorted(r32.buffers) == sorted(buffers)
    for key, g in [*r32.grads.items(), *r32.buffers.items()]:
        _assert_jax(g, np.float32, params[key].shape if key in params else buffers[key].shape)
    assert sorted(r32.credits) == list(range(len(SMALL.layers)))
    for k, c in r32.credits.items():
        _assert_jax(c, np.float32, api.to_block_layout(params[f"layer{k}.weight"]).shape)
    assert (r32.loss, r32.correct, r32.firing_rates) == \
        (r_x64.loss, r_x64.correct, r_x64.firing_rates)
    assert e32 == e_x64 and e32.count == 4 and sum(e32.spike_sums) > 0
    for group in ("grads", "buffers", "credits"):
        for k, v in getattr(r32, group).items():
            np.testing.assert_allclose(jb.to_numpy(v), jb.to_numpy(getattr(r_x64, group)[k]),
                                       rtol=1e-6, atol=1e-7, err_msg=f"{group} {k}")

    smooth = Graph((3, 2, 2), (Node("conv", (-1,), 3, 4, 1), Node("bn", (0,)),
                               Node("flatten", (1,)), Node("linear", (2,), 16, 5)))
    got: dict[str, np.ndarray] = {}
    want: dict[str, np.ndarray] = {}
    for dtype, out in (("float32", got), ("float64", want)):
        params, buffers, x, y = _net_arrays(smooth, dtype, seed=3, batch=6)
        with jax.enable_x64(dtype == "float64"):
            mb = jsnn.model_backend()
            r = mb.forward_backward(smooth, _on(mb, params), _on(mb, buffers),
                                    mb.from_numpy(x), mb.from_numpy(y), LIF3)
            out["loss"] = np.array(r.loss)
            out.update({k: jb.to_numpy(v) for k, v in [*r.grads.items(), *r.buffers.items()]})
    assert got["loss"].dtype == np.float64 and sorted(got) == sorted(want)
    for key in want:
        if key == "layer0.bias":  # 0 up to rounding: a bias before batch norm
            assert np.abs(got[key]).max() <= 1e-6
        elif key in ("loss", "bn0.running_mean", "bn0.running_var"):
            _assert_close(got[key], want[key], np.float32)
        else:
            _assert_grad_close(got[key], want[key], np.float32)


def _bn_by_hand(graph: Graph, params: dict[str, np.ndarray], rm: np.ndarray,
                rv: np.ndarray, x: np.ndarray, y: np.ndarray, t_steps: int, decay: float
                ) -> dict[str, Any]:
    """S4.8, S4.13, S2.3 in NumPy for ``weighted -> bn -> [flatten] -> linear`` with a
    linear or 1x1-conv first layer: loss, gradients, running statistics, eval loss and
    the first layer's credit (``d_t`` taken before the batch norm)."""
    w1, b1 = params["layer0.weight"], params["layer0.bias"]
    w2, b2 = params["layer1.weight"], params["layer1.bias"]
    gamma, beta = params["bn0.gamma"], params["bn0.beta"]
    xt = np.broadcast_to(x, (t_steps,) + x.shape) if x.ndim == 1 + len(graph.input_shape) \
        else x
    maps = xt.ndim == 5
    w1m = w1.reshape(w1.shape[:2])
    a = (np.einsum("tbchw,oc->tbohw", xt, w1m) + b1[:, None, None] if maps
         else xt @ w1.T + b1)
    axes = (0, 1, 3, 4) if maps else (0, 1)
    shape = (-1, 1, 1) if maps else (-1,)
    n = a.size // a.shape[2]
    mu, var = a.mean(axis=axes), a.var(axis=axes)
    xhat = (a - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
    out: dict[str, Any] = {}

    def head(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        flat = z.reshape(z.shape[:2] + (-1,))
        logits = (flat @ w2.T + b2).mean(axis=0)
        shifted = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        loss = float(np.sum(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]))
        p[np.arange(len(y)), y] -= 1.0
        return loss, flat, p / len(y)

    bn_out = gamma.reshape(shape) * xhat + beta.reshape(shape)
    loss_sum, flat, g_logits = head(bn_out)
    out["loss"] = loss_sum / len(y)
    gz = np.broadcast_to(g_logits / t_steps, (t_steps,) + g_logits.shape)
    out["layer1.weight"] = np.einsum("tbo,tbk->ok", gz, flat)
    out["layer1.bias"] = gz.sum(axis=(0, 1))
    gy = (gz @ w2).reshape(a.shape)
    out["bn0.gamma"] = (gy * xhat).sum(axis=axes)
    out["bn0.beta"] = gy.sum(axis=axes)
    mean = lambda v: v.mean(axis=axes).reshape(shape)  # noqa: E731
    ga = (gamma / np.sqrt(var + 1e-5)).reshape(shape) * (gy - mean(gy) - xhat * mean(gy * xhat))
    out["layer0.weight"] = (np.einsum("tbohw,tbchw->oc", ga, xt).reshape(w1.shape) if maps
                            else np.einsum("tbo,tbk->ok", ga, xt))
    out["bn0.running_mean"] = 0.9 * rm + 0.1 * mu
    out["bn0.running_var"] = 0.9 * rv + 0.1 * var * n / (n - 1)
    eval_out = (gamma.reshape(shape) * (a - rm.reshape(shape)) / np.sqrt(rv.reshape(shape)
                + 1e-5) + beta.reshape(shape))
    out["eval_loss_sum"] = head(eval_out)[0]
    if not maps:
        out["credit0"] = ref.eligibility_credit(np.ascontiguousarray(xt),
                                                np.ascontiguousarray(ga), w1, decay=decay)
    return out


@pytest.mark.parametrize("maps", [False, True], ids=["features", "maps"])
@pytest.mark.parametrize("time_major", [False, True], ids=["direct", "time-major"])
def test_S4_13_batch_norm_by_hand(maps: bool, time_major: bool) -> None:
    """S4.13 against NumPy: train-mode statistics over the n = T B (H W) entries of a
    channel (a direct-encoded input counting T times), the backward formula of S4.13
    through gamma, beta and the layer before, the running-statistics update, eval mode
    with (rm, rv), and the EID credit of the layer before the batch norm (S2.3)."""
    if maps:
        graph = Graph((3, 2, 2), (Node("conv", (-1,), 3, 4, 1), Node("bn", (0,)),
                                  Node("flatten", (1,)), Node("linear", (2,), 16, 5)))
    else:
        graph = Graph((3,), (Node("linear", (-1,), 3, 4), Node("bn", (0,)),
                             Node("linear", (1,), 4, 5)))
    params, buffers, x, y = _net_arrays(graph, "float64", seed=1, batch=5,
                                        time_major=time_major)
    want = _bn_by_hand(graph, params, buffers["bn0.running_mean"],
                       buffers["bn0.running_var"], x, y, LIF3.time_steps, 0.6)
    mb = jsnn.model_backend()
    ps, bs = _on(mb, params), _on(mb, buffers)
    r = mb.forward_backward(graph, ps, bs, mb.from_numpy(x), mb.from_numpy(y), LIF3,
                            None if maps else EIDRequest((0,), (ps["layer0.weight"],), 0.6))
    assert abs(r.loss - want["loss"]) <= 1e-13 * abs(want["loss"])
    for key in ("layer1.weight", "layer1.bias", "bn0.gamma", "bn0.beta", "layer0.weight"):
        assert _scaled(jb.to_numpy(r.grads[key]), want[key]) <= 1e-12, key
    assert np.abs(jb.to_numpy(r.grads["layer0.bias"])).max() <= 1e-15  # removed by bn
    for key in ("bn0.running_mean", "bn0.running_var"):
        np.testing.assert_allclose(jb.to_numpy(r.buffers[key]), want[key], rtol=1e-13)
    if not maps:
        assert _scaled(jb.to_numpy(r.credits[0]), want["credit0"]) <= 1e-12
    e = mb.evaluate(graph, ps, bs, mb.from_numpy(x), mb.from_numpy(y), LIF3)
    assert abs(e.loss_sum - want["eval_loss_sum"]) <= 1e-13 * abs(want["eval_loss_sum"])
    assert (e.count, e.spike_sums, e.spike_counts) == (5, (), ())


def test_S4_13_one_entry_per_channel_is_refused_in_train_mode_only() -> None:
    """S4.13: train-mode batch norm over n = 1 entry is a ValueError; eval mode runs."""
    graph = Graph((3,), (Node("linear", (-1,), 3, 2), Node("bn", (0,)), Node("lif", (1,)),
                         Node("linear", (2,), 2, 2)))
    mb = jsnn.model_backend()
    ps = _on(mb, init_params(graph, 0, 1.0, "float64"))
    bs = _on(mb, init_buffers(graph, "float64"))
    x, y = mb.from_numpy(np.ones((1, 3))), mb.from_numpy(np.zeros(1, np.int64))
    one = LIFParams(time_steps=1)
    with pytest.raises(ValueError, match=r"n = 1 entries per channel; train mode needs "
                                         r"n >= 2 \(S4.13\)"):
        mb.forward_backward(graph, ps, bs, x, y, one)
    assert mb.evaluate(graph, ps, bs, x, y, one).count == 1
    assert mb.forward_backward(graph, ps, bs, x, y, LIFParams(time_steps=2)).buffers


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)])
def test_S2_3_conv_credit_is_the_credit_of_the_unfolded_input(stride: int,
                                                              padding: int) -> None:
    """S2.3 for conv layers: `conv_credit` (one batched weight gradient over t) equals
    the NumPy reference's linear credit of the im2col-unfolded input in block layout
    ``(kh, kw, in)``, every output position being one more row of the batch."""
    rng = np.random.default_rng(5)
    t, b, c, o, k, h = 3, 2, 2, 3, 3, 5
    node = Node("conv", (-1,), c, o, k, stride, padding)
    ho = (h + 2 * padding - k) // stride + 1
    x = rng.random((t, b, c, h, h))
    d = rng.standard_normal((t, b, o, ho, ho))
    w = rng.standard_normal((o, c, k, k))
    got = jb.to_numpy(conv_credit(jnp.asarray(x), jnp.asarray(d), jnp.asarray(w), node, 0.7))
    assert got.shape == (o, k, k, c)
    xp = np.pad(x, ((0, 0),) * 3 + ((padding, padding),) * 2)
    cols = np.stack([xp[:, :, :, i * stride:i * stride + k, j * stride:j * stride + k]
                     for i in range(ho) for j in range(ho)], axis=2)  # (t, b, P, c, k, k)
    cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(t, b * ho * ho, k * k * c)
    rows = d.transpose(0, 1, 3, 4, 2).reshape(t, b * ho * ho, o)
    want = ref.eligibility_credit(cols, rows, w.transpose(0, 2, 3, 1).reshape(o, -1),
                                  decay=0.7)
    assert _scaled(got.reshape(o, -1), want) <= 1e-13


def test_S4_16_step_copies_only_loss_count_and_rates_to_the_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """S4.16: once the arrays are on the device, a step with batch norm, a residual join
    and EID makes no implicit host-to-device transfer and fetches to the host one tree of
    0-d arrays: the loss, the correct count and one firing rate per lif node; the eval
    pass fetches the loss sum, the correct count and the spike sums."""
    mb = jsnn.model_backend()
    params, buffers, x, y = _net_arrays(SMALL, "float32")
    ps, bs, xs, ys = _on(mb, params), _on(mb, buffers), mb.from_numpy(x), mb.from_numpy(y)
    eid = _eid_all(SMALL, ps)
    mb.forward_backward(SMALL, ps, bs, xs, ys, LIF3, eid)  # compile first
    mb.evaluate(SMALL, ps, bs, xs, ys, LIF3)
    fetched: list[Any] = []
    real = jax.device_get

    def recording(tree: Any) -> Any:
        fetched.append(tree)
        return real(tree)

    monkeypatch.setattr(jax, "device_get", recording)
    with jax.transfer_guard("disallow"):
        r = mb.forward_backward(SMALL, ps, bs, xs, ys, LIF3, eid)
        mb.evaluate(SMALL, ps, bs, xs, ys, LIF3)
    assert len(fetched) == 2
    for tree in fetched:
        leaves = jax.tree_util.tree_leaves(tree)
        assert len(leaves) == 2 + len(SMALL.neurons) and all(a.shape == () for a in leaves)
    assert all(isinstance(v, jax.Array) for v in [*r.grads.values(), *r.credits.values()])


def test_S0_5_model_backend_bad_calls_name_the_value() -> None:
    """S0.5: a wrong graph or neuron type, missing buffers, and bad EID requests (layer out
    of range or repeated, weights missing, misshapen or of another dtype, decay outside
    [0, 1]) are errors naming the value."""
    mb = jsnn.model_backend()
    params, buffers, x, y = _net_arrays(SMALL, "float64")
    ps, bs, xs, ys = _on(mb, params), _on(mb, buffers), mb.from_numpy(x), mb.from_numpy(y)
    with pytest.raises(TypeError, match="graph must be a spikenm.snn.Graph, got tuple"):
        mb.forward_backward((), ps, bs, xs, ys, LIF3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lif must be a spikenm.snn.LIFParams, got dict"):
        mb.evaluate(SMALL, ps, bs, xs, ys, {"beta": 0.5})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"buffers do not match the graph: missing "
                                         r"\['bn1.running_mean', 'bn1.running_var'\]"):
        mb.forward_backward(SMALL, ps, {k: v for k, v in bs.items() if "bn1" not in k}, xs,
                            ys, LIF3)
    with pytest.raises(TypeError, match=r"x is a ndarray; expected a jax.Array on cpu:0 "
                                        r"\(use from_numpy\)"):
        mb.forward_backward(SMALL, ps, bs, x, ys, LIF3)
    with pytest.raises(TypeError, match=r"params\['layer1.bias'\] is a tracer"):
        jax.jit(lambda b: mb.evaluate(SMALL, {**ps, "layer1.bias": b}, bs, xs, ys, LIF3))(
            ps["layer1.bias"])
    with pytest.raises(TypeError, match="eid must be a spikenm.snn.EIDRequest or None"):
        mb.forward_backward(SMALL, ps, bs, xs, ys, LIF3, (1,))  # type: ignore[arg-type]
    w1 = ps["layer1.weight"]
    for eid, kind, match in (
            (EIDRequest((4,), (w1,), 0.5), ValueError,
             r"EID layer 4 does not exist; the graph has 4 weighted layers \(ordinals 0..3\)"),
            (EIDRequest((-1,), (w1,), 0.5), ValueError, "EID layer -1 does not exist"),
            (EIDRequest((1, 1), (w1, w1), 0.5), ValueError, r"EID layers \(1, 1\) repeat"),
            (EIDRequest((1,), (), 0.5), ValueError, "0 weights for 1 layers"),
            (EIDRequest((0,), (w1,), 0.5), ValueError,
             r"EID weight of layer 0 has shape \(4, 4, 3, 3\); expected \(4, 2, 3, 3\)"),
            (EIDRequest((1,), (w1.astype(jnp.float32),), 0.5), TypeError,
             "EID weight of layer 1 is float32; expected the parameters' dtype float64"),
            (EIDRequest((1,), (w1,), 1.5), ValueError,
             r"eid.decay=1.5 is invalid; expected a number in \[0, 1\]")):
        with pytest.raises(kind, match=match):
            mb.forward_backward(SMALL, ps, bs, xs, ys, LIF3, eid)


@pytest.mark.skipif(not any(d.startswith("gpu:") for d in jsnn.available_devices()),
                    reason="needs a JAX GPU device")
def test_S4_16_gpu_step_equals_the_cpu_step() -> None:
    """S4.16 on a GPU: arrays and results live on ``gpu:0`` and the float64 step equals
    the CPU step."""
    params, buffers, x, y = _net_arrays(SMALL, "float64")
    out = []
    for device in ("gpu:0", "cpu:0"):
        mb = jsnn.model_backend(device)
        ps = _on(mb, params)
        r = mb.forward_backward(SMALL, ps, _on(mb, buffers), mb.from_numpy(x),
                                mb.from_numpy(y), LIF3, _eid_all(SMALL, ps))
        arrays = [*r.grads.values(), *r.buffers.values(), *r.credits.values()]
        assert all(a.devices() == {mb.jax_device} for a in arrays)
        out.append(r)
    gpu, cpu = out
    assert gpu.correct == cpu.correct and abs(gpu.loss - cpu.loss) <= 1e-12
    for k in cpu.grads:
        assert _scaled(jb.to_numpy(gpu.grads[k]), jb.to_numpy(cpu.grads[k])) <= 1e-10, k


@pytest.mark.parametrize("module_name", [
    "spikenm.backends.jax.snn", "spikenm.backends.jax.snn_lif",
    "spikenm.backends.jax.snn_credit", "spikenm.backends.jax.snn_device"])
def test_model_backend_docstring_examples_run(module_name: str) -> None:
    """The examples in the JAX model backend's docstrings run and print what they show."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name),
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
