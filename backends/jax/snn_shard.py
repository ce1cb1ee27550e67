"""The JAX model backend on several devices: every batch sharded over them with
``jax.sharding`` (SPEC S4.16, ``run.devices``).

One process drives ``K`` devices of one platform through a 1-D `jax.sharding.Mesh` with
the axis ``"batch"``.  Parameters, buffers, EID weights and the trace decay are
replicated (``NamedSharding(mesh, PartitionSpec())``; `from_numpy` puts every array
there).  Each step the input is sharded along its batch axis -- axis 0 of a
direct-encoded ``(B, *input_shape)`` input, axis 1 of a time-major ``(T, B, ...)`` one
(S4.1, S4.7): ``PartitionSpec("batch")`` / ``PartitionSpec(None, "batch")`` -- and the
labels along axis 0, so every device runs the forward and backward pass of ``B / K``
samples.  The compiled function is the single-device step
(`spikenm.backends.jax.snn.step_body`) under ``jax.jit`` with these input shardings and
replicated outputs: its batch means and sums are over the global batch, so XLA's SPMD
partitioner inserts the all-reduces, and the loss, the correct count, the gradients, the
batch-norm statistics (mean and variance per channel over batch and time, S4.13), the
EID credits (the sum over ``b`` inside ``|.|`` of S2.3) and the firing rates are those of
the global batch -- equal to one device's up to the order of floating-point sums.

A batch whose size is not a multiple of ``K`` (an evaluation's last batch, a caller's
smaller last batch) runs replicated: every device computes the whole batch, with the
same numbers; a training step doing so warns once per batch size, since it gains
nothing from the other devices.  `SHARDINGS` records the sharding XLA gave the input and
the labels of every compiled function (``jax.debug.inspect_array_sharding``), so a test
can see that the batch really is split.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from spikenm.snn.graph import Graph
from spikenm.snn.neuron import LIFParams

from . import arrays
from .snn import JaxModelBackend, eval_body, host_array, step_body
from .snn_device import device_name, platform_devices, resolve_device

__all__ = ["AXIS", "SHARDINGS", "ShardedJaxModelBackend", "device_mesh",
           "sharded_model_backend", "sharded_step_function", "sharded_eval_function"]

AXIS = "batch"
"""The mesh axis name the batch is split along."""

SHARDINGS: dict[tuple[Any, ...], dict[str, jax.sharding.Sharding]] = {}
"""``{"x": ..., "y": ...}``: the shardings the compiled program gave the input and the
labels, by the key of `spikenm.backends.jax.snn.TRACES` (filled when XLA compiles)."""


def device_mesh(device: str, devices: int) -> Mesh:
    """The 1-D mesh (axis `AXIS`) over the first ``devices`` devices of ``device``'s
    platform; ``devices = 0``: all of them.

    Raises
    ------
    TypeError
        ``devices`` is not an integer.
    ValueError
        ``devices`` is negative or more than the platform has (the message says how many
        exist), or ``device`` names an index other than 0.

    Examples
    --------
    >>> device_mesh("cpu", 0).axis_names
    ('batch',)
    """
    if not isinstance(devices, (int, np.integer)) or isinstance(devices, bool):
        raise TypeError(f"devices must be an integer (1: one device, K >= 2: K devices, "
                        f"0: all), got {type(devices).__name__} {devices!r}")
    if devices < 0:
        raise ValueError(f"devices={devices} is invalid; expected 1 (one device), an "
                         f"integer K >= 2 (the first K devices) or 0 (every device)")
    first, name = resolve_device(device)
    platform, index = name.split(":")
    if index != "0":
        raise ValueError(f"device {device!r} names {name}; with devices={devices} the "
                         f"batch is sharded over the first devices of the platform: give "
                         f"the platform alone ({platform!r})")
    found = platform_devices(platform)
    if devices > len(found):
        hint = (" (for more CPU devices set XLA_FLAGS=--xla_force_host_platform_device_"
                f"count={devices} before JAX is imported)" if platform == "cpu" else "")
        raise ValueError(f"devices={devices} asks for {devices} {platform} devices; "
                         f"{len(found)} exist here ({', '.join(device_name(d) for d in found)})"
                         f"{hint}")
    chosen = found[:devices] if devices else found
    return Mesh(np.array(chosen, dtype=object), (AXIS,))


def _input_spec(axis: int | None) -> PartitionSpec:
    """The input's partition: split along ``axis`` (None: replicated)."""
    if axis is None:
        return PartitionSpec()
    return PartitionSpec(*([None] * axis + [AXIS]))


