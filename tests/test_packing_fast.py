"""The fused packing kernels (SPEC S3.1-S3.4): threaded ranges, both error paths, the
table and loop paths, the CUTLASS kernels, and the torch/jax backends taking the
reference kernel on CPU arrays."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numba
import numpy as np
import pytest
import torch

from spikenm import api, cutlass
from spikenm.backends.jax import packing as jp
from spikenm.backends.torch import packing as tp
from spikenm.reference import packing as ref

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

DTYPES = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.int8, np.uint16,
          np.int64, np.bool_)


def oracle_pack(w: np.ndarray, keep: np.ndarray, n: int, m: int) -> tuple[np.ndarray, ...]:
    """S3.1/S3.2 by whole-array NumPy (cumulative sums and a stable sort), blocks last."""
    size = w.dtype.itemsize
    bits = w.view(f"u{size}").reshape(*w.shape[:-1], -1, m)
    kept = (keep != 0).reshape(bits.shape)
    nnz = kept.sum(-1, keepdims=True)
    stored = kept | (np.cumsum(~kept, axis=-1) <= n - nnz)
    pos = np.argsort(np.where(stored, np.arange(m), m), axis=-1, kind="stable")[..., :n]
    values = np.where(np.take_along_axis(kept, pos, -1), np.take_along_axis(bits, pos, -1), 0)
    shape = (*w.shape[:-1], w.shape[-1] // m * n)
    return (values.astype(bits.dtype).view(w.dtype).reshape(shape),
            pos.astype(np.uint8).reshape(shape))


def random_nm(rng: np.random.Generator, shape: tuple[int, ...], n: int, m: int,
              dtype: type) -> np.ndarray:
    """Values with 0..n non-zeros per block of ``m`` along the last axis; floats include
    NaNs with payloads, -0.0 and subnormals."""
    if np.dtype(dtype) == np.bool_:
        w = np.ones(shape, dtype=bool)
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        w = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        w[w == 0] = 1
    else:
        w = (rng.standard_normal(shape) * 3).astype(dtype)
        flat = w.reshape(-1)
        u = flat.view(f"u{flat.dtype.itemsize}")
        bits = 8 * flat.dtype.itemsize
        u[::97] = (np.iinfo(u.dtype).max >> (bits - (bits // 2 + 1))) << (bits // 2 - 1) | 5
        u[1::89] = 1  # smallest subnormal
        flat[2::83] = -0.0
    blocks = w.reshape(-1, m)
    drop = rng.random(blocks.shape).argsort(axis=1)[:, : m - n]
    np.put_along_axis(blocks, drop, 0, axis=1)
    emptier = rng.random(blocks.shape[0]) < 0.2  # some blocks keep fewer than n
    blocks[emptier, :] = 0
    return w


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture(params=["serial", "threads"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the serial kernels and on the threaded ranges (tiny threshold,
    2 threads)."""
    if request.param == "threads":
        if numba.config.NUMBA_NUM_THREADS < 2:
            pytest.fail("the threaded path needs NUMBA_NUM_THREADS >= 2")
        monkeypatch.setattr(ref, "PARALLEL_BLOCKS", 4)
        before = numba.get_num_threads()
        numba.set_num_threads(2)
        yield request.param
        numba.set_num_threads(before)
    else:
        monkeypatch.setattr(ref, "PARALLEL_BLOCKS", 1 << 62)  # serial
        yield request.param


