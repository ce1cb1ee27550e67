"""API-level checks: `spikenm.api` called with the backend's own arrays.

They apply when the API dispatches the backend's arrays to this very backend (the
built-in backends, or a third-party backend registered there); otherwise they are
reported as n/a.  Each one checks that results come back as the backend's arrays, that
the ``axis=`` handling of the API composes with the backend, and the errors of S0.3-S0.5.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from spikenm import eid_variants

from . import oracles, tolerance
from .check import Check
from .conditioning import expand, softmax_blocks_ok, successive_blocks_ok
from .eid_checks import credit_arrays, credit_magnitude, variant_blocks_ok
from .selection import numpy_dtype
from .strategies import (
    MATH_DTYPES,
    MAX_ABS,
    block_shape,
    keep_masks,
    logit_arrays,
    patterns,
    sampler_case,
    temperatures,
    any_array,
)
from .trial import Trial


def _axis(data: DataObject, ndim: int) -> int:
    """A block axis for an ``ndim``-d array, given as negative or positive."""
    ax = data.draw(st.integers(0, ndim - 1), label="axis")
    return ax - ndim if data.draw(st.booleans(), label="negative axis") else ax


def _moved(a: np.ndarray, axis: int) -> np.ndarray:
    """A block-last array laid out with its blocks along ``axis``."""
    return np.ascontiguousarray(np.moveaxis(a, -1, axis))


def _last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(a, axis, -1)


# -- S0.2-S0.5 ----------------------------------------------------------------------------------


def layout(trial: Trial, data: DataObject | None) -> None:
    """``to_block_layout``/``from_block_layout``/``layer_fits`` on the backend's arrays."""
    assert data is not None
    kernel = data.draw(st.lists(st.integers(1, 3), max_size=2), label="kernel")
    shape = (data.draw(st.integers(1, 3), label="out"), data.draw(st.integers(1, 8), label="in"), *kernel)
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    w = trial.array("w", a)
    want = a if len(shape) == 2 else np.moveaxis(a, 1, -1)
    blocks = trial.call("to_block_layout", w, api=True, out="blocks")
    got = trial.result(blocks, "api.to_block_layout", dtype="float32", shape=want.shape)
    trial.expect_exact(want, got, "to_block_layout: (out, in, *kernel) -> (out, *kernel, in) (S0.2)")
    back = trial.result(trial.call("from_block_layout", blocks, api=True, out="back"), "api.from_block_layout",
                        dtype="float32", shape=shape)
    trial.expect_exact(a, back, "from_block_layout(to_block_layout(w)) == w (S0.2)")
    m = data.draw(st.sampled_from([2, 4, 8]), label="m")
    fits = trial.call("layer_fits", w, m, api=True, out="fits")
    trial.require(fits is (shape[1] % m == 0), f"layer_fits(w, {m}) is {fits!r} for in={shape[1]}")


def block_errors(trial: Trial, data: DataObject | None) -> None:
    """A block axis that is not a positive multiple of ``m`` raises ValueError naming
    the length and ``m`` (S0.3)."""
    assert data is not None
    n, m = data.draw(patterns().filter(lambda p: p[1] >= 3), label="n, m")
    k = data.draw(st.integers(1, 3 * m).filter(lambda v: v % m), label="K")
    a = np.zeros((2, k), dtype=np.float32)
    x = trial.array("x", a)
    trial.raises(ValueError, "topn_mask", x, n, m, mentions=(str(k), f"m={m}"))
    trial.raises(ValueError, "pack", x, n, m, mentions=(str(k), f"m={m}"))


def dtype_errors(trial: Trial, data: DataObject | None) -> None:
    """Integer inputs and 16-bit floats are refused by the math functions with TypeError
    (the latter saying to cast to float32); mixed dtypes too (S0.4)."""
    assert data is not None
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    for dtype in ("int32", "float16", "bfloat16"):
        if dtype not in trial.subject.pack_dtypes:
            continue
        x = trial.array(f"x_{dtype}", np.zeros(shape, dtype=numpy_dtype(dtype)))
        trial.raises(TypeError, "topn_mask", x, n, m, mentions=("float32",) if "float" in dtype else ())
    logits = trial.array("logits", np.zeros(shape, dtype=np.float32))
    noise = trial.array("noise", np.zeros(shape, dtype=np.float64))
    trial.raises(TypeError, "sample_mask", logits, n, m, noise=noise)


