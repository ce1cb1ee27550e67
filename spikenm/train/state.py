"""The trainer's explicit state and its exact conversion to/from checkpoint arrays.

Everything a step depends on is in `TrainState`: parameters and batch-norm buffers
(keyed as in `spikenm.snn.graph`), the weight optimizer's moments, the method's
`MethodState` (stored as it is: its arrays under ``method/``, its metadata as JSON) and
counters; random draws depend only on ``(seed, stream, step, index)``.  Restoring a state
from its arrays therefore continues a run bit-identically on the same backend (S5.12).

`LogState` is the loop's host-side bookkeeping of the open logging interval (its sums,
the gradient measurements of S5.9a made in it, and the previous logging step's final
masks for ``argmax_flip_rate``) and the run's wall time so far; it is checkpointed next
to the `TrainState` (arrays under ``log/``, metadata under ``"log"``) so that a resumed
run writes the metric records an uninterrupted run writes (S5.12a: identical but for the
wall-clock fields ``ms_per_step`` and ``seconds``, which count the time of every session).

`check_arrays_like` compares a checkpoint's arrays with those of a fresh state of the
network before any of them is used, so a checkpoint of another network, dtype or shape
is refused by name instead of failing later inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from spikenm.methods import MethodState
from spikenm.optim import OptState

__all__ = ["TrainState", "state_to_arrays", "state_from_arrays", "check_arrays_like",
           "LogState", "log_state_to_arrays", "log_state_from_arrays", "LOG_SUMS"]

Array = Any


@dataclass(frozen=True)
class TrainState:
    """State after ``step`` completed optimizer updates.

    ``weight_opt`` slots follow `spikenm.train.setup.Setup.param_keys`.
    ``flip_changed``/``flip_total`` sum the mask flips of the steps reported so far
    (S5.9).
    """

    step: int
    params: Mapping[str, Array]
    buffers: Mapping[str, Array]
    weight_opt: OptState
    method: MethodState
    flip_changed: float = 0.0
    flip_total: int = 0


def state_to_arrays(state: TrainState, param_keys: tuple[str, ...],
                    to_np: Callable[[Array], np.ndarray]
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Flat ``{key: ndarray}`` and JSON metadata for `spikenm.train.checkpoint`."""
    out: dict[str, np.ndarray] = {}
    for key in param_keys:
        out[f"params/{key}"] = to_np(state.params[key])
    for key, value in state.buffers.items():
        out[f"buffers/{key}"] = to_np(value)
    opt = state.weight_opt
    for i, slots in enumerate(opt.slots):
        for j, arr in enumerate(slots):
            out[f"weight_opt/{i}/{j}"] = to_np(arr)
    for key, value in state.method.arrays.items():
        out[f"method/{key}"] = to_np(value)
    meta: dict[str, Any] = {
        "step": state.step, "params": list(param_keys), "buffers": sorted(state.buffers),
        "weight_opt": {"kind": opt.kind, "count": opt.count,
                       "slots": [len(s) for s in opt.slots]},
        "method_arrays": sorted(state.method.arrays), "method_meta": dict(state.method.meta),
        "flip_changed": state.flip_changed, "flip_total": state.flip_total,
    }
    return out, meta


def state_from_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                      param_keys: tuple[str, ...], from_np: Callable[[np.ndarray], Array]
                      ) -> TrainState:
    """Inverse of `state_to_arrays`.

    Raises
    ------
    ValueError
        When an entry named by the metadata is missing, or the checkpoint's parameters
        are not those of the network (``param_keys``).
    """
    try:
        saved = tuple(meta["params"])
        if saved != tuple(param_keys):
            raise ValueError(f"checkpoint parameters {list(saved)} do not match the "
                             f"network's {list(param_keys)}")
        params = {key: from_np(arrays[f"params/{key}"]) for key in saved}
        buffers = {key: from_np(arrays[f"buffers/{key}"]) for key in meta["buffers"]}
        om = meta["weight_opt"]
        slots = tuple(tuple(from_np(arrays[f"weight_opt/{i}/{j}"]) for j in range(n))
                      for i, n in enumerate(om["slots"]))
        method = MethodState({key: from_np(arrays[f"method/{key}"])
                              for key in meta["method_arrays"]}, dict(meta["method_meta"]))
        return TrainState(int(meta["step"]), params, buffers,
                          OptState(om["kind"], int(om["count"]), slots), method,
                          float(meta["flip_changed"]), int(meta["flip_total"]))
    except KeyError as exc:
        raise ValueError(f"checkpoint is missing entry {exc.args[0]!r}") from None