def test_threads_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges are split over threads only at PARALLEL_BLOCKS blocks and more than one
    Numba thread."""
    monkeypatch.setattr(ref, "PARALLEL_BLOCKS", 100)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert not ref._use_threads(10**6)
        numba.set_num_threads(2)
        assert ref._use_threads(100) and not ref._use_threads(99)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("nm", [(2, 4), (1, 2), (3, 8), (5, 16), (1, 1)])
def test_S3_1_S3_2_fused_pack_unpack_nnz_exact(path: str, dtype: type, nm: tuple) -> None:
    """pack (with and without mask=), unpack and block_nnz are bit-exact against the
    whole-array oracle on both the table (m <= 8) and the loop (m > 8) path."""
    n, m = nm
    rng = np.random.default_rng(hash((np.dtype(dtype).name, n, m)) % 2**32)
    w = random_nm(rng, (6, 5, 16 * m), n, m, dtype)
    v, i = ref.pack(w, w, n, m)
    ev, ei = oracle_pack(w, w, n, m)
    assert same_bits(v, ev) and same_bits(i, ei)
    assert np.array_equal(ref.block_nnz(w, m),
                          (w != 0).reshape(6, 5, 16, m).sum(-1).astype(np.int64))
    dense = ref.unpack(v, i, n, m)
    kept = w != 0
    assert same_bits(dense[kept], w[kept]) and not dense[~kept].astype(bool).any()
    mask = np.zeros(w.shape, dtype=np.float32)
    blocks = mask.reshape(-1, m)
    blocks[:, :n] = 1  # keeps entries that may be zero in w
    mv, mi = ref.pack(w, mask, n, m)
    ov, oi = oracle_pack(w, mask, n, m)
    assert same_bits(mv, ov) and same_bits(mi, oi)


def test_S3_3_bits_test_signed_zero_nan_subnormal() -> None:
    """The bit test is S3.3's ``!= 0``: -0.0 not kept (also in a float mask), NaN and
    subnormals kept, NaN payload and kept -0.0 (by a mask) come back bit for bit."""
    nan = np.array([0x7FC00123], dtype=np.uint32).view(np.float32)[0]
    w = np.array([[-0.0, nan, 1e-45, 0.0, -0.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    v, i = ref.pack(w, w, 2, 4)
    assert i.tolist() == [[1, 2, 0, 3]]
    assert same_bits(v, np.array([[nan, 1e-45, 0.0, 2.0]], dtype=np.float32))
    mask = np.array([[1, 0, 0, -0.0, 1, 0, 0, 0]], dtype=np.float32)
    v, i = ref.pack(w, mask, 2, 4)
    assert i.tolist() == [[0, 1, 0, 1]]
    assert same_bits(v, np.array([[-0.0, 0.0, -0.0, 0.0]], dtype=np.float32))
    assert ref.block_nnz(w, 4).tolist() == [[2, 1]]


def test_S3_3_first_bad_block_in_row_major_order(path: str) -> None:
    """Bad blocks in several ranges: the fused kernel names the first in row-major
    order, and api.pack's message is the one of SPEC S3.3."""
    rng = np.random.default_rng(3)
    w = random_nm(rng, (64, 256), 2, 4, np.float32)
    w[40, 12:16] = 1.0  # block 3 of row 40, after the first one
    w[7, 200:204] = [1, 2, 3, 0]  # first bad: block 50 of row 7
    w[63, 0:4] = 1.0
    with pytest.raises(ValueError, match=re.escape(
            "block 50 of row 7 (entries 200:204 of the last axis) keeps more than n=2 "
            "entries; expected at most 2")):
        ref.pack(w, w, 2, 4)
    with pytest.raises(ValueError, match=re.escape(
            "cannot pack w as 2:4: block 50 at [7, 200:204] keeps 3 entries, expected "
            "at most 2")):
        api.pack(w, 2, 4)
    mask = (w != 0).astype(np.int8)
    with pytest.raises(ValueError, match=re.escape("block 50 of row 7 ")):
        ref.pack(w, mask, 2, 4)
    with pytest.raises(ValueError, match=re.escape(
            "cannot pack mask as 2:4: block 50 at [7, 200:204] keeps 3 entries")):
        api.pack(w, 2, 4, mask=mask)


def test_S3_1_unpack_first_bad_index(path: str) -> None:
    """unpack names the first index >= m in row-major order, on both paths."""
    rng = np.random.default_rng(4)
    v, i = ref.pack(random_nm(rng, (32, 512), 2, 4, np.float16), None or
                    random_nm(rng, (32, 512), 2, 4, np.float16), 2, 4)
    i = i.copy()
    i[20, 5] = 9
    i[3, 101] = 4
    with pytest.raises(ValueError, match=re.escape(
            "indices[3, 101] (block 50 of row 3) is 4; expected a value in [0, 4)")):
        ref.unpack(v, i, 2, 4)


def test_S3_1_empty_arrays() -> None:
    """Empty leading or packed dimensions give empty results of the right shapes."""
    assert ref.block_nnz(np.zeros((3, 0)), 4).shape == (3, 0)
    v, i = ref.pack(np.zeros((0, 8), np.float16), np.zeros((0, 8)), 2, 4)
    assert v.shape == i.shape == (0, 4) and v.dtype == np.float16
    assert ref.unpack(np.zeros((2, 0)), np.zeros((2, 0), np.uint8), 2, 4).shape == (2, 0)


