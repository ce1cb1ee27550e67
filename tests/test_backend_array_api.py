"""The generic array-API backend (SPEC S0.7) against the NumPy reference, via spikenm.api.

Every input is an ``array_api_strict`` array on the non-default device ``device1``, with
the library restricted to the 2023.12 standard, no boolean indexing and no
data-dependent shapes: a call outside that subset, a silent transfer to another device or
an array created on the default device fails here.  Each test checks, in order, that the
result is an ``array_api_strict`` array of the caller's namespace, device and dtype, then
its values against the reference run on the same numbers (exact for masks, indices and
packed values; ``rtol = atol = 4 * sqrt(eps)`` for floats, SPEC S0.6).
"""

from __future__ import annotations

import doctest
import importlib
import math
from typing import Any

import array_api_compat
import array_api_strict as xp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import spikenm.api as api
import spikenm.backends.array_api as aab
from spikenm.dispatch import backend_for
from spikenm.packed import Packed
from spikenm.protocol import Backend, missing_members

DEVICE = xp.Device("device1")
ARRAY_TYPE = type(xp.asarray(0.0))
PATTERNS = [(1, 2), (2, 4), (1, 4), (3, 4), (4, 4), (2, 8), (4, 8), (8, 16)]
TIES = [-1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0]


@pytest.fixture(autouse=True, scope="module")
def strict_2023_12() -> Any:
    """array_api_strict limited to the 2023.12 standard without data-dependent shapes."""
    with xp.ArrayAPIStrictFlags(
        api_version="2023.12", boolean_indexing=False, data_dependent_shapes=False
    ):
        yield


# -- helpers ------------------------------------------------------------------------------


def strict(a: Any) -> Any:
    """A NumPy array (or scalar list) as an array_api_strict array on ``DEVICE``."""
    return xp.asarray(np.asarray(a), device=DEVICE)


def host(x: Any) -> np.ndarray:
    """NumPy copy of a strict array (independent of the backend under test)."""
    return np.array(np.from_dlpack(x, device="cpu"))


def assert_strict(out: Any, dtype: Any) -> np.ndarray:
    """``out`` is an array_api_strict array on DEVICE with ``dtype``; returns its values."""
    assert isinstance(out, ARRAY_TYPE), f"expected an array_api_strict array, got {type(out)}"
    assert array_api_compat.array_namespace(out) is xp
    assert out.device == DEVICE, f"result moved to {out.device}, expected {DEVICE}"
    assert out.dtype == dtype, f"dtype {out.dtype}, expected {dtype}"
    return host(out)


def tol(dtype: str) -> float:
    """``rtol = atol = 4 * sqrt(eps(dtype))`` (SPEC S0.6)."""
    return 4.0 * math.sqrt(float(np.finfo(dtype).eps))


def close(got: np.ndarray, want: np.ndarray, dtype: str, magnitude: float = 1.0) -> None:
    """``|got - want| <= atol + rtol * |want|`` with ``atol = rtol * magnitude``."""
    r = tol(dtype)
    np.testing.assert_allclose(got, want, rtol=r, atol=r * magnitude)


@st.composite
def block_arrays(draw: Any, ties: bool = True, low: float = -3.0, high: float = 3.0) -> Any:
    """``(array, n, m)``: float32/float64 ``(*lead, G * m)``, values with many ties."""
    n, m = draw(st.sampled_from(PATTERNS))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    groups = draw(st.integers(1, 3))
    width = 32 if dtype == "float32" else 64
    finite = st.floats(low, high, width=width, allow_subnormal=False)
    elements = st.one_of(st.sampled_from(TIES), finite) if ties else finite
    a = draw(hnp.arrays(dtype, (*lead, groups * m), elements=elements))
    return a, n, m


