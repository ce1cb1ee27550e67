"""The reference backend's packed products (SPEC S3.6): the float kernels, the
event-driven kernel for 0/1 inputs, and the rule `api.spmm` uses to pick one."""

from __future__ import annotations

import gc

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spikenm import api
from spikenm.reference import spmm_kernels as kernels

DTYPES = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64, np.int8, np.int32)


def random_packed(rng: np.random.Generator, out: int, groups: int, n: int, m: int,
                  dtype: type, integers: bool) -> tuple[np.ndarray, object]:
    """A dense ``(out, groups*m)`` N:M matrix (each block keeps 0..n entries) and its
    `Packed`; small integer values when ``integers`` (every sum exact in float32)."""
    keep = np.zeros((out, groups, m), dtype=bool)
    flat = keep.reshape(-1, m)
    for b in range(flat.shape[0]):
        flat[b, rng.choice(m, size=rng.integers(0, n, endpoint=True), replace=False)] = True
    keep = keep.reshape(out, groups * m)
    if integers or np.dtype(dtype).kind == "i":
        vals = rng.integers(-100, 100, size=keep.shape, endpoint=True).astype(np.float64)
    else:
        vals = rng.standard_normal(keep.shape) * 3
    w = np.where(keep, vals, 0.0).astype(dtype)
    return w, api.pack(w, n, m)


