"""One optimizer step of the trainer (SPEC S5), the same for every method and backend.

Per step ``s``: the batch of S5.10 is encoded in NumPy (S4.7) and copied to the model
backend's device; the method gives the step's masks (`spikenm.methods.base.Method.masks`);
the model backend runs ``forward_backward`` on ``W_eff = W * mask`` (with EID credits for
the layers the method asks for); the method turns ``G = dL/dW_eff`` into ``dL/dW`` and
updates its own state; the weight optimizer steps.  Nothing is copied back to the host
but the loss, the correct count and the firing rates (in the backend's one transfer):
the flip count stays an array until it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from spikenm.methods.flips import step_flips
from spikenm.optim import OptHyper, opt_init, opt_update
from spikenm.schedules import schedule_value
from spikenm.snn import EIDRequest

from .config import OptimConfig
from .encoding import batch_indices, encode
from .setup import Setup
from .state import TrainState

__all__ = ["StepInfo", "train_step", "weight_lr"]

Array = Any


@dataclass(frozen=True)
class StepInfo:
    """What one step reports (``changed`` is an array on the device, or None)."""

    loss: float
    correct: int
    count: int
    changed: Array | None
    compared: int
    phase: str
    temperature: float
    scale: float
    lr: float
    firing_rates: tuple[float, ...]
    grads: Mapping[str, Array]
    """The step's ``dL/dparam`` (weights: ``dL/dW_eff``) on the device, for the logging
    step's near-silent split (S5.9a); the loop reads it on logging steps only."""


def weight_lr(optim: OptimConfig, window: tuple[int, int] | None, total_steps: int,
              step: int) -> float:
    """Weight learning rate at ``step`` (S5.6): cosine over the method's window
    ``(start, length)`` (default the whole run; ASP restarts it, S6.5), or constant.

    Examples
    --------
    >>> weight_lr(OptimConfig(lr=1.0), None, 10, 0), weight_lr(OptimConfig(lr=1.0), (5, 5), 10, 5)
    (1.0, 1.0)
    """
    if optim.lr_schedule == "constant":
        return optim.lr
    start, length = window or (0, total_steps)
    return schedule_value("cosine", optim.lr, 0.0, step - start, length + 1)


def step_batch(setup: Setup, step: int, order_cache: dict[int, np.ndarray]
               ) -> tuple[Array, Array]:
    """The batch ``(x, y)`` of training step ``step`` (S5.10), encoded (S4.7), on the model
    backend's device."""
    cfg, model, data = setup.cfg, setup.model, setup.data
    idx = batch_indices(cfg.run.seed, step, setup.steps_per_epoch, cfg.optim.batch_size,
                        data.x_train.shape[0], order_cache)
    x = model.from_numpy(encode(data.x_train[idx], data.pixel_max, cfg.run.dtype,
                                cfg.data.encoding, setup.lif.time_steps, cfg.run.seed, step))
    return x, model.from_numpy(data.y_train[idx])


def train_step(setup: Setup, state: TrainState, order_cache: dict[int, np.ndarray]
               ) -> tuple[TrainState, StepInfo]:
    """One optimizer step from ``state``; returns the new state and what it reports."""
    cfg, model, method, ms = setup.cfg, setup.model, setup.method, setup.method_setup
    step = state.step
    x, y = step_batch(setup, step, order_cache)
    weights = {k: state.params[f"layer{k}.weight"] for k in ms.layers}
    mstate, sm = method.masks(ms, state.method, weights, step)
    weight_opt = state.weight_opt
    if sm.reset_optimizer:  # S6.5: a fresh optimizer after pruning
        weight_opt = opt_init(cfg.optim.optimizer, [state.params[k] for k in setup.param_keys])
    effective = dict(state.params)
    for k, mask in sm.masks.items():
        effective[f"layer{k}.weight"] = weights[k] * mask
    eid = None
    if sm.credit_layers:
        decay = sm.eid_decay if sm.eid_decay >= 0 else setup.lif.beta
        eid = EIDRequest(tuple(sm.credit_layers), tuple(weights[k] for k in sm.credit_layers),
                         decay, sm.eid_signed)
    result = model.forward_backward(setup.graph, effective, state.buffers, x, y, setup.lif,
                                    eid)
    grads_eff = {k: result.grads[f"layer{k}.weight"] for k in ms.layers}
    weight_grads = method.weight_grads(ms, sm, weights, grads_eff)
    changed, compared = step_flips(mstate, sm)
    mstate = method.update(ms, mstate, sm, weights, grads_eff, result.credits, step)
    grads = dict(result.grads)
    for k, g in weight_grads.items():
        grads[f"layer{k}.weight"] = g
    o = cfg.optim
    lr = weight_lr(o, sm.lr_window, setup.total_steps, step)
    new, weight_opt = opt_update(
        [state.params[k] for k in setup.param_keys], [grads[k] for k in setup.param_keys],
        weight_opt, OptHyper(lr, o.beta1, o.beta2, o.eps, o.momentum, setup.weight_decay))
    params = dict(zip(setup.param_keys, new))
    if sm.fixed:  # a fixed mask keeps pruned weights at exactly zero (S5.8)
        for k, mask in sm.masks.items():
            params[f"layer{k}.weight"] = params[f"layer{k}.weight"] * mask
    buffers = state.buffers
    if buffers:
        if set(result.buffers) != set(buffers):
            raise ValueError(f"model backend {model.name!r} returned buffers "
                             f"{sorted(result.buffers)}; expected {sorted(buffers)}")
        buffers = dict(result.buffers)
    new_state = TrainState(step + 1, params, buffers, weight_opt, mstate, state.flip_changed,
                           state.flip_total)
    info = StepInfo(result.loss, result.correct, int(y.shape[0]), changed, compared,
                    sm.phase, sm.temperature, sm.scale, lr, tuple(result.firing_rates),
                    result.grads)
    return new_state, info