@st.composite
def sparse_arrays(draw: Any) -> Any:
    """``(w, keep, n, m)``: ``keep`` 0/1 with at most ``n`` ones per block, ``w`` any real
    dtype whose kept entries may be 0 or -0.0, and zero elsewhere."""
    n, m = draw(st.sampled_from(PATTERNS))
    dtype = draw(st.sampled_from(["float32", "float64", "int8", "uint8", "int16", "int32"]))
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    groups = draw(st.integers(1, 3))
    shape = (*lead, groups * m)
    if dtype.startswith("float"):
        width = 32 if dtype == "float32" else 64
        elements = st.one_of(st.sampled_from([0.0, -0.0, 1.5]), st.floats(width=width))
    else:
        elements = None
    values = draw(hnp.arrays(dtype, shape, elements=elements))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = rng.random((*lead, groups, m)).argsort(axis=-1).argsort(axis=-1)
    counts = rng.integers(0, n + 1, size=(*lead, groups, 1))
    keep = (blocks < counts).reshape(shape)
    w = np.where(keep, values, np.zeros((), dtype))
    return w, keep, n, m


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of ``a`` (so that ``-0.0 != 0.0`` and NaN payloads compare)."""
    return a.view(f"u{a.dtype.itemsize}")


# -- S0.7: the backend object -------------------------------------------------------------


def test_S0_7_backend_is_complete_and_forward_only() -> None:
    """S0.7: every protocol member is there, ``differentiable`` is False, dispatch finds it."""
    assert missing_members(aab.BACKEND) == []
    assert isinstance(aab.BACKEND, Backend)
    assert aab.BACKEND.name == "array_api" and aab.BACKEND.differentiable is False
    assert backend_for(x=strict([1.0])) is aab.BACKEND
    bound = aab.make_backend(xp)
    assert missing_members(bound) == [] and bound.differentiable is False


@pytest.mark.parametrize(
    "call",
    [
        lambda: aab.sample_mask_vjp(None, None, 2, 4, 1.0, 1.0, True, None),
        lambda: aab.relaxed_topn_vjp(None, 2, 4, 1.0, None),
        lambda: aab.eid_loss_vjp(None, None, 4, 1.0, None),
    ],
    ids=["sample_mask_vjp", "relaxed_topn_vjp", "eid_loss_vjp"],
)
def test_S0_7_vjp_members_raise_forward_only(call: Any) -> None:
    """S0.7 (S1.5, S2.7 not applicable): the VJP members raise NotImplementedError."""
    with pytest.raises(NotImplementedError, match="forward-only; use the torch or jax"):
        call()


def test_S0_4_dtype_names_are_canonical() -> None:
    """S0.4: dtype_name gives the canonical name of every standard dtype."""
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float32", "float64", "complex64", "complex128"):
        assert aab.dtype_name(xp.zeros(2, dtype=getattr(xp, name))) == name


def test_S0_5_all_finite_is_a_python_bool() -> None:
    """S0.5: all_finite answers True/False (a Python bool) and ignores integer arrays."""
    assert aab.all_finite(strict([1.0, 2.0])) is True
    assert aab.all_finite(strict([1.0, math.inf])) is False
    assert aab.all_finite(strict([1, 2])) is True


def test_S0_7_host_copies_keep_namespace_and_device() -> None:
    """S0.7: to_numpy copies from any device; from_numpy follows ``like`` or the binding."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = aab.from_numpy(a, like=strict([0.0]))
    assert assert_strict(x, xp.float32).tolist() == a.tolist()
    back = aab.to_numpy(x)
    assert isinstance(back, np.ndarray) and back.flags.writeable
    np.testing.assert_array_equal(back, a)
    default = aab.from_numpy(a)
    assert isinstance(default, ARRAY_TYPE) and default.device == xp.Device("CPU_DEVICE")
    bound = aab.make_backend(xp).from_numpy(a)
    assert isinstance(bound, ARRAY_TYPE)
    with pytest.raises(TypeError, match="array-API namespace"):
        aab.make_backend(np.linalg)


def test_S0_7_docstring_examples_run() -> None:
    """S0.7: every example in the backend's docstrings runs under the 2023.12 standard."""
    failed = attempted = 0
    for name in ("namespace", "arrays", "blocks", "sampler", "eid", "packing",
                 "random", "gradients", "bound"):
        module = importlib.import_module(f"spikenm.backends.array_api.{name}")
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        failed, attempted = failed + result.failed, attempted + result.attempted
    assert attempted > 15 and failed == 0


