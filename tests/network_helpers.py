"""Shared test inputs for the model backends: random but non-trivial network parameters."""

from __future__ import annotations

import numpy as np

from spikenm.snn import Graph, init_buffers, init_params


def random_params(graph: Graph, seed: int, rng: np.random.Generator
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """S4.10 weights (gain 2.5), non-zero biases and bn affine parameters (drawn from
    ``rng``), and non-trivial running statistics; float64."""
    params = init_params(graph, seed, 2.5, "float64")
    for key, value in params.items():
        if key.endswith((".bias", ".beta")):
            params[key] = 0.2 * rng.standard_normal(value.shape)
        elif key.endswith(".gamma"):
            params[key] = 1.0 + 0.2 * rng.standard_normal(value.shape)
    buffers = {key: (0.1 * rng.standard_normal(v.shape) if key.endswith("mean")
                     else rng.uniform(0.5, 1.5, v.shape))
               for key, v in init_buffers(graph, "float64").items()}
    return params, buffers


class HostCopyCounter:
    """A model backend that counts its ``to_numpy`` calls (host copies, S4.16) in
    ``copies`` and forwards everything else to ``inner``."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.copies = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def to_numpy(self, x: object) -> object:
        self.copies += 1
        return self.inner.to_numpy(x)  # type: ignore[attr-defined]
