"""The PyTorch backend against SPEC.md and the NumPy reference.

Every test names the clause it checks.  Values are compared with the tolerances of
SPEC S0.6: masks, indices and packed values exactly; other floats with
``rtol = atol = 4 * sqrt(eps)``; gradients after scaling by their largest magnitude.
"""

from __future__ import annotations

import doctest
import importlib
import math

import ml_dtypes
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st

import spikenm.backends.torch as tb
import spikenm.reference as ref
from spikenm import api, eid_variants
from spikenm.packed import Packed
from spikenm.protocol import Backend, missing_members

FLOATS = (torch.float32, torch.float64)
PATTERNS = ((1, 2), (1, 4), (2, 4), (3, 4), (2, 8), (4, 8), (3, 3), (8, 16))
DEVICES = ("cpu",) + (("cuda",) if torch.cuda.is_available() else ())
PACK_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8)
BIT_DTYPES = PACK_DTYPES + (
    torch.uint8, torch.int16, torch.uint16, torch.int32, torch.uint32, torch.int64,
    torch.uint64, torch.bool,
)
"""Every real dtype of SPEC S3.1."""


# -- comparison helpers -------------------------------------------------------------------

def _rtol(dtype: torch.dtype) -> float:
    """``4 * sqrt(eps(dtype))`` (SPEC S0.6)."""
    return 4.0 * math.sqrt(torch.finfo(dtype).eps)


def _assert_close(got: torch.Tensor, want: np.ndarray, dtype: torch.dtype) -> None:
    """``|a - b| <= atol + rtol * |b|`` with ``atol = rtol`` (order-one quantities)."""
    tol = _rtol(dtype)
    np.testing.assert_allclose(tb.to_numpy(got), want, rtol=tol, atol=tol)


def _assert_grad_close(got: torch.Tensor, want: np.ndarray, dtype: torch.dtype) -> None:
    """Gradients compared after scaling by their largest magnitude (SPEC S0.6)."""
    scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(tb.to_numpy(got) - want))) / scale
    assert err <= _rtol(dtype), f"scaled gradient error {err} > {_rtol(dtype)}"


def _np(dtype: torch.dtype) -> np.dtype:
    return np.dtype(str(dtype).removeprefix("torch."))


def _normal(seed: int, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(_np(dtype))


def _ties(seed: int, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
    """Scores from {-1, -0, 0, 1}: most blocks have ties, and -0.0 == 0.0."""
    choices = np.array([-1.0, -0.0, 0.0, 1.0])
    return np.random.default_rng(seed).choice(choices, size=shape).astype(_np(dtype))


def _t(a: np.ndarray, requires_grad: bool = False, device: str = "cpu") -> torch.Tensor:
    t = tb.from_numpy(a, like=torch.empty(0, device=device))
    return t.requires_grad_(True) if requires_grad else t


pattern = st.sampled_from(PATTERNS)
float_dtype = st.sampled_from(FLOATS)
seed = st.integers(0, 2**32 - 1)
rows = st.integers(1, 3)
blocks = st.integers(1, 3)


# -- protocol and array plumbing ----------------------------------------------------------

@pytest.mark.parametrize(
    "module", ["arrays", "blocks", "random", "sampler", "eid", "packing", "credit"],
)
def test_docstring_examples_of_the_torch_backend_run(module: str) -> None:
    """Every docstring example of the backend modules runs and prints what it shows
    (the equations they illustrate are SPEC S1-S3)."""
    mod = importlib.import_module(f"spikenm.backends.torch.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


def test_protocol_backend_module_is_complete() -> None:
    """The module is the backend object and has every protocol member (protocol)."""
    assert missing_members(tb.BACKEND) == []
    assert isinstance(tb.BACKEND, Backend)
    assert tb.BACKEND is tb and tb.name == "torch" and tb.differentiable is True


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.float16, "float16"), (torch.bfloat16, "bfloat16"), (torch.float32, "float32"),
        (torch.float64, "float64"), (torch.int8, "int8"), (torch.uint8, "uint8"),
        (torch.int16, "int16"), (torch.int32, "int32"), (torch.int64, "int64"),
        (torch.bool, "bool"), (torch.half, "float16"), (torch.long, "int64"),
    ],
)
def test_S0_4_dtype_name_is_canonical(dtype: torch.dtype, expected: str) -> None:
    """dtype names are the canonical ones the validation of SPEC S0.4 uses."""
    assert tb.dtype_name(torch.zeros(2, dtype=dtype)) == expected


def test_S0_4_api_rejects_16_bit_floats_with_cast_hint() -> None:
    """float16/bfloat16 math inputs: TypeError saying to cast to float32 (SPEC S0.4)."""
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="cast to float32"):
            api.topn_mask(torch.zeros(4, dtype=dtype), 2, 4)
    with pytest.raises(TypeError, match="int32"):
        api.topn_mask(torch.zeros(4, dtype=torch.int32), 2, 4)


def test_S0_5_all_finite_is_a_python_bool() -> None:
    """all_finite gives True/False as Python bools for concrete tensors (SPEC S0.5)."""
    assert tb.all_finite(torch.ones(3)) is True
    assert tb.all_finite(torch.tensor([1.0, math.inf])) is False
    assert tb.all_finite(torch.tensor([math.nan], dtype=torch.bfloat16)) is False
    assert tb.all_finite(torch.tensor([1, 2], dtype=torch.int8)) is True
    assert tb.all_finite(torch.empty(2, device="meta")) is None


