"""Checks of the numerical guard rails (SPEC S0.8) and the packed-object invariants (S3.10).

``S0.8`` calls the backend at the edges of the range `spikenm.api` accepts (logit scales
up to ``F / 16``, temperatures down to ``1024 m / F``, keys near the bound) and requires
finite results that keep each clause's invariants (probabilities summing to 1, exactly
``n`` ones per hard block).  ``S0.8:api`` requires the API to refuse inputs just outside
that range with the ``ValueError`` NumPy gives, and to accept the ones just inside.
``S3.10:api`` hands the API hand-built `spikenm.packed.Packed` objects of the backend's
arrays with an index ``>= m`` in a non-last block, a repeated index, decreasing indices,
indices of the wrong dtype or shape, and requires from ``unpack``, ``spmm``,
``save_packed`` (and ``to_cutlass`` for 2:4 float16) the error NumPy gives, word for word.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from .check import Check
from .strategies import MATH_DTYPES, block_shape, patterns
from .trial import Trial

MARGIN = 16.0
FLOOR = 1024.0


def _big(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).max)


def _scaled(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, amplitude: float
            ) -> np.ndarray:
    """Normal draws rescaled so that ``max|a| = amplitude`` (computed in float64)."""
    a = rng.normal(size=shape)
    top = float(np.abs(a).max())
    return (a / (top if top > 0 else 1.0) * amplitude).astype(dtype)


def _edge_case(data: DataObject) -> tuple[str, int, int, tuple[int, ...], float, float, float]:
    """``(dtype, n, m, shape, temperature, scale, fill)``: a scale from 1 to ``F / 16``
    or a temperature from the floor ``1024 m / F`` up, and ``fill`` in (0.25, 1), the
    fraction of each value bound the drawn arrays reach."""
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(max_m=8), label="n, m")
    shape = block_shape(data, m)
    big = _big(dtype)
    decades = int(np.log10(big / MARGIN))
    regime = data.draw(st.sampled_from(["large scale", "tiny temperature", "both"]), label="regime")
    scale, temperature = 1.0, 1.0
    if regime != "tiny temperature":
        scale = 10.0 ** data.draw(st.integers(0, decades - 2), label="log10 scale")
    if regime != "large scale":
        temperature = FLOOR * m / big * data.draw(st.sampled_from([1.0, 1.5, 10.0, 1e3]),
                                                  label="temperature / floor")
    fill = data.draw(st.sampled_from([0.3, 0.6, 0.9]), label="fraction of the bound")
    return dtype, n, m, shape, temperature, scale, fill


def _host(trial: Trial, value: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """NumPy values of a result, with its shape checked; the array type and dtype are
    judged by the clauses of the functions themselves (S1.1-S2.6), not here."""
    a = trial.numpy(value, what) if isinstance(value, trial.subject.array_type) else np.asarray(value)
    trial.require(tuple(a.shape) == tuple(shape), f"{what} has shape {a.shape}; expected {shape}")
    return a


def finite_edges(trial: Trial, data: DataObject | None) -> None:
    """At the edges of the accepted range: ``block_probs``, ``sample_mask`` (hard and
    soft), ``relaxed_topn`` and ``eid_loss`` give finite results that keep S1.2, S1.3,
    S1.7 and S2.6 (S0.8)."""
    assert data is not None
    dtype, n, m, shape, temperature, scale, fill = _edge_case(data)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    big = _big(dtype)
    size = int(np.prod(shape))
    t = min(1.0, temperature)

    probs_np = _scaled(rng, shape, dtype, fill * big / MARGIN / scale)
    p = _host(trial, trial.call("block_probs", trial.array("logits", probs_np), m, scale, out="p"),
              "block_probs", shape)
    trial.require(bool(np.all(np.isfinite(p))), f"block_probs is not finite at scale={scale!r} (S0.8)")
    sums = p.astype(np.float64).reshape(-1, m).sum(axis=1)
    trial.require(bool(np.all(np.abs(sums - 1.0) <= 1e-3)), f"block_probs blocks sum to {sums} (S1.7)")

    key_bound = fill * big * t / MARGIN
    logits_np = _scaled(rng, shape, dtype, key_bound / scale)
    noise_np = _scaled(rng, shape, dtype, min(key_bound, 40.0))
    logits, noise = trial.array("logits", logits_np), trial.array("noise", noise_np)
    for hard in (False, True):
        out = _host(trial, trial.call("sample_mask", logits, noise, n, m, temperature, scale, hard,
                                      out="mask"), f"sample_mask(hard={hard})", shape)
        trial.require(bool(np.all(np.isfinite(out))),
                      f"sample_mask(hard={hard}) is not finite at temperature={temperature!r}, "
                      f"scale={scale!r} (S0.8)")
        totals = out.astype(np.float64).reshape(-1, m).sum(axis=1)
        if hard:
            trial.require(bool(np.all(totals == n)), f"hard blocks hold {totals} ones; expected {n} (S1.2)")
        else:
            trial.require(bool(np.all(np.abs(totals - n) <= 1e-2 * n)),
                          f"soft blocks sum to {totals}; expected {n} (S1.3)")
    scores_np = _scaled(rng, shape, dtype, key_bound)
    s = _host(trial, trial.call("relaxed_topn", trial.array("scores", scores_np), n, m, temperature, out="s"),
              "relaxed_topn", shape)
    trial.require(bool(np.all(np.isfinite(s))), f"relaxed_topn is not finite at temperature={temperature!r} (S0.8)")

    loss_np = _scaled(rng, shape, dtype, fill * (big / (MARGIN * size)) ** 0.5 / scale)
    q_np = rng.dirichlet(np.ones(m), size=size // m).reshape(shape).astype(dtype)
    loss = _host(trial, trial.call("eid_loss", trial.array("logits", loss_np), trial.array("targets", q_np),
                                   m, scale, out="loss"), "eid_loss", ())
    trial.require(bool(np.isfinite(loss)) and float(loss) >= -1e-3 * max(1.0, abs(float(loss))),
                  f"eid_loss is {float(loss)!r} at scale={scale!r}; expected a finite KL >= 0 (S0.8, S2.6)")


def _numpy_error(fn: Any) -> BaseException:
    try:
        fn()
    except (ValueError, TypeError) as exc:
        return exc
    raise AssertionError("the NumPy reference accepted an input S0.8/S3.10 refuses")


def _same_error(trial: Trial, exc: BaseException, want: BaseException, what: str) -> None:
    trial.require(type(exc) is type(want) and str(exc) == str(want),
                  f"{what}: the backend's {type(exc).__name__}({exc!s}) differs from NumPy's "
                  f"{type(want).__name__}({want!s}); the message must be the same on every backend")


def range_errors(trial: Trial, data: DataObject | None) -> None:
    """``spikenm.api`` refuses temperatures below ``1024 m / F`` or subnormal, scaled
    logits above ``F / 16`` and targets above ``sqrt(F / (16 N))`` with NumPy's
    ``ValueError``, and accepts the values just inside (S0.8)."""
    assert data is not None
    from spikenm import api

    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(max_m=8), label="n, m")
    shape = block_shape(data, m)
    big = _big(dtype)
    floor = FLOOR * m / big
    zeros_np = np.zeros(shape, dtype=dtype)
    ones_np = np.ones(shape, dtype=dtype)
    zeros, ones = trial.array("zeros", zeros_np), trial.array("ones", ones_np)

    tau = floor / 2
    want = _numpy_error(lambda: api.relaxed_topn(zeros_np, n, m, temperature=tau))
    _same_error(trial, trial.raises(ValueError, "relaxed_topn", zeros, n, m, temperature=tau,
                                    mentions=("S0.8",)), want, "relaxed_topn below the temperature floor")
    tiny = float(np.finfo(np.dtype(dtype)).tiny) / 4
    want = _numpy_error(lambda: api.sample_mask(zeros_np, n, m, noise=zeros_np, temperature=tiny))
    _same_error(trial, trial.raises(ValueError, "sample_mask", zeros, n, m, noise=zeros, temperature=tiny,
                                    mentions=("underflows",)), want, "a subnormal temperature")
    scale = data.draw(st.sampled_from([2.0, 10.0, 1e3]), label="scale")
    level = big / MARGIN / scale * 2
    over_np = np.full(shape, level, dtype=dtype)
    want = _numpy_error(lambda: api.block_probs(over_np, m, scale=scale))
    _same_error(trial, trial.raises(ValueError, "block_probs", trial.array("over", over_np), m, scale=scale,
                                    mentions=("S0.8",)), want, "block_probs with scale * |logits| above F / 16")
    inside_np = np.full(shape, level / 4, dtype=dtype)
    p = trial.result(trial.call("block_probs", trial.array("inside", inside_np), m, scale=scale, api=True,
                                out="p"), "api.block_probs", dtype=dtype, shape=shape)
    trial.require(bool(np.all(np.isfinite(p))), "api.block_probs just inside the bound is not finite (S0.8)")
    big_q_np = np.full(shape, np.sqrt(big / (MARGIN * int(np.prod(shape)))) * 4, dtype=dtype)
    want = _numpy_error(lambda: api.eid_loss(zeros_np, big_q_np, m))
    _same_error(trial, trial.raises(ValueError, "eid_loss", zeros, trial.array("targets", big_q_np), m,
                                    mentions=("targets",)), want, "eid_loss with targets above sqrt(F / (16 N))")
    s = trial.result(trial.call("relaxed_topn", ones, n, m, temperature=floor * 2, api=True, out="s"),
                     "api.relaxed_topn", dtype=dtype, shape=shape)
    trial.require(bool(np.all(np.isfinite(s))), "api.relaxed_topn at twice the temperature floor is not finite")


CORRUPTIONS = ("index >= m in a non-last block", "repeated index", "decreasing indices",
               "int32 indices", "indices of the wrong shape")


def _corrupt(kind: str, indices: np.ndarray, n: int, m: int) -> np.ndarray:
    bad = indices.copy()
    if kind == "index >= m in a non-last block":
        bad[0, n - 1] = m
    elif kind == "repeated index":
        bad[0, 1] = bad[0, 0]
    elif kind == "decreasing indices":
        bad[0, 0], bad[0, 1] = bad[0, 1], bad[0, 0]
    elif kind == "int32 indices":
        bad = bad.astype(np.int32)
    else:
        bad = bad[:, :-1]
    return bad


def packed_errors(trial: Trial, data: DataObject | None) -> None:
    """Hand-built corrupt `Packed` objects of the backend's arrays: ``api.unpack``,
    ``api.spmm``, ``api.save_packed`` (writing nothing) and, for 2:4 float16,
    ``api.to_cutlass`` raise NumPy's error word for word (S3.10)."""
    assert data is not None
    from spikenm import api
    from spikenm.packed import Packed

    kind = data.draw(st.sampled_from(CORRUPTIONS), label="corruption")
    cutlass = "float16" in trial.subject.pack_dtypes and data.draw(st.booleans(), label="2:4 float16")
    if cutlass:
        n, m, dtype, rows, k = 2, 4, "float16", 32, 32
    else:
        n, m = data.draw(patterns(max_m=8).filter(lambda p: p[0] >= 2), label="n, m")
        dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
        rows, k = data.draw(st.integers(1, 3), label="rows"), m * data.draw(st.integers(2, 3), label="blocks")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dense = rng.normal(size=(rows, k)).astype(dtype)
    dense *= np.asarray(api.topn_mask(dense.astype(np.float64), n, m)).astype(dtype)
    good = api.pack(dense, n, m)
    bad_idx = _corrupt(kind, np.array(good.indices), n, m)
    values_np = np.array(good.values)
    if kind == "indices of the wrong shape":
        values_np = values_np[:, :-1]
    ref = Packed(values_np, bad_idx, n, m, (rows, k), 1)
    kinds = (TypeError,) if kind == "int32 indices" else (ValueError,)
    subject = Packed(trial.array("values", values_np), trial.array("indices", bad_idx), n, m, (rows, k), 1)
    trial.note(f"packed = Packed(values, indices, {n}, {m}, {(rows, k)}, 1)  # {kind}")
    want = _numpy_error(lambda: api.unpack(ref))
    _same_error(trial, trial.raises(kinds, "unpack", subject), want, f"api.unpack ({kind})")
    x = trial.array("x", np.ones(k, dtype=dtype))
    _same_error(trial, trial.raises(kinds, "spmm", subject, x), want, f"api.spmm ({kind})")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bad.npz")
        _same_error(trial, trial.raises(kinds, "save_packed", path, subject), want, f"api.save_packed ({kind})")
        trial.require(not os.listdir(folder), f"api.save_packed left {os.listdir(folder)} after refusing ({kind})")
    if cutlass:
        _same_error(trial, trial.raises(kinds, "to_cutlass", subject), want, f"api.to_cutlass ({kind})")


CHECKS = (
    Check("S0.8", ("S0.8",), "finite results at the edges of the accepted range (large scales, "
          "tiny temperatures)", finite_edges, uses=("block_probs", "sample_mask", "relaxed_topn", "eid_loss"),
          budget=0.25),
    Check("S0.8:api", ("S0.8",), "api: out-of-range temperature/scale/targets -> NumPy's ValueError",
          range_errors, uses=("relaxed_topn", "block_probs", "eid_loss"), needs="dispatch", budget=0.25),
    Check("S3.10:api", ("S3.10",), "api: corrupt Packed -> NumPy's error from unpack/spmm/save_packed/"
          "to_cutlass", packed_errors, uses=("unpack", "spmm"), needs="dispatch", budget=0.25),
)
