"""The packed N:M format on NumPy arrays, through `spikenm.api` (SPEC S3.1-S3.3, S3.6)."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikenm import api
from spikenm.packed import Packed
from spikenm.reference import packing as ref

PACK_DTYPES = (np.float16, np.float32, np.float64, np.int8)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def expected_pack(w: np.ndarray, keep: np.ndarray, n: int, m: int) -> tuple[np.ndarray, ...]:
    """SPEC S3.1/S3.2 written block by block in plain Python, blocks on the last axis."""
    rows = w.reshape(-1, w.shape[-1])
    keeps = keep.reshape(-1, w.shape[-1])
    values = np.zeros((rows.shape[0], rows.shape[1] // m * n), dtype=w.dtype)
    indices = np.zeros(values.shape, dtype=np.uint8)
    for r in range(rows.shape[0]):
        for g in range(rows.shape[1] // m):
            block, kb = rows[r, g * m:(g + 1) * m], keeps[r, g * m:(g + 1) * m]
            kept = [i for i in range(m) if kb[i] != 0]
            pad = [i for i in range(m) if kb[i] == 0][: n - len(kept)]
            for j, i in enumerate(sorted(kept + pad)):
                values[r, g * n + j] = block[i] if i in kept else 0
                indices[r, g * n + j] = i
    shape = (*w.shape[:-1], values.shape[-1])
    return values.reshape(shape), indices.reshape(shape)


def random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Non-zero random values of ``dtype``."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        v = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    else:
        v = (rng.standard_normal(shape) * 4).astype(dtype)
    v[v == 0] = 1
    return v


def random_nm(
    rng: np.random.Generator, lead: tuple[int, ...], groups: int, n: int, m: int,
    dtype: type, exact: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(w, keep)`` with blocks on the last axis; each block keeps 0..n entries (or
    exactly ``exact``), every kept value non-zero."""
    keep = np.zeros((*lead, groups, m), dtype=bool)
    flat = keep.reshape(-1, m)
    for b in range(flat.shape[0]):
        count = rng.integers(0, n, endpoint=True) if exact is None else exact
        flat[b, rng.choice(m, size=count, replace=False)] = True
    keep = keep.reshape(*lead, groups * m)
    w = np.where(keep, random_values(rng, keep.shape, dtype), np.zeros((), dtype=dtype))
    return w.astype(dtype), keep


@st.composite
def nm_cases(draw: st.DrawFn, dtypes: tuple[type, ...] = PACK_DTYPES) -> dict:
    m = draw(st.integers(2, 16), label="m")
    n = draw(st.integers(1, m), label="n")
    lead = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2), label="lead"))
    groups = draw(st.integers(1, 4), label="groups")
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    axis = draw(st.integers(0, len(lead)), label="axis")
    w_last, keep_last = random_nm(np.random.default_rng(seed), lead, groups, n, m, dtype)
    w = np.moveaxis(w_last, -1, axis)
    return dict(n=n, m=m, axis=axis, w=w, w_last=w_last, keep_last=keep_last)


@given(case=nm_cases(), negative_axis=st.booleans())
def test_S3_1_S3_2_pack_values_indices_exact_any_pattern_axis_dtype(
    case: dict, negative_axis: bool,
) -> None:
    """S3.1/S3.2: values and indices equal the block rule written out, for any n:m,
    leading dims, block axis and dtype; indices are uint8 and strictly increasing."""
    n, m, axis, w = case["n"], case["m"], case["axis"], case["w"]
    arg_axis = axis - w.ndim if negative_axis else axis
    p = api.pack(w, n, m, axis=arg_axis)
    want_v, want_i = expected_pack(case["w_last"], case["keep_last"], n, m)
    assert isinstance(p, Packed)
    assert (p.n, p.m, p.shape, p.axis) == (n, m, w.shape, axis)
    assert same_bits(p.values, want_v)
    assert same_bits(p.indices, want_i)
    blocks = p.indices.reshape(-1, n).astype(int)
    assert np.all(np.diff(blocks, axis=1) > 0) and np.all(blocks < m)