def test_S0_5_api_names_first_non_finite_index() -> None:
    """NaN in torch logits: ValueError naming the first bad index (SPEC S0.5)."""
    logits = torch.zeros(2, 4)
    logits[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(1, 2\)"):
        api.sample_mask(logits, 2, 4, noise=torch.zeros(2, 4))


def test_S0_5_api_refuses_torch_scale_that_underflows_in_float32() -> None:
    """A scale or temperature that is 0 or inf in float32 raises naming it (SPEC S0.5)."""
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="temperature=1e-50 is 0.0 in float32"):
        api.relaxed_topn(x, 2, 4, temperature=1e-50)
    with pytest.raises(ValueError, match=r"scale=1e\+39 is inf in float32"):
        api.eid_loss(x, torch.full((4,), 0.25), 4, scale=1e39)
    value = api.relaxed_topn(x.double(), 2, 4, temperature=1e-50)   # fine in float64
    assert torch.isfinite(value).all()


def test_S3_5_to_numpy_gives_bfloat16_bit_pattern() -> None:
    """bfloat16 reaches NumPy as its uint16 bit pattern (protocol to_numpy, SPEC S3.5)."""
    values = np.array([1.0, -2.5, 0.0, 3.0e38], dtype=ml_dtypes.bfloat16)
    t = torch.tensor([1.0, -2.5, 0.0, 3.0e38], dtype=torch.bfloat16)
    bits = tb.to_numpy(t)
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(bits, values.view(np.uint16))
    back = tb.from_numpy(values)
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


@pytest.mark.parametrize("dtype", PACK_DTYPES + (torch.bool, torch.uint8))
def test_protocol_from_numpy_round_trip_and_device(dtype: torch.dtype) -> None:
    """from_numpy/to_numpy round trip; from_numpy lands on ``like``'s device (protocol)."""
    t = (torch.arange(8) % 3).to(dtype)
    host = tb.to_numpy(t)
    if dtype == torch.bfloat16:
        host = host.view(ml_dtypes.bfloat16)
    back = tb.from_numpy(host)
    assert back.dtype == dtype and torch.equal(back, t)
    assert tb.from_numpy(host.astype(host.dtype.newbyteorder(">"))).dtype == dtype
    like = torch.empty(0, device="meta")
    assert tb.from_numpy(np.zeros(3, np.float32), like=like).device.type == "meta"
    assert tb.from_numpy(np.zeros(3, np.float32)).device == torch.empty(0).device


def test_protocol_math_stays_on_device_without_host_round_trip() -> None:
    """Every array function runs on meta tensors, so none of them goes through the host
    (only to_numpy may); results keep the input's device (protocol)."""
    x = torch.empty(3, 8, device="meta", dtype=torch.float64)
    packed = torch.empty(3, 4, device="meta", dtype=torch.float64)
    idx = torch.empty(3, 4, device="meta", dtype=torch.uint8)
    scalar = torch.empty((), device="meta", dtype=torch.float64)
    outs = [
        tb.topn_mask(x, 2, 4), tb.relaxed_topn(x, 2, 4, 0.5),
        tb.sample_mask(x, x, 2, 4, 0.5, 1.0, True), tb.block_probs(x, 4, 1.0),
        tb.sample_mask_vjp(x, x, 2, 4, 0.5, 1.0, True, x), tb.relaxed_topn_vjp(x, 2, 4, 0.5, x),
        tb.eid_targets(x, 4, 1.0), tb.eid_loss(x, x, 4, 1.0), tb.eid_loss_vjp(x, x, 4, 1.0, scalar),
        tb.eligibility_credit(x.reshape(3, 1, 8), x[:, :2].reshape(3, 1, 2), x[:2], 0.5),
        tb.block_nnz(x, 4), *tb.pack(x, x, 2, 4), tb.unpack(packed, idx, 2, 4),
        tb.spmm(packed, idx, 2, 4, x.T),
        tb.eligibility_credit(x.reshape(3, 1, 8), x[:, :2].reshape(3, 1, 2), x[:2], 0.5, True),
        tb.credit_scores(x, 4, False), tb.credit_scores(x, 4, True), tb.stop_gradient(x),
    ]
    assert all(o.device.type == "meta" for o in outs)
    assert outs[0].dtype == torch.float64 and outs[12].dtype == torch.uint8


# -- S1.2 hard top-n ----------------------------------------------------------------------

def test_S1_2_ties_go_to_the_lower_index() -> None:
    """Ties: entry i kept iff #{v_j > v_i} + #{j < i: v_j == v_i} < n (SPEC S1.2)."""
    v = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 2.0, -0.0, 0.0, 0.0, -1.0]])
    got = tb.topn_mask(v, 2, 4)
    want = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    assert torch.equal(got, want)


@given(pattern, float_dtype, rows, blocks, seed)
def test_S1_2_topn_equals_reference_exactly(
    nm: tuple[int, int], dtype: torch.dtype, r: int, g: int, s: int,
) -> None:
    """Hard top-n on tie-heavy scores: bit-equal to the reference, n ones per block,
    input dtype (SPEC S1.2)."""
    n, m = nm
    scores = _ties(s, (r, g * m), dtype)
    got = tb.topn_mask(_t(scores), n, m)
    assert got.dtype == dtype
    np.testing.assert_array_equal(tb.to_numpy(got), ref.topn_mask(scores, n, m))
    assert torch.all(got.reshape(r, g, m).sum(-1) == n)