# -- S0.5: errors through the api -----------------------------------------------------------


def test_S0_5_mixing_strict_and_numpy_is_a_type_error() -> None:
    """S0.5: arrays of two frameworks in one call raise TypeError."""
    a = np.zeros((2, 4))
    s = strict(a)
    with pytest.raises(TypeError, match="different frameworks"):
        api.sample_mask(s, 2, 4, noise=a)
    with pytest.raises(TypeError, match="different frameworks"):
        api.eid_loss(s, a, 4)
    with pytest.raises(TypeError, match="different frameworks"):
        api.eligibility_credit(strict(np.zeros((1, 1, 4))), np.zeros((1, 1, 2)), a[:, :4],
                               decay=0.5)
    with pytest.raises(TypeError, match="different frameworks"):
        api.pack(s, 2, 4, mask=a)
    with pytest.raises(TypeError, match="different frameworks"):
        api.spmm(api.pack(s, 2, 4), np.zeros(4))


def test_S0_4_integer_scores_are_a_type_error() -> None:
    """S0.4: the math functions refuse integer arrays."""
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        api.topn_mask(strict(np.zeros(4, dtype=np.int32)), 2, 4)


def test_S0_5_nan_names_its_index() -> None:
    """S0.5: NaN in the logits raises ValueError naming the first bad index."""
    logits = np.zeros((2, 4))
    logits[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(1, 2\)"):
        api.block_probs(strict(logits), 4)


def test_S0_4_temperature_that_vanishes_in_float32_is_refused() -> None:
    """S0.4/S0.5: a temperature that is 0 in float32 raises instead of giving NaN."""
    with pytest.raises(ValueError, match="temperature=1e-50 is 0.0 in float32"):
        api.relaxed_topn(strict(np.zeros(4, dtype=np.float32)), 2, 4, temperature=1e-50)


@pytest.mark.parametrize("index, dtype", [(4, np.uint8), (255, np.uint8)])
def test_S3_1_unpack_index_out_of_block_is_refused(index: int, dtype: type) -> None:
    """S3.1: unpack refuses an index outside [0, m) instead of dropping its value."""
    bad = Packed(strict([[1.0, 2.0]]), strict(np.array([[0, index]], dtype=dtype)), 2, 4,
                 (1, 4), 1)
    expected = rf"indices\[0, 1\] .* is {index}; expected a value in \[0, 4\)"
    with pytest.raises(ValueError, match=expected):
        api.unpack(bad)


# -- S1: the sampler --------------------------------------------------------------------------


@given(block_arrays(), st.booleans())
def test_S1_2_topn_mask_and_tie_rule_equal_reference(case: Any, along_first: bool) -> None:
    """S1.2, S1.8: topn_mask and final_mask equal the reference exactly, ties included."""
    a, n, m = case
    axis = -1
    if along_first:
        a, axis = np.moveaxis(a, -1, 0).copy(), 0
    want = api.topn_mask(a, n, m, axis=axis)
    got = assert_strict(api.topn_mask(strict(a), n, m, axis=axis), getattr(xp, a.dtype.name))
    np.testing.assert_array_equal(got, want)
    final = assert_strict(api.final_mask(strict(a), n, m, axis=axis), getattr(xp, a.dtype.name))
    np.testing.assert_array_equal(final, want)


@given(block_arrays(ties=False), st.integers(0, 2**32 - 1))
def test_S1_6_gumbel_like_equals_reference_numbers(case: Any, seed: int) -> None:
    """S1.6: gumbel_like draws the reference's numbers for the same seed, shape and dtype."""
    a = case[0]
    want = api.gumbel_like(a, seed)
    got = assert_strict(api.gumbel_like(strict(a), seed), getattr(xp, a.dtype.name))
    np.testing.assert_array_equal(got, want)


@given(
    block_arrays(ties=False), st.integers(0, 2**32 - 1),
    st.floats(0.5, 4.0), st.floats(0.25, 2.0), st.booleans(),
)
def test_S1_4_sample_mask_equals_reference(
    case: Any, seed: int, temperature: float, scale: float, hard: bool,
) -> None:
    """S1.1-S1.4: hard masks equal the reference exactly, soft masks within S0.6."""
    a, n, m = case
    noise = api.gumbel_like(a, seed)
    want = api.sample_mask(a, n, m, noise=noise, temperature=temperature, scale=scale, hard=hard)
    out = api.sample_mask(
        strict(a), n, m, noise=strict(noise), temperature=temperature, scale=scale, hard=hard
    )
    got = assert_strict(out, getattr(xp, a.dtype.name))
    if hard:
        np.testing.assert_array_equal(got, want)
    else:
        close(got, want, a.dtype.name)


@given(block_arrays(ties=False), st.floats(0.5, 4.0))
def test_S1_3_relaxed_topn_equals_reference(case: Any, temperature: float) -> None:
    """S1.3: the successive-softmax relaxation equals the reference within S0.6."""
    a, n, m = case
    want = api.relaxed_topn(a, n, m, temperature=temperature)
    got = api.relaxed_topn(strict(a), n, m, temperature=temperature)
    close(assert_strict(got, getattr(xp, a.dtype.name)), want, a.dtype.name)
    sums = got.shape[-1] // m
    np.testing.assert_allclose(
        host(got).reshape(*a.shape[:-1], sums, m).sum(-1), n, rtol=tol(a.dtype.name) * m
    )


@given(block_arrays(ties=False, low=-20.0, high=20.0), st.floats(0.1, 10.0))
def test_S1_7_block_probs_equal_reference(case: Any, scale: float) -> None:
    """S1.7: block probabilities equal the reference within S0.6."""
    a, _, m = case
    want = api.block_probs(a, m, scale=scale)
    got = assert_strict(api.block_probs(strict(a), m, scale=scale), getattr(xp, a.dtype.name))
    close(got, want, a.dtype.name)


# -- S2: EID ----------------------------------------------------------------------------------


@given(
    st.sampled_from(["float32", "float64"]), st.integers(0, 4), st.integers(1, 3),
    st.integers(1, 3), st.sampled_from([4, 8]), st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_S2_3_eligibility_credit_equals_reference(
    dtype: str, t: int, b: int, o: int, k: int, decay: float, seed: int,
) -> None:
    """S2.1-S2.3: the eligibility credit equals the reference within S0.6 (T = 0 too)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, k)) < 0.4).astype(dtype)
    d = rng.standard_normal((t, b, o)).astype(dtype)
    w = rng.standard_normal((o, k)).astype(dtype)
    want = api.eligibility_credit(x, d, w, decay=decay)
    got = api.eligibility_credit(strict(x), strict(d), strict(w), decay=decay)
    close(assert_strict(got, getattr(xp, dtype)), want, dtype, max(1.0, float(np.abs(want).max())))


@given(block_arrays(ties=False, low=0.0, high=5.0), st.floats(0.25, 4.0))
def test_S2_5_eid_targets_equal_reference(case: Any, temperature: float) -> None:
    """S2.5: block-wise soft targets equal the reference within S0.6."""
    c, _, m = case
    want = api.eid_targets(c, m, temperature=temperature)
    got = api.eid_targets(strict(c), m, temperature=temperature)
    close(assert_strict(got, getattr(xp, c.dtype.name)), want, c.dtype.name)


@given(block_arrays(ties=False), st.floats(0.25, 4.0), st.booleans())
def test_S2_6_eid_loss_equals_reference(case: Any, scale: float, hard_targets: bool) -> None:
    """S2.6: the mean block KL is a 0-d array equal to the reference within S0.6, with
    ``0 * log 0 = 0`` for one-hot targets."""
    logits, n, m = case
    if hard_targets:
        targets = api.topn_mask(logits, 1, m)
    else:
        targets = api.block_probs(logits[..., ::-1].copy(), m)
    want = api.eid_loss(logits, targets, m, scale=scale)
    out = api.eid_loss(strict(logits), strict(targets), m, scale=scale)
    got = assert_strict(out, getattr(xp, logits.dtype.name))
    assert got.shape == ()
    close(got, want, logits.dtype.name)


@given(
    st.sampled_from(["float32", "float64"]), st.integers(0, 4), st.integers(1, 3),
    st.integers(1, 3), st.sampled_from([4, 8]), st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_S2_9_signed_credit_equals_reference(
    dtype: str, t: int, b: int, o: int, k: int, decay: float, seed: int,
) -> None:
    """S2.9: the signed credit |W| * |sum_t d_t^T e_t| equals the reference within S0.6
    (T = 0 too) and never exceeds the S2.3 credit."""
    rng = np.random.default_rng(seed)
    x = (rng.random((t, b, k)) < 0.4).astype(dtype)
    d = rng.standard_normal((t, b, o)).astype(dtype)
    w = rng.standard_normal((o, k)).astype(dtype)
    want = api.eligibility_credit(x, d, w, decay=decay, signed=True)
    size = max(1.0, float(np.abs(api.eligibility_credit(x, d, w, decay=decay)).max(initial=0.0)))
    got = assert_strict(api.eligibility_credit(strict(x), strict(d), strict(w), decay=decay, signed=True),
                        getattr(xp, dtype))
    close(got, want, dtype, size)
    plain = host(aab.eligibility_credit(strict(x), strict(d), strict(w), decay))
    assert np.all(got <= plain + tol(dtype) * size)


@given(block_arrays(ties=True, low=0.0, high=5.0), st.booleans(), st.booleans())
def test_S2_10_credit_scores_equal_reference(case: Any, gated: bool, along_first: bool) -> None:
    """S2.10: block scores (ties and zeros included, so all-zero blocks occur) and the
    lower-median gate (xp.sort) equal the reference within S0.6, on the block axis last
    or first."""
    c, _, m = case
    c = np.abs(c)
    axis = 0 if along_first and c.ndim > 1 else -1
    arr = np.ascontiguousarray(np.moveaxis(c, -1, axis))
    want = api.credit_scores(arr, m, gated=gated, axis=axis)
    got = assert_strict(api.credit_scores(strict(arr), m, gated=gated, axis=axis), getattr(xp, c.dtype.name))
    close(got, want, c.dtype.name)


def test_S2_10_gate_lower_median_example_and_bound_backend() -> None:
    """Masses (1, 3): lower median 1, gates 1/2 and 3/4 (S2.10), also through
    `make_backend`."""
    c = strict(np.array([0.5, 0.5, 1.5, 1.5]))
    for backend in (aab, aab.make_backend(xp)):
        np.testing.assert_array_equal(assert_strict(backend.credit_scores(c, 2, True), xp.float64),
                                      [0.5, 0.5, 0.75, 0.75])


@given(block_arrays(ties=False, low=0.5, high=5.0), st.sampled_from(["global", "block", "gated", "inclusion"]),
       st.floats(0.5, 4.0), st.integers(0, 2**32 - 1))
def test_S2_11_every_target_variant_equals_reference(case: Any, variant: str, temperature: float,
                                                      seed: int) -> None:
    """S2.11: api.eid_targets(variant=...) on strict arrays equals the NumPy result within
    S0.6 and sums to 1 per block; the gated variant needs no stop_gradient here (S0.7:
    no autodiff).  Credits in [0.5, 5] and tau_e >= 0.5 keep every softmax step of the
    inclusion targets well-conditioned (no 1 - a_j within a few ulps of 0)."""
    c, n, m = case
    logits = np.random.default_rng(seed).standard_normal(c.shape).astype(c.dtype)
    kwargs = {"logits": logits, "scale": 1.5} if variant == "gated" else {}
    want = api.eid_targets(c, m, temperature=temperature, variant=variant, n=n, **kwargs)
    kwargs = {k: strict(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    out = api.eid_targets(strict(c), m, temperature=temperature, variant=variant, n=n, **kwargs)
    got = assert_strict(out, getattr(xp, c.dtype.name))
    close(got, want, c.dtype.name)
    close(got.reshape(-1, m).sum(axis=1), np.ones(got.size // m), c.dtype.name)


# -- S3: the packed format ----------------------------------------------------------------------


@given(sparse_arrays(), st.booleans(), st.booleans())
def test_S3_3_pack_and_unpack_equal_reference_bit_for_bit(
    case: Any, with_mask: bool, along_first: bool,
) -> None:
    """S3.1-S3.3: packed values (bits), uint8 indices and the unpacked array equal the
    reference exactly, with and without a mask, along the last or the first axis."""
    w, keep, n, m = case
    mask = keep.astype(w.dtype) if with_mask else None
    axis = -1
    if along_first:
        w, axis = np.moveaxis(w, -1, 0).copy(), 0
        mask = None if mask is None else np.moveaxis(mask, -1, 0).copy()
    want = api.pack(w, n, m, mask=mask, axis=axis)
    got = api.pack(strict(w), n, m, mask=None if mask is None else strict(mask), axis=axis)
    dtype = getattr(xp, w.dtype.name)
    assert (got.n, got.m, got.shape, got.axis) == (want.n, want.m, want.shape, want.axis)
    np.testing.assert_array_equal(bits(assert_strict(got.values, dtype)), bits(want.values))
    np.testing.assert_array_equal(assert_strict(got.indices, xp.uint8), want.indices)
    dense = assert_strict(api.unpack(got), dtype)
    np.testing.assert_array_equal(bits(dense), bits(api.unpack(want)))


@given(block_arrays(), st.integers(1, 16))
def test_S3_3_is_nm_and_check_nm_agree_with_reference(case: Any, n_check: int) -> None:
    """S3.3: is_nm gives the reference's answer and check_nm its exact error message."""
    a, _, m = case
    n = min(n_check, m)
    assert api.is_nm(strict(a), n, m) is api.is_nm(a, n, m)
    try:
        api.check_nm(a, n, m)
    except ValueError as exc:
        with pytest.raises(ValueError) as info:
            api.check_nm(strict(a), n, m)
        assert str(info.value) == str(exc)
    else:
        assert api.check_nm(strict(a), n, m) is None


def test_S3_3_pack_refuses_a_crowded_block_like_reference() -> None:
    """S3.3: a block with more than n kept entries raises the reference's message."""
    w = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 2.0, 3.0, 0.0]])
    with pytest.raises(ValueError) as want:
        api.pack(w, 2, 4)
    with pytest.raises(ValueError) as got:
        api.pack(strict(w), 2, 4)
    assert str(got.value) == str(want.value)
    assert "block 0 at [1, 0:4]" in str(got.value)


