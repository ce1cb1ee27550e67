"""Bad input raises at the API boundary with a message naming the value and what was
expected (SPEC S0.1, S0.3, S0.4, S0.5).  Every test checks the exception type and a
fragment of the message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikenm import api

X = np.zeros((2, 8))
G = np.zeros((2, 8))


# -- S0.1 pattern -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "error", "message"),
    [
        (5, 4, ValueError, r"n must satisfy 1 <= n <= m=4, got n=5"),
        (0, 4, ValueError, r"n must satisfy 1 <= n <= m=4, got n=0"),
        (-1, 4, ValueError, r"got n=-1"),
        (1, 1, ValueError, r"m must be >= 2, got m=1"),
        (2.0, 4, TypeError, r"n must be an integer, got 2.0 \(float\)"),
        (2, 4.0, TypeError, r"m must be an integer, got 4.0 \(float\)"),
        (2, "4", TypeError, r"m must be an integer, got '4' \(str\)"),
        (True, 4, TypeError, r"n must be an integer, got True"),
    ],
)
def test_S0_1_bad_pattern(n: object, m: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        api.sample_mask(X, n, m, noise=G)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        api.topn_mask(X, n, m)  # type: ignore[arg-type]


@pytest.mark.parametrize("fn", ["block_probs", "eid_targets"])
def test_S0_1_bad_block_size_for_block_functions(fn: str) -> None:
    with pytest.raises(ValueError, match=r"m must be >= 2, got m=1"):
        getattr(api, fn)(X, 1)
    with pytest.raises(TypeError, match=r"m must be an integer, got 2.5"):
        getattr(api, fn)(X, 2.5)


# -- S0.3 block axis length -----------------------------------------------------------------


def test_S0_3_block_axis_not_a_multiple_of_m() -> None:
    msg = (
        r"logits has 6 entries along axis 1 \(shape \(2, 6\)\); "
        r"expected a positive multiple of m=4"
    )
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(np.zeros((2, 6)), 2, 4, noise=np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"scores has 6 entries along axis 0"):
        api.topn_mask(np.zeros((6, 4)), 2, 4, axis=0)
    with pytest.raises(ValueError, match=r"credits has 0 entries along axis 1"):
        api.eid_targets(np.zeros((2, 0)), 4)


# -- S0.5 scalars ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_S0_5_temperature_must_be_finite_and_positive(value: float) -> None:
    msg = r"temperature must be finite and > 0, got " + ("nan" if math.isnan(value) else "")
    with pytest.raises(ValueError, match=msg):
        api.relaxed_topn(X, 2, 4, temperature=value)
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(X, 2, 4, noise=G, temperature=value)
    with pytest.raises(ValueError, match=msg):
        api.eid_targets(X, 4, temperature=value)


@pytest.mark.parametrize("value", [0.0, -2.0, math.nan, math.inf])
def test_S0_5_scale_must_be_finite_and_positive(value: float) -> None:
    with pytest.raises(ValueError, match=r"scale must be finite and > 0"):
        api.sample_mask(X, 2, 4, noise=G, scale=value)
    with pytest.raises(ValueError, match=r"scale must be finite and > 0"):
        api.block_probs(X, 4, scale=value)
    with pytest.raises(ValueError, match=r"scale must be finite and > 0"):
        api.eid_loss(X, G, 4, scale=value)


def test_S0_5_non_numeric_scalars_are_type_errors() -> None:
    with pytest.raises(TypeError, match=r"temperature must be a real number, got '1' \(str\)"):
        api.relaxed_topn(X, 2, 4, temperature="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"scale must be a real number, got None"):
        api.block_probs(X, 4, scale=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"hard must be a bool, got 'yes'"):
        api.sample_mask(X, 2, 4, noise=G, hard="yes")  # type: ignore[arg-type]


def test_S0_5_scalar_that_vanishes_in_float32_is_refused() -> None:
    """A temperature that is 0 (or a scale that is inf) in the array's dtype."""
    x32 = X.astype(np.float32)
    with pytest.raises(ValueError, match=r"temperature=1e-50 is 0.0 in float32"):
        api.relaxed_topn(x32, 2, 4, temperature=1e-50)
    with pytest.raises(ValueError, match=r"scale=1e\+39 is inf in float32"):
        api.block_probs(x32, 4, scale=1e39)
    with pytest.raises(ValueError, match=r"temperature=1e-50 is 0.0 in float32"):
        api.eid_targets(x32, 4, temperature=1e-50)
    with pytest.raises(ValueError, match=r"scale=1e\+39 is inf in float32"):
        api.eid_loss(x32, x32, 4, scale=1e39)
    # the same values are fine in float64
    assert api.relaxed_topn(X, 2, 4, temperature=1e-50).shape == X.shape


