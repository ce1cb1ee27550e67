"""Hypothesis strategies for the conformance checks.

Everything is built as NumPy arrays (the checks convert them with the backend's
``from_numpy``).  The helpers taking ``data`` draw with labels, so a failing example
lists every draw by name.

* Patterns ``n:m`` with ``m`` up to 16 (common ones first), shapes ``(*lead, G * m)``
  with zero to two leading axes.
* Math dtypes float32 and float64; packing dtypes: every real dtype the backend holds.
* Logits mixing: a spread of values of some magnitude (up to ``MAX_ABS``: 1e4 in float32,
  1e6 in float64, so that ``scale * logits + noise`` stays finite), exact ties (including
  ``-0.0`` against ``0.0``), near-ties a few ulps apart, extremes, tiny normal numbers.
  Subnormal numbers are left out of the math inputs: CPUs running with flush-to-zero
  legitimately treat them as 0 in arithmetic.  The packed-format values include them
  (packing moves bits, and ``w != 0`` holds for a subnormal).
* Noise: actual Gumbel draws (NumPy, from a drawn seed), zeros (keys tie where logits
  tie), or values from a small pool (more ties).
* Temperatures in ``[0.05, 10]``, scales in ``[0.1, 10]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .selection import numpy_dtype

MATH_DTYPES = ("float32", "float64")
COMMON_PATTERNS = ((2, 4), (1, 4), (2, 8), (4, 8), (4, 16), (8, 16), (1, 2), (2, 2), (3, 3))
EDGE_PATTERNS = ((1, 3), (2, 3), (3, 4), (4, 4), (2, 5), (3, 7), (6, 8), (5, 11), (1, 16), (13, 16), (16, 16))
"""Odd ``m``, ``n = 1``, ``n = m - 1`` and ``n = m``: the edges of S0.1."""
LEAD_SHAPES = ((), (2,), (3,), (2, 2), (1, 3))
"""Leading axes of block tensors: none, one, two (a short list keeps the number of
distinct shapes small, which matters for frameworks that compile per shape)."""
MAX_ABS = {"float32": 1e4, "float64": 1e6}
TEMPERATURES = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 10.0)


def patterns(max_m: int = 16) -> st.SearchStrategy[tuple[int, int]]:
    """``(n, m)`` with ``2 <= m <= max_m`` and ``1 <= n <= m``: the common patterns, the
    edge patterns, and now and then any other."""
    common = st.sampled_from([p for p in COMMON_PATTERNS if p[1] <= max_m])
    edges = st.sampled_from([p for p in EDGE_PATTERNS if p[1] <= max_m])
    general = st.integers(2, max_m).flatmap(lambda m: st.tuples(st.integers(1, m), st.just(m)))
    return st.one_of(common, edges, common, edges, general)


def lead_shapes(max_axes: int = 2, max_side: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    """Any leading axes (possibly none), for checks without a block axis."""
    return st.lists(st.integers(1, max_side), max_size=max_axes).map(tuple)


def block_shape(data: st.DataObject, m: int, *, max_groups: int = 3, label: str = "shape") -> tuple[int, ...]:
    """``(*lead, G * m)`` with ``lead`` from `LEAD_SHAPES` and ``1 <= G <= max_groups``."""
    lead = data.draw(st.sampled_from(LEAD_SHAPES), label=f"{label}: leading axes")
    groups = data.draw(st.integers(1, max_groups), label=f"{label}: blocks per row")
    return (*lead, groups * m)


def _width(dtype: str) -> int:
    return {"float16": 16, "float32": 32, "float64": 64}[dtype]


def exact_values(dtype: str, values: list[float]) -> list[float]:
    """``values`` rounded to ``dtype`` (Hypothesis refuses elements a dtype cannot hold)."""
    dt = np.dtype(dtype)
    return [float(dt.type(v)) for v in values]


def floats(dtype: str, max_abs: float) -> st.SearchStrategy[float]:
    """Finite, non-subnormal floats of ``dtype`` in ``[-max_abs, max_abs]``."""
    return st.floats(-max_abs, max_abs, width=_width(dtype), allow_subnormal=False)


def _near_ties(dtype: str, shape: tuple[int, ...], max_abs: float) -> st.SearchStrategy[np.ndarray]:
    dt = np.dtype(dtype)

    def build(args: tuple[float, np.ndarray]) -> np.ndarray:
        base, steps = args
        out = np.full(shape, base, dtype=dt)
        for _ in range(int(np.max(np.abs(steps), initial=0))):
            up, down = steps > 0, steps < 0
            out = np.where(up, np.nextafter(out, dt.type(np.inf)), out)
            out = np.where(down, np.nextafter(out, dt.type(-np.inf)), out)
            steps = steps - np.sign(steps)
        return out.astype(dt)

    base = floats(dtype, max_abs / 2)
    steps = hnp.arrays(np.int64, shape, elements=st.integers(-3, 3))
    return st.tuples(base, steps).map(build)


def logit_arrays(dtype: str, shape: tuple[int, ...], max_abs: float) -> st.SearchStrategy[np.ndarray]:
    """Logits/scores of ``dtype`` and ``shape`` with magnitudes up to ``max_abs``."""
    dt = np.dtype(dtype)
    magnitude = st.sampled_from(sorted({1.0, 10.0, min(100.0, max_abs), max_abs}))
    spread = magnitude.flatmap(lambda amp: hnp.arrays(dt, shape, elements=floats(dtype, amp)))
    pool_values = st.one_of(floats(dtype, max_abs), st.sampled_from([0.0, -0.0, 1.0, -1.0]))
    ties = st.lists(pool_values, min_size=1, max_size=3).flatmap(
        lambda pool: hnp.arrays(dt, shape, elements=st.sampled_from(pool))
    )
    extremes = hnp.arrays(dt, shape, elements=st.sampled_from(
        exact_values(dtype, [max_abs, -max_abs, max_abs / 2, -max_abs / 3, 0.0, 1.0])
    ))
    small = float(np.finfo(dt).tiny) * 2**20
    tiny_values = hnp.arrays(dt, shape, elements=st.sampled_from(
        exact_values(dtype, [small, -small, 2 * small, 0.0, 1e-3])
    ))
    return st.one_of(spread, ties, _near_ties(dtype, shape, max_abs), extremes, tiny_values)


def gumbel_numpy(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Standard Gumbel draws from NumPy (``default_rng(seed).gumbel``), cast to ``dtype``."""
    return np.random.default_rng(seed).gumbel(size=shape).astype(dtype)


