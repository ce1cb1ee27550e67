"""The model-backend interface: the per-framework part of training a spiking `Graph`.

A *model backend* runs one forward pass and one backward pass (BPTT) of a spiking network
`spikenm.snn.graph.Graph` on given parameters (SPEC S4).  The trainer core
(`spikenm.train`) and the mask methods (`spikenm.methods`) do everything else with
operators and `spikenm.api`, so they run on every backend's arrays.

A model backend module defines ``model_backend(device: str = "cpu") -> ModelBackend``;
`spikenm.registry` finds it by name (``numpy``, ``torch``, ``jax``) or by import path
``pkg.mod:factory``.  An unavailable device is a ``ValueError`` that names it and the
devices there are.

Calls (all arrays of the backend's framework, on its device)
------------------------------------------------------------
``params``: the graph's `Graph.param_shapes` keys -> arrays (framework layout: Linear
``(out, in)``, Conv2d ``(out, in, k, k)``; weights are the *effective* ``W * mask``).
``buffers``: `Graph.buffer_shapes` keys -> running statistics of batch norm.
``x``: ``(B, *input_shape)`` direct-encoded (shown at every time step, S4.7) or
time-major ``(T, B, *input_shape)``; ``y``: integer labels ``(B,)``.

``forward_backward`` runs in train mode: batch norm normalizes with the statistics of the
batch over batch and time (S4.13) and returns the updated running statistics.
``evaluate`` runs in eval mode (running statistics; nothing changes).

Credits for EID (SPEC S2.3, S5.5): for every layer ordinal ``k`` in ``eid.layers``, with
``x_t`` the input of that layer, ``e_t`` its presynaptic trace (decay ``eid.decay``),
``d_t = dL/dI_t`` the gradient of the layer's output (before any batch norm) and the
*dense* weight ``eid.weights[i]``: ``c[o, j] = |W[o, j]| * sum_t | sum_b d_t[b, o]
e_t[b, j] |`` (conv: on the unfolded input, i.e. the conv weight gradient of
``(e_t, d_t)`` per step), in block layout (`spikenm.api.to_block_layout`).  With
``eid.signed`` the time sum comes first (S2.9): ``c[o, j] = |W[o, j]| * | sum_t sum_b
d_t[b, o] e_t[b, j] |`` (conv: one weight gradient of the stacked ``(e_t, d_t)`` of all
``t``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from .graph import Graph
from .neuron import LIFParams

__all__ = ["ModelBackend", "EIDRequest", "StepResult", "EvalResult", "check_call",
           "check_eid_request"]

Array = Any


@dataclass(frozen=True)
class EIDRequest:
    """Which layers need EID credits (layer ordinals), their dense weights (framework
    layout), the trace decay ``lam`` (S2.1) and whether the credit is the signed one of
    S2.9 (time sum before the absolute value) instead of S2.3's."""

    layers: tuple[int, ...]
    weights: tuple[Array, ...]
    decay: float
    signed: bool = False


@dataclass(frozen=True)
class StepResult:
    """What `ModelBackend.forward_backward` returns.

    Attributes
    ----------
    loss : float
        Batch-mean cross-entropy (S4.8).
    correct : int
        Samples whose first arg-max logit equals the label.
    grads : dict
        ``dL/dparam`` for every key of ``params`` (weights: ``dL/dW_eff``).
    buffers : dict
        The running statistics after this batch (S4.13); empty without batch norm.
    credits : dict int -> array
        EID credit (block layout) of every requested layer; empty without a request.
    firing_rates : tuple of float
        Mean of ``S_t`` over ``t``, batch and units of every ``lif`` node (S4.9).
    """

    loss: float
    correct: int
    grads: dict[str, Array]
    buffers: dict[str, Array]
    credits: dict[int, Array]
    firing_rates: tuple[float, ...]


@dataclass(frozen=True)
class EvalResult:
    """What `ModelBackend.evaluate` returns (sums, so batches add up)."""

    loss_sum: float
    correct: int
    count: int
    spike_sums: tuple[float, ...]
    """Sum over ``t``, batch and units of the spikes of every ``lif`` node."""
    spike_counts: tuple[int, ...]
    """Number of ``(t, b, unit)`` entries behind each of ``spike_sums``."""


@runtime_checkable
class ModelBackend(Protocol):
    """The per-framework part of training (module docstring for the math)."""

    name: str
    """Registry name: ``"numpy"``, ``"torch"``, ``"jax"`` or a third party's."""
    device: str
    """The device every array of this backend lives on (``"cpu"``, ``"cuda:0"`` ...)."""

    def from_numpy(self, a: np.ndarray) -> Array:
        """``a`` as an array of this framework on `device`, same dtype and values."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy copy of ``x`` (on the host)."""

    def forward_backward(self, graph: Graph, params: Mapping[str, Array],
                         buffers: Mapping[str, Array], x: Array, y: Array, lif: LIFParams,
                         eid: EIDRequest | None = None) -> StepResult:
        """Train-mode loss, accuracy count, gradients, new buffers, credits, firing rates."""

    def evaluate(self, graph: Graph, params: Mapping[str, Array],
                 buffers: Mapping[str, Array], x: Array, y: Array, lif: LIFParams
                 ) -> EvalResult:
        """Eval-mode forward pass only (no gradients, buffers unchanged)."""


