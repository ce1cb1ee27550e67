"""Checks of the packed N:M format, SPEC S0.1 (large m), S3.1-S3.3 and S3.6 (protocol level).

Packed values are compared bit for bit at kept entries (S3.1: NaN payloads and ``-0.0``
come back unchanged) and by value at padding entries (value 0); indices and counts
exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import DataObject

from . import oracles, tolerance
from .check import Check
from .selection import numpy_dtype
from .strategies import PackCase, any_array, block_shape, keep_masks, pack_case, patterns
from .trial import Trial


def _packed_shape(shape: tuple[int, ...], n: int, m: int) -> tuple[int, ...]:
    return (*shape[:-1], shape[-1] // m * n)


def _kept_in_packed(kept: np.ndarray, indices: np.ndarray, n: int, m: int) -> np.ndarray:
    """For each packed slot: does it hold a kept entry (not padding)?"""
    kb = kept.reshape(-1, m)
    ib = indices.reshape(-1, n).astype(np.int64)
    return np.take_along_axis(kb, ib, axis=1).reshape(indices.shape)


def pack_and_verify(trial: Trial, case: PackCase) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """``be.pack`` then ``be.unpack`` of ``case``, judged against S3.1/S3.2 and the reference.

    Returns the NumPy values and indices and the backend's values and indices.
    """
    n, m = case.n, case.m
    w = trial.array("w", case.w)
    keep = w if case.keep_is_w else trial.array("keep", case.keep)
    out = trial.call("pack", w, keep, n, m, out="values, indices")
    if not (isinstance(out, tuple) and len(out) == 2):
        trial.fail(f"pack returned {type(out).__name__}; expected a tuple (values, indices)")
    shape = _packed_shape(case.w.shape, n, m)
    values = trial.result(out[0], "pack values", dtype=case.dtype, shape=shape)
    indices = trial.result(out[1], "pack indices", dtype="uint8", shape=shape)
    kept = case.kept()
    want_values, want_indices = oracles.pack_rule(case.w, kept, n, m)
    trial.expect_exact(want_indices, indices,
                       "pack indices against S3.1/S3.2 (kept entries ascending, padding at the "
                       "smallest unused indices, merged in order)")
    slots = _kept_in_packed(kept, want_indices, n, m)
    trial.expect(tolerance.same_bits(want_values, values, where=slots),
                 "pack values at kept entries must be the entries of w bit for bit (S3.1)",
                 expected=want_values, got=values)
    if not bool(np.all(values[~slots] == 0)):
        trial.fail("pack must pad with value 0 (S3.2)", expected=want_values, got=values)
    ref_values, ref_indices = trial.ref.pack(case.w, case.keep, n, m)
    trial.expect_exact(ref_indices, indices, "pack indices against the reference")
    trial.expect(tolerance.same_bits(ref_values, values, where=slots),
                 "pack values against the reference", expected=ref_values, got=values)
    dense = trial.result(trial.call("unpack", out[0], out[1], n, m, out="dense"), "unpack",
                         dtype=case.dtype, shape=case.w.shape)
    trial.expect(tolerance.same_bits(case.w, dense, where=kept),
                 "unpack(pack(w)) must give back the kept entries bit for bit", expected=case.w, got=dense)
    if not bool(np.all(dense[~kept] == 0)):
        trial.fail("unpack must fill every entry that is not stored with 0 (S3.1)", got=dense)
    return values, indices, out[0], out[1]


# -- S0.1 ---------------------------------------------------------------------------------------

LARGE_M = (17, 31, 32, 64, 100, 128, 255, 256)


def large_patterns(trial: Trial, data: DataObject | None) -> None:
    """Any ``m``: top-n and packing for ``m`` up to 256 (indices up to 255 in uint8)."""
    assert data is not None
    m = data.draw(st.sampled_from(LARGE_M), label="m")
    n = data.draw(st.one_of(st.sampled_from([1, m // 2, m - 1, m]), st.integers(1, m)), label="n")
    rows = data.draw(st.integers(1, 2), label="rows")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    dtype = data.draw(st.sampled_from(("float32", "float64")), label="dtype")
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(rows, m)).round(1).astype(dtype)  # rounding makes ties
    x = trial.array("scores", scores)
    h = trial.result(trial.call("topn_mask", x, n, m), "topn_mask", dtype=dtype, shape=scores.shape)
    trial.expect_exact(oracles.topn_rule(scores, n, m), h, f"topn_mask with m={m}")
    mask = np.zeros((rows, m), dtype=bool)
    for r in range(rows):
        mask[r, rng.choice(m, size=rng.integers(0, n + 1), replace=False)] = True
    mask[0, m - 1] = mask[0].sum() < n or mask[0, m - 1]
    w = np.where(mask, scores, 0).astype(dtype)
    pack_and_verify(trial, PackCase(dtype, n, m, w, mask.astype(dtype), False))


# -- S3.1 ---------------------------------------------------------------------------------------


def layout(trial: Trial, data: DataObject | None) -> None:
    """``pack``/``unpack``: layout, dtypes kept, bits kept, against S3.1 and the reference."""
    assert data is not None
    pack_and_verify(trial, pack_case(data, trial.subject.pack_dtypes))


# -- S3.2 ---------------------------------------------------------------------------------------


def padding(trial: Trial, data: DataObject | None) -> None:
    """Blocks with fewer than ``n`` kept: padded with 0 at the smallest unused indices;
    every block has ``n`` strictly increasing indices in ``[0, m)``."""
    assert data is not None
    dtype = data.draw(st.sampled_from(trial.subject.pack_dtypes), label="dtype")
    n, m = data.draw(patterns().filter(lambda p: p[0] >= 2), label="n, m")
    shape = block_shape(data, m)
    values = data.draw(any_array(dtype, shape), label="values")
    mask = keep_masks(data, shape, n - 1, m, label="keep (fewer than n)")
    w = np.where(mask, values, np.zeros((), dtype=values.dtype)).astype(values.dtype)
    _, indices, _, _ = pack_and_verify(trial, PackCase(dtype, n, m, w, w, True))
    ib = indices.reshape(-1, n).astype(np.int64)
    if not bool(np.all(np.diff(ib, axis=1) > 0)) or not bool(np.all(ib < m)):
        trial.fail(f"pack indices must be strictly increasing within a block and < m = {m}", got=indices)


def padding_golden(trial: Trial) -> None:
    """The 2:4 examples of S3.2."""
    cases = (
        ([0.0, 0.0, 0.0, 0.0], [0, 1], [0.0, 0.0]),
        ([0.0, 0.0, 5.0, 0.0], [0, 2], [0.0, 5.0]),
        ([5.0, 0.0, 0.0, 0.0], [0, 1], [5.0, 0.0]),
    )
    for dtype in ("float32", "float64"):
        for dense, want_idx, want_val in cases:
            trial.new_case()
            w = trial.array("w", np.array(dense, dtype=dtype))
            values, indices = trial.call("pack", w, w, 2, 4, out="values, indices")
            got_i = trial.result(indices, "pack indices", dtype="uint8", shape=(2,))
            got_v = trial.result(values, "pack values", dtype=dtype, shape=(2,))
            trial.expect_exact(np.array(want_idx, dtype=np.uint8), got_i, f"pack({dense}) indices (S3.2 example)")
            trial.expect_exact(np.array(want_val, dtype=dtype), got_v, f"pack({dense}) values (S3.2 example)")


# -- S3.3 ---------------------------------------------------------------------------------------


def rule(trial: Trial, data: DataObject | None) -> None:
    """``w != 0`` decides what is kept (``-0.0`` is not, NaN is); ``block_nnz`` counts it
    as int64."""
    assert data is not None
    dtype = data.draw(st.sampled_from(trial.subject.pack_dtypes), label="dtype")
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    x = data.draw(any_array(dtype, shape), label="x")
    xs = trial.array("x", x)
    counts = trial.result(trial.call("block_nnz", xs, m, out="counts"), "block_nnz", dtype="int64",
                          shape=(*shape[:-1], shape[-1] // m))
    trial.expect_exact(oracles.nnz_rule(x, m), counts, "block_nnz against #{x != 0} per block (S3.3)")
    mask = keep_masks(data, shape, n, m)
    w = np.where(mask, x, np.zeros((), dtype=x.dtype)).astype(x.dtype)
    pack_and_verify(trial, PackCase(dtype, n, m, w, w, True))


# -- S3.6 ---------------------------------------------------------------------------------------

SPMM_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64")


def _spmm_values(dtype: str, shape: tuple[int, ...], bound: float) -> st.SearchStrategy[np.ndarray]:
    if dtype == "bfloat16":
        return _spmm_values("float32", shape, bound).map(lambda a: a.astype(numpy_dtype("bfloat16")))
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return hnp.arrays(dt, shape, elements=st.integers(int(info.min), int(info.max)))
    return hnp.arrays(dt, shape, elements=st.floats(-bound, bound, width=8 * dt.itemsize))


def spmm(trial: Trial, data: DataObject | None) -> None:
    """``spmm(values, indices, x) = unpack(values, indices) @ x`` (S3.6)."""
    assert data is not None
    dtypes = [d for d in SPMM_DTYPES if d in trial.subject.pack_dtypes]
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    n, m = data.draw(patterns(), label="n, m")
    rows = data.draw(st.integers(1, 4), label="O")
    k = m * data.draw(st.integers(1, 3), label="blocks per row")
    dense = data.draw(_spmm_values(dtype, (rows, k), 8.0), label="weights")
    mask = keep_masks(data, (rows, k), n, m)
    w = np.where(mask, dense, np.zeros((), dtype=dense.dtype)).astype(dense.dtype)
    values_np, indices_np = oracles.pack_rule(w, mask, n, m)
    vector = data.draw(st.booleans(), label="x is a vector")
    x_shape = (k,) if vector else (k, data.draw(st.integers(1, 3), label="P"))
    dt = numpy_dtype(dtype)
    if dt.kind in "iu":
        low = 0 if dt.kind == "u" else -3
        x_np = data.draw(hnp.arrays(dt, x_shape, elements=st.integers(low, 3)), label="x")
    else:
        x_np = data.draw(_spmm_values(dtype, x_shape, 4.0), label="x")
    values = trial.array("values", values_np)
    indices = trial.array("indices", indices_np)
    x = trial.array("x", x_np)
    y = trial.result(trial.call("spmm", values, indices, n, m, x, out="y"), "spmm",
                     dtype=dtype, shape=(rows,) + x_shape[1:])
    want = trial.ref.spmm(values_np, indices_np, n, m, x_np)
    if dt.kind in "iu":
        trial.expect_exact(want, y, "spmm against the reference (integers: exact, wrapping)")
        return
    magnitude = np.abs(w.astype(np.float64)) @ np.abs(x_np.astype(np.float64))
    trial.expect_close(want, y, dtype, "spmm against the reference, scaled by |W| @ |x| (S3.6)",
                       scale=np.maximum(magnitude, 1e-300))


CHECKS = (
    Check("S0.1", ("S0.1",), "any m: topn_mask and pack/unpack for m up to 256",
          large_patterns, uses=("topn_mask", "pack", "unpack"), budget=0.25),
    Check("S3.1", ("S3.1",), "pack/unpack: layout, dtype and bits kept, every real dtype",
          layout, uses=("pack", "unpack")),
    Check("S3.2", ("S3.2",), "padding: 0 at the smallest unused indices, n sorted indices",
          padding, uses=("pack", "unpack"), golden=padding_golden, budget=0.6),
    Check("S3.3", ("S3.3",), "packing rule: keep w != 0; block_nnz as int64",
          rule, uses=("pack", "unpack", "block_nnz"), budget=0.6),
    Check("S3.6", ("S3.6",), "spmm: unpack(values, indices) @ x",
          spmm, uses=("spmm",), budget=0.6),
)
