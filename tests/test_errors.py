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