@pytest.mark.parametrize("decay", [-0.1, 1.5, math.nan])
def test_S0_5_decay_outside_unit_interval(decay: float) -> None:
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\], got"):
        api.eligibility_credit(
            np.zeros((1, 1, 4)), np.zeros((1, 1, 2)), np.zeros((2, 4)), decay=decay
        )


@pytest.mark.parametrize("seed", [-1, 1.5, "7", None])
def test_S0_5_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer, got"):
        api.gumbel_like(X, seed)  # type: ignore[arg-type]


# -- S0.5 values --------------------------------------------------------------------------------


def test_S0_5_nan_or_inf_logits_name_the_first_index() -> None:
    logits = X.copy()
    logits[1, 2] = np.nan
    logits[1, 5] = np.inf
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(1, 2\): "):
        api.sample_mask(logits, 2, 4, noise=G)
    with pytest.raises(ValueError, match=r"logits contains NaN or inf \(first at index \(1, 2\)"):
        api.block_probs(logits, 4)


def test_S0_5_nan_or_inf_noise_scores_credits_targets() -> None:
    bad = X.copy()
    bad[0, 3] = -np.inf
    msg = r"noise contains NaN or inf \(first at index \(0, 3\): .*inf"
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(X, 2, 4, noise=bad)
    with pytest.raises(ValueError, match=r"scores contains NaN or inf \(first at index \(0, 3\)"):
        api.relaxed_topn(bad, 2, 4, temperature=1.0)
    with pytest.raises(ValueError, match=r"credits contains NaN or inf \(first at index \(0, 3\)"):
        api.eid_targets(bad, 4)
    with pytest.raises(ValueError, match=r"targets contains NaN or inf \(first at index \(0, 3\)"):
        api.eid_loss(X, bad, 4)


@pytest.mark.parametrize("which", ["x", "d", "weight"])
def test_S0_5_nan_in_credit_inputs(which: str) -> None:
    args = {"x": np.zeros((2, 1, 4)), "d": np.zeros((2, 1, 3)), "weight": np.zeros((3, 4))}
    args[which] = args[which].copy()
    args[which].flat[-1] = np.nan
    index = ", ".join(str(s - 1) for s in args[which].shape)
    msg = rf"{which} contains NaN or inf \(first at index \({index}\)"
    with pytest.raises(ValueError, match=msg):
        api.eligibility_credit(args["x"], args["d"], args["weight"], decay=0.5)


# -- S0.5 shapes and ranks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (((2, 4), (2, 1, 3), (3, 4)), r"x must have 3 axes \(T, B, K\), got shape \(2, 4\)"),
        (((2, 1, 4), (2, 3), (3, 4)), r"d must have 3 axes \(T, B, O\), got shape \(2, 3\)"),
        (((2, 1, 4), (2, 1, 3), (1, 3, 4)),
         r"weight must have 2 axes \(O, K\), got shape \(1, 3, 4\)"),
        (((2, 1, 4), (3, 1, 3), (3, 4)),
         r"shapes do not fit x \(T, B, K\)=\(2, 1, 4\), d \(T, B, O\)=\(3, 1, 3\)"),
        (((2, 1, 4), (2, 1, 3), (3, 5)), r"weight \(O, K\)=\(3, 5\)"),
        (((2, 1, 4), (2, 1, 3), (2, 4)), r"weight \(O, K\)=\(2, 4\)"),
    ],
)
def test_S0_5_eligibility_credit_ranks_and_shapes(
    shapes: tuple[tuple[int, ...], ...], message: str
) -> None:
    x, d, w = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        api.eligibility_credit(x, d, w, decay=0.5)


def test_S0_5_mismatched_shapes() -> None:
    msg = r"shapes must match \(logits: \(2, 8\), noise: \(2, 4\)\)"
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(X, 2, 4, noise=np.zeros((2, 4)))
    msg = r"shapes must match \(logits: \(2, 8\), targets: \(8, 2\)\)"
    with pytest.raises(ValueError, match=msg):
        api.eid_loss(X, np.zeros((8, 2)), 4)