def old_to_cutlass_meta(idx: np.ndarray, word: type) -> np.ndarray:
    """The S3.4 metadata by whole-array NumPy from `cutlass.meta_offsets`."""
    rows, half = idx.shape
    q = 2 * np.dtype(word).itemsize
    ncols = half // 2 // q
    pairs = idx.reshape(rows, -1, 2).astype(np.int64)
    nib = pairs[..., 0] | pairs[..., 1] << 2
    words = (nib.reshape(rows, ncols, q) << (4 * np.arange(q))).sum(-1)
    meta = np.empty(rows * ncols, dtype=word)
    unsigned = f"u{np.dtype(word).itemsize}"
    meta[cutlass.meta_offsets(rows, ncols, np.dtype(word).itemsize)] = (
        words.astype(unsigned).view(word).reshape(-1))
    return meta.reshape(rows, ncols)


@pytest.mark.parametrize("dtype, word", [(np.float16, np.int16), (np.int8, np.int32)])
def test_S3_4_cutlass_kernels_equal_the_formula(dtype: type, word: type) -> None:
    """to_cutlass's kernel writes the words of the S3.4 formula; from_cutlass inverts it
    exactly (2:4 weights with degenerate blocks, 128 x 256)."""
    rng = np.random.default_rng(5)
    w = random_nm(rng, (128, 256), 2, 4, dtype)
    packed = api.pack(w, 2, 4)
    values, meta = cutlass.to_cutlass(packed)
    assert same_bits(meta, old_to_cutlass_meta(packed.indices, word))
    back = cutlass.from_cutlass(values, meta)
    assert same_bits(back.indices, packed.indices) and back.values is values


def test_S3_4_cutlass_kernel_errors_name_first_block() -> None:
    """The kernels stop at the first bad block in row-major order and the messages name
    it (indices for to_cutlass, nibbles for from_cutlass)."""
    w = np.tile(np.array([0, 0, 1, 1], dtype=np.float16), (32, 16))
    packed = api.pack(w, 2, 4)
    idx = packed.indices.copy()
    idx[9, 6:8] = [3, 3]  # block 3 of row 9
    idx[30, 0:2] = [1, 0]
    bad = type(packed)(packed.values, idx, 2, 4, packed.shape, 1)
    with pytest.raises(ValueError, match=re.escape(
            "packed indices of row 9, block 3 are [3, 3]; expected two strictly")):
        cutlass.to_cutlass(bad)
    values, meta = cutlass.to_cutlass(packed)
    broken = meta.copy()
    flat = broken.view(np.uint16).reshape(-1)
    offsets = cutlass.meta_offsets(32, 4, 2)
    flat[offsets[5 * 4 + 2]] = (flat[offsets[5 * 4 + 2]] & 0xF0FF) | (7 << 8)  # row 5, block 10
    flat[offsets[20 * 4]] = 0  # row 20, block 0
    with pytest.raises(ValueError, match=re.escape(
            "meta holds nibble 7 for row 5, block 10 (dense columns 40:44)")):
        cutlass.from_cutlass(values, broken)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32,
                                   torch.int8, torch.bool, torch.float64])
def test_S3_1_torch_cpu_equals_reference_and_device_path(path: str, dtype: torch.dtype) -> None:
    """On CPU tensors torch's pack/unpack/block_nnz are the reference kernel's bits and
    equal the tensor-op path CUDA tensors take."""
    rng = np.random.default_rng(6)
    w64 = random_nm(rng, (16, 128), 2, 4, np.float64)
    w = torch.from_numpy(w64).to(dtype)
    wn = w.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if dtype == torch.bfloat16 \
        else w.numpy()
    assert tp._on_host(w)
    v, i = tp.pack(w, w, 2, 4)
    rv, ri = ref.pack(wn, wn, 2, 4)
    dv, di = tp._pack_on_device(w, w, 2, 4)
    assert v.dtype == dtype and torch.equal(i, torch.from_numpy(ri)) and torch.equal(i, di)
    assert torch.equal(v.view(torch.uint8), dv.view(torch.uint8))
    assert np.array_equal(v.view(torch.uint8).numpy(), rv.view(np.uint8))
    assert torch.equal(tp.block_nnz(w, 4), torch.from_numpy(ref.block_nnz(wn, 4)))
    dense = tp.unpack(v, i, 2, 4)
    assert dense.dtype == dtype and torch.equal((dense != 0), (w != 0))
    mask = (w != 0).to(torch.float32)
    mv, mi = tp.pack(w, mask, 2, 4)
    assert torch.equal(mi, i) and torch.equal(mv.view(torch.uint8), v.view(torch.uint8))


def test_S3_3_torch_cpu_errors() -> None:
    """torch's CPU kernels raise the reference errors (first bad block / index)."""
    w = torch.zeros((4, 16))
    w[2, 4:7] = 1.0
    with pytest.raises(ValueError, match=re.escape("block 1 of row 2 (entries 4:8")):
        tp.pack(w, w, 2, 4)
    v, i = tp.pack(torch.zeros((4, 16)), torch.zeros((4, 16)), 2, 4)
    i[1, 3] = 5
    with pytest.raises(ValueError, match=re.escape("indices[1, 3] (block 1 of row 1) is 5")):
        tp.unpack(v, i, 2, 4)