def test_S1_8_final_mask_through_api_with_axis() -> None:
    """final_mask on a torch tensor, blocks along axis 0: reference values (SPEC S1.8)."""
    logits = _ties(3, (8, 5), torch.float32)
    got = api.final_mask(_t(logits), 2, 4, axis=0)
    assert isinstance(got, torch.Tensor) and got.shape == (8, 5)
    np.testing.assert_array_equal(tb.to_numpy(got), api.final_mask(logits, 2, 4, axis=0))


# -- S1.3-S1.5 soft mask, straight-through, gradients ------------------------------------

@given(pattern, float_dtype, rows, blocks, seed, st.sampled_from((0.05, 0.5, 1.0, 4.0)))
def test_S1_3_relaxed_topn_and_its_vjp_equal_reference(
    nm: tuple[int, int], dtype: torch.dtype, r: int, g: int, s: int, tau: float,
) -> None:
    """relaxed_topn values (non-negative, blocks sum to n) and relaxed_topn_vjp equal
    the reference (SPEC S1.3, S1.5).  Entries may exceed 1 slightly (e.g. scores
    log([0.6, 0.4]), 2:2, tau 1 give [1.1, 0.9]), in the reference too."""
    n, m = nm
    scores = _normal(s, (r, g * m), dtype)
    cot = _normal(s + 1, (r, g * m), dtype)
    got = tb.relaxed_topn(_t(scores), n, m, tau)
    _assert_close(got, ref.relaxed_topn(scores, n, m, tau), dtype)
    tol = _rtol(dtype)
    assert torch.allclose(got.reshape(r, g, m).sum(-1), torch.tensor(float(n), dtype=dtype),
                          rtol=tol, atol=tol)
    assert torch.all(got >= 0)
    grad = tb.relaxed_topn_vjp(_t(scores), n, m, tau, _t(cot))
    _assert_grad_close(grad, ref.relaxed_topn_vjp(scores, n, m, tau, cot), dtype)


@given(pattern, float_dtype, st.booleans(), rows, blocks, seed,
       st.sampled_from((0.1, 1.0, 3.0)), st.sampled_from((0.5, 1.0, 7.0)))
def test_S1_5_sample_mask_vjp_equals_reference(
    nm: tuple[int, int], dtype: torch.dtype, hard: bool, r: int, g: int, s: int,
    tau: float, kappa: float,
) -> None:
    """sample_mask values (exact for hard) and sample_mask_vjp = kappa * VJP_s equal the
    reference (SPEC S1.1, S1.4, S1.5)."""
    n, m = nm
    logits = _normal(s, (r, g * m), dtype)
    noise = ref.gumbel_like(logits, s)
    cot = _normal(s + 1, (r, g * m), dtype)
    got = tb.sample_mask(_t(logits), _t(noise), n, m, tau, kappa, hard)
    want = ref.sample_mask(logits, noise, n, m, tau, kappa, hard)
    if hard:
        np.testing.assert_array_equal(tb.to_numpy(got), want)
    else:
        _assert_close(got, want, dtype)
    grad = tb.sample_mask_vjp(_t(logits), _t(noise), n, m, tau, kappa, hard, _t(cot))
    _assert_grad_close(grad, ref.sample_mask_vjp(logits, noise, n, m, tau, kappa, hard, cot),
                       dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (4, 8)])