def test_S0_5_zero_dimensional_input() -> None:
    with pytest.raises(ValueError, match=r"scores must have at least one axis, got a 0-d array"):
        api.topn_mask(np.array(1.0), 1, 2)


@pytest.mark.parametrize("axis", [2, -3, 10])
def test_S0_5_axis_out_of_range(axis: int) -> None:
    msg = rf"axis={axis} is out of range for logits with shape \(2, 8\)"
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(X, 2, 4, noise=G, axis=axis)


def test_S0_5_axis_not_an_integer() -> None:
    with pytest.raises(TypeError, match=r"axis must be an integer, got 1.0"):
        api.topn_mask(X, 2, 4, axis=1.0)  # type: ignore[arg-type]


# -- S0.4 dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.uint8])
def test_S0_4_integer_or_bool_logits_are_type_errors(dtype: type) -> None:
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"logits must be float32 or float64, got {name}$"):
        api.sample_mask(X.astype(dtype), 2, 4, noise=G)
    with pytest.raises(TypeError, match=rf"scores must be float32 or float64, got {name}$"):
        api.topn_mask(X.astype(dtype), 2, 4)


def test_S0_4_float16_says_cast_to_float32() -> None:
    x16 = X.astype(np.float16)
    msg = r"logits must be float32 or float64, got float16 \(cast to float32 first\)"
    with pytest.raises(TypeError, match=msg):
        api.sample_mask(x16, 2, 4, noise=x16)
    with pytest.raises(TypeError, match=r"cast to float32"):
        api.gumbel_like(x16, 0)
    with pytest.raises(TypeError, match=r"x must be float32 or float64, got float16 \(cast to"):
        api.eligibility_credit(
            np.zeros((1, 1, 4), np.float16), np.zeros((1, 1, 2)), np.zeros((2, 4)), decay=0.5
        )


def test_S0_4_dtypes_of_one_call_must_match() -> None:
    with pytest.raises(TypeError, match=r"dtypes must match \(logits: float32, noise: float64\)"):
        api.sample_mask(X.astype(np.float32), 2, 4, noise=G)
    with pytest.raises(TypeError, match=r"dtypes must match \(logits: float64, targets: float32\)"):
        api.eid_loss(X, G.astype(np.float32), 4)


# -- S0.5 framework and type -----------------------------------------------------------------------


def test_S0_5_mixed_frameworks_name_both_arguments() -> None:
    import torch
    noise = torch.zeros((2, 8), dtype=torch.float64)
    with pytest.raises(TypeError, match=r"cannot be mixed \(logits: numpy, noise: torch\)"):
        api.sample_mask(X, 2, 4, noise=noise)
    with pytest.raises(TypeError, match=r"cannot be mixed \(logits: torch, targets: numpy\)"):
        api.eid_loss(noise, X, 4)


@pytest.mark.parametrize("value", [[0.0, 1.0, 2.0, 3.0], (0.0, 1.0), 3.0, "abc"])
def test_S0_5_non_array_argument_is_a_type_error(value: object) -> None:
    msg = r"scores must be an array \(NumPy, PyTorch, JAX or an array-API array\); got builtins\."
    with pytest.raises(TypeError, match=msg):
        api.topn_mask(value, 1, 2)
    with pytest.raises(TypeError, match=r"noise must be an array"):
        api.sample_mask(np.zeros(4), 1, 2, noise=value)


def test_S0_5_negative_targets_and_credits_are_refused() -> None:
    """S0.5, S2.5, S2.6: targets and credits are non-negative; the first negative is named."""
    with pytest.raises(ValueError, match=r"targets has a negative entry at index \(2,\) \(-0.1\)"):
        api.eid_loss(np.zeros(4), np.array([0.5, 0.6, -0.1, 0.0]), 4)
    with pytest.raises(ValueError, match=r"credits has a negative entry at index \(0, 3\)"):
        api.eid_targets(np.array([[1.0, 2.0, 0.0, -3.0]]), 4)


def test_S0_5_masked_arrays_are_refused() -> None:
    """S0.5: a NumPy masked array is not silently unmasked; the error says what to pass."""
    with pytest.raises(TypeError, match=r"masked array.*scores.filled"):
        api.topn_mask(np.ma.masked_array(np.zeros(4), mask=[0, 1, 0, 0]), 2, 4)


# -- S0.8 numerical range ---------------------------------------------------------------------