MEMBERS = ("name", "device", "from_numpy", "to_numpy", "forward_backward", "evaluate")


def check_call(graph: Graph, params: Mapping[str, Array], buffers: Mapping[str, Array],
               x: Array, y: Array | None, lif: LIFParams,
               dtype_name: Callable[[Array], str]) -> tuple[bool, int]:
    """Validate one model-backend call; return ``(static, batch)``.

    ``static`` is True for a direct-encoded input ``(B, *input_shape)``.  ``dtype_name``
    maps an array to a canonical dtype name (``"float32"``, ``"int64"``), so one check
    serves every framework.

    Raises
    ------
    ValueError
        A missing, unexpected or misshapen parameter/buffer, input or label, naming it
        and the expected shape.
    TypeError
        Parameters not float32/float64 or not of one dtype; an input of another dtype.
    """
    expected = graph.param_shapes()
    for kind, given, want in (("parameter", params, expected),
                              ("buffer", buffers, graph.buffer_shapes())):
        missing = sorted(set(want) - set(given))
        extra = sorted(set(given) - set(want))
        if missing or extra:
            raise ValueError(f"{kind}s do not match the graph: missing {missing}, "
                             f"unexpected {extra}")
    if not expected:
        raise ValueError("the graph has no parameters")
    first = next(iter(expected))
    dtype = dtype_name(params[first])
    if dtype not in ("float32", "float64"):
        raise TypeError(f"parameters are {dtype}; expected float32 or float64")
    for table, shapes in ((params, expected), (buffers, graph.buffer_shapes())):
        for key, shape in shapes.items():
            a = table[key]
            if tuple(a.shape) != shape:
                raise ValueError(f"{key} has shape {tuple(a.shape)}; expected {shape}")
            if dtype_name(a) != dtype:
                raise TypeError(f"{key} is {dtype_name(a)}; expected {dtype} like {first}")
    x_shape = tuple(x.shape)
    rank = len(graph.input_shape)
    if x_shape[len(x_shape) - rank:] != graph.input_shape or len(x_shape) not in (rank + 1,
                                                                                    rank + 2):
        raise ValueError(f"input has shape {x_shape}; expected (B, *{graph.input_shape}) "
                         f"or (T={lif.time_steps}, B, *{graph.input_shape})")
    if len(x_shape) == rank + 2 and x_shape[0] != lif.time_steps:
        raise ValueError(f"time-major input has {x_shape[0]} steps; expected "
                         f"lif.time_steps={lif.time_steps}")
    if dtype_name(x) != dtype:
        raise TypeError(f"input x is {dtype_name(x)}; expected the parameters' dtype {dtype}")
    static = len(x_shape) == rank + 1
    batch = int(x_shape[0] if static else x_shape[1])
    if y is not None:
        label = dtype_name(y)
        if not label.startswith(("int", "uint")) or tuple(y.shape) != (batch,):
            raise ValueError(f"labels y are {label} of shape {tuple(y.shape)}; expected "
                             f"integer class indices of shape ({batch},)")
    return static, batch


def check_eid_request(graph: Graph, eid: Any) -> tuple[int, ...]:
    """Validate the framework-free part of an EID request (S5.5) against ``graph``; return
    its layer ordinals as ints (``()`` for ``eid=None``).

    Checks that ``eid`` is an `EIDRequest` or None, that every layer is an ordinal of
    ``graph.layers`` given once, that there is one weight per layer and that ``decay`` is
    a number in ``[0, 1]`` (S2.1) and ``signed`` a bool (S2.9).  The weights themselves (array type, shape, dtype,
    device) are the backend's to check.

    Raises
    ------
    TypeError
        ``eid`` is neither an `EIDRequest` nor None.
    ValueError
        A layer that does not exist or is repeated, a weight count other than the layer
        count, or a decay that is not a number in ``[0, 1]``; the message names it.
    """
    if eid is None:
        return ()
    if not isinstance(eid, EIDRequest):
        raise TypeError(f"eid must be a spikenm.snn.EIDRequest or None, got "
                        f"{type(eid).__name__}")
    layers = tuple(eid.layers)
    count = len(graph.layers)
    for k in layers:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < count:
            raise ValueError(f"EID layer {k!r} does not exist; the graph has {count} "
                             f"weighted layers (ordinals 0..{count - 1})")
    if len(set(layers)) != len(layers):
        raise ValueError(f"EID layers {layers} repeat a layer")
    if len(eid.weights) != len(layers):
        raise ValueError(f"EID request has {len(eid.weights)} weights for "
                         f"{len(layers)} layers {layers}; give one dense weight each")
    decay = eid.decay
    if not (isinstance(decay, (int, float, np.floating)) and not isinstance(decay, bool)
            and 0.0 <= float(decay) <= 1.0):
        raise ValueError(f"eid.decay={decay!r} is invalid; expected a number in [0, 1]")
    if not isinstance(eid.signed, bool):
        raise ValueError(f"eid.signed={eid.signed!r} is invalid; expected True or False")
    return tuple(int(k) for k in layers)
