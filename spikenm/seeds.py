"""Derived seeds (SPEC S5.2): every random draw of a run is a function of
``(seed, stream, step, index)``, never of a generator's hidden state, so a resumed run
draws exactly the numbers an uninterrupted one would.

Streams: `MASK_NOISE` (0, index = layer), `DATA_ORDER` (1, step = epoch), `POISSON` (2),
`RANDOM_MASK` (3, index = layer), `MASKLLM_NOISE` (4, index = layer), and two streams of
the trainer's sampling-variance metrics (S5.9a), defined in `spikenm.train.variance`:
``INCLUSION_DRAWS`` (5, the Monte Carlo inclusion draws: step = the logged step, index =
layer) and ``GRADIENT_NOISE`` (6, the noise of the gradient-estimator measurement: step
= the measured step, index = ``65536 * draw + layer``).  Neither is used by training, so
measuring leaves every training draw unchanged.
"""

from __future__ import annotations

import numpy as np

MASK_NOISE = 0
DATA_ORDER = 1
POISSON = 2
RANDOM_MASK = 3
MASKLLM_NOISE = 4
EVAL_STEP_BASE = 2**31 - 1
"""Poisson evaluation batch ``i`` uses stream `POISSON` at step ``EVAL_STEP_BASE - i``."""


def seed_of(seed: int, stream: int, step: int, index: int) -> int:
    """First 32-bit word of ``SeedSequence([seed, stream, step, index])`` as an int.

    Examples
    --------
    >>> seed_of(0, 0, 0, 0) == seed_of(0, 0, 0, 0), seed_of(0, 0, 0, 0) != seed_of(0, 0, 1, 0)
    (True, True)
    """
    for name, value in (("seed", seed), ("stream", stream), ("step", step), ("index", index)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    words = np.random.SeedSequence([int(seed), int(stream), int(step), int(index)])
    return int(words.generate_state(1, dtype=np.uint32)[0])


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """Visiting order of ``count`` training samples in ``epoch`` (S5.10)."""
    return np.random.default_rng(seed_of(seed, DATA_ORDER, epoch, 0)).permutation(count)