def test_S0_8_subnormal_temperature_or_scale_underflows() -> None:
    x32 = X.astype(np.float32)
    msg = (r"temperature=1e-40 underflows float32 \(smallest normal number 1\.1754944e-38\); "
           r"expected a normal number of float32 \(SPEC S0\.8\)")
    with pytest.raises(ValueError, match=msg):
        api.sample_mask(x32, 2, 4, noise=x32, temperature=1e-40)
    with pytest.raises(ValueError, match=r"scale=1e-40 underflows float32"):
        api.block_probs(x32, 4, scale=1e-40)
    assert np.isfinite(api.block_probs(X, 4, scale=1e-40)).all()  # normal in float64


def test_S0_8_temperature_floor_scales_with_m_and_size() -> None:
    """The issue's float32 temperature of 1e-38 gave NaN soft masks: it is subnormal-close
    and refused by rule 1; 1e-37 is normal but below the floor of rule 2."""
    x32 = X.astype(np.float32)
    with pytest.raises(ValueError, match=r"temperature=1e-37 is below 1\.203706\de-35, the smallest "
                                         r"temperature that keeps the successive softmax of S1\.3 "
                                         r"finite in float32 \(1024 \* 4 / 3\.4028235e\+38"):
        api.sample_mask(x32, 2, 4, noise=x32, temperature=1e-37, hard=False)
    with pytest.raises(ValueError, match=r"1024 \* 16 / "):  # eid_targets: c = N = 16
        api.eid_targets(x32, 4, temperature=1e-35)
    s = api.sample_mask(x32, 2, 4, noise=x32, temperature=2e-35, hard=False)
    assert np.isfinite(s).all() and np.allclose(s.reshape(-1, 4).sum(-1), 2)


def test_S0_8_value_bounds_name_the_entry() -> None:
    logits = np.zeros((2, 8), np.float32)
    logits[1, 5] = 1e37
    with pytest.raises(ValueError, match=r"^scale \* \|logits\| is 3e\+37 at index \(1, 5\), above "
                                         r"2\.1267647e\+37"):
        api.block_probs(logits, 4, scale=3.0)
    assert np.isfinite(api.block_probs(logits, 4, scale=2.0)).all()  # 2e37 is inside
    assert np.isfinite(api.block_probs(logits, 4, scale=1.0)).all()
    with pytest.raises(ValueError, match=r"^\|logits\| is 1e\+37 at index \(1, 5\), above "
                                         r"1\.152921\d*e\+18"):  # sqrt(F / (16 N)), N = 16
        api.eid_loss(logits, np.full((2, 8), 0.25, np.float32), 4)
    with pytest.raises(ValueError, match=r"^targets is 1e\+160 at index \(0, 0\), above "):
        api.eid_loss(X, np.where(np.arange(16).reshape(2, 8) == 0, 1e160, 0.0), 4)
    assert np.isfinite(api.eid_loss(X, np.full((2, 8), 2.0), 4))  # unnormalised targets (S2.7)
    with pytest.raises(ValueError, match=r"^\|weight\| is 1e\+30 at index \(0, 0\)"):
        api.eligibility_credit(np.ones((2, 1, 4), np.float32), np.ones((2, 1, 1), np.float32),
                               np.full((1, 4), 1e30, np.float32), decay=0.5)


def test_S0_8_bound_checked_in_one_pass_exactly_at_the_limit() -> None:
    """``x * (F * scale / limit)`` overflows exactly beyond the limit (same rounding everywhere)."""
    big = float(np.finfo(np.float32).max)
    limit = np.float32(big / 16)
    at = np.full(4, limit, np.float32)
    assert np.isfinite(api.block_probs(at, 4)).all()
    above = np.full(4, np.nextafter(limit, np.float32(np.inf)), np.float32)
    with pytest.raises(ValueError, match=r"S0\.8"):
        api.block_probs(above, 4)