def spikes(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Bool 0/1 input: none, all, or ``kind`` = a firing rate as text."""
    if kind == "none":
        return np.zeros(shape, dtype=bool)
    if kind == "all":
        return np.ones(shape, dtype=bool)
    return rng.random(shape) < float(kind)


def tolerance(dtype: type) -> float:
    """S0.6 rtol = 4 sqrt(eps) of the accumulation dtype (float32 for 16-bit floats)."""
    acc = np.float64 if dtype == np.float64 else np.float32
    return 4 * float(np.sqrt(np.finfo(acc).eps))


def check_product(y: np.ndarray, w: np.ndarray, x: np.ndarray, dtype: type,
                  exact: bool) -> None:
    """``y == unpack @ x``: bit-exact for integers (wrapping like NumPy's matmul) and for
    exactly representable sums, else within S3.6's tolerance."""
    assert y.dtype == np.dtype(dtype)
    if np.dtype(dtype).kind == "i":
        want = w @ x.astype(dtype)
        assert y.shape == want.shape and np.array_equal(y, want)
        return
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    dense = w64 @ x64
    assert y.shape == dense.shape
    if exact:
        assert np.array_equal(y.astype(np.float64), dense.astype(dtype).astype(np.float64))
        return
    scale = np.abs(w64) @ np.abs(x64)
    # 16-bit results carry one final rounding in their own precision on top.
    final = float(ml_dtypes.finfo(dtype).eps) if np.dtype(dtype).itemsize < 4 else 0.0
    assert np.all(np.abs(y.astype(np.float64) - dense)
                  <= tolerance(dtype) * (scale + 1) + final * np.abs(dense))


@given(
    m=st.integers(2, 16), data=st.data(), out=st.integers(0, 7), groups=st.integers(1, 5),
    cols=st.one_of(st.none(), st.integers(0, 20)),
    kind=st.sampled_from(("none", "all", "0.05", "0.2", "0.5", "0.9")),
    as_bool=st.booleans(), integers=st.booleans(), dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_S3_6_both_kernels_and_api_equal_unpack_matmul_on_spikes(
    m: int, data: st.DataObject, out: int, groups: int, cols: int | None, kind: str,
    as_bool: bool, integers: bool, dtype: type, seed: int,
) -> None:
    """S3.6: for 0/1 inputs (bool or the values' dtype; none, all or some active; 1-D or
    2-D) the event kernel, the float kernel and `api.spmm` equal ``unpack(p) @ x``:
    exactly for integers and for integer-valued float weights (every partial sum exact),
    within S0.6 scaled by ``|W| @ |x|`` otherwise."""
    n = data.draw(st.integers(1, m), label="n")
    rng = np.random.default_rng(seed)
    w, p = random_packed(rng, out, groups, n, m, dtype, integers)
    shape = (groups * m,) if cols is None else (groups * m, cols)
    xb = spikes(rng, shape, kind)
    x = xb if as_bool else xb.astype(dtype)
    exact = integers and np.dtype(dtype).itemsize >= 4
    for y in (kernels.spmm_events(p.values, p.indices, n, m, x),
              kernels.spmm_float(p.values, p.indices, n, m, x),
              api.spmm(p, x)):
        check_product(y, w, xb, dtype, exact)


@given(
    m=st.integers(2, 16), data=st.data(), out=st.integers(0, 7), groups=st.integers(1, 5),
    cols=st.one_of(st.none(), st.integers(1, 20)),
    dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**32 - 1),
)
def test_S3_6_float_kernel_equals_unpack_matmul(
    m: int, data: st.DataObject, out: int, groups: int, cols: int | None, dtype: type,
    seed: int,
) -> None:
    """S3.6: real-valued ``x`` (the float kernel, through the api) within S0.6 of
    ``unpack(p) @ x``, for every ``n:m`` (powers of two or not) and several columns."""
    n = data.draw(st.integers(1, m), label="n")
    rng = np.random.default_rng(seed)
    w, p = random_packed(rng, out, groups, n, m, dtype, False)
    shape = (groups * m,) if cols is None else (groups * m, cols)
    x = rng.standard_normal(shape).astype(dtype)
    assert kernels.choose_kernel(x) == "float"
    check_product(api.spmm(p, x), w, x, dtype, False)


def test_S3_6_event_kernel_sums_in_increasing_input_order() -> None:
    """S3.6: the event kernel adds the active weights of a row left to right in
    increasing input order, one float32 rounding per addition: 2**24 + 1 + 1 stays
    2**24 (each + 1 is a tie rounded to even) while the dense product may differ."""
    w = np.array([[2.0**24, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    p = api.pack(w, 2, 4)
    y = kernels.spmm_events(p.values, p.indices, 2, 4, np.ones(8, dtype=bool))
    assert y.tolist() == [2.0**24]
    w2 = np.array([[1.0, 1.0, 0.0, 0.0, 2.0**24, 0.0, 0.0, 0.0]], dtype=np.float32)
    p2 = api.pack(w2, 2, 4)
    y2 = kernels.spmm_events(p2.values, p2.indices, 2, 4, np.ones(8, dtype=bool))
    assert y2.tolist() == [2.0**24 + 2]


def test_S3_6_integer_event_kernel_wraps_like_matmul() -> None:
    """S3.6: int8 values accumulate in int64 and wrap on the cast back, as NumPy's
    matmul does, in both kernels."""
    w = np.array([[100, 100, 0, 0, 100, 0, 0, 0]], dtype=np.int8)
    p = api.pack(w, 2, 4)
    x = np.ones(8, dtype=np.int8)
    want = w @ x
    for y in (api.spmm(p, x), kernels.spmm_events(p.values, p.indices, 2, 4, x)):
        assert y.dtype == np.int8 and np.array_equal(y, want)


@pytest.mark.parametrize(("shape", "ones", "kernel"), [
    ((100,), 100, "events"), ((100,), 0, "events"), ((100, 15), 1500, "events"),
    ((100, 16), 960, "events"), ((100, 16), 961, "float"), ((100, 63), 3780, "events"),
    ((100, 64), 2240, "events"), ((100, 64), 2241, "float"), ((100, 200), 7000, "events"),
    ((100, 200), 7001, "float"), ((0,), 0, "events"), ((100, 0), 0, "events"),
])
@pytest.mark.parametrize("dtype", (bool, np.float32, np.float16, ml_dtypes.bfloat16,
                                   np.int8))
def test_S3_6_dispatch_by_zero_one_values_and_density(
    shape: tuple[int, ...], ones: int, kernel: str, dtype: type,
) -> None:
    """`choose_kernel`: events for 0/1 ``x`` whose fraction of ones is at most
    ``EVENT_MAX_DENSITY`` at its batch width (below 16: 1, 16-63: 0.6, >= 64: 0.35), float
    above."""
    x = np.zeros(int(np.prod(shape)), dtype=dtype)
    x[np.random.default_rng(0).permutation(x.size)[:ones]] = 1
    x = x.reshape(shape)
    assert kernels.choose_kernel(x) == kernel


def test_S3_6_dispatch_refuses_values_other_than_zero_and_one() -> None:
    """`binary_density` is None for any entry other than 0/1 (2, 0.5, -1, NaN); ``-0.0``
    counts as 0; such ``x`` runs the float kernel."""
    base = np.zeros(64, dtype=np.float32)
    base[:3] = 1
    for bad in (2.0, 0.5, -1.0, np.nan):
        x = base.copy()
        x[10] = bad
        assert kernels.binary_density(x) is None and kernels.choose_kernel(x) == "float"
    x = base.copy()
    x[10] = -0.0
    assert kernels.binary_density(x) == 3 / 64 and kernels.choose_kernel(x) == "events"


def test_S3_6_api_runs_the_chosen_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """`api.spmm` on NumPy arrays runs exactly the kernel `choose_kernel` names."""
    calls: list[str] = []
    events, floats = kernels.spmm_events, kernels.spmm_float
    monkeypatch.setattr(kernels, "spmm_events",
                        lambda *a: calls.append("events") or events(*a))
    monkeypatch.setattr(kernels, "spmm_float", lambda *a: calls.append("float") or floats(*a))
    rng = np.random.default_rng(3)
    _, p = random_packed(rng, 5, 4, 2, 4, np.float32, False)
    cases = [rng.random(16) < 0.2, (rng.random(16) < 0.2).astype(np.float32),
             np.ones(16, dtype=np.float32), rng.standard_normal((16, 2)).astype(np.float32),
             (rng.random((16, 20)) < 0.1).astype(np.float32),
             np.ones((16, 64), dtype=np.float32)]
    for x in cases:
        api.spmm(p, x)
    assert calls == [kernels.choose_kernel(x) for x in cases]
    assert calls == ["events", "events", "events", "float", "events", "float"]


def test_S3_6_column_view_is_cached_per_pair_of_arrays() -> None:
    """The event kernel's transposed weights are built once per ``(values, indices)`` pair,
    hold ``K * O`` entries of the accumulator dtype, and are dropped with the arrays."""
    rng = np.random.default_rng(4)
    w, p = random_packed(rng, 6, 3, 2, 4, np.float16, False)
    view = kernels.column_view(p.values, p.indices, 2, 4)
    assert kernels.column_view(p.values, p.indices, 2, 4) is view
    assert view.wt.shape == (12, 6) and view.wt.dtype == np.float32
    assert view.nbytes == 12 * 6 * 4
    assert np.array_equal(view.wt, w.astype(np.float32).T)
    copy = kernels.column_view(p.values.copy(), p.indices, 2, 4)
    assert copy is not view and np.array_equal(copy.wt, view.wt)
    before = len(kernels._VIEWS)
    del p, view
    gc.collect()
    assert len(kernels._VIEWS) < before


@pytest.mark.parametrize("x", [np.ones(8, dtype=bool), np.ones((8, 2), dtype=np.float32),
                               np.full(8, 0.5, dtype=np.float32),
                               np.full((8, 3), 0.5, dtype=np.float32)])
def test_S3_6_index_out_of_range_raises_in_every_kernel(x: np.ndarray) -> None:
    """A stored index ``>= m`` raises ValueError naming it, whichever kernel runs."""
    values = np.ones((2, 4), dtype=np.float32)
    indices = np.array([[0, 1, 0, 1], [0, 1, 2, 4]], dtype=np.uint8)
    for fn in (kernels.spmm, kernels.spmm_events, kernels.spmm_float):
        with pytest.raises(ValueError, match=r"indices\[1, 3\] \(block 1 of row 1\) is 4"):
            fn(values, indices, 2, 4, x)
    odd = np.array([[0, 1, 0, 1], [0, 1, 0, 3]], dtype=np.uint8)  # m = 3, not a power of 2
    with pytest.raises(ValueError, match=r"indices\[1, 3\] .* is 3; expected a value in"):
        kernels.spmm_float(values, odd, 2, 3, np.full(6, 0.5, dtype=np.float32))


def test_S3_6_api_accepts_bool_spikes_on_numpy_only() -> None:
    """`api.spmm` takes bool ``x`` on the NumPy backend; other dtype mismatches, and bool
    with torch values, are a TypeError."""
    w = np.array([[0.0, 5.0, 0.0, 7.0]], dtype=np.float32)
    p = api.pack(w, 2, 4)
    y = api.spmm(p, np.array([True, True, False, True]))
    assert y.dtype == np.float32 and y.tolist() == [12.0]
    with pytest.raises(TypeError, match="dtypes must match"):
        api.spmm(p, np.ones(4, dtype=np.float64))
    pt = api.pack(torch.tensor(w), 2, 4)
    with pytest.raises(TypeError, match="dtypes must match"):
        api.spmm(pt, torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_S3_6_non_finite_weights_take_the_float_kernel(bad: float) -> None:
    """A NaN or inf stored value meets the zeros of a 0/1 ``x`` as ``0 * inf = NaN``, as
    in the dense product: `api.spmm` then runs the float kernel (the event kernel, which
    forms no products, would skip it)."""
    w = np.array([[bad, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0],
                  [1.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0]], dtype=np.float32)
    p = api.pack(w, 2, 4)
    x = np.array([0, 1, 0, 0, 0, 1, 0, 0], dtype=np.float32)
    assert kernels.choose_kernel(x) == "events"
    assert not kernels.column_view(p.values, p.indices, 2, 4).finite
    with np.errstate(invalid="ignore"):
        want = w @ x
    assert np.isnan(want[0]) and want[1] == 5.0
    y = api.spmm(p, x)
    assert np.isnan(y[0]) and y[1] == 5.0
    assert kernels.spmm_events(p.values, p.indices, 2, 4, x).tolist() == [5.0, 5.0]


def test_cached_event_view_freezes_the_packed_arrays_instead_of_going_stale() -> None:
    """An in-place change after the view is cached raises; it never gives a stale result."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(8, 16)) * np.asarray(api.final_mask(rng.normal(size=(8, 16)), 2, 4))
    p = api.pack(w, 2, 4)
    x = (rng.random(16) < 0.5).astype(np.float64)
    y = api.spmm(p, x)
    np.testing.assert_allclose(y, w @ x, rtol=1e-12, atol=1e-12)
    if p.values.flags.writeable:   # not cached (e.g. a view of a writeable base)
        return
    with pytest.raises(ValueError, match="read-only"):
        p.values[0, 0] = 123.0


@given(out=st.integers(1, 9), groups=st.integers(1, 7), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]),
       special=st.sampled_from(["none", "nan", "inf"]))
def test_S3_8_interleaved_2of4_kernel_matches_the_dense_product(
        out: int, groups: int, seed: int, dtype: type, special: str) -> None:
    """The 2-bit 2:4 batch-1 kernel (odd and even block counts, padded blocks, every float
    dtype, non-finite weights) equals ``unpack(p) @ x`` within S3.6's tolerance."""
    rng = np.random.default_rng(seed)
    w, p = random_packed(rng, out, groups, 2, 4, dtype, False)
    x = rng.standard_normal(groups * 4).astype(dtype)
    if special != "none":  # a non-finite stored weight meets its x entry as in W @ x
        values = p.values.copy()
        values[rng.integers(out), rng.integers(groups * 2)] = (
            np.nan if special == "nan" else np.inf)
        p = api.Packed(values, p.indices, 2, 4, p.shape, p.axis)
        w = api.unpack(p)
    got = kernels.spmm_float(p.values, p.indices, 2, 4, x)
    want = w.astype(np.float64) @ x.astype(np.float64)
    assert got.dtype == dtype and got.shape == (out,)
    np.testing.assert_allclose(got.astype(np.float64), want,
                               rtol=1e-2 if dtype == np.float16 else 1e-5, atol=1e-2)


def test_S3_8_interleaved_view_layout_cache_and_refusals() -> None:
    """The view holds the transposed values and four 2-bit indices per byte (S3.8), is
    cached per pair of arrays, and refuses blocks whose indices do not increase."""
    from spikenm.reference import spmm_2of4

    values = np.arange(1, 13, dtype=np.float32).reshape(2, 6)
    indices = np.array([[0, 1, 2, 3, 1, 2], [0, 3, 0, 2, 1, 3]], dtype=np.uint8)
    view = spmm_2of4.interleaved_view(values, indices, np.float32)
    assert np.array_equal(view.vt, values.T)
    # row 0: blocks (0,1) (2,3) in byte 0, block (1,2) alone in byte 1
    assert view.codes.tolist() == [[0 | 1 << 2 | 2 << 4 | 3 << 6, 0 | 3 << 2 | 0 << 4 | 2 << 6],
                                   [1 | 2 << 2, 1 | 3 << 2]]
    assert view.nbytes == 12 * 4 + 4
    assert spmm_2of4.interleaved_view(values, indices, np.float32) is view
    assert not values.flags.writeable
    for bad in ([1, 1], [2, 1]):
        idx = np.array([[0, 1, *bad]], dtype=np.uint8)
        with pytest.raises(ValueError, match=rf"block 1 of row 0 are \{bad}.*strictly"):
            kernels.spmm_float(np.ones((1, 4), np.float32), idx, 2, 4,
                               np.ones(8, np.float32))
