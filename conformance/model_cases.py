"""One example of a model-backend check: a small spiking network and the NumPy arrays of
one call, rebuilt exactly from a few fields (so a reproduction snippet is short).

A `Case` holds the `spikenm.snn.Graph`, the neuron, dtype, batch size, input encoding and
a seed; `Case.arrays` draws every array from ``numpy.random.default_rng(seed)``:

* parameters: S4.10's initialization with gain ``gain``, then biases ``N(0, 0.3^2)``,
  batch-norm ``gamma ~ U(0.5, 1.5)`` and ``beta ~ N(0, 0.3^2)`` (so that every parameter
  has a gradient worth comparing);
* buffers: running means ``N(0, 0.2^2)``, running variances ``U(0.5, 2)``;
* input: direct-encoded ``x ~ U(0, 1.5)`` of shape ``(B, *input_shape)``, or time-major
  0/1 spikes with rate 1/2, ``(T, B, *input_shape)`` (S4.7);
* labels ``y`` uniform over the classes (int64);
* for EID (S2.3, S5.5) the requested layers get an effective weight ``W * mask`` (about
  half the entries zero) in the parameters, while the request carries the dense ``W``
  (and, with ``eid_signed``, asks for the signed credits of S2.9).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from spikenm.snn.graph import Graph, init_buffers, init_params
from spikenm.snn.neuron import LIFParams

__all__ = ["Case", "CaseArrays", "input_shape_of"]


class CaseArrays(NamedTuple):
    """The NumPy arrays of a `Case`: parameters (effective weights), buffers, input,
    labels and the dense weights of the EID layers."""

    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    dense: dict[int, np.ndarray]


def input_shape_of(case: "Case") -> tuple[int, ...]:
    """Shape of the case's input ``x``."""
    lead = (case.lif.time_steps, case.batch) if case.time_major else (case.batch,)
    return lead + tuple(case.graph.input_shape)


@dataclass(frozen=True)
class Case:
    """One call of a model backend (see the module docstring)."""

    graph: Graph
    lif: LIFParams = LIFParams()
    dtype: str = "float64"
    batch: int = 3
    time_major: bool = False
    seed: int = 0
    gain: float = 2.0
    eid_layers: tuple[int, ...] = ()
    eid_decay: float = 0.5
    eid_signed: bool = False

    def with_theta(self, theta: float) -> "Case":
        """The same case with threshold ``theta`` (the conditioning test)."""
        return replace(self, lif=replace(self.lif, theta=theta))

    def arrays(self) -> CaseArrays:
        """Every array of the call, as NumPy arrays in `dtype` (labels int64)."""
        rng = np.random.default_rng(self.seed)
        params = init_params(self.graph, self.seed, self.gain, self.dtype)
        for key in sorted(params):
            shape = params[key].shape
            if key.endswith(".bias") or key.endswith(".beta"):
                params[key] = rng.normal(0.0, 0.3, shape).astype(self.dtype)
            elif key.endswith(".gamma"):
                params[key] = rng.uniform(0.5, 1.5, shape).astype(self.dtype)
        buffers = init_buffers(self.graph, self.dtype)
        for key in sorted(buffers):
            shape = buffers[key].shape
            buffers[key] = (rng.normal(0.0, 0.2, shape) if key.endswith("mean")
                            else rng.uniform(0.5, 2.0, shape)).astype(self.dtype)
        shape = input_shape_of(self)
        if self.time_major:
            x = (rng.random(shape) < 0.5).astype(self.dtype)
        else:
            x = (rng.random(shape) * 1.5).astype(self.dtype)
        y = rng.integers(0, self.graph.num_classes, self.batch).astype(np.int64)
        dense: dict[int, np.ndarray] = {}
        for k in self.eid_layers:
            w = params[f"layer{k}.weight"]
            dense[k] = w.copy()
            params[f"layer{k}.weight"] = (w * (rng.random(w.shape) < 0.5)).astype(self.dtype)
        return CaseArrays(params, buffers, x, y, dense)
