"""The model-backend interface: the only per-framework part of the trainer.

The trainer core (`spikenm.train.loop`) samples masks with `spikenm.api`, forms
``W_eff = W * mask`` and asks a *model backend* for one forward pass and one backward
pass (BPTT) of the spiking network on those effective weights.  Everything else --
mask sampling and its gradient, EID, optimizers, schedules, checkpoints -- is written
once in the core with operators (``+ - * / ** @ abs``), ``.reshape`` and the functions of
`spikenm.api`, so it runs on NumPy, PyTorch and JAX arrays alike.

A model backend is any object (a module works) with the members of `ModelBackend`.
Backends are found by name (`load_model_backend`):

==========  ==================================  ========================
name        module                              arrays
==========  ==================================  ========================
``numpy``   ``spikenm.reference.snn``           ``numpy.ndarray``
``torch``   ``spikenm.backends.torch.snn``      ``torch.Tensor`` (CPU)
``jax``     ``spikenm.backends.jax.snn``        ``jax.Array``
==========  ==================================  ========================

Each module exposes the backend object as ``MODEL_BACKEND``.  A framework is imported
only when its backend is chosen.

What a backend computes (SPEC S4)
---------------------------------
Network: a sequence of `LayerSpec` layers.  Every layer but the last is a LIF layer;
the last is the non-spiking readout.  With layer input ``x_t`` (time-major ``[T, B, ...]``)

    I_t = x_t W_eff^T + b                  (conv: the 2-D convolution, then + b)
    H_t = beta * V_{t-1} + I_t,  V_0 = 0
    S_t = [H_t >= theta]
    V_t = H_t * (1 - S_t)                  (hard reset)   or   V_t = H_t - theta * S_t (soft)

and ``dS/dH`` replaced in the backward pass by the ATan surrogate
``(alpha / 2) / (1 + (pi / 2 * alpha * (H_t - theta))^2)``.  A conv layer with
``pool > 1`` is followed by ``pool x pool`` average pooling of its spikes.  The readout
returns ``logits = (1/T) sum_t I_t`` and the loss is the batch mean of the cross-entropy
``L = mean_b [logsumexp(logits_b) - logits_b[y_b]]``.

Weights arrive in the framework's usual layout: Linear ``(out, in)``, Conv2d
``(out, in, k, k)``.  Gradients are returned in the same layout.

Inputs
------
``x`` is either ``(B, *input_shape)`` -- an analog input shown at every time step
(direct encoding, S4.7) -- or time-major ``(T, B, *input_shape)`` (e.g. Poisson spikes).
``y`` holds integer class labels ``(B,)`` (int64).

Credits for EID (SPEC S2.3)
---------------------------
When ``eid`` is given, the backend returns for each listed layer ``l`` the credit
``c[o, k] = |W_l[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |`` with ``e_t`` the
presynaptic trace of that layer's input (decay ``eid.decay``), ``d_t = dL/dI_t`` and the
*dense* weight ``eid.weights[i]`` (so pruned weights keep a credit).  Credits are in
block layout (`spikenm.api.to_block_layout`): ``(out, in)`` or ``(out, k, k, in)``.
For a Linear layer this is exactly ``spikenm.api.eligibility_credit(x, d, W, decay=...)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

from .config import LIFConfig

Array = Any
"""An array of the backend's framework (``np.ndarray``, ``torch.Tensor``, ``jax.Array``)."""

MODEL_BACKENDS: dict[str, str] = {
    "numpy": "spikenm.reference.snn",
    "torch": "spikenm.backends.torch.snn",
    "jax": "spikenm.backends.jax.snn",
}
"""Backend name -> module exposing ``MODEL_BACKEND`` (a constant table, not a registry)."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the network.

    Attributes
    ----------
    kind : ``"linear"`` or ``"conv"``
    in_features, out_features : int
        Input/output features (channels for a conv layer).
    kernel, stride, padding : int
        Square 2-D convolution geometry (conv only; ``1, 1, 0`` for linear).
    pool : int
        Average pooling window (and stride) applied to the spikes after the LIF of a
        conv layer; 1 means none.
    """

    kind: Literal["linear", "conv"]
    in_features: int
    out_features: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: int = 1

    def weight_shape(self) -> tuple[int, ...]:
        """``(out, in)`` for linear, ``(out, in, k, k)`` for conv."""
        if self.kind == "linear":
            return (self.out_features, self.in_features)
        return (self.out_features, self.in_features, self.kernel, self.kernel)


@dataclass(frozen=True)
class Arch:
    """A network: input shape and layers; the last layer is the non-spiking readout.

    A linear layer after a conv layer sees the conv output flattened in ``(C, H, W)``
    order.
    """

    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_features


class LayerParams(NamedTuple):
    """Parameters (or gradients) of one layer, arrays of the backend's framework."""

    weight: Array
    bias: Array


@dataclass(frozen=True)
class EIDRequest:
    """Which layers need EID credits, with their dense weights.

    Attributes
    ----------
    layers : tuple of int
        Layer indices.
    weights : tuple of arrays
        The dense weight ``W`` of each listed layer (framework layout).
    decay : float
        Presynaptic trace decay ``lam`` (SPEC S2.1), normally ``LIFConfig.beta``.
    """

    layers: tuple[int, ...]
    weights: tuple[Array, ...]
    decay: float


