"""Checks of the array plumbing the API relies on, SPEC S0.2, S0.4 and S0.5 (protocol level)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from . import tolerance
from .check import Check
from .selection import REQUIRED_DTYPES
from .strategies import any_array, lead_shapes
from .trial import Trial


def moveaxis(trial: Trial, data: DataObject | None) -> None:
    """``moveaxis`` equals ``np.moveaxis`` (the layer layout of S0.2 and every ``axis=``)."""
    assert data is not None
    shape = data.draw(lead_shapes(max_axes=4, max_side=4).filter(lambda s: len(s) >= 2), label="shape")
    source = data.draw(st.integers(-len(shape), len(shape) - 1), label="source")
    destination = data.draw(st.integers(-len(shape), len(shape) - 1), label="destination")
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x = trial.array("x", a)
    want = np.moveaxis(a, source, destination)
    got = trial.result(trial.call("moveaxis", x, source, destination), "moveaxis", dtype="float32", shape=want.shape)
    trial.expect_exact(want, got, f"moveaxis(x, {source}, {destination}) against np.moveaxis")


def dtypes(trial: Trial, data: DataObject | None) -> None:
    """``from_numpy``/``to_numpy``/``dtype_name`` keep every dtype the framework holds,
    bit for bit (float32 and float64 are required)."""
    assert data is not None
    names = REQUIRED_DTYPES + tuple(d for d in trial.subject.pack_dtypes if d not in REQUIRED_DTYPES)
    dtype = data.draw(st.sampled_from(names), label="dtype")
    shape = data.draw(lead_shapes(max_axes=3, max_side=3), label="shape")
    a = data.draw(any_array(dtype, shape), label="values")
    x = trial.array("x", a)
    back = trial.result(x, "from_numpy", dtype=dtype, shape=a.shape)
    trial.expect(tolerance.same_bits(a, back), f"to_numpy(from_numpy(a)) must give a's {dtype} bits back",
                 expected=a, got=back)


def finite(trial: Trial, data: DataObject | None) -> None:
    """``all_finite`` is exactly ``True``/``False`` (a Python bool) for concrete arrays; the
    API's NaN/inf errors (S0.5) depend on it."""
    assert data is not None
    dtype = data.draw(st.sampled_from(REQUIRED_DTYPES), label="dtype")
    shape = data.draw(lead_shapes(max_axes=3, max_side=3).filter(lambda s: len(s) >= 1), label="shape")
    a = np.asarray(data.draw(any_array(dtype, shape), label="values"))
    bad = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf]), label="plant")
    if bad is not None:
        flat = data.draw(st.integers(0, a.size - 1), label="planted at")
        a = a.copy()
        a.reshape(-1)[flat] = bad
    x = trial.array("x", a)
    got = trial.call("all_finite", x, out="ok")
    want = bool(np.all(np.isfinite(a)))
    if type(got) is not bool:
        trial.fail(f"all_finite returned {got!r} of type {type(got).__name__}; expected the Python bool {want} "
                   f"(the API tests `ok is False`)")
    trial.require(got == want, f"all_finite returned {got}; expected {want}")


CHECKS = (
    Check("S0.2", ("S0.2",), "moveaxis equals np.moveaxis (layer layout, axis=)",
          moveaxis, uses=("moveaxis",), budget=0.4),
    Check("S0.4", ("S0.4",), "from_numpy/to_numpy/dtype_name keep dtype and bits",
          dtypes, uses=("from_numpy", "to_numpy", "dtype_name"), budget=0.6),
    Check("S0.5", ("S0.5",), "all_finite: exact Python bool for concrete arrays",
          finite, uses=("all_finite",), budget=0.4),
)