def value_errors(trial: Trial, data: DataObject | None) -> None:
    """NaN/inf raise ValueError naming the first bad index; non-arrays and arrays of two
    frameworks raise TypeError (S0.5)."""
    assert data is not None
    n, m = data.draw(patterns(), label="n, m")
    shape = block_shape(data, m)
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    flat = data.draw(st.integers(0, int(np.prod(shape)) - 1), label="bad entry")
    bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad value")
    a = np.zeros(shape, dtype=dtype)
    a.reshape(-1)[flat] = bad
    where = tuple(int(i) for i in np.unravel_index(flat, shape))
    x = trial.array("x", a)
    trial.raises(ValueError, "topn_mask", x, n, m, mentions=(str(where),))
    good = trial.array("noise", np.zeros(shape, dtype=dtype))
    trial.raises(ValueError, "sample_mask", good, n, m, noise=x, mentions=("noise", str(where)))
    trial.raises(TypeError, "topn_mask", a.tolist(), n, m)
    if trial.subject.framework != "numpy":
        trial.raises(TypeError, "sample_mask", good, n, m, noise=np.zeros(shape, dtype=dtype))


# -- S1 -------------------------------------------------------------------------------------------


def sampler(trial: Trial, data: DataObject | None) -> None:
    """``api.sample_mask``/``topn_mask``/``final_mask``/``relaxed_topn`` with ``axis=``."""
    assert data is not None
    case = sampler_case(data, max_m=8)
    ax = _axis(data, case.logits.ndim)
    logits = trial.array("logits", _moved(case.logits, ax))
    noise = trial.array("noise", _moved(case.noise, ax))
    r = case.keys()
    common = dict(noise=noise, temperature=case.temperature, scale=case.scale, axis=ax)
    moved_shape = _moved(case.logits, ax).shape
    h = trial.result(trial.call("sample_mask", logits, case.n, case.m, hard=True, api=True, out="h", **common),
                     "api.sample_mask(hard=True)", dtype=case.dtype, shape=moved_shape)
    trial.expect_exact(oracles.topn_rule(r, case.n, case.m), _last(h, ax), f"api.sample_mask(hard=True, axis={ax})")
    s = trial.result(trial.call("sample_mask", logits, case.n, case.m, hard=False, api=True, out="s", **common),
                     "api.sample_mask(hard=False)", dtype=case.dtype, shape=moved_shape)
    ok = trial.judged(successive_blocks_ok(r, case.n, case.m, case.temperature, case.dtype))
    want = trial.ref.sample_mask(case.logits, case.noise, case.n, case.m, case.temperature, case.scale, False)
    trial.expect_close(want, _last(s, ax), case.dtype, f"api.sample_mask(hard=False, axis={ax})",
                       where=expand(ok, case.m))
    for fn in ("topn_mask", "final_mask"):
        got = trial.result(trial.call(fn, logits, case.n, case.m, axis=ax, api=True, out=fn), f"api.{fn}",
                           dtype=case.dtype, shape=moved_shape)
        trial.expect_exact(oracles.topn_rule(case.logits, case.n, case.m), _last(got, ax), f"api.{fn}(axis={ax})")
    soft = trial.result(trial.call("relaxed_topn", logits, case.n, case.m, temperature=case.temperature, axis=ax,
                                   api=True, out="soft"), "api.relaxed_topn", dtype=case.dtype, shape=moved_shape)
    ok = trial.judged(successive_blocks_ok(case.logits, case.n, case.m, case.temperature, case.dtype))
    trial.expect_close(trial.ref.relaxed_topn(case.logits, case.n, case.m, case.temperature), _last(soft, ax),
                       case.dtype, f"api.relaxed_topn(axis={ax})", where=expand(ok, case.m))