def check_arrays_like(arrays: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                      source: str) -> None:
    """Refuse checkpoint ``arrays`` that do not fit the network of ``expected`` (the arrays
    of its fresh state, `state_to_arrays`).

    Every ``params/`` and ``buffers/`` entry of ``expected`` must be in ``arrays`` and no
    other; every entry present in both (optimizer moments and method arrays included)
    must have the same shape and dtype.

    Raises
    ------
    ValueError
        Naming ``source`` (the checkpoint file), the entry, what it holds and what the
        network expects.
    """
    fixed = ("params/", "buffers/")
    want = {k for k in expected if k.startswith(fixed)}
    have = {k for k in arrays if k.startswith(fixed)}
    if want != have:
        missing, extra = sorted(want - have), sorted(have - want)
        parts = ([f"missing entries {missing[:4]}"] if missing else []) + \
            ([f"entries the network lacks {extra[:4]}"] if extra else [])
        raise ValueError(f"{source} does not fit the network: {'; '.join(parts)}")
    for key in sorted(set(arrays) & set(expected)):
        got, ref = np.asarray(arrays[key]), expected[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise ValueError(f"{source}: entry {key!r} is {got.dtype} of shape "
                             f"{got.shape}; the network expects {ref.dtype} of shape "
                             f"{ref.shape} (a checkpoint of another network, dtype or "
                             f"backend?)")


LOG_SUMS = ("loss", "correct", "count", "steps", "changed", "compared", "seconds")
"""Sums of the open logging interval kept in `LogState.sums` (``seconds``: its wall
time so far)."""


@dataclass(frozen=True)
class LogState:
    """Host-side state of the metrics log between two logging steps.

    Attributes
    ----------
    sums : dict
        The open interval's sums (`LOG_SUMS`: loss, correct, count, steps, flips changed
        and compared).
    grad_points : tuple of dict
        Gradient measurements of S5.9a made in the open interval (JSON values).
    argmax_previous : dict int -> ndarray
        ``final_mask(pi)`` of every sampled layer at the previous logging step (uint8,
        block layout), for ``argmax_flip_rate``.
    elapsed : float
        Wall seconds of the run's steps so far, over every session (the summary's
        ``seconds``).
    """

    sums: Mapping[str, float] = field(default_factory=dict)
    grad_points: tuple[Mapping[str, Any], ...] = ()
    argmax_previous: Mapping[int, np.ndarray] = field(default_factory=dict)
    elapsed: float = 0.0


def log_state_to_arrays(log: LogState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)``: arrays ``log/argmax/k`` and the metadata to store under
    ``"log"``."""
    arrays = {f"log/argmax/{k}": np.asarray(v, np.uint8)
              for k, v in sorted(log.argmax_previous.items())}
    meta = {"sums": {key: log.sums[key] for key in LOG_SUMS if key in log.sums},
            "grad_points": [dict(p) for p in log.grad_points],
            "argmax_previous": sorted(int(k) for k in log.argmax_previous),
            "elapsed": float(log.elapsed)}
    return arrays, meta


def log_state_from_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None
                          ) -> LogState:
    """Inverse of `log_state_to_arrays`; an empty `LogState` for ``meta`` None (a
    checkpoint written before the log state was stored).

    Raises
    ------
    ValueError
        When an array named by ``meta`` is missing.
    """
    if meta is None:
        return LogState()
    try:
        previous = {int(k): np.asarray(arrays[f"log/argmax/{k}"])
                    for k in meta.get("argmax_previous", [])}
    except KeyError as exc:
        raise ValueError(f"checkpoint is missing entry {exc.args[0]!r}") from None
    return LogState(dict(meta.get("sums", {})), tuple(meta.get("grad_points", [])), previous,
                    float(meta.get("elapsed", 0.0)))