def _recorder(key: tuple[Any, ...], name: str) -> Callable[[Any], None]:
    def record(sharding: Any) -> None:
        SHARDINGS.setdefault(key, {})[name] = sharding
    return record


def _inspect(key: tuple[Any, ...], x: jax.Array, y: jax.Array) -> None:
    jax.debug.inspect_array_sharding(x, callback=_recorder(key, "x"))
    jax.debug.inspect_array_sharding(y, callback=_recorder(key, "y"))


@lru_cache(maxsize=64)
def sharded_step_function(graph: Graph, lif: LIFParams, eid_layers: tuple[int, ...],
                          static: bool, dtype: str, signed: bool, mesh: Mesh,
                          axis: int | None) -> Callable[..., Any]:
    """`spikenm.backends.jax.snn.step_body` compiled over ``mesh``: input sharded along
    ``axis`` (labels along 0; None: both replicated), everything else and every output
    replicated.  Same arguments and results as
    `spikenm.backends.jax.snn.step_function`."""
    tag = ("sharded", int(mesh.devices.size), axis)
    key = ("step", graph, lif, eid_layers, static, dtype) + (("signed",) if signed else ())
    body = step_body(graph, lif, eid_layers, static, dtype, signed, tag)

    def step(params: Any, buffers: Any, x: jax.Array, y: jax.Array, weights: Any,
             decay: jax.Array) -> tuple[Any, ...]:
        _inspect(key + tag, x, y)
        return body(params, buffers, x, y, weights, decay)

    rep = NamedSharding(mesh, PartitionSpec())
    xs = NamedSharding(mesh, _input_spec(axis))
    ys = NamedSharding(mesh, _input_spec(None if axis is None else 0))
    return jax.jit(step, in_shardings=(rep, rep, xs, ys, rep, rep), out_shardings=rep)


@lru_cache(maxsize=64)
def sharded_eval_function(graph: Graph, lif: LIFParams, static: bool, dtype: str,
                          mesh: Mesh, axis: int | None) -> Callable[..., Any]:
    """`spikenm.backends.jax.snn.eval_body` compiled over ``mesh`` (shardings as in
    `sharded_step_function`)."""
    tag = ("sharded", int(mesh.devices.size), axis)
    body = eval_body(graph, lif, static, dtype, tag)

    def run(params: Any, buffers: Any, x: jax.Array, y: jax.Array) -> tuple[Any, ...]:
        _inspect(("eval", graph, lif, static, dtype) + tag, x, y)
        return body(params, buffers, x, y)

    rep = NamedSharding(mesh, PartitionSpec())
    xs = NamedSharding(mesh, _input_spec(axis))
    ys = NamedSharding(mesh, _input_spec(None if axis is None else 0))
    return jax.jit(run, in_shardings=(rep, rep, xs, ys), out_shardings=rep)


