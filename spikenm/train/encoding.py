"""Input encoding (SPEC S4.7) and batch assembly (S5.10), in NumPy.

Batches are built in NumPy and handed to the model backend with ``from_numpy``, so every
backend sees the same numbers.
"""

from __future__ import annotations

import numpy as np

from spikenm import seeds


def scale_pixels(images: np.ndarray, pixel_max: float, dtype: str) -> np.ndarray:
    """uint8 pixels to ``[0, 1]``: ``x / pixel_max`` in ``dtype``."""
    return (images.astype(np.float64) / pixel_max).astype(dtype)


def poisson_spikes(x: np.ndarray, time_steps: int, seed: int, step: int) -> np.ndarray:
    """Rate coding: ``x_t = [u_t < x]`` with ``u`` from
    ``default_rng(seed_of(seed, POISSON, step, 0)).random((T, *x.shape))`` (float64).

    Examples
    --------
    >>> s = poisson_spikes(np.full((2, 3), 0.5, np.float32), 4, seed=0, step=0)
    >>> s.shape, s.dtype, set(np.unique(s).tolist()) <= {0.0, 1.0}
    ((4, 2, 3), dtype('float32'), True)
    """
    rng = np.random.default_rng(seeds.seed_of(seed, seeds.POISSON, step, 0))
    u = rng.random((time_steps,) + x.shape)
    return (u < x).astype(x.dtype)


def encode(images: np.ndarray, pixel_max: float, dtype: str, encoding: str, time_steps: int,
           seed: int, step: int) -> np.ndarray:
    """Network input for uint8 ``images`` ``(B, C, H, W)``: ``(B, C, H, W)`` analog values
    (direct) or ``(T, B, C, H, W)`` spikes (poisson)."""
    x = scale_pixels(images, pixel_max, dtype)
    if encoding == "direct":
        return x
    if encoding == "poisson":
        return poisson_spikes(x, time_steps, seed, step)
    raise ValueError(f"unknown encoding {encoding!r}; expected 'direct' or 'poisson'")


def batch_indices(seed: int, step: int, steps_per_epoch: int, batch_size: int,
                  count: int, order_cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Sample indices of training ``step`` (S5.10)."""
    epoch, i = divmod(step, steps_per_epoch)
    if order_cache is not None and epoch in order_cache:
        order = order_cache[epoch]
    else:
        order = seeds.epoch_order(seed, epoch, count)
        if order_cache is not None:
            order_cache.clear()
            order_cache[epoch] = order
    return order[i * batch_size:(i + 1) * batch_size]