@dataclass(frozen=True)
class StepResult:
    """What `ModelBackend.forward_backward` returns.

    Attributes
    ----------
    loss : float
        Batch-mean cross-entropy.
    correct : int
        Number of samples whose arg-max logit equals the label.
    grads : tuple of LayerParams
        ``dL/dW_eff`` and ``dL/db`` for every layer, framework layout.
    credits : dict int -> array
        EID credit (block layout) of every layer in the request; empty without one.
    firing_rates : tuple of float
        Mean spike rate ``mean_{t, b, units} S_t`` of every LIF layer (all but the last).
    """

    loss: float
    correct: int
    grads: tuple[LayerParams, ...]
    credits: dict[int, Array]
    firing_rates: tuple[float, ...]


@dataclass(frozen=True)
class EvalResult:
    """What `ModelBackend.evaluate` returns (sums, so batches can be added up)."""

    loss_sum: float
    correct: int
    count: int
    spike_sums: tuple[float, ...]
    """Sum over ``t, b, units`` of the spikes of every LIF layer."""
    spike_counts: tuple[int, ...]
    """Number of ``(t, b, unit)`` entries behind each ``spike_sums`` entry."""


@runtime_checkable
class ModelBackend(Protocol):
    """The per-framework part of the trainer (see the module docstring for the math)."""

    name: str
    """``"numpy"``, ``"torch"`` or ``"jax"``."""

    def from_numpy(self, a: np.ndarray) -> Array:
        """``a`` as an array of this framework, same dtype and values (CPU)."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy copy of ``x``."""

    def forward_backward(
        self, arch: Arch, params: tuple[LayerParams, ...], x: Array, y: Array,
        lif: LIFConfig, eid: EIDRequest | None = None,
    ) -> StepResult:
        """Loss, accuracy count, gradients w.r.t. ``params`` (the effective weights), EID
        credits and firing rates for one batch."""

    def evaluate(
        self, arch: Arch, params: tuple[LayerParams, ...], x: Array, y: Array,
        lif: LIFConfig,
    ) -> EvalResult:
        """Forward pass only (no gradients) on one batch."""


def check_call(arch: Arch, params: tuple[LayerParams, ...], x: Array, y: Array | None,
               lif: LIFConfig, dtype_name: Callable[[Array], str]) -> tuple[bool, int]:
    """Validate one model-backend call; return ``(static, batch)``.

    ``static`` is True for a direct-encoded input ``(B, *input_shape)`` and False for a
    time-major one ``(T, B, *input_shape)``.  ``dtype_name`` maps an array to a canonical
    dtype name (``"float32"``, ``"int64"`` ...), so one check serves every framework.

    Raises
    ------
    ValueError
        Naming the offending parameter, input or label shape and the expected one.
    TypeError
        For parameters that are not float32/float64 or not of one dtype, or an input of
        another dtype.
    """
    if len(params) != len(arch.layers):
        raise ValueError(f"got parameters for {len(params)} layers; the arch has "
                         f"{len(arch.layers)}")
    dtype = dtype_name(params[0].weight)
    if dtype not in ("float32", "float64"):
        raise TypeError(f"parameters are {dtype}; expected float32 or float64")
    for index, (spec, p) in enumerate(zip(arch.layers, params)):
        ws, bs = tuple(p.weight.shape), tuple(p.bias.shape)
        if ws != spec.weight_shape():
            raise ValueError(f"layer {index} weight has shape {ws}; expected "
                             f"{spec.weight_shape()} for {spec}")
        if bs != (spec.out_features,):
            raise ValueError(f"layer {index} bias has shape {bs}; expected "
                             f"({spec.out_features},)")
        for kind, a in (("weight", p.weight), ("bias", p.bias)):
            if dtype_name(a) != dtype:
                raise TypeError(f"layer {index} {kind} is {dtype_name(a)}; expected {dtype} "
                                f"like layer 0")
    x_shape = tuple(x.shape)
    rank = len(arch.input_shape)
    if x_shape[-rank:] != arch.input_shape or len(x_shape) not in (rank + 1, rank + 2):
        raise ValueError(f"input has shape {x_shape}; expected (B, *{arch.input_shape}) "
                         f"or (T={lif.time_steps}, B, *{arch.input_shape})")
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
    _check_pooling(arch)
    return static, batch


def _check_pooling(arch: Arch) -> None:
    """S4.6 pools whole ``q x q`` windows: every pooled conv map must divide into them."""
    if len(arch.input_shape) != 3:
        return
    _, h, w = arch.input_shape
    for index, spec in enumerate(arch.layers):
        if spec.kind != "conv":
            break
        h = (h + 2 * spec.padding - spec.kernel) // spec.stride + 1
        w = (w + 2 * spec.padding - spec.kernel) // spec.stride + 1
        q = spec.pool
        if q > 1:
            if h % q or w % q:
                raise ValueError(f"conv layer {index} makes a {h}x{w} map, not divisible "
                                 f"into its {q}x{q} pooling windows (SPEC S4.6)")
            h, w = h // q, w // q


def load_model_backend(name: str) -> ModelBackend:
    """The model backend called ``name`` (``numpy``, ``torch`` or ``jax``).

    Only the chosen backend's framework is imported.

    Raises
    ------
    ValueError
        For an unknown name.
    ImportError
        When the framework is missing or the backend is not written yet.
    """
    if name not in MODEL_BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; expected one of {sorted(MODEL_BACKENDS)}"
        )
    module_name = MODEL_BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"the {name} model backend ({module_name}) could not be imported: {exc}"
        ) from exc
    backend = getattr(module, "MODEL_BACKEND", None)
    if backend is None:
        raise ImportError(f"{module_name} does not define MODEL_BACKEND")
    missing = [
        member for member in ("name", "from_numpy", "to_numpy", "forward_backward", "evaluate")
        if not hasattr(backend, member)
    ]
    if missing:
        raise ImportError(f"{module_name}.MODEL_BACKEND lacks {', '.join(missing)}")
    return backend
