"""2:4 CUTLASS export against PyTorch's own CPU converter (SPEC S3.4)."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
import torch
from torch.sparse._semi_structured_conversions import (
    _calculate_meta_reordering_scatter_offsets,
    sparse_semi_structured_from_dense_cutlass,
    sparse_semi_structured_to_dense_cutlass,
)

from spikenm import api
from spikenm.cutlass import VALID_NIBBLES, meta_offsets
from spikenm.packed import Packed

DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "int8": np.int8}
TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}
SHAPES = {
    "float16": [(32, 32), (32, 64), (64, 128), (96, 96)],
    "bfloat16": [(32, 32), (32, 64), (64, 128)],
    "int8": [(16, 64), (32, 128), (48, 192)],
}
CASES = [(d, s) for d, shapes in SHAPES.items() for s in shapes]
PAIRS = list(itertools.combinations(range(4), 2))


def to_torch(a: np.ndarray) -> torch.Tensor:
    """A torch tensor with the same bits (bfloat16 via its uint16 pattern)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def bits(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """The raw bits of a tensor or array as unsigned integers (exact comparisons)."""
    if isinstance(t, torch.Tensor):
        t = t.view(torch.int16) if t.dtype in (torch.float16, torch.bfloat16) else t
        t = t.numpy()
    a = np.ascontiguousarray(t)
    return a.view(f"u{a.dtype.itemsize}")


def nonzero_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "int8":
        v = rng.integers(-128, 127, size=shape, endpoint=True).astype(np.int8)
    else:
        v = (rng.standard_normal(shape) * 3).astype(DTYPES[dtype])
    v[v == 0] = 1
    return v


def dense_2_of_4(rng: np.random.Generator, rows: int, k: int, dtype: str) -> np.ndarray:
    """Exactly two non-zeros in every block of four, every pair of positions used."""
    pairs = np.array(PAIRS)[rng.integers(0, 6, size=rows * k // 4)]
    keep = np.zeros((rows * k // 4, 4), dtype=bool)
    np.put_along_axis(keep, pairs, True, axis=1)
    keep = keep.reshape(rows, k)
    return np.where(keep, nonzero_values(rng, (rows, k), dtype), np.zeros((), DTYPES[dtype]))


def dense_up_to_2_of_4(rng: np.random.Generator, rows: int, k: int, dtype: str) -> np.ndarray:
    """0, 1 or 2 non-zeros per block; every one of the 11 patterns appears."""
    patterns = [()] + [(i,) for i in range(4)] + PAIRS
    keep = np.zeros((rows * k // 4, 4), dtype=bool)
    choice = np.concatenate([np.arange(len(patterns)), rng.integers(0, 11, rows * k // 4)])
    for b in range(rows * k // 4):
        keep[b, list(patterns[choice[b]])] = True
    keep = keep.reshape(rows, k)
    return np.where(keep, nonzero_values(rng, (rows, k), dtype), np.zeros((), DTYPES[dtype]))


@pytest.mark.parametrize("dtype,shape", CASES)
def test_S3_4_export_equals_torch_converter_bit_for_bit(dtype: str, shape: tuple) -> None:
    """S3.4: with two non-zeros per block, (values, meta) equal PyTorch's
    sparse_semi_structured_from_dense_cutlass bit for bit (int16 meta for 16-bit floats,
    int32 for int8)."""
    rng = np.random.default_rng(sum(shape))
    w = dense_2_of_4(rng, *shape, dtype)
    values, meta = api.to_cutlass(api.pack(w, 2, 4))
    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(to_torch(w))
    word = np.int32 if dtype == "int8" else np.int16
    assert values.dtype == np.dtype(DTYPES[dtype]) and values.shape == (shape[0], shape[1] // 2)
    assert meta.dtype == word and tuple(meta.shape) == tuple(t_meta.shape)
    assert np.array_equal(bits(values), bits(t_values))
    assert np.array_equal(meta, t_meta.numpy())


@pytest.mark.parametrize("dtype,shape", [(d, SHAPES[d][0]) for d in SHAPES])
def test_S3_4_degenerate_blocks_decode_to_same_dense_as_torch(dtype: str, shape: tuple) -> None:
    """S3.4: with 0, 1 or 2 non-zeros per block, our export decodes (by PyTorch's own
    sparse_semi_structured_to_dense_cutlass) to the dense matrix, bit for bit; PyTorch's
    export decodes (by from_cutlass) to it too, and its indices equal ours on the blocks
    with two non-zeros (elsewhere ours follow S3.2)."""
    rng = np.random.default_rng(11)
    w = dense_up_to_2_of_4(rng, *shape, dtype)
    p = api.pack(w, 2, 4)
    values, meta = api.to_cutlass(p)
    ours = sparse_semi_structured_to_dense_cutlass(to_torch(values), torch.from_numpy(meta))
    assert np.array_equal(bits(ours), bits(w))
    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(to_torch(w))
    theirs = api.from_cutlass(np.asarray(bits(t_values)).view(w.dtype), t_meta.numpy())
    assert np.array_equal(bits(api.unpack(theirs)), bits(w))
    two = (w.reshape(shape[0], -1, 4) != 0).sum(-1) == 2
    ours_idx = p.indices.reshape(shape[0], -1, 2)
    theirs_idx = theirs.indices.reshape(shape[0], -1, 2)
    assert np.array_equal(ours_idx[two], theirs_idx[two])
    assert not np.array_equal(ours_idx[~two], theirs_idx[~two])  # the padding rules differ


def test_S3_4_tile_of_0011_blocks_packs_to_minus_4370() -> None:
    """S3.4: a tile whose blocks are all [0, 0, 1, 1] packs to int16 words -4370
    (0xEEEE: four nibbles 14 = 2 | 3 << 2), as in PyTorch."""
    w = np.tile(np.array([0, 0, 1, 1], dtype=np.float16), (32, 8))
    _, meta = api.to_cutlass(api.pack(w, 2, 4))
    assert meta.dtype == np.int16 and meta.shape == (32, 2)
    assert np.all(meta == -4370)
    assert np.all(sparse_semi_structured_from_dense_cutlass(to_torch(w))[1].numpy() == -4370)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_S3_4_from_cutlass_inverts_to_cutlass(dtype: str) -> None:
    """S3.4: from_cutlass(to_cutlass(p)) == p (values, indices with their S3.2 padding,
    n, m, shape, axis)."""
    shape = SHAPES[dtype][1]
    w = dense_up_to_2_of_4(np.random.default_rng(2), *shape, dtype)
    p = api.pack(w, 2, 4)
    q = api.from_cutlass(*api.to_cutlass(p))
    assert (q.n, q.m, q.shape, q.axis) == (2, 4, shape, 1)
    assert np.array_equal(bits(q.values), bits(p.values))
    assert q.indices.dtype == np.uint8 and np.array_equal(q.indices, p.indices)


@pytest.mark.parametrize("rows,ncols,word", [(32, 2, 2), (64, 6, 2), (16, 2, 4), (48, 4, 4)])
def test_S3_4_meta_offsets_permutation_equals_torch(rows: int, ncols: int, word: int) -> None:
    """S3.4: the interleaving is a permutation and equals PyTorch's reorder offsets."""
    dtype = torch.int16 if word == 2 else torch.int32
    offsets = meta_offsets(rows, ncols, word)
    want = _calculate_meta_reordering_scatter_offsets(rows, ncols, dtype, "cpu").numpy()
    assert np.array_equal(offsets, want)
    assert np.array_equal(np.sort(offsets), np.arange(rows * ncols))


def test_S3_4_float32_refused_as_1_2_format() -> None:
    """S3.4: float32 is a 1:2 format in that layout; it is refused, saying so."""
    w = dense_2_of_4(np.random.default_rng(0), 32, 32, "float16").astype(np.float32)
    with pytest.raises(TypeError, match=r"float32.*1:2.*dtype='float16'"):
        api.to_cutlass(api.pack(w, 2, 4))
    with pytest.raises(TypeError, match="1:2"):
        api.from_cutlass(np.zeros((32, 16), np.float32), np.zeros((32, 2), np.int16))


@pytest.mark.parametrize("target", ["float16", "bfloat16", np.float16, ml_dtypes.bfloat16])
def test_S3_4_float32_exported_through_16_bit_dtype(target: object) -> None:
    """S3.4: dtype='float16'/'bfloat16' casts float32 values for export; the result is
    PyTorch's converter applied to the cast dense matrix."""
    name = np.dtype(target).name
    w32 = (dense_2_of_4(np.random.default_rng(4), 64, 64, "float16")).astype(np.float32)
    values, meta = api.to_cutlass(api.pack(w32, 2, 4), dtype=target)
    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(
        torch.from_numpy(w32).to(TORCH[name])
    )
    assert values.dtype.name == name
    assert np.array_equal(bits(values), bits(t_values))
    assert np.array_equal(meta, t_meta.numpy())


def test_S3_4_export_cast_overflow_raises() -> None:
    """S3.4/S0.5: a finite float32 weight beyond float16's range is not turned into inf
    silently."""
    w = np.zeros((32, 32), dtype=np.float32)
    w[3, 1] = 1e6
    with pytest.raises(ValueError, match=r"values\[3, 1\] = 1000000\.0 does not fit float16"):
        api.to_cutlass(api.pack(w, 2, 4), dtype="float16")


def test_S3_4_torch_arrays_stay_torch() -> None:
    """S3.4: the export is framework-neutral: torch values give torch (values, meta),
    and dtype= (here a torch dtype) casts through torch."""
    w32 = dense_2_of_4(np.random.default_rng(8), 32, 64, "float16").astype(np.float32)
    p = api.pack(w32, 2, 4)
    pt = Packed(torch.from_numpy(p.values), torch.from_numpy(p.indices), 2, 4, p.shape, 1)
    values, meta = api.to_cutlass(pt, dtype=torch.bfloat16)
    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(
        torch.from_numpy(w32).to(torch.bfloat16)
    )
    assert isinstance(values, torch.Tensor) and isinstance(meta, torch.Tensor)
    assert values.dtype == torch.bfloat16 and meta.dtype == torch.int16
    assert torch.equal(values.view(torch.int16), t_values.view(torch.int16))
    assert torch.equal(meta, t_meta)
    back = api.from_cutlass(values, meta)
    assert isinstance(back.indices, torch.Tensor) and torch.equal(back.indices, pt.indices)


def _packed(dtype: type, shape: tuple[int, int], n: int = 2, m: int = 4, axis: int = -1) -> Packed:
    return api.pack(np.zeros(shape, dtype=dtype), n, m, axis=axis)


@pytest.mark.parametrize(
    "packed,message",
    [
        (lambda: _packed(np.float16, (16, 32)), "rows % 32 == 0 and k % 32 == 0"),
        (lambda: _packed(np.float16, (32, 16)), r"got a \(32, 16\) matrix"),
        (lambda: _packed(ml_dtypes.bfloat16, (32, 48)), "k % 32 == 0"),
        (lambda: _packed(np.int8, (8, 64)), "rows % 16 == 0 and k % 64 == 0"),
        (lambda: _packed(np.int8, (16, 32)), r"got a \(16, 32\) matrix"),
        (lambda: _packed(np.float16, (32, 32), 1, 4), "2:4 pattern, got 1:4"),
        (lambda: _packed(np.float16, (32, 32), 2, 8), "2:4 pattern, got 2:8"),
        (lambda: api.pack(np.zeros((2, 32, 32), np.float16), 2, 4), "2-D"),
        (lambda: _packed(np.float16, (32, 32), axis=0), "axis=1"),
    ],
)
def test_S3_4_shape_and_pattern_rules(packed: object, message: str) -> None:
    """S3.4: shapes outside the layout's rules, patterns other than 2:4, arrays that
    are not 2-D and blocks not along the last axis raise ValueError saying which."""
    with pytest.raises(ValueError, match=message):
        api.to_cutlass(packed())


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.uint8])
def test_S3_4_other_value_dtypes_refused(dtype: type) -> None:
    """S3.4/S0.5: values other than float16, bfloat16, int8 are a TypeError naming the
    dtype."""
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        api.to_cutlass(_packed(dtype, (32, 64)))


def test_S3_4_bad_dtype_argument() -> None:
    """S3.4: dtype= takes only the 16-bit float types, and casts only float values."""
    with pytest.raises(ValueError, match="'float16' or 'bfloat16'.*'int8'"):
        api.to_cutlass(_packed(np.float32, (32, 32)), dtype="int8")
    with pytest.raises(TypeError, match="int8"):
        api.to_cutlass(_packed(np.int8, (32, 64)), dtype="float16")


@pytest.mark.parametrize("nibble", sorted(set(range(16)) - set(VALID_NIBBLES)))
def test_S3_4_from_cutlass_rejects_invalid_nibbles(nibble: int) -> None:
    """S3.4: from_cutlass accepts only the six nibbles 4, 8, 9, 12, 13, 14 and names
    the first other one with its row and block."""
    values = np.zeros((32, 16), dtype=np.float16)
    word = 14 | 14 << 4 | nibble << 8 | 14 << 12  # block 2 of the word is bad
    meta = np.full((32, 2), np.array(word, np.uint16).view(np.int16))
    message = rf"nibble {nibble} for row 0, block 2 \(dense columns 8:12\)"
    with pytest.raises(ValueError, match=message):
        api.from_cutlass(values, meta)


def test_S3_4_from_cutlass_shape_and_dtype_errors() -> None:
    """S3.4: from_cutlass checks meta's dtype against the values and every shape."""
    v16, m16 = np.zeros((32, 16), np.float16), np.full((32, 2), -4370, np.int16)
    with pytest.raises(TypeError, match="must be int16, got int32"):
        api.from_cutlass(v16, m16.astype(np.int32))
    with pytest.raises(ValueError, match=r"must have shape \(32, 16 / 8\), got \(32, 3\)"):
        api.from_cutlass(v16, np.full((32, 3), -4370, np.int16))
    with pytest.raises(ValueError, match="2-D"):
        api.from_cutlass(v16.reshape(-1), m16)
    with pytest.raises(ValueError, match=r"rows % 32 == 0"):
        api.from_cutlass(v16[:16], m16[:16])
    with pytest.raises(TypeError, match="int8"):
        api.from_cutlass(np.zeros((16, 32), np.int8), np.zeros((16, 2), np.int16))


def test_S3_4_to_cutlass_rejects_invalid_hand_made_indices() -> None:
    """S3.4: indices that no 2:4 block can have (not strictly increasing) raise."""
    p = _packed(np.float16, (32, 32))
    bad = p.indices.copy()
    bad[5, 2:4] = [1, 1]
    with pytest.raises(ValueError, match=r"row 5, block 1 are \[1, 1\]"):
        api.to_cutlass(Packed(p.values, bad, 2, 4, p.shape, 1))
