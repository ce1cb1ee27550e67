"""JAX model backend: a spiking `spikenm.snn.Graph` trained by BPTT with autodiff (SPEC S4),
implementing `spikenm.snn.model.ModelBackend`.

``model_backend(device)`` returns a `JaxModelBackend` bound to one JAX device
(`spikenm.backends.jax.snn_device`: ``cpu``, ``gpu:1``, ``cuda`` ...).  Its `from_numpy`
puts arrays on that device, and the steps take ``jax.Array`` values there only (anything
else is refused, naming it, rather than copied behind the caller's back).  The training
step runs there and copies to the host only the loss, the correct count and the firing
rates (S4.16) -- gradients, new batch-norm statistics and EID credits stay device arrays.
``model_backend(device, devices=K)`` shards every batch over ``K`` devices instead
(`spikenm.backends.jax.snn_shard`, the sharding rule of S4.16).

The whole training step -- forward pass (`spikenm.backends.jax.snn_graph`), loss,
gradients, running statistics, EID credits (`spikenm.backends.jax.snn_credit`) and
firing rates -- is one ``jax.jit``-compiled function per static configuration ``(graph,
lif, EID layers, direct/time-major input, dtype, abs/signed credit)``, built once and kept in
`step_function`'s cache (JAX adds one compilation per new batch shape); `eval_function`
likewise for the eval-mode pass.  `TRACES` counts how often each was traced.  The EID
learning signals ``d_t = dL/dI_t`` are gradients w.r.t. zero *probes* added to the
currents of the requested layers, taken in the same ``jax.value_and_grad`` call as the
parameter gradients.

float64 needs JAX's 64-bit mode (``jax.config.update("jax_enable_x64", True)`` or
``with jax.enable_x64(True):``); `JaxModelBackend.from_numpy` refuses float64 without it
and stores integer labels as int32 when it is off.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spikenm.snn.graph import Graph
from spikenm.snn.model import EIDRequest, EvalResult, StepResult, check_call, check_eid_request
from spikenm.snn.neuron import LIFParams

from . import arrays
from .snn_credit import layer_credit
from .snn_device import available_devices, device_name, resolve_device
from .snn_graph import correct_count, cross_entropy, forward

__all__ = ["JaxModelBackend", "model_backend", "step_function", "eval_function", "TRACES",
           "available_devices"]

TRACES: Counter[tuple[Any, ...]] = Counter()
"""Times each compiled function was traced, keyed by ``("step", graph, lif, eid_layers,
static, dtype)`` (with a trailing ``"signed"`` for the signed credits of S2.9) or
``("eval", graph, lif, static, dtype)``, followed by the sharded backend's tag
(`spikenm.backends.jax.snn_shard`); a call with a known configuration and batch shape
does not add to it."""


def step_body(graph: Graph, lif: LIFParams, eid_layers: tuple[int, ...], static: bool,
              dtype: str, signed: bool = False, tag: tuple[Any, ...] = ()
              ) -> Callable[..., Any]:
    """The train-mode step of one static configuration as a plain (not yet compiled)
    function, counting its traces in `TRACES` under its key plus ``tag``.

    ``f(params, buffers, x, y, eid_weights, decay) -> (loss, correct, grads, buffers,
    credits, rates)``: batch-mean loss, correct count, gradient of every parameter, the
    running statistics after the batch, one credit (block layout; S2.3, or S2.9 with
    ``signed``) per layer of ``eid_layers`` and the firing rate of every ``lif`` node,
    all arrays.  `step_function` compiles it for one device,
    `spikenm.backends.jax.snn_shard` for a batch sharded over several (S4.16).
    """
    key = ("step", graph, lif, eid_layers, static, dtype) + (("signed",) if signed else ())
    key += tag
    t_steps = lif.time_steps

    def step(params: dict[str, jax.Array], buffers: dict[str, jax.Array], x: jax.Array,
             y: jax.Array, eid_weights: tuple[jax.Array, ...], decay: jax.Array
             ) -> tuple[Any, ...]:
        TRACES[key] += 1
        batch = x.shape[0] if static else x.shape[1]
        probes = {k: jnp.zeros((t_steps, batch) + graph.shapes[graph.layers[k]], x.dtype)
                  for k in eid_layers}

        def loss_fn(ps: dict[str, jax.Array], pr: dict[int, jax.Array]) -> tuple[Any, Any]:
            run = forward(graph, lif, ps, buffers, x, static, True, pr, eid_layers)
            return jnp.mean(cross_entropy(run.logits, y)), run

        (loss, run), (grads, signals) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(params, probes)
        credits = {k: layer_credit(graph.layer_node(k), *run.inputs[k], signals[k], w, decay,
                                   signed)
                   for k, w in zip(eid_layers, eid_weights)}
        rates = tuple(jnp.mean(s) for s in run.spikes)
        return loss, correct_count(run.logits, y), grads, run.buffers, credits, rates

    return step


@lru_cache(maxsize=64)
def step_function(graph: Graph, lif: LIFParams, eid_layers: tuple[int, ...], static: bool,
                  dtype: str, signed: bool = False) -> Callable[..., Any]:
    """The compiled train-mode step of one static configuration (`step_body` under
    ``jax.jit``)."""
    return jax.jit(step_body(graph, lif, eid_layers, static, dtype, signed))


def eval_body(graph: Graph, lif: LIFParams, static: bool, dtype: str,
              tag: tuple[Any, ...] = ()) -> Callable[..., Any]:
    """The eval-mode pass as a plain function: ``f(params, buffers, x, y) -> (loss_sum,
    correct, spike_sums)`` (spike sums as exact integer counts); traces counted in
    `TRACES` under its key plus ``tag``."""
    key = ("eval", graph, lif, static, dtype) + tag

    def run(params: dict[str, jax.Array], buffers: dict[str, jax.Array], x: jax.Array,
            y: jax.Array) -> tuple[Any, ...]:
        TRACES[key] += 1
        out = forward(graph, lif, params, buffers, x, static, False, {})
        return (jnp.sum(cross_entropy(out.logits, y)), correct_count(out.logits, y),
                tuple(jnp.count_nonzero(s) for s in out.spikes))

    return run


@lru_cache(maxsize=64)
def eval_function(graph: Graph, lif: LIFParams, static: bool, dtype: str
                  ) -> Callable[..., Any]:
    """The compiled eval-mode pass (`eval_body` under ``jax.jit``)."""
    return jax.jit(eval_body(graph, lif, static, dtype))


def host_array(a: Any) -> np.ndarray:
    """``a`` as a NumPy array; int64 labels as int32 when JAX 64-bit types are off.

    Raises
    ------
    ValueError
        An int64 array that does not fit int32 while 64-bit types are off.
    """
    a = np.asarray(a)
    if a.dtype.kind in "iu" and a.dtype.itemsize == 8 and not jax.config.jax_enable_x64:
        info = np.iinfo(np.int32)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise ValueError(f"a {a.dtype} array with values in [{a.min()}, {a.max()}] "
                             f"does not fit int32 and JAX 64-bit types are off")
        a = a.astype(np.int32)
    return a


class JaxModelBackend:
    """The JAX model backend on one device (module docstring; `model_backend` makes one).

    Attributes
    ----------
    name : str
        ``"jax"``.
    device : str
        Canonical device name, e.g. ``"cpu:0"`` or ``"gpu:0"``.
    jax_device : jax.Device
    """

    name = "jax"

    def __init__(self, device: str = "cpu") -> None:
        self.jax_device, self.device = resolve_device(device)
        self._placement: Any = self.jax_device   # where scalars go (a sharding: replicated)
        self._devices: set[jax.Device] = {self.jax_device}   # where arrays may be
        self._anchor = jax.device_put(np.zeros((), np.float32), self.jax_device)
        self._scalars: dict[tuple[str, float], jax.Array] = {}

    def _scalar(self, value: float, dtype: str) -> jax.Array:
        """A 0-d array of ``value`` on `device`, made once per value and dtype."""
        key = (dtype, float(value))
        if key not in self._scalars:
            self._scalars[key] = jax.device_put(np.asarray(key[1], dtype), self._placement)
        return self._scalars[key]

    def __repr__(self) -> str:
        return f"JaxModelBackend(device={self.device!r})"

    # -- arrays ------------------------------------------------------------------------
    def from_numpy(self, a: np.ndarray) -> jax.Array:
        """``a`` as a JAX array on `device`, same dtype and values.

        Integer arrays (class labels) become int32 when 64-bit types are off and every
        value fits.

        Raises
        ------
        TypeError
            A float64 array while 64-bit types are off.
        ValueError
            An int64 array that does not fit int32 while 64-bit types are off.
        """
        return arrays.from_numpy(host_array(a), like=self._anchor)

    def to_numpy(self, x: jax.Array) -> np.ndarray:
        """A NumPy copy of ``x`` on the host."""
        return arrays.to_numpy(x)

    # -- steps -------------------------------------------------------------------------
    def _run_step(self, graph: Graph, lif: LIFParams, layers: tuple[int, ...], static: bool,
                  dtype: str, signed: bool, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The compiled train step on checked ``args`` (overridden to shard, S4.16)."""
        return step_function(graph, lif, layers, static, dtype, signed)(*args)

    def _run_eval(self, graph: Graph, lif: LIFParams, static: bool, dtype: str,
                  args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The compiled eval pass on checked ``args`` (overridden to shard, S4.16)."""
        return eval_function(graph, lif, static, dtype)(*args)

    def _check_array(self, where: str, a: Any) -> None:
        """``a`` is a concrete ``jax.Array`` on the backend's devices (`device`, or every
        device of a sharded backend's mesh; S4.16), else an error naming ``where``."""
        if not isinstance(a, jax.Array):
            raise TypeError(f"{where} is a {type(a).__name__}; expected a jax.Array on "
                            f"{self.device} (use from_numpy)")
        if arrays.is_traced(a):
            raise TypeError(f"{where} is a tracer; the model backend compiles its own step "
                            f"and returns host numbers: call it outside jax.jit")
        devices = a.devices()
        if not devices <= self._devices:
            names = sorted(device_name(d) for d in devices)
            raise ValueError(f"{where} is on device {', '.join(names)}; this backend runs on "
                             f"{self.device!r} (put it there with from_numpy or "
                             f"jax.device_put)")

    def _prepare(self, graph: Graph, params: Mapping[str, Any], buffers: Mapping[str, Any],
                 x: Any, y: Any, lif: LIFParams) -> tuple[dict[str, Any], dict[str, Any],
                                                          bool, int, str]:
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a spikenm.snn.Graph, got {type(graph).__name__}")
        if not isinstance(lif, LIFParams):
            raise TypeError(f"lif must be a spikenm.snn.LIFParams, got {type(lif).__name__}")
        static, batch = check_call(graph, params, buffers, x, y, lif, arrays.dtype_name)
        for kind, table in (("params", params), ("buffers", buffers)):
            for key, a in table.items():
                self._check_array(f"{kind}[{key!r}]", a)
        self._check_array("x", x)
        self._check_array("y", y)
        dtype = arrays.dtype_name(params[next(iter(graph.param_shapes()))])
        return dict(params), dict(buffers), static, batch, dtype

    def _eid(self, graph: Graph, eid: EIDRequest | None, dtype: str
             ) -> tuple[tuple[int, ...], tuple[Any, ...], jax.Array]:
        layers = check_eid_request(graph, eid)
        if eid is None:
            return (), (), self._scalar(0.0, dtype)
        for k, w in zip(layers, eid.weights):
            want = graph.layer_node(k).weight_shape()
            if tuple(w.shape) != want:
                raise ValueError(f"EID weight of layer {k} has shape {tuple(w.shape)}; "
                                 f"expected {want}")
            if arrays.dtype_name(w) != dtype:
                raise TypeError(f"EID weight of layer {k} is {arrays.dtype_name(w)}; "
                                f"expected the parameters' dtype {dtype}")
        for k, w in zip(layers, eid.weights):
            self._check_array(f"EID weight of layer {k}", w)
        return layers, tuple(eid.weights), self._scalar(eid.decay, dtype)

    def forward_backward(self, graph: Graph, params: Mapping[str, jax.Array],
                         buffers: Mapping[str, jax.Array], x: jax.Array, y: jax.Array,
                         lif: LIFParams, eid: EIDRequest | None = None) -> StepResult:
        """Train-mode loss, correct count, ``dL/dparam``, new running statistics, EID
        credits (S2.3, or S2.9 with ``eid.signed``) and firing rates (S4, S4.13); see
        `spikenm.snn.ModelBackend`."""
        params, buffers, static, _, dtype = self._prepare(graph, params, buffers, x, y, lif)
        layers, weights, decay = self._eid(graph, eid, dtype)
        signed = bool(eid is not None and eid.signed)
        loss, correct, grads, new_buffers, credits, rates = self._run_step(
            graph, lif, layers, static, dtype, signed, (params, buffers, x, y, weights, decay))
        host_loss, host_correct, host_rates = jax.device_get((loss, correct, rates))
        return StepResult(float(host_loss), int(host_correct), dict(grads), dict(new_buffers),
                          {k: credits[k] for k in layers}, tuple(float(r) for r in host_rates))

    def evaluate(self, graph: Graph, params: Mapping[str, jax.Array],
                 buffers: Mapping[str, jax.Array], x: jax.Array, y: jax.Array,
                 lif: LIFParams) -> EvalResult:
        """Eval-mode forward pass: summed loss, correct count and spike sums (S4.8, S4.9,
        S4.13); nothing changes."""
        params, buffers, static, batch, dtype = self._prepare(graph, params, buffers, x, y,
                                                              lif)
        loss_sum, correct, sums = jax.device_get(
            self._run_eval(graph, lif, static, dtype, (params, buffers, x, y)))
        counts = tuple(lif.time_steps * batch * math.prod(graph.shapes[i])
                       for i in graph.neurons)
        return EvalResult(float(loss_sum), int(correct), batch, tuple(float(s) for s in sums),
                          counts)


def model_backend(device: str = "cpu", devices: int = 1) -> JaxModelBackend:
    """The JAX model backend on ``device`` (``cpu``, ``cpu:0``, ``gpu``, ``gpu:1``,
    ``cuda``, ``cuda:0``, ``tpu:0``; S4.16).

    ``devices`` (``run.devices``): 1 (default) one device, ``K >= 2`` the first ``K``
    devices of ``device``'s platform with every batch sharded over them, 0 all of that
    platform's devices (`spikenm.backends.jax.snn_shard.ShardedJaxModelBackend`; one
    device alone gives the single-device backend).

    Raises
    ------
    TypeError
        ``devices`` is not an integer.
    ValueError
        The device is malformed or does not exist (the message names it and the available
        JAX devices); ``devices`` is negative, or more than the platform has, or
        ``device`` names an index other than 0 with ``devices != 1``.

    Examples
    --------
    >>> model_backend("cpu").device
    'cpu:0'
    """
    if devices == 1 and type(devices) is int:
        return JaxModelBackend(device)
    from .snn_shard import sharded_model_backend

    return sharded_model_backend(device, devices)