@given(sparse_arrays(), st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_S3_6_spmm_equals_reference(case: Any, p: int, vector: bool, seed: int) -> None:
    """S3.6: spmm equals the reference's product (floats within S0.6 scaled by
    ``|W| @ |x|``, integers exactly, wrapping alike)."""
    w, _, n, m = case
    w = w.reshape(-1, w.shape[-1])
    if w.dtype.kind == "f":
        w = np.where(np.isfinite(w), np.clip(w, -4, 4), 0).astype(w.dtype)
    rng = np.random.default_rng(seed)
    shape = (w.shape[1],) if vector else (w.shape[1], p)
    x = rng.integers(-3, 4, size=shape).astype(w.dtype)
    want = api.spmm(api.pack(w, n, m), x)
    got = assert_strict(api.spmm(api.pack(strict(w), n, m), strict(x)), getattr(xp, w.dtype.name))
    assert got.shape == want.shape
    if w.dtype.kind == "f":
        bound = np.abs(w.astype(np.float64)) @ np.abs(x.astype(np.float64))
        close(got, want, w.dtype.name, max(1.0, float(bound.max(initial=0.0))))
    else:
        np.testing.assert_array_equal(got, want)


def test_S3_1_hand_built_packed_with_signed_indices_is_refused() -> None:
    """S3.1: indices must be uint8; a hand-built Packed with int8 indices is a TypeError."""
    bad = Packed(strict([[1.0, 2.0]]), strict(np.array([[0, -1]], dtype=np.int8)), 2, 4,
                 (1, 4), 1)
    with pytest.raises(TypeError, match="indices must be uint8, got int8"):
        api.unpack(bad)