@given(case=nm_cases())
def test_S3_1_unpack_round_trip_bit_exact(case: dict) -> None:
    """S3.1: unpack(pack(w)) is w, bit for bit, in its original shape and axis order."""
    w = case["w"]
    dense = api.unpack(api.pack(w, case["n"], case["m"], axis=case["axis"]))
    assert same_bits(dense, w)


@given(case=nm_cases())
def test_S3_3_mask_path_packs_w_times_mask(case: dict) -> None:
    """S3.3: with mask=, the kept entries are where the mask is 1 (values kept may be
    zero, entries of w outside the mask are not packed): it packs w * mask."""
    n, m, axis = case["n"], case["m"], case["axis"]
    keep_last = case["keep_last"]
    rng = np.random.default_rng(0)
    # w is dense everywhere (some kept entries zero); the mask decides what is kept.
    w_last = random_values(rng, keep_last.shape, case["w_last"].dtype)
    w_last[rng.random(keep_last.shape) < 0.2] = 0
    mask_last = keep_last.astype(w_last.dtype)
    p = api.pack(np.moveaxis(w_last, -1, axis), n, m, mask=np.moveaxis(mask_last, -1, axis),
                 axis=axis)
    want_v, want_i = expected_pack(w_last, keep_last, n, m)
    assert same_bits(p.values, want_v)
    assert same_bits(p.indices, want_i)
    masked = np.where(keep_last, w_last, np.zeros((), w_last.dtype))
    assert same_bits(api.unpack(p), np.moveaxis(masked, -1, axis))


def test_S3_2_padding_smallest_unused_indices() -> None:
    """S3.2: blocks with fewer than n kept entries are padded with 0 at the smallest
    unused indices, then sorted."""
    w = np.array([
        [0, 0, 0, 0],
        [0, 0, 0, 5],
        [0, 0, 5, 0],
        [5, 0, 0, 0],
        [0, 5, 0, 0],
        [0, 0, 5, 6],
    ], dtype=np.float32)
    p = api.pack(w, 2, 4)
    assert p.indices.tolist() == [[0, 1], [0, 3], [0, 2], [0, 1], [0, 1], [2, 3]]
    assert p.values.tolist() == [[0, 0], [0, 5], [0, 5], [5, 0], [0, 5], [5, 6]]
    w8 = np.zeros((1, 8), dtype=np.int8)
    w8[0, [1, 6]] = [-3, 7]
    p8 = api.pack(w8, 4, 8)
    assert p8.indices.tolist() == [[0, 1, 2, 6]]
    assert p8.values.tolist() == [[0, -3, 0, 7]]


def test_S3_3_more_than_n_raises_naming_first_block() -> None:
    """S3.3: a block with more than n kept entries raises ValueError naming the first
    one (its block index and its slice in the original array); nothing is dropped."""
    w = np.zeros((8, 3), dtype=np.float32)  # blocks along axis 0, lead = the 3 columns
    w[0:2, 0] = 1.0  # fits
    w[0:4, 1] = 1.0  # first offending block: block 0 of column 1
    w[4:7, 2] = 1.0  # offending too, but later
    message = "block 0 at [0:4, 1] keeps 4 entries, expected at most 2"
    with pytest.raises(ValueError, match=re.escape(message)):
        api.pack(w, 2, 4, axis=0)
    with pytest.raises(ValueError, match=re.escape("block 0 at [0:4, 1] has 4 non-zeros")):
        api.check_nm(w, 2, 4, axis=0)
    assert api.is_nm(w, 2, 4, axis=0) is False
    assert api.is_nm(w, 4, 4, axis=0) is True
    api.check_nm(w, 4, 4, axis=0)