def noise_arrays(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Gumbel noise (mostly real draws; sometimes zeros or a small pool, to tie keys)."""
    draws = st.integers(0, 2**32 - 1).map(lambda seed: gumbel_numpy(shape, dtype, seed))
    zeros = st.just(np.zeros(shape, dtype=dtype))
    pool = hnp.arrays(np.dtype(dtype), shape, elements=st.sampled_from([-0.5, 0.0, 1.25]))
    return st.one_of(draws, draws, zeros, pool)


def temperatures() -> st.SearchStrategy[float]:
    """Temperatures in ``[0.05, 10]``."""
    return st.one_of(st.sampled_from(TEMPERATURES), st.floats(0.05, 10.0))


def scales() -> st.SearchStrategy[float]:
    """Logit scales in ``[0.1, 10]`` (often exactly 1)."""
    return st.one_of(st.just(1.0), st.sampled_from([0.5, 2.0, 4.0]), st.floats(0.1, 10.0))


def cotangents(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Upstream gradients: spread values, or all ones."""
    spread = hnp.arrays(np.dtype(dtype), shape, elements=floats(dtype, 10.0))
    return st.one_of(spread, st.just(np.ones(shape, dtype=dtype)))


@dataclass(frozen=True)
class SamplerCase:
    """Inputs of one sampler call (S1.1-S1.5)."""

    dtype: str
    n: int
    m: int
    logits: np.ndarray
    noise: np.ndarray
    scale: float
    temperature: float

    def keys(self) -> np.ndarray:
        """``scale * logits + noise`` rounded in the dtype, as the reference computes them."""
        dt = np.dtype(self.dtype)
        return dt.type(self.scale) * self.logits + self.noise


def sampler_case(data: st.DataObject, *, max_m: int = 16) -> SamplerCase:
    """Draw a complete sampler input (labelled draws)."""
    dtype = data.draw(st.sampled_from(MATH_DTYPES), label="dtype")
    n, m = data.draw(patterns(max_m), label="n, m")
    shape = block_shape(data, m)
    logits = data.draw(logit_arrays(dtype, shape, MAX_ABS[dtype]), label="logits")
    noise = data.draw(noise_arrays(dtype, shape), label="noise")
    scale = data.draw(scales(), label="scale")
    temperature = data.draw(temperatures(), label="temperature")
    return SamplerCase(dtype, n, m, logits, noise, scale, temperature)


# -- packed format -----------------------------------------------------------------------------


def _values(dtype: str, shape: tuple[int, ...], specials: bool) -> st.SearchStrategy[np.ndarray]:
    """Arbitrary values of a real dtype (no zeros are forced; the keep mask decides).

    With ``specials``, floats include NaN, infinities, ``-0.0`` and subnormal numbers:
    the packed format moves bits (S3.1), and a subnormal weight is a non-zero (S3.3) that
    must not be dropped by a flush-to-zero comparison."""
    if dtype == "bool":
        return hnp.arrays(np.bool_, shape, elements=st.booleans())
    if dtype == "bfloat16":
        inner = _values("float32", shape, specials)
        return inner.map(lambda a: a.astype(numpy_dtype("bfloat16")))
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return hnp.arrays(dt, shape, elements=st.integers(int(info.min), int(info.max)))
    finite = st.floats(width=_width(dtype), allow_nan=False, allow_infinity=False)
    if specials:
        sub = float(np.finfo(dt).smallest_subnormal)
        odd = exact_values(dtype, [math.nan, math.inf, -math.inf, -0.0, sub, -3 * sub])
        elements = st.one_of(finite, st.sampled_from(odd))
    else:
        elements = finite
    return hnp.arrays(dt, shape, elements=elements)


def keep_masks(data: st.DataObject, shape: tuple[int, ...], n: int, m: int, *, label: str = "keep") -> np.ndarray:
    """A bool mask with at most ``n`` True per block (random count and positions)."""
    blocks = int(np.prod(shape)) // m
    counts = data.draw(
        st.lists(st.integers(0, n), min_size=blocks, max_size=blocks), label=f"{label}: kept per block"
    )
    seed = data.draw(st.integers(0, 2**32 - 1), label=f"{label}: positions seed")
    rng = np.random.default_rng(seed)
    mask = np.zeros((blocks, m), dtype=bool)
    for b, c in enumerate(counts):
        mask[b, rng.choice(m, size=c, replace=False)] = True
    return mask.reshape(shape)


@dataclass(frozen=True)
class PackCase:
    """Inputs of one ``pack`` call: ``keep is w`` means "keep the non-zeros of w"."""

    dtype: str
    n: int
    m: int
    w: np.ndarray
    keep: np.ndarray
    keep_is_w: bool

    def kept(self) -> np.ndarray:
        """Bool mask of the kept entries (``keep != 0``)."""
        return np.asarray(self.keep != 0)


def pack_case(
    data: st.DataObject, dtypes: tuple[str, ...], *, max_m: int = 16,
    n_m: tuple[int, int] | None = None, specials: bool = True,
) -> PackCase:
    """Draw a packable array: either a 0/1 keep mask (any values of ``w``, which may be 0)
    or ``w`` itself with at most ``n`` non-zeros per block."""
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    n, m = n_m if n_m is not None else data.draw(patterns(max_m), label="n, m")
    shape = block_shape(data, m)
    values = data.draw(_values(dtype, shape, specials), label="values")
    mask = keep_masks(data, shape, n, m)
    keep_is_w = data.draw(st.booleans(), label="keep the non-zeros of w (no mask)")
    if keep_is_w:
        w = np.where(mask, values, np.zeros((), dtype=values.dtype)).astype(values.dtype)
        return PackCase(dtype, n, m, w, w, True)
    mask_dtype = data.draw(st.sampled_from([dtype, "bool"]), label="mask dtype")
    keep = mask.astype(numpy_dtype(mask_dtype))
    return PackCase(dtype, n, m, values, keep, False)


def any_array(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Values of any real dtype, specials included (for plumbing checks)."""
    return _values(dtype, shape, specials=True)


def draw_array(data: st.DataObject, dtype: str, shape: tuple[int, ...], label: str) -> Any:
    """Labelled draw of `any_array`."""
    return data.draw(any_array(dtype, shape), label=label)