def noise_and_probs(trial: Trial, data: DataObject | None) -> None:
    """``api.gumbel_like`` is the backend's generator; ``api.block_probs`` with ``axis=``."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(max_m=8), label="n, m")
    shape = block_shape(data, m)
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    x = trial.array("x", np.zeros(shape, dtype=dtype))
    g = trial.result(trial.call("gumbel_like", x, seed, api=True, out="g"), "api.gumbel_like", dtype=dtype, shape=shape)
    direct = trial.result(trial.call("gumbel_like", x, seed, out="g_backend"), "gumbel_like", dtype=dtype, shape=shape)
    trial.expect(tolerance.same_bits(direct, g), "api.gumbel_like must give the backend's numbers for the seed (S1.6)")
    logits_np = data.draw(logit_arrays(dtype, shape, MAX_ABS[dtype]), label="logits")
    ax = _axis(data, len(shape))
    logits = trial.array("logits", _moved(logits_np, ax))
    p = trial.result(trial.call("block_probs", logits, m, scale=1.0, axis=ax, api=True, out="p"), "api.block_probs",
                     dtype=dtype, shape=_moved(logits_np, ax).shape)
    ok = trial.judged(softmax_blocks_ok(logits_np.astype(np.float64), m, dtype))
    trial.expect_close(trial.ref.block_probs(logits_np, m, 1.0), _last(p, ax), dtype,
                       f"api.block_probs(axis={ax})", where=expand(ok, m))


# -- S2 -------------------------------------------------------------------------------------------


def eid(trial: Trial, data: DataObject | None) -> None:
    """``api.eligibility_credit``, ``api.eid_targets`` and ``api.eid_loss`` (0-d) with ``axis=``."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    _, m = data.draw(patterns(max_m=8), label="n, m")
    o, k = data.draw(st.integers(1, 3), label="O"), m * data.draw(st.integers(1, 2), label="blocks")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x_np = (rng.random((2, 2, k)) < 0.5).astype(dtype)
    d_np = rng.normal(size=(2, 2, o)).astype(dtype)
    w_np = rng.normal(size=(o, k)).astype(dtype)
    x, d, w = trial.array("x", x_np), trial.array("d", d_np), trial.array("weight", w_np)
    c_np = trial.result(trial.call("eligibility_credit", x, d, w, decay=0.5, api=True, out="credit"),
                        "api.eligibility_credit", dtype=dtype, shape=(o, k))
    trace_bound = 1.0 / (1.0 - 0.5)
    magnitude = np.abs(w_np.astype(np.float64)) * 2 * 2 * trace_bound * float(np.abs(d_np).max())
    trial.expect_close(trial.ref.eligibility_credit(x_np, d_np, w_np, 0.5), c_np, dtype, "api.eligibility_credit",
                       scale=float(magnitude.max()) + 1e-300)
    ax = _axis(data, 2)
    credits = trial.array("credits", _moved(c_np, ax))
    tau = data.draw(temperatures(), label="temperature")
    q = trial.call("eid_targets", credits, m, temperature=tau, axis=ax, api=True, out="q")
    q_np = trial.result(q, "api.eid_targets", dtype=dtype, shape=_moved(w_np, ax).shape)
    z = c_np.astype(np.float64) / (c_np.astype(np.float64).mean() + 1e-12) / tau
    ok = trial.judged(softmax_blocks_ok(z, m, dtype, ulps=8.0))
    trial.expect_close(trial.ref.eid_targets(c_np, m, tau), _last(q_np, ax), dtype, f"api.eid_targets(axis={ax})",
                       where=expand(ok, m))
    logits = trial.array("logits", _moved(w_np, ax))
    loss = trial.result(trial.call("eid_loss", logits, q, m, scale=1.0, axis=ax, api=True, out="loss"),
                        "api.eid_loss", dtype=dtype, shape=())
    want = trial.ref.eid_loss(w_np, np.ascontiguousarray(_last(q_np, ax)), m, 1.0)
    trial.expect_close(want, loss, dtype, f"api.eid_loss(axis={ax})", scale=10.0)