def test_S3_3_mask_more_than_n_raises() -> None:
    """S3.3: with mask=, the count is of mask ones (zero values included)."""
    w = np.zeros((1, 8), dtype=np.float64)
    mask = np.array([[1, 0, 0, 0, 1, 1, 1, 0]], dtype=np.float64)
    with pytest.raises(ValueError, match=re.escape("block 1 at [0, 4:8] keeps 3 entries")):
        api.pack(w, 2, 4, mask=mask)


@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5])
def test_S3_3_mask_values_other_than_0_1_raise(bad: float) -> None:
    """S3.3: a mask with values other than 0 and 1 raises ValueError naming the value."""
    w = np.ones((2, 4), dtype=np.float32)
    mask = np.array([[1, 0, 0, 0], [0, 0, bad, 0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"0 and 1.*" + re.escape(repr(bad))):
        api.pack(w, 2, 4, mask=mask)


def test_S3_3_nonzero_test_signed_zero_and_nan() -> None:
    """S3.3: kept means != 0: -0.0 is not kept (unpacks as +0.0, equal in value); NaN
    is kept and comes back with its bits."""
    nan = np.array(np.nan, dtype=np.float32).view(np.uint32) | np.uint32(0x1234)
    w = np.array([[-0.0, 0.0, 1.0, nan.view(np.float32)]], dtype=np.float32)
    p = api.pack(w, 2, 4)
    assert p.indices.tolist() == [[2, 3]]
    dense = api.unpack(p)
    assert same_bits(dense[0, 2:], w[0, 2:])
    assert dense[0, 0] == 0.0 and not np.signbit(dense[0, 0])


@pytest.mark.parametrize(
    "dtype",
    [ml_dtypes.bfloat16, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
     np.uint64, np.bool_],
)
def test_S0_4_S3_1_pack_keeps_every_real_dtype(dtype: type) -> None:
    """S0.4/S3.1: the packed format keeps every real dtype, bits unchanged."""
    rng = np.random.default_rng(3)
    w, _ = random_nm(rng, (3, 2), 4, 2, 8, dtype)
    p = api.pack(w, 2, 8)
    assert p.values.dtype == np.dtype(dtype)
    assert same_bits(api.unpack(p), w)


def test_S3_3_block_nnz_counts_per_block() -> None:
    """S3.3: block_nnz is the non-zero count of every block, int64 (..., K // m)."""
    x = np.array([[[0, 1, 2, 0, 3, 0], [0, 0, 0, 7, 7, 7]]], dtype=np.int8)
    counts = ref.block_nnz(x, 3)
    assert counts.dtype == np.int64 and counts.shape == (1, 2, 2)
    assert counts.tolist() == [[[2, 1], [0, 3]]]


def test_S3_1_unpack_rejects_index_out_of_range() -> None:
    """S3.1: indices lie in [0, m); a hand-made Packed with index m raises, naming it."""
    values = np.ones((2, 4), dtype=np.float32)
    indices = np.array([[0, 1, 0, 2], [0, 1, 1, 4]], dtype=np.uint8)
    with pytest.raises(ValueError, match=re.escape("indices[1, 3] (block 1 of row 1) is 4")):
        api.unpack(Packed(values, indices, 2, 4, (2, 8), 1))


def test_S3_1_pack_of_empty_leading_dim() -> None:
    """S3.1: leading dimensions may be empty; the packed arrays are then empty too."""
    p = api.pack(np.zeros((0, 3, 8), dtype=np.float32), 1, 4, axis=2)
    assert p.values.shape == (0, 3, 2) and p.indices.shape == (0, 3, 2)
    assert api.unpack(p).shape == (0, 3, 8)


def tolerance(dtype: type) -> float:
    """S0.6: rtol = 4 * sqrt(eps(dtype))."""
    return 4 * float(np.sqrt(np.finfo(dtype).eps))


@given(
    m=st.integers(2, 16), data=st.data(), out=st.integers(0, 6), groups=st.integers(1, 5),
    cols=st.one_of(st.none(), st.integers(0, 5)), spikes=st.booleans(),
    dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**32 - 1),
)
def test_S3_6_spmm_equals_unpack_matmul(
    m: int, data: st.DataObject, out: int, groups: int, cols: int | None, spikes: bool,
    dtype: type, seed: int,
) -> None:
    """S3.6: spmm(p, x) == unpack(p) @ x within S0.6 (scaled by |W| @ |x|), x 1-D or
    2-D, real-valued or spike-like 0/1, result of shape (O,) / (O, P) and the dtype."""
    n = data.draw(st.integers(1, m), label="n")
    rng = np.random.default_rng(seed)
    w, _ = random_nm(rng, (out,), groups, n, m, dtype)
    shape = (groups * m,) if cols is None else (groups * m, cols)
    x = (rng.random(shape) < 0.3) if spikes else rng.standard_normal(shape)
    x = x.astype(dtype)
    p = api.pack(w, n, m)
    y = api.spmm(p, x)
    dense = api.unpack(p).astype(np.float64) @ x.astype(np.float64)
    scale = np.abs(w).astype(np.float64) @ np.abs(x).astype(np.float64)
    assert y.dtype == np.dtype(dtype) and y.shape == dense.shape
    assert np.all(np.abs(y - dense) <= tolerance(dtype) * (scale + 1))


def test_S3_6_spmm_integer_wraps_like_matmul() -> None:
    """S3.6: integer spmm is exact and wraps modulo 2**bits like NumPy's matmul."""
    rng = np.random.default_rng(5)
    w, _ = random_nm(rng, (7,), 6, 2, 4, np.int8)
    x = rng.integers(-128, 127, size=(24, 3), endpoint=True).astype(np.int8)
    p = api.pack(w, 2, 4)
    assert same_bits(api.spmm(p, x), api.unpack(p) @ x)
    assert same_bits(api.spmm(p, x[:, 0]), api.unpack(p) @ x[:, 0])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_S3_6_spmm_16_bit_accumulates_in_float32(dtype: type) -> None:
    """S3.6: float16/bfloat16 spmm accumulates in float32 and rounds once at the end."""
    rng = np.random.default_rng(6)
    w = rng.integers(-8, 8, size=(9, 8, 4), endpoint=True).astype(np.float32)
    w[..., 1:3] = 0  # 2:4
    w = w.reshape(9, 32).astype(dtype)
    x = (rng.random((32, 4)) < 0.5).astype(dtype)
    y = api.spmm(api.pack(w, 2, 4), x)
    exact = w.astype(np.float64) @ x.astype(np.float64)  # small integers: exact
    assert y.dtype == np.dtype(dtype) and np.array_equal(y.astype(np.float64), exact)
    # big + 1 + 1: summed in the 16-bit type, each "+ 1" is a tie rounded back to big.
    big = 2048.0 if dtype is np.float16 else 256.0
    row = np.array([[big, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]], dtype=dtype)
    y = api.spmm(api.pack(row, 2, 4), np.ones(8, dtype=dtype))
    assert y.astype(np.float64).tolist() == [big + 2]


def test_S3_6_spmm_shape_errors() -> None:
    """S3.6/S0.5: spmm needs a 2-D packed matrix with blocks along axis 1 and x of
    length K."""
    p = api.pack(np.zeros((2, 8), dtype=np.float32), 2, 4)
    with pytest.raises(ValueError, match=re.escape("x must have shape (8,) or (8, P)")):
        api.spmm(p, np.zeros(4, dtype=np.float32))
    p0 = api.pack(np.zeros((8, 2), dtype=np.float32), 2, 4, axis=0)
    with pytest.raises(ValueError, match="axis 1"):
        api.spmm(p0, np.zeros(8, dtype=np.float32))