def test_S1_4_S1_5_api_sample_mask_backward_equals_reference_vjp(
    device: str, dtype: torch.dtype, hard: bool, nm: tuple[int, int],
) -> None:
    """api.sample_mask on torch: torch out with the input dtype, values equal to the
    reference, loss.backward() gives the reference's hand-written VJP; the noise gets no
    gradient (SPEC S1.4, S1.5)."""
    n, m = nm
    logits = _normal(10, (3, 2 * m), dtype)
    noise = ref.gumbel_like(logits, 11)
    cot = _normal(12, logits.shape, dtype)
    x, g = _t(logits, True, device), _t(noise, True, device)
    out = api.sample_mask(x, n, m, noise=g, temperature=0.6, scale=2.0, hard=hard)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == x.device
    want = ref.sample_mask(logits, noise, n, m, 0.6, 2.0, hard)
    if hard:
        np.testing.assert_array_equal(tb.to_numpy(out), want)
    else:
        _assert_close(out, want, dtype)
    (out * _t(cot, device=device)).sum().backward()
    assert x.grad.device == x.device
    _assert_grad_close(x.grad, ref.sample_mask_vjp(logits, noise, n, m, 0.6, 2.0, hard, cot),
                       dtype)
    assert g.grad is None


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_3_S1_5_api_relaxed_topn_backward_with_axis(dtype: torch.dtype) -> None:
    """api.relaxed_topn along axis 0: values and loss.backward() equal the reference
    (SPEC S1.3, S1.5)."""
    scores = _normal(20, (8, 3), dtype)
    cot = _normal(21, (8, 3), dtype)
    x = _t(scores, True)
    out = api.relaxed_topn(x, 2, 4, temperature=0.3, axis=0)
    _assert_close(out, api.relaxed_topn(scores, 2, 4, temperature=0.3, axis=0), dtype)
    (out * _t(cot)).sum().backward()
    want = np.moveaxis(ref.relaxed_topn_vjp(scores.T.copy(), 2, 4, 0.3, cot.T.copy()), 0, 1)
    _assert_grad_close(x.grad, want, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_5_removed_entry_branch_has_zero_derivative(dtype: torch.dtype) -> None:
    """When ``1 - a_j`` is 0 the ``-inf`` branch contributes no gradient: the
    gradient is finite and equals the reference's (SPEC S1.3, S1.5)."""
    scores = np.array([[100.0, 0.0, -100.0]], dtype=_np(dtype))
    a1 = torch.softmax(_t(scores) / 0.01, -1)
    assert a1[0, 0] == 1.0                      # 1 - a_1 == 0: the -inf branch
    cot = np.array([[0.3, -1.0, 2.0]], dtype=_np(dtype))
    x = _t(scores, True)
    api.relaxed_topn(x, 3, 3, temperature=0.01).mul(_t(cot)).sum().backward()
    assert torch.isfinite(x.grad).all()
    want = ref.relaxed_topn_vjp(scores, 3, 3, 0.01, cot)
    np.testing.assert_allclose(tb.to_numpy(x.grad), want, rtol=_rtol(dtype), atol=_rtol(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_7_block_probs_equal_reference(dtype: torch.dtype) -> None:
    """p = softmax_block(kappa * pi): reference values, blocks sum to 1 (SPEC S1.7)."""
    logits = _normal(30, (2, 3, 8), dtype)
    got = api.block_probs(_t(logits), 4, scale=3.0)
    _assert_close(got, ref.block_probs(logits, 4, 3.0), dtype)
    assert torch.allclose(got.reshape(2, 3, 2, 4).sum(-1), torch.ones((), dtype=dtype))


# -- S1.6 noise -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_S1_6_gumbel_like_is_reproducible_torch_noise(device: str, dtype: torch.dtype) -> None:
    """gumbel_like(torch tensor, seed): torch tensor of x's shape, dtype and device; same
    seed same numbers, another seed other numbers; the global RNG is untouched (SPEC S1.6)."""
    x = torch.zeros(4, 8, dtype=dtype, device=device)
    state = torch.get_rng_state()
    a, b, c = api.gumbel_like(x, 5), api.gumbel_like(x, 5), api.gumbel_like(x, 6)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(a, torch.Tensor)
    assert a.shape == x.shape and a.dtype == dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_S1_6_gumbel_like_follows_the_gumbel_cdf() -> None:
    """KS test of 20000 draws against F(g) = exp(-exp(-g)); all finite, inside the
    bounds of the open interval u in [2**-53, 1 - 2**-53] (SPEC S1.6)."""
    g = tb.gumbel_like(torch.zeros(20000, dtype=torch.float64), seed=1234)
    assert torch.isfinite(g).all()
    lo, hi = -math.log(-math.log(2.0**-53)), -math.log(-math.log1p(-(2.0**-53)))
    assert g.min() >= lo and g.max() <= hi
    result = scipy.stats.kstest(tb.to_numpy(g), lambda t: np.exp(-np.exp(-t)))
    assert result.pvalue > 1e-3, result


def test_S1_7_gumbel_top1_frequencies_match_block_probs() -> None:
    """With torch noise, P(first pick = i) = p_i (Gumbel-top-k, SPEC S1.7): chi-square
    test over 4000 samples of a 1:4 block."""
    logits = torch.tensor([0.0, 1.0, -1.0, 0.5], dtype=torch.float64).repeat(4000, 1)
    noise = tb.gumbel_like(logits, seed=99)
    picks = tb.sample_mask(logits, noise, 1, 4, 1.0, 1.0, True).sum(0)
    p = tb.block_probs(logits[0], 4, 1.0)
    result = scipy.stats.chisquare(tb.to_numpy(picks), tb.to_numpy(p * 4000))
    assert result.pvalue > 1e-3, result


# -- S2 EID -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("decay", [0.0, 0.5, 1.0])
def test_S2_1_S2_3_eligibility_credit_equals_reference(dtype: torch.dtype, decay: float) -> None:
    """Credit |W| * sum_t |d_t^T e_t| with the decaying trace (SPEC S2.1-S2.3)."""
    x = (np.random.default_rng(40).random((5, 3, 8)) < 0.4).astype(_np(dtype))
    d = _normal(41, (5, 3, 6), dtype)
    w = _normal(42, (6, 8), dtype)
    got = api.eligibility_credit(_t(x), _t(d), _t(w), decay=decay)
    assert got.dtype == dtype and got.shape == (6, 8)
    want = ref.eligibility_credit(x, d, w, decay)
    tol = _rtol(dtype)
    np.testing.assert_allclose(tb.to_numpy(got), want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", FLOATS)
def test_S2_5_eid_targets_equal_reference(dtype: torch.dtype) -> None:
    """z = C / (mean C + 1e-12), q = softmax_block(z / tau_e) (SPEC S2.5); all-zero
    credits give uniform targets."""
    credits = np.abs(_normal(50, (4, 16), dtype))
    got = api.eid_targets(_t(credits), 8, temperature=0.7)
    _assert_close(got, ref.eid_targets(credits, 8, 0.7), dtype)
    zeros = api.eid_targets(torch.zeros(2, 8, dtype=dtype), 4)
    assert torch.equal(zeros, torch.full((2, 8), 0.25, dtype=dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_S2_6_S2_7_api_eid_loss_backward_equals_reference_vjp(dtype: torch.dtype) -> None:
    """eid_loss: 0-d torch tensor equal to the reference, including 0 * log 0 = 0
    targets; loss.backward() gives the reference VJP; targets get no gradient
    (SPEC S2.6, S2.7)."""
    logits = _normal(60, (3, 12), dtype)
    targets = ref.eid_targets(np.abs(_normal(61, (3, 12), dtype)), 4, 1.0)
    targets[0, :4] = np.array([1.0, 0.0, 0.0, 0.0])          # 0 * log 0 terms
    x, q = _t(logits, True), _t(targets, True)
    loss = api.eid_loss(x, q, 4, scale=1.7)
    assert isinstance(loss, torch.Tensor) and loss.shape == () and loss.dtype == dtype
    _assert_close(loss, ref.eid_loss(logits, targets, 4, 1.7), dtype)
    (2.5 * loss).backward()
    want = ref.eid_loss_vjp(logits, targets, 4, 1.7, np.array(2.5, dtype=_np(dtype)))
    _assert_grad_close(x.grad, want, dtype)
    assert q.grad is None
    direct = tb.eid_loss_vjp(_t(logits), _t(targets), 4, 1.7, torch.tensor(2.5, dtype=dtype))
    _assert_grad_close(direct, want, dtype)


def test_S2_7_exact_gradient_for_targets_not_summing_to_one() -> None:
    """dL/dpi = kappa * (p * sum_block(q) - q) / G for unnormalised targets (SPEC S2.7)."""
    logits = _normal(70, (2, 8), torch.float64)
    targets = np.abs(_normal(71, (2, 8), torch.float64))
    grad = tb.eid_loss_vjp(_t(logits), _t(targets), 4, 0.5, torch.tensor(1.0, dtype=torch.float64))
    p = ref.block_probs(logits, 4, 0.5).reshape(-1, 4)
    q = targets.reshape(-1, 4)
    want = (0.5 * (p * q.sum(1, keepdims=True) - q) / 4).reshape(2, 8)
    _assert_grad_close(grad, want, torch.float64)


# -- S2.9-S2.12 signed credit, block scores and gate, target variants ---------------------

def _credits(seed_: int, shape: tuple[int, ...], m: int, dtype: torch.dtype) -> np.ndarray:
    """Running credits with an all-zero block, a near-silent block (1e-9) and a zero entry."""
    c = np.abs(_normal(seed_, shape, dtype)).reshape(-1, m)
    c[0] = 0.0
    c[1] *= 1e-9
    c[2, 0] = 0.0
    return c.reshape(shape).astype(_np(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("decay", [0.0, 0.5, 1.0])
def test_S2_9_signed_credit_equals_reference(dtype: torch.dtype, decay: float) -> None:
    """|W| * |sum_t d_t^T e_t| (SPEC S2.9), with a learning signal that alternates in sign
    over t; never above the S2.3 credit."""
    x = (np.random.default_rng(43).random((6, 3, 8)) < 0.4).astype(_np(dtype))
    d = _normal(44, (6, 3, 5), dtype) * np.array([1, -1] * 3, dtype=_np(dtype))[:, None, None]
    w = _normal(45, (5, 8), dtype)
    got = api.eligibility_credit(_t(x), _t(d), _t(w), decay=decay, signed=True)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == (5, 8)
    want = ref.eligibility_credit(x, d, w, decay, signed=True)
    size = float(np.abs(ref.eligibility_credit(x, d, w, decay)).max())
    tol = _rtol(dtype)
    np.testing.assert_allclose(tb.to_numpy(got), want, rtol=tol, atol=tol * size)
    plain = tb.eligibility_credit(_t(x), _t(d), _t(w), decay)
    assert bool((got <= plain + tol * size).all())


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("gated", [False, True])
def test_S2_10_credit_scores_equal_reference(dtype: torch.dtype, gated: bool) -> None:
    """z = C / mean_block(C), 0 in an all-zero block, gate E_b / (E_b + E_med) with the
    lower median (even G = 8 here) (SPEC S2.10); axis= through the api."""
    credits = _credits(46, (4, 8), 4, dtype)
    got = api.credit_scores(_t(credits), 4, gated=gated)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == (4, 8)
    _assert_close(got, ref.credit_scores(credits, 4, gated), dtype)
    along = api.credit_scores(_t(np.ascontiguousarray(credits.T)), 4, gated=gated, axis=0)
    _assert_close(along, ref.credit_scores(credits, 4, gated).T, dtype)
    zeros = api.credit_scores(torch.zeros(2, 8, dtype=dtype), 4, gated=gated)
    assert torch.equal(zeros, torch.zeros(2, 8, dtype=dtype))


def test_S2_10_gate_lower_median_example() -> None:
    """Masses (1, 3): lower median 1 (torch.median), gates 1/2 and 3/4 (SPEC S2.10)."""
    z = tb.credit_scores(torch.tensor([0.5, 0.5, 1.5, 1.5], dtype=torch.float64), 2, True)
    assert torch.equal(z, torch.tensor([0.5, 0.5, 0.75, 0.75], dtype=torch.float64))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("variant", eid_variants.VARIANTS)
def test_S2_11_every_target_variant_equals_reference(dtype: torch.dtype, variant: str) -> None:
    """api.eid_targets(variant=...) on torch tensors equals the reference's composition
    of the same variant (SPEC S2.11), sums to 1 per block (S2.12) and stays torch."""
    credits = _credits(47, (3, 16), 4, dtype)
    logits = _normal(48, (3, 16), dtype)
    kwargs = {"logits": _t(logits), "scale": 1.5} if variant == "gated" else {}
    got = api.eid_targets(_t(credits), 4, temperature=0.7, variant=variant, n=2, **kwargs)
    assert isinstance(got, torch.Tensor) and got.dtype == dtype and got.shape == (3, 16)
    want = eid_variants.targets(ref, variant, credits, 2, 4, 0.7,
                                logits if variant == "gated" else None, 1.5)
    _assert_close(got, want, dtype)
    _assert_close(got.reshape(-1, 4).sum(-1), np.ones(12), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_S2_11_gated_targets_give_no_gradient_to_the_logits(dtype: torch.dtype) -> None:
    """variant='gated' builds q from the logits, yet q is a constant (stop_gradient =
    detach): the EID loss backward is the S2.7 gradient kappa * (p - q) / G with q held
    fixed.  Without the backend's stop_gradient the gradient would flow through q."""
    credits = _credits(49, (2, 16), 4, dtype)
    logits = _normal(50, (2, 16), dtype)
    pi = _t(logits, True)
    q = api.eid_targets(_t(credits), 4, variant="gated", logits=pi, scale=1.5)
    assert not q.requires_grad and q.grad_fn is None
    api.eid_loss(pi, q, 4, scale=1.5).backward()
    q_ref = eid_variants.targets(ref, "gated", credits, 1, 4, 1.0, logits, 1.5)
    _assert_grad_close(pi.grad, ref.eid_loss_vjp(logits, q_ref, 4, 1.5, np.array(1.0, _np(dtype))), dtype)
    no_stop = type("NoStop", (), {n: staticmethod(getattr(tb, n))
                                  for n in ("credit_scores", "block_probs")})()
    leaky = eid_variants.targets(no_stop, "gated", _t(credits), 1, 4, 1.0, pi, 1.5)
    assert leaky.requires_grad


def test_S2_11_stop_gradient_detaches_without_copying() -> None:
    """The optional protocol member stop_gradient is x.detach(): same storage, no graph."""
    x = torch.ones(4, requires_grad=True)
    y = tb.stop_gradient(x * 2)
    assert not y.requires_grad and torch.equal(y, torch.full((4,), 2.0))
    assert tb.stop_gradient(x).data_ptr() == x.data_ptr()


def test_S2_10_S2_11_credit_scores_and_gated_targets_under_torch_compile() -> None:
    """credit_scores (torch.median included) and the gated targets compile with
    fullgraph=True (no host round trip, no graph break) and equal eager exactly."""
    torch._dynamo.reset()
    credits = _t(_credits(51, (3, 8), 4, torch.float64))
    logits = _t(_normal(52, (3, 8), torch.float64))

    def gated(c: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        return eid_variants.targets(tb, "gated", c, 1, 4, 0.5, l, 2.0)

    scores = torch.compile(lambda c: tb.credit_scores(c, 4, True), backend="aot_eager", fullgraph=True)
    assert torch.equal(scores(credits), tb.credit_scores(credits, 4, True))
    compiled = torch.compile(gated, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(credits, logits), gated(credits, logits))


# -- S3 packed format ---------------------------------------------------------------------

def _sparse(seed_: int, shape: tuple[int, ...], n: int, m: int, dtype: torch.dtype) -> np.ndarray:
    """Random values with at most n non-zeros per block (some blocks emptier)."""
    rng = np.random.default_rng(seed_)
    dense = rng.integers(-9, 10, size=shape).astype(np.float64)
    if dtype.is_floating_point:
        dense /= 4
    elif dtype == torch.bool or not dtype.is_signed:
        dense = np.abs(dense)
    blocks_ = dense.reshape(-1, m)
    for row in blocks_:
        row[rng.permutation(m)[: m - rng.integers(0, n + 1)]] = 0.0
    out = blocks_.reshape(shape)
    return out.astype(ml_dtypes.bfloat16 if dtype == torch.bfloat16 else _np(dtype))


def test_S3_1_S3_3_pack_moves_bits_nan_payload_and_negative_zero() -> None:
    """Kept values come back bit for bit, a NaN payload and a kept -0.0 included; an
    unkept -0.0 of w is not stored (w != 0 is the test) (SPEC S3.1, S3.3)."""
    w = torch.zeros(1, 8)
    w.view(torch.int32)[0, 1] = 0x7FC12345          # NaN with a payload
    w[0, 5] = -0.0
    mask = torch.tensor([[0, 1, 0, 0, 0, 1, 0, 0]], dtype=torch.float32)
    values, indices = tb.pack(w, mask, 2, 4)
    assert torch.equal(indices, torch.tensor([[0, 1, 0, 1]], dtype=torch.uint8))
    assert values.view(torch.int32).tolist() == [[0, 0x7FC12345, 0, -(2**31)]]
    dense = tb.unpack(values, indices, 2, 4)
    assert torch.equal(dense.view(torch.int32), w.view(torch.int32))
    assert tb.block_nnz(w, 4).tolist() == [[1, 0]]
    assert tb.pack(w, w, 2, 4)[1].tolist() == [[0, 1, 0, 1]]


def test_S3_1_empty_leading_dimensions() -> None:
    """Leading dimensions may be empty (SPEC S3.1)."""
    w = torch.zeros(0, 3, 8, dtype=torch.float16)
    values, indices = tb.pack(w, w, 2, 4)
    assert values.shape == (0, 3, 4) and indices.shape == (0, 3, 4)
    assert tb.unpack(values, indices, 2, 4).shape == (0, 3, 8)
    assert tb.block_nnz(w, 4).shape == (0, 3, 2)
    assert tb.spmm(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.uint8), 2, 4,
                   torch.ones(8, 3)).shape == (0, 3)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16) if a.dtype == ml_dtypes.bfloat16 else a


@given(pattern, st.sampled_from(BIT_DTYPES), rows, blocks, seed)
def test_S3_1_S3_2_pack_unpack_equal_reference_exactly(
    nm: tuple[int, int], dtype: torch.dtype, r: int, g: int, s: int,
) -> None:
    """pack: values bit-equal, uint8 indices equal to the reference (padding with value 0
    at the smallest unused indices, ascending); unpack inverts it; block_nnz counts
    (SPEC S3.1, S3.2)."""
    n, m = nm
    w = _sparse(s, (r, g * m), n, m, dtype)
    wt = tb.from_numpy(w)
    values, indices = tb.pack(wt, wt, n, m)
    want_values, want_indices = ref.pack(w, w, n, m)
    assert values.dtype == dtype and indices.dtype == torch.uint8
    np.testing.assert_array_equal(tb.to_numpy(values), _bits(want_values))
    np.testing.assert_array_equal(tb.to_numpy(indices), want_indices)
    dense = tb.unpack(values, indices, n, m)
    assert dense.dtype == dtype
    np.testing.assert_array_equal(tb.to_numpy(dense), _bits(w))
    np.testing.assert_array_equal(tb.to_numpy(tb.block_nnz(wt, m)), ref.block_nnz(w, m))


_MASK_DTYPES = (torch.bfloat16, torch.bool, torch.float16, torch.float32, torch.int8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask_dtype", _MASK_DTYPES)
@pytest.mark.parametrize("dtype", PACK_DTYPES)
def test_S3_3_api_pack_with_mask_keeps_zeros_and_stays_torch(
    dtype: torch.dtype, mask_dtype: torch.dtype, device: str,
) -> None:
    """api.pack(w, mask=) on torch: a torch Packed on w's device holding w * mask, kept
    zeros included, padded as S3.2 says; api.unpack gives w * mask (SPEC S3.1-S3.3)."""
    w = torch.tensor([[1, 2, 3, 4, 0, 6, 7, 8]], dtype=dtype, device=device)
    mask = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 0]], dtype=mask_dtype, device=device)
    p = api.pack(w, 2, 4, mask=mask)
    assert isinstance(p, Packed) and isinstance(p.values, torch.Tensor)
    assert p.values.dtype == dtype and p.indices.dtype == torch.uint8
    assert p.values.device == w.device and p.indices.device == w.device
    assert torch.equal(p.values.cpu(), torch.tensor([[2, 4, 0, 0]], dtype=dtype))
    assert torch.equal(p.indices.cpu(), torch.tensor([[1, 3, 0, 1]], dtype=torch.uint8))
    assert torch.equal(api.unpack(p), w * mask.to(dtype))


def test_S3_3_api_check_nm_on_torch_names_the_block() -> None:
    """check_nm / is_nm / pack on torch tensors: ValueError naming the first block with
    more than n non-zeros; nothing dropped (SPEC S3.3)."""
    w = torch.zeros(2, 8, dtype=torch.float16)
    w[1, 4:7] = 1.0
    assert api.is_nm(w, 2, 4) is False and api.is_nm(w, 3, 4) is True
    with pytest.raises(ValueError, match=r"block 1 at \[1, 4:8\] has 3 non-zeros, expected at most 2"):
        api.check_nm(w, 2, 4)
    with pytest.raises(ValueError, match=r"block 1 at \[1, 4:8\] keeps 3 entries"):
        api.pack(w, 2, 4)
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        api.pack(w, 2, 4, mask=torch.full((2, 8), 2.0, dtype=torch.float16))


@pytest.mark.parametrize("dtype", PACK_DTYPES)
@pytest.mark.parametrize("width", [None, 5])
def test_S3_6_spmm_equals_reference(dtype: torch.dtype, width: int | None) -> None:
    """spmm = unpack(values, indices) @ x, in the values' dtype: exact for int8 (wrapping
    as the reference does), within tolerance for floats (SPEC S3.6)."""
    n, m = 2, 4
    w = _sparse(80, (6, 16), n, m, dtype)
    shape = (16,) if width is None else (16, width)
    x = (np.random.default_rng(81).integers(-3, 4, size=shape)).astype(w.dtype)
    values, indices = tb.pack(tb.from_numpy(w), tb.from_numpy(w), n, m)
    got = api.spmm(Packed(values, indices, n, m, (6, 16), 1), tb.from_numpy(x))
    want = ref.spmm(*ref.pack(w, w, n, m), n, m, x)
    assert got.dtype == dtype and got.shape == want.shape
    if dtype in (torch.int8, torch.float16, torch.bfloat16):
        np.testing.assert_array_equal(tb.to_numpy(got), _bits(want))   # small integers: exact
    else:
        _assert_close(got, want, dtype)


# -- torch.compile and torch.no_grad ------------------------------------------------------

def test_S1_4_S1_5_sampler_under_torch_compile_equals_eager() -> None:
    """sample_mask forward+backward compiled with fullgraph=True equals eager exactly
    (SPEC S1.4, S1.5)."""
    torch._dynamo.reset()
    logits = torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noise = tb.gumbel_like(logits, 1)
    weights = torch.arange(16, dtype=torch.float64)

    def step(x: torch.Tensor) -> torch.Tensor:
        return (tb.sample_mask(x, noise, 2, 4, 0.5, 2.0, True) * weights).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    y1, y2 = compiled(x1), step(x2)
    y1.backward()
    y2.backward()
    assert torch.equal(y1, y2) and torch.equal(x1.grad, x2.grad)


def test_S2_6_S2_7_eid_loss_under_torch_compile_equals_eager() -> None:
    """eid_loss forward+backward compiled with fullgraph=True equals eager exactly
    (SPEC S2.6, S2.7)."""
    torch._dynamo.reset()
    logits = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    targets = tb.eid_targets(torch.rand(3, 8, generator=torch.Generator().manual_seed(3)), 4, 1.0)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return tb.eid_loss(x, targets, 4, 1.5)

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    y1, y2 = compiled(x1), loss(x2)
    y1.backward()
    y2.backward()
    assert torch.equal(y1, y2) and torch.equal(x1.grad, x2.grad)


def test_S1_2_S3_1_topn_and_pack_under_torch_compile_equal_eager() -> None:
    """topn_mask and pack compile with fullgraph=True and equal eager exactly
    (SPEC S1.2, S3.1, S3.2)."""
    torch._dynamo.reset()
    scores = _t(_ties(100, (3, 16), torch.float32))
    topn = torch.compile(lambda v: tb.topn_mask(v, 2, 4), backend="aot_eager", fullgraph=True)
    assert torch.equal(topn(scores), tb.topn_mask(scores, 2, 4))
    w = tb.from_numpy(_sparse(101, (3, 16), 2, 4, torch.float32))
    pack = torch.compile(lambda v: tb.pack(v, v, 2, 4), backend="aot_eager", fullgraph=True)
    for got, want in zip(pack(w), tb.pack(w, w, 2, 4)):
        assert torch.equal(got, want)


def test_S0_5_api_under_vmap_skips_value_checks() -> None:
    """Under torch.func.vmap values are not available: all_finite says None and the api
    skips the finiteness check instead of failing; results equal the unbatched ones
    (SPEC S0.5, S1.4)."""
    logits = _t(_normal(110, (5, 8), torch.float32))
    noise = _t(_normal(111, (5, 8), torch.float32))
    assert torch.func.vmap(lambda v: torch.tensor(tb.all_finite(v) is None))(logits).all()
    batched = torch.func.vmap(lambda a, b: api.sample_mask(a, 2, 4, noise=b))(logits, noise)
    assert torch.equal(batched, api.sample_mask(logits, 2, 4, noise=noise))


def test_S1_4_S1_5_S2_7_under_no_grad() -> None:
    """Under torch.no_grad the sampler and EID give the same values without a graph, and
    the *_vjp methods still give the gradients (SPEC S1.4, S1.5, S2.7)."""
    logits = _normal(90, (2, 8), torch.float64)
    noise = ref.gumbel_like(logits, 91)
    cot = _normal(92, (2, 8), torch.float64)
    x = _t(logits, True)
    with torch.no_grad():
        out = api.sample_mask(x, 2, 4, noise=_t(noise), temperature=0.5)
        loss = api.eid_loss(x, _t(ref.eid_targets(np.abs(cot), 4, 1.0)), 4)
        grad = tb.sample_mask_vjp(x, _t(noise), 2, 4, 0.5, 1.0, True, _t(cot))
        egrad = tb.eid_loss_vjp(x, _t(np.full((2, 8), 0.25)), 4, 1.0, torch.tensor(1.0,
                                dtype=torch.float64))
    assert not out.requires_grad and not loss.requires_grad and not grad.requires_grad
    np.testing.assert_array_equal(tb.to_numpy(out), ref.sample_mask(logits, noise, 2, 4, 0.5, 1.0, True))
    _assert_grad_close(grad, ref.sample_mask_vjp(logits, noise, 2, 4, 0.5, 1.0, True, cot),
                       torch.float64)
    _assert_grad_close(egrad, ref.eid_loss_vjp(logits, np.full((2, 8), 0.25), 4, 1.0,
                                               np.array(1.0)), torch.float64)


def test_S3_6_spmm_integers_wrap_like_the_reference() -> None:
    """int8 products accumulate in 64 bits and wrap modulo 2**8 on the cast back
    (SPEC S3.6): 100 * 3 + 100 * 3 = 600 = 88 (mod 256)."""
    w = np.array([[100, 0, 100, 0]], dtype=np.int8)
    x = np.array([3, 0, 3, 0], dtype=np.int8)
    values, indices = tb.pack(tb.from_numpy(w), tb.from_numpy(w), 2, 4)
    got = tb.spmm(values, indices, 2, 4, tb.from_numpy(x))
    want = ref.spmm(*ref.pack(w, w, 2, 4), 2, 4, x)
    assert got.dtype == torch.int8 and got.tolist() == want.tolist() == [88]