def eid_variant_targets(trial: Trial, data: DataObject | None) -> None:
    """``api.eligibility_credit(signed=True)``, ``api.credit_scores`` and every
    ``api.eid_targets(variant=...)`` with ``axis=``; a ``gated`` call without logits is a
    ValueError."""
    assert data is not None
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(max_m=8), label="n, m")
    o, k = data.draw(st.integers(1, 3), label="O"), m * data.draw(st.integers(1, 2), label="blocks")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x_np = (rng.random((3, 2, k)) < 0.5).astype(dtype)
    d_np = rng.normal(size=(3, 2, o)).astype(dtype)
    w_np = rng.normal(size=(o, k)).astype(dtype)
    x, d, w = trial.array("x", x_np), trial.array("d", d_np), trial.array("weight", w_np)
    signed = trial.result(trial.call("eligibility_credit", x, d, w, decay=0.5, signed=True, api=True, out="credit"),
                          "api.eligibility_credit(signed=True)", dtype=dtype, shape=(o, k))
    trial.expect_close(trial.ref.eligibility_credit(x_np, d_np, w_np, 0.5, signed=True), signed, dtype,
                       "api.eligibility_credit(signed=True)", scale=credit_magnitude(x_np, d_np, w_np, 0.5))
    c_np = credit_arrays(data, dtype, (o, k), m)
    ax = _axis(data, 2)
    credits = trial.array("credits", _moved(c_np, ax))
    gated = data.draw(st.booleans(), label="gated")
    z = trial.call("credit_scores", credits, m, gated=gated, axis=ax, api=True, out="z")
    z_np = trial.result(z, "api.credit_scores", dtype=dtype, shape=_moved(c_np, ax).shape)
    trial.expect_close(trial.ref.credit_scores(c_np, m, gated), _last(z_np, ax), dtype,
                       f"api.credit_scores(gated={gated}, axis={ax})")
    variant = data.draw(st.sampled_from(eid_variants.VARIANTS), label="variant")
    tau = data.draw(temperatures(), label="temperature")
    kwargs: dict[str, Any] = {"temperature": tau, "variant": variant, "axis": ax}
    logits_np, scale = None, 1.0
    if variant == eid_variants.INCLUSION:
        kwargs["n"] = n
    if variant == "gated":
        logits_np = data.draw(logit_arrays(dtype, (o, k), 100.0), label="logits")
        scale = data.draw(st.sampled_from([0.5, 1.0, 3.0]), label="scale")
        kwargs["logits"], kwargs["scale"] = trial.array("logits", _moved(logits_np, ax)), scale
    q = trial.call("eid_targets", credits, m, api=True, out="q", **kwargs)
    q_np = _last(trial.result(q, f"api.eid_targets(variant={variant!r})", dtype=dtype,
                              shape=_moved(c_np, ax).shape), ax)
    ok = trial.judged(variant_blocks_ok(variant, c_np, n, m, tau, dtype, logits_np, scale))
    want = eid_variants.targets(trial.ref, variant, c_np, n, m, tau, logits_np, scale)
    trial.expect_close(want, q_np, dtype, f"api.eid_targets(variant={variant!r}, axis={ax})", where=expand(ok, m))
    trial.raises(ValueError, "eid_targets", credits, m, variant="gated", axis=ax, mentions=["logits"])

# -- S3 -------------------------------------------------------------------------------------------