@pytest.mark.parametrize("scale", [1e9, 1e10, 1e20, 1e30])
def test_S0_8_jax_block_probs_and_loss_stay_finite_at_large_scales(scale: float) -> None:
    """XLA fuses ``scale * logits - max`` into one multiply-add; the guarded shift of the
    JAX block softmax keeps the result finite and equal to NumPy's."""
    import jax
    import jax.numpy as jnp

    logits = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    q = np.full((3, 8), 0.25, np.float32)
    p = api.block_probs(jnp.asarray(logits), 4, scale=scale)
    assert np.isfinite(np.asarray(p)).all()
    np.testing.assert_allclose(np.asarray(p), api.block_probs(logits, 4, scale=scale), atol=1e-6)
    if scale > 1e10:  # beyond the S0.8 bound of eid_loss, sqrt(F / (16 N)) = 9.4e17 here
        with pytest.raises(ValueError, match=r"^scale \* \|logits\| is .* above 9\.41356\d*e\+17"):
            api.eid_loss(jnp.asarray(logits), jnp.asarray(q), 4, scale=scale)
        return
    loss = api.eid_loss(jnp.asarray(logits), jnp.asarray(q), 4, scale=scale)
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), float(api.eid_loss(logits, q, 4, scale=scale)), rtol=1e-5)
    grad = jax.grad(lambda z: api.eid_loss(z, jnp.asarray(q), 4, scale=scale))(jnp.asarray(logits))
    assert np.isfinite(np.asarray(grad)).all()


# -- S3.10 packed objects -----------------------------------------------------------------------


def _packed(w: np.ndarray | None = None) -> api.Packed:
    w = np.array([[0, 1, 2, 0, 3, 0, 0, 4], [5, 0, 0, 6, 0, 7, 8, 0]], np.float32) if w is None else w
    return api.pack(w, 2, 4)


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_S3_10_index_beyond_m_in_a_non_last_block_is_refused_everywhere(framework: str) -> None:
    """torch's spmm used to read the next block; every backend now refuses, word for word."""
    import jax.numpy as jnp
    import torch

    conv = {"numpy": np.asarray, "torch": torch.from_numpy, "jax": jnp.asarray}[framework]
    p = _packed()
    idx = np.array(p.indices)
    idx[0, 1] = 5
    bad = api.Packed(conv(np.array(p.values)), conv(idx), 2, 4, (2, 8), 1)
    msg = r"^packed indices\[0, 1\] \(block 0 of row 0\) is 5; expected a value in \[0, 4\)"
    for call in (lambda: api.unpack(bad), lambda: api.spmm(bad, conv(np.ones(8, np.float32)))):
        with pytest.raises(ValueError, match=msg):
            call()


def test_S3_10_duplicate_indices_are_refused() -> None:
    """A hand-built Packed with a repeated index used to pass unpack (dropping a value) and
    spmm (summing both)."""
    p = _packed()
    idx = np.array(p.indices)
    idx[1, 2:4] = 1
    bad = api.Packed(np.array(p.values), idx, 2, 4, (2, 8), 1)
    msg = (r"^packed indices of row 1, block 1 are \[1, 1\]; expected two strictly increasing "
           r"indices in \[0, 4\) \(indices\[1, 2:4\], SPEC S3\.2, S3\.10\)$")
    for call in (lambda: api.unpack(bad), lambda: api.spmm(bad, np.ones(8, np.float32)),
                 lambda: api.save_packed("never-written.npz", bad)):
        with pytest.raises(ValueError, match=msg):
            call()
    import os

    assert not os.path.exists("never-written.npz")


def test_S3_10_validated_numpy_indices_are_frozen() -> None:
    """The verdict is remembered: NumPy indices become read-only, so a stale verdict cannot
    be reused after an in-place change."""
    p = _packed()
    api.unpack(p)
    assert not p.indices.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        p.indices[0, 0] = 3
    again = api.Packed(p.values, p.indices.copy(), 2, 4, (2, 8), 1)
    again.indices[0, 0] = 3
    with pytest.raises(ValueError, match=r"block 0 of row 0|row 0, block 0"):
        api.unpack(again)


def test_S3_10_torch_in_place_change_is_caught_after_validation() -> None:
    """torch tensors cannot be frozen; their version counter invalidates the verdict."""
    import torch

    p = _packed(torch.tensor([[0, 1, 2, 0, 3, 0, 0, 4], [5, 0, 0, 6, 0, 7, 8, 0]], dtype=torch.float32))
    x = torch.ones(8)
    assert torch.equal(api.spmm(p, x), torch.tensor([10.0, 26.0]))
    p.indices[0, 2] = 9
    with pytest.raises(ValueError, match=r"^packed indices\[0, 2\] \(block 1 of row 0\) is 9"):
        api.spmm(p, x)