class ShardedJaxModelBackend(JaxModelBackend):
    """The JAX model backend on the devices of ``mesh``, batches sharded (module
    docstring; `sharded_model_backend` makes one).

    Attributes
    ----------
    name : str
        ``"jax"``.
    device : str
        The devices' canonical names joined by commas, e.g. ``"cpu:0,cpu:1"``.
    devices : tuple of str
        Those names.
    mesh : jax.sharding.Mesh
        1-D, axis `AXIS`.
    jax_device : jax.Device
        The first device.
    """

    def __init__(self, mesh: Mesh) -> None:  # noqa: D107 -- no single-device setup
        self.mesh = mesh
        self.devices = tuple(device_name(d) for d in mesh.devices.flat)
        self.device = ",".join(self.devices)
        self.jax_device = mesh.devices.flat[0]
        self._devices = set(mesh.devices.flat)
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self._placement = self._replicated
        self._anchor = jax.device_put(np.zeros((), np.float32), self._replicated)
        self._scalars: dict[tuple[str, float], jax.Array] = {}
        self._warned: set[int] = set()

    def __repr__(self) -> str:
        return f"ShardedJaxModelBackend(devices={self.devices!r})"

    def from_numpy(self, a: np.ndarray) -> jax.Array:
        """As `JaxModelBackend.from_numpy` (same dtype rules and errors), replicated on
        every device of `mesh`."""
        return jax.device_put(arrays.from_numpy(host_array(a)), self._replicated)

    def _axis(self, x: jax.Array, static: bool) -> int | None:
        """The batch axis of ``x`` when its batch divides over the devices, else None."""
        axis = 0 if static else 1
        return axis if x.shape[axis] % self.mesh.devices.size == 0 else None

    def _run_step(self, graph: Graph, lif: LIFParams, layers: tuple[int, ...], static: bool,
                  dtype: str, signed: bool, args: tuple[Any, ...]) -> tuple[Any, ...]:
        params, buffers, x, y, weights, decay = args
        axis = self._axis(x, static)
        if axis is None:
            batch = x.shape[0 if static else 1]
            if batch not in self._warned:
                self._warned.add(batch)
                warnings.warn(f"a training batch of {batch} samples does not divide over "
                              f"{self.mesh.devices.size} devices; it runs replicated on "
                              f"each (S4.16)", RuntimeWarning, stacklevel=4)
        fn = sharded_step_function(graph, lif, layers, static, dtype, signed, self.mesh,
                                   axis)
        return fn(*self._place(params, buffers, x, y, axis), jax.device_put(
            weights, self._replicated), jax.device_put(decay, self._replicated))

    def _run_eval(self, graph: Graph, lif: LIFParams, static: bool, dtype: str,
                  args: tuple[Any, ...]) -> tuple[Any, ...]:
        params, buffers, x, y = args
        axis = self._axis(x, static)
        fn = sharded_eval_function(graph, lif, static, dtype, self.mesh, axis)
        return fn(*self._place(params, buffers, x, y, axis))

    def _place(self, params: Any, buffers: Any, x: jax.Array, y: jax.Array,
               axis: int | None) -> tuple[Any, ...]:
        """Parameters and buffers replicated, ``x`` split along ``axis`` and ``y`` along
        0 (None: replicated); arrays already placed so are not copied."""
        xs = NamedSharding(self.mesh, _input_spec(axis))
        ys = NamedSharding(self.mesh, _input_spec(None if axis is None else 0))
        return (jax.device_put(params, self._replicated),
                jax.device_put(buffers, self._replicated),
                jax.device_put(x, xs), jax.device_put(y, ys))


def sharded_model_backend(device: str, devices: int) -> JaxModelBackend:
    """The JAX model backend on the first ``devices`` devices of ``device``'s platform
    (0: all of them), batches sharded (S4.16); a single device gives the plain
    `spikenm.backends.jax.snn.JaxModelBackend`.

    Raises
    ------
    TypeError, ValueError
        As `device_mesh`.

    Examples
    --------
    >>> sharded_model_backend("cpu", 0).device.startswith("cpu:0")
    True
    """
    mesh = device_mesh(device, devices)
    if mesh.devices.size == 1:
        return JaxModelBackend(device)
    return ShardedJaxModelBackend(mesh)