def _packed_fields(trial: Trial, packed: Any, what: str, *, dtype: str, shape: tuple[int, ...],
                   axis: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    from spikenm.packed import Packed

    if not isinstance(packed, Packed):
        trial.fail(f"{what} returned {type(packed).__name__}; expected a spikenm Packed")
    trial.require((packed.n, packed.m, tuple(packed.shape), packed.axis) == (n, m, shape, axis),
                  f"{what} gave n={packed.n}, m={packed.m}, shape={packed.shape}, axis={packed.axis}; "
                  f"expected n={n}, m={m}, shape={shape}, axis={axis}")
    lead = tuple(s for i, s in enumerate(shape) if i != axis)
    width = shape[axis] // m * n
    values = trial.result(packed.values, f"{what}.values", dtype=dtype, shape=(*lead, width))
    indices = trial.result(packed.indices, f"{what}.indices", dtype="uint8", shape=(*lead, width))
    return values, indices


def packing(trial: Trial, data: DataObject | None) -> None:
    """``api.pack`` (with and without ``mask=``, any ``axis=``), ``api.unpack``, ``api.spmm``."""
    assert data is not None
    dtype = data.draw(st.sampled_from(trial.subject.pack_dtypes), label="dtype")
    n, m = data.draw(patterns(max_m=8), label="n, m")
    last_shape = block_shape(data, m)
    values_np = data.draw(any_array(dtype, last_shape), label="values")
    kept = keep_masks(data, last_shape, n, m)
    zero = np.zeros((), dtype=values_np.dtype)
    ax = _axis(data, len(last_shape))
    shape = _moved(values_np, ax).shape
    use_mask = data.draw(st.booleans(), label="with mask=")
    if use_mask:
        w = trial.array("w", _moved(values_np, ax))
        mask = trial.array("mask", _moved(kept.astype(np.uint8), ax))
        packed = trial.call("pack", w, n, m, mask=mask, axis=ax, api=True, out="packed")
        w_last, keep_last = values_np, kept
    else:
        w_last = np.where(kept, values_np, zero).astype(values_np.dtype)
        w = trial.array("w", _moved(w_last, ax))
        packed = trial.call("pack", w, n, m, axis=ax, api=True, out="packed")
        keep_last = w_last != 0
    norm_ax = ax % len(shape)
    values, indices = _packed_fields(trial, packed, "api.pack", dtype=dtype, shape=shape, axis=norm_ax, n=n, m=m)
    want_values, want_indices = oracles.pack_rule(w_last, keep_last, n, m)
    trial.expect_exact(want_indices, indices, f"api.pack(axis={ax}) indices")
    dense = trial.result(trial.call("unpack", packed, api=True, out="dense"), "api.unpack", dtype=dtype, shape=shape)
    trial.expect(tolerance.same_bits(w_last, _last(dense, ax), where=keep_last), f"api.unpack(api.pack(w, axis={ax}))",
                 expected=w_last, got=_last(dense, ax))
    if dtype in ("float32", "float64") and len(shape) == 2 and norm_ax == 1 and bool(np.all(np.isfinite(values))):
        x_np = np.ones(shape[1], dtype=dtype)
        x = trial.array("x", x_np)
        y = trial.result(trial.call("spmm", packed, x, api=True, out="y"), "api.spmm", dtype=dtype, shape=(shape[0],))
        trial.expect_close(trial.ref.spmm(values, indices, n, m, x_np), y, dtype, "api.spmm",
                           scale=float(np.abs(values.astype(np.float64)).sum()) + 1.0)


def packing_errors(trial: Trial, data: DataObject | None) -> None:
    """Too many kept entries and non-0/1 masks raise ValueError naming them; ``is_nm``
    and ``check_nm`` agree (S3.3)."""
    assert data is not None
    n, m = data.draw(patterns(max_m=8).filter(lambda p: p[0] < p[1]), label="n, m")
    rows = data.draw(st.integers(1, 3), label="rows")
    groups = data.draw(st.integers(1, 3), label="blocks per row")
    a = np.zeros((rows, groups * m), dtype=np.float32)
    row, g = data.draw(st.integers(0, rows - 1), label="bad row"), data.draw(st.integers(0, groups - 1), label="bad block")
    a[row, g * m: g * m + n + 1] = 1.0
    x = trial.array("w", a)
    trial.raises(ValueError, "pack", x, n, m, mentions=(f"block {g}",))
    trial.raises(ValueError, "check_nm", x, n, m, mentions=(f"block {g}",))
    verdict = trial.call("is_nm", x, n, m, api=True, out="verdict")
    trial.require(verdict is False, f"api.is_nm returned {verdict!r} for an array that is not {n}:{m}")
    fine = trial.array("fine", np.zeros_like(a))
    trial.require(trial.call("is_nm", fine, n, m, api=True, out="verdict") is True, "api.is_nm(zeros) is not True")
    mask = a.copy()
    mask[row, g * m] = 2.0
    bad_mask = trial.array("mask", mask)
    trial.raises(ValueError, "pack", fine, n, m, mask=bad_mask, mentions=("2",))


def cutlass(trial: Trial, data: DataObject | None) -> None:
    """``api.to_cutlass``/``api.from_cutlass`` on the backend's 2:4 arrays equal the NumPy
    export; the all-``[0, 0, 1, 1]`` tile packs to int16 -4370 (S3.4)."""
    assert data is not None
    from spikenm import api

    options = [d for d in ("float16", "bfloat16", "int8") if d in trial.subject.pack_dtypes]
    if not options:
        trial.fail("the backend holds none of float16, bfloat16, int8: S3.4 cannot be exported")
    dtype = data.draw(st.sampled_from(options), label="dtype")
    rows, k = (32, 32 * data.draw(st.integers(1, 2), label="k / 32")) if dtype != "int8" else (16, 64)
    golden = data.draw(st.booleans(), label="the [0, 0, 1, 1] tile")
    if golden:
        w_np = np.tile(np.array([0, 0, 1, 1], dtype=np.uint8), (rows, k // 4)).astype(numpy_dtype(dtype))
    else:
        values = data.draw(any_array(dtype, (rows, k)).filter(
            lambda v: bool(np.all(np.isfinite(v.astype(np.float64))))), label="values")
        kept = keep_masks(data, (rows, k), 2, 4)
        w_np = np.where(kept, values, np.zeros((), dtype=values.dtype)).astype(values.dtype)
    w = trial.array("w", w_np)
    packed = trial.call("pack", w, 2, 4, api=True, out="packed")
    out = trial.call("to_cutlass", packed, api=True, out="values, meta")
    meta_dtype = "int32" if dtype == "int8" else "int16"
    values = trial.result(out[0], "to_cutlass values", dtype=dtype, shape=(rows, k // 2))
    meta = trial.result(out[1], "to_cutlass meta", dtype=meta_dtype, shape=(rows, k // (16 if dtype != "int8" else 32)))
    want_values, want_meta = api.to_cutlass(api.pack(w_np, 2, 4))
    trial.expect(tolerance.same_bits(np.asarray(want_values), values), "to_cutlass values against the NumPy export")
    trial.expect_exact(np.asarray(want_meta), meta, "to_cutlass meta against the NumPy export")
    if golden and dtype != "int8":
        trial.expect_exact(np.full(meta.shape, -4370, dtype=np.int16), meta, "the all-[0, 0, 1, 1] tile (0xEEEE)")
    back = trial.call("from_cutlass", out[0], out[1], api=True, out="back")
    got_values, got_indices = _packed_fields(trial, back, "api.from_cutlass", dtype=dtype, shape=(rows, k), axis=1, n=2, m=4)
    ref_values, ref_indices = _packed_fields(trial, packed, "api.pack", dtype=dtype, shape=(rows, k), axis=1, n=2, m=4)
    trial.expect_exact(ref_indices, got_indices, "from_cutlass(to_cutlass(p)).indices == p.indices")
    trial.expect(tolerance.same_bits(ref_values, got_values), "from_cutlass(to_cutlass(p)).values == p.values")


def container(trial: Trial, data: DataObject | None) -> None:
    """``save_packed`` of a Packed holding backend arrays; ``load_packed`` gives NumPy
    arrays with the same bits (S3.5).  bool values are not drawn: S3.5 lists the stored
    dtypes by name and the container refuses bool."""
    assert data is not None
    dtype = data.draw(st.sampled_from([d for d in trial.subject.pack_dtypes if d != "bool"]), label="dtype")
    n, m = data.draw(patterns(max_m=8), label="n, m")
    shape = block_shape(data, m)
    values_np = data.draw(any_array(dtype, shape), label="values")
    kept = keep_masks(data, shape, n, m)
    w_np = np.where(kept, values_np, np.zeros((), dtype=values_np.dtype)).astype(values_np.dtype)
    w = trial.array("w", w_np)
    packed = trial.call("pack", w, n, m, api=True, out="packed")
    values, indices = _packed_fields(trial, packed, "api.pack", dtype=dtype, shape=shape, axis=len(shape) - 1, n=n, m=m)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "packed.npz")
        trial.note("import os, tempfile; path = os.path.join(tempfile.mkdtemp(), 'packed.npz')")
        trial.call("save_packed", path, packed, api=True, out="_")
        loaded = trial.call("load_packed", path, api=True, out="loaded")
    from spikenm.packed import Packed

    if not isinstance(loaded, Packed) or not isinstance(loaded.values, np.ndarray):
        trial.fail(f"load_packed returned {loaded!r}; expected a Packed of NumPy arrays (S3.5)")
    trial.require((loaded.n, loaded.m, tuple(loaded.shape), loaded.axis) == (n, m, shape, len(shape) - 1),
                  f"load_packed gave {loaded!r}")
    trial.expect(tolerance.same_bits(values, np.asarray(loaded.values)), "load_packed(save_packed(p)).values")
    trial.expect_exact(indices, np.asarray(loaded.indices), "load_packed(save_packed(p)).indices")


def _api(check_id: str, covers: tuple[str, ...], summary: str, body: Any, uses: tuple[str, ...]) -> Check:
    return Check(check_id, covers, summary, body, uses=uses, needs="dispatch", budget=0.25)


CHECKS = (
    _api("S0.2:api", ("S0.2",), "api.to_block_layout/from_block_layout/layer_fits", layout, ("moveaxis",)),
    _api("S0.3:api", ("S0.3",), "api: block axis not a multiple of m -> ValueError", block_errors, ("dtype_name",)),
    _api("S0.4:api", ("S0.4",), "api: integer/16-bit/mixed dtypes -> TypeError", dtype_errors, ("dtype_name",)),
    _api("S0.5:api", ("S0.5",), "api: NaN/inf index, non-array, mixed frameworks", value_errors, ("all_finite",)),
    _api("S1.4:api", ("S1.1", "S1.2", "S1.3", "S1.4", "S1.8"), "api sampler functions with axis=",
         sampler, ("sample_mask", "topn_mask", "relaxed_topn")),
    _api("S1.6:api", ("S1.6", "S1.7"), "api.gumbel_like, api.block_probs with axis=", noise_and_probs,
         ("gumbel_like", "block_probs")),
    _api("S2.6:api", ("S2.3", "S2.5", "S2.6"), "api EID functions with axis=", eid,
         ("eligibility_credit", "eid_targets", "eid_loss")),
    _api("S2.11:api", ("S2.9", "S2.10", "S2.11"), "api signed credit, credit_scores, eid_targets(variant=)",
         eid_variant_targets, ("eligibility_credit", "credit_scores", "eid_targets", "block_probs", "relaxed_topn")),
    _api("S3.1:api", ("S3.1", "S3.6"), "api.pack/unpack/spmm with axis= and mask=", packing,
         ("pack", "unpack", "spmm", "block_nnz")),
    _api("S3.3:api", ("S3.3",), "api: too many kept, bad mask -> ValueError; is_nm/check_nm",
         packing_errors, ("pack", "block_nnz")),
    _api("S3.4:api", ("S3.4",), "api.to_cutlass/from_cutlass on backend arrays", cutlass, ("pack",)),
    _api("S3.5:api", ("S3.5",), "api.save_packed/load_packed of backend arrays", container, ("pack",)),
)
