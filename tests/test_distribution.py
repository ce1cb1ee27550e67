"""Statistics of the sampler: Gumbel noise (SPEC S1.6) and the Gumbel-top-k draw (S1.7).

Every test uses a fixed seed and ~20k draws made in one vectorized call (one draw per
row); a test fails when its p-value is below ALPHA = 1e-3.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from spikenm import api

ALPHA = 1e-3
DRAWS = 20_000
LOGITS = np.array([0.5, -1.0, 1.2, 0.0])


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def draw_masks(logits: np.ndarray, n: int, scale: float, seed: int, dtype: type) -> np.ndarray:
    """DRAWS hard masks of one block, one per row, from a single sample_mask call."""
    rows = np.tile(logits, (DRAWS, 1)).astype(dtype)
    noise = api.gumbel_like(rows, seed)
    mask = api.sample_mask(rows, n, len(logits), noise=noise, scale=scale, hard=True)
    assert mask.dtype == dtype
    np.testing.assert_array_equal(mask.sum(axis=1), n)
    return mask


@pytest.mark.parametrize(
    ("logits", "scale", "seed"),
    [(LOGITS, 1.0, 1), (LOGITS, 2.0, 2), (np.linspace(-1.0, 1.0, 8), 1.0, 3)],
)
def test_S1_7_first_pick_follows_block_probs(logits: np.ndarray, scale: float, seed: int) -> None:
    """n = 1: P(pick = i) = p_i, p = softmax(scale * logits) (chi-square, 3 or 7 dof)."""
    mask = draw_masks(logits, 1, scale, seed, np.float64)
    counts = mask.sum(axis=0)
    p = softmax(scale * logits)
    np.testing.assert_allclose(api.block_probs(logits, len(logits), scale=scale), p, rtol=1e-14)
    result = stats.chisquare(counts, DRAWS * p)
    assert result.pvalue > ALPHA, (counts, DRAWS * p, result)


@pytest.mark.parametrize(("scale", "seed", "dtype"), [(1.0, 4, np.float64), (1.5, 5, np.float32)])
def test_S1_7_unordered_pair_follows_without_replacement_probs(
    scale: float, seed: int, dtype: type
) -> None:
    """2:4: P({i, j}) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j) (chi-square, 5 dof)."""
    mask = draw_masks(LOGITS, 2, scale, seed, dtype)
    p = softmax(scale * LOGITS)
    pairs = list(itertools.combinations(range(4), 2))
    expected = np.array(
        [p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]) for i, j in pairs]
    )
    assert expected.sum() == pytest.approx(1.0, rel=1e-12)
    kept = [tuple(np.flatnonzero(row)) for row in mask]
    counts = np.array([sum(1 for k in kept if k == pair) for pair in pairs])
    assert counts.sum() == DRAWS
    result = stats.chisquare(counts, DRAWS * expected)
    assert result.pvalue > ALPHA, (counts, DRAWS * expected, result)


@pytest.mark.parametrize(("dtype", "seed"), [(np.float64, 10), (np.float32, 11)])
def test_S1_6_gumbel_like_matches_gumbel_cdf(dtype: type, seed: int) -> None:
    """KS test against F(g) = exp(-exp(-g))."""
    g = api.gumbel_like(np.zeros((DRAWS // 4, 4), dtype=dtype), seed)
    assert g.shape == (DRAWS // 4, 4) and g.dtype == dtype
    assert np.all(np.isfinite(g))
    result = stats.kstest(g.ravel().astype(np.float64), lambda t: np.exp(-np.exp(-t)))
    assert result.pvalue > ALPHA, result


def test_S1_6_same_seed_same_noise_different_seed_different() -> None:
    x = np.zeros((50, 8))
    a, b, c = api.gumbel_like(x, 123), api.gumbel_like(x, 123), api.gumbel_like(x, 124)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a == c) < 0.01
    masks = [api.sample_mask(x, 2, 4, noise=api.gumbel_like(x, s)) for s in (123, 123, 124)]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])


def test_S1_6_numpy_draw_is_the_specified_one() -> None:
    """u = (k + 1/2) / 2**52, k = default_rng(seed).integers(0, 2**52); g = -log(-log u) in
    float64, then cast (float32 noise is the float64 noise rounded)."""
    x = np.zeros((3, 4))
    k = np.random.default_rng(99).integers(0, 2**52, size=x.shape, dtype=np.int64)
    u = (k + 0.5) / 2.0**52
    expected = -np.log(-np.log(u))
    np.testing.assert_array_equal(api.gumbel_like(x, 99), expected)
    np.testing.assert_array_equal(
        api.gumbel_like(x.astype(np.float32), 99), expected.astype(np.float32)
    )