def test_torch_dispatch_keeps_traced_and_wrapped_tensors_on_the_tensor_path() -> None:
    """Under torch.func.vmap the tensors are wrapped and take the tensor path; a
    requires-grad parameter is packed on the host."""
    w = torch.nn.Parameter(torch.tensor([[0.0, 2.0, 0.0, 3.0]]))
    assert tp._on_host(w)
    assert torch.equal(tp.pack(w, w, 2, 4)[1], torch.tensor([[1, 3]], dtype=torch.uint8))
    seen = []
    torch.func.vmap(lambda x: seen.append(tp._on_host(x)) or x)(torch.ones((2, 4)))
    assert seen == [False]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.int8,
                                   jnp.uint16])
def test_S3_1_jax_cpu_equals_reference_and_jit(dtype: type) -> None:
    """Concrete CPU jax arrays take the reference kernel; under jax.jit the compiled
    path runs and gives the same bits."""
    rng = np.random.default_rng(7)
    w = jnp.asarray(random_nm(rng, (8, 64), 2, 4, np.float32)).astype(dtype)
    wn = np.asarray(w)
    assert jp._on_host(w)
    v, i = jp.pack(w, w, 2, 4)
    rv, ri = ref.pack(wn, wn, 2, 4)
    assert isinstance(v, jax.Array) and v.dtype == w.dtype
    assert same_bits(np.asarray(v), rv) and same_bits(np.asarray(i), ri)
    jv, ji = jax.jit(lambda a: jp.pack(a, a, 2, 4))(w)
    assert same_bits(np.asarray(jv), rv) and same_bits(np.asarray(ji), ri)
    assert np.array_equal(np.asarray(jp.block_nnz(w, 4)), ref.block_nnz(wn, 4))
    assert np.array_equal(np.asarray(jax.jit(lambda a: jp.block_nnz(a, 4))(w)),
                          ref.block_nnz(wn, 4))
    dense = jp.unpack(v, i, 2, 4)
    assert same_bits(np.asarray(dense), ref.unpack(rv, ri, 2, 4))
    jd = jax.jit(lambda a, b: jp.unpack(a, b, 2, 4))(v, i)
    assert same_bits(np.asarray(jd), np.asarray(dense))


def test_S3_1_jax_cpu_unpack_error_message_unchanged() -> None:
    """A bad index on the host path raises the jax backend's own message."""
    v = jnp.zeros((2, 4))
    i = jnp.asarray(np.array([[0, 1, 0, 1], [0, 7, 0, 1]], dtype=np.uint8))
    with pytest.raises(ValueError, match=re.escape("indices[1, 1] (block 0) is 7")):
        jp.unpack(v, i, 2, 4)


def test_kernel_outputs_are_64_byte_aligned_for_zero_copy_jax() -> None:
    """The kernels' outputs start on 64 bytes, so jax adopts them through DLPack without
    a copy (the host path of the jax backend)."""
    w = np.zeros((3, 40), dtype=np.float32)
    w[:, ::4] = 1.0
    for a in (*ref.pack(w, w, 2, 4), ref.block_nnz(w, 4),
              ref.unpack(*ref.pack(w, w, 2, 4), 2, 4)):
        assert a.ctypes.data % 64 == 0
    v, _ = ref.pack(w, w, 2, 4)
    assert jp._to_jax(v).unsafe_buffer_pointer() == v.ctypes.data


def test_S3_3_api_pack_counts_blocks_only_after_the_kernel_refuses(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On a backend whose pack checks blocks itself (`pack_checks_blocks`, the reference),
    api.pack makes one pass on valid input; a bad block still gets the api's message in
    the caller's axes."""
    import spikenm.api as api_module

    calls: list[int] = []
    real = api_module._block_counts

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(api_module, "_block_counts", counting)
    w = np.zeros((3, 8), np.float32)
    w[:, ::4] = 1.0
    api.pack(w, 2, 4)
    assert calls == []
    w[2, 5:8] = 2.0
    with np.testing.assert_raises_regex(ValueError, r"cannot pack w as 2:4: block 1 at \[2, 4:8\] keeps 4 entries"):
        api.pack(w, 2, 4)
    assert calls == [1]
    calls.clear()
    api.pack(torch.ones(2, 4), 4, 4)  # torch (no pack_checks_blocks): the count runs first
    assert calls == [1]