def test_S3_10_fields_and_types() -> None:
    p = _packed()
    with pytest.raises(TypeError, match=r"^expected a spikenm Packed, got tuple$"):
        api.unpack((p.values, p.indices))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Packed shape must be a non-empty tuple of integers"):
        api.unpack(api.Packed(p.values, p.indices, 2, 4, 8, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Packed axis must be an integer, got 1\.0$"):
        api.unpack(api.Packed(p.values, p.indices, 2, 4, (2, 8), 1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Packed values must have a real dtype"):
        api.unpack(api.Packed(p.values.astype(np.complex64), p.indices, 2, 4, (2, 8), 1))
    with pytest.raises(TypeError, match=r"^Packed values must be an array .*got None$"):
        api.spmm(api.Packed(None, p.indices, 2, 4, (2, 8), 1), np.ones(8))


def test_S3_10_first_bad_block_kernel() -> None:
    from spikenm.reference.packing import first_bad_block

    ok = np.tile(np.array([0, 3], np.uint8), 10_000)
    assert first_bad_block(ok, 2, 4) == -1
    for flat, value in ((0, 4), (7001, 0), (19_999, 255)):
        bad = ok.copy()
        bad[flat] = value
        assert first_bad_block(bad, 2, 4) == flat // 2
    assert first_bad_block(np.array([0, 1, 2, 2, 3, 1], np.uint8), 3, 4) == 1
    assert first_bad_block(np.array([5], np.uint8), 1, 4) == 0


def test_S0_5_none_lists_and_strings_name_the_argument() -> None:
    for call, name in ((lambda v: api.sample_mask(X, 2, 4, noise=v), "noise"),
                       (lambda v: api.eid_loss(X, v, 4), "targets"),
                       (lambda v: api.spmm(_packed(), v), "x"),
                       (lambda v: api.layer_fits(v, 4), "weight"),
                       (lambda v: api.from_cutlass(np.ones((32, 16), np.float16), v), "meta")):
        for value in (None, [1.0, 2.0], "abc"):
            with pytest.raises(TypeError, match=rf"^{name} must be an array"):
                call(value)
    with pytest.raises(TypeError, match=r"^path must be a str or os\.PathLike, got None$"):
        api.load_packed(None)
    with pytest.raises(TypeError, match=r"^logits must be an array"):  # final_mask names its argument
        api.final_mask(None, 2, 4)


def test_S0_8_range_checks_are_skipped_for_traced_values() -> None:
    """S0.5/S0.8: inside jax.jit traced arrays and traced temperatures/scales have no values,
    so the range checks are skipped (a traced scale is never compared to 1 in Python)."""
    import jax
    import jax.numpy as jnp

    z, q = jnp.zeros((2, 8)), jnp.full((2, 8), 0.25)
    assert float(jax.jit(lambda s: api.eid_loss(z, q, 4, scale=s))(2.0)) == 0.0
    assert jax.jit(lambda t, s: api.sample_mask(z, 2, 4, noise=z, temperature=t, scale=s))(
        0.5, 2.0).shape == (2, 8)
    assert jax.jit(lambda s: api.block_probs(z, 4, scale=s))(3.0).shape == (2, 8)
    assert jax.jit(lambda x: api.eid_loss(x, q, 4, scale=3.0))(z).shape == ()
    # a closed-over constant still has values: its bound is checked inside the trace
    big = jnp.zeros((2, 8)).at[0, 0].set(3e37)
    with pytest.raises(ValueError, match=r"^\|logits\| is 3e\+37 at index \(0, 0\)"):
        jax.jit(lambda s: api.block_probs(big, 4) * s)(1.0)


def test_S0_8_bound_of_arrays_without_arithmetic_is_read_on_the_host() -> None:
    """The Backend protocol does not promise ``x * c``: arrays without arithmetic are
    judged on their host values by the same rule (same message)."""
    from types import SimpleNamespace

    from spikenm import validation

    class Box:
        def __init__(self, a: np.ndarray) -> None:
            self.a, self.shape = a, a.shape

    be = SimpleNamespace(name="boxed", all_finite=lambda b: bool(np.isfinite(b.a).all()),
                         to_numpy=lambda b: b.a.copy())
    limit = float(np.finfo(np.float32).max) / 16
    validation.bounded(be, "logits", Box(np.full(4, 1e37, np.float32)), limit, "float32", "it")
    with pytest.raises(ValueError, match=r"^\|logits\| is 3e\+37 at index \(2,\), above 2\.1267647e\+37"):
        validation.bounded(be, "logits", Box(np.array([0, 0, 3e37, 0], np.float32)), limit,
                           "float32", "it")
    with pytest.raises(ValueError, match=r"^logits contains NaN or inf"):
        validation.bounded(be, "logits", Box(np.array([np.nan], np.float32)), limit, "float32", "it")
