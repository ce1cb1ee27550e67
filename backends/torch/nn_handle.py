"""`SpikeNMHandle`: one mask method (SPEC S6.0) driving the masked layers of a PyTorch
model through the user's own training loop (SPEC S5).

The handle owns the method object, its `MethodSetup` and its `MethodState` (logits, their
Adam moments, running EID credits, fixed masks, flip-rate history) as torch tensors on the
model's device.  Per optimizer step ``s`` (`SpikeNMHandle.step_count`):

1. On the first train-mode access of a masked weight in step ``s`` (or at `eid_loss`,
   `step`), the masks of the step come from ``method.masks(setup, state, W, s)``, with
   the mask parameters (``logits/k``) as fresh leaves that require gradients; ``W`` is a
   copy of the dense weights at that moment (the weights of step ``s``).
2. Every forward/backward of the user's loop uses these masks (`nn_mask.MaskedWeight`):
   ``dL/dW`` is ``method.weight_grads`` of ``G = dL/dW_eff``, ``G`` is summed per layer,
   and hooks collect the EID credits (`nn_credit.CreditCollector`) with the trace decay
   and the credit (S2.3, or the signed S2.9) of the method's `StepMasks`.
3. `eid_loss` returns ``sum_k lambda_s * L_eid(logits_k, q_k, kappa_s)`` (S2.6, S5.5)
   from ``method.eid_targets`` (the running credit of the steps before ``s``),
   differentiable in the logit leaves; the user adds it to the loss.
4. `step` (after ``optimizer.step()``) takes the task gradient of the logits once from
   the summed ``G``: ``torch.autograd.grad(masks, leaves, G * W)``, which is the method's
   VJP ``sample_mask_vjp(..., G * W)`` of S5.4; adds the EID gradient the backward pass
   left on the leaves; and calls ``method.update(..., logit_grads=total)`` with the
   step's credits, which folds the credits into the running credit and takes the
   method's own Adam step on the logits (``sampler.logit_lr``; the logits are not in the
   user's optimizer).  In a fixed-mask phase the weights are multiplied by the mask
   (S5.8).  A method whose masks are not differentiable in its state gets ``G`` and the
   credits only and computes its mask-parameter gradients itself (``logit_grads=None``).

Eval mode uses ``method.final_masks`` (S5.11), computed once per step and cached.

Data parallelism (S5.14): when ``torch.distributed`` is initialized with several
processes (or ``distributed=True``), `SpikeNMHandle.step` first averages the summed
``G`` of every masked layer over the processes (as ``DistributedDataParallel`` averages
the weight gradients) and the collectors' per-step credit sums (before the absolute
value, `nn_credit`), so the logit gradients, credits and the method's update are the
same on every process; only rank 0 keeps a progress bar.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikenm.api import check_nm, to_block_layout
from spikenm.methods.base import Method, MethodSetup, MethodState, StepMasks
from spikenm.methods.common import LOGITS  # the mask parameters the module path differentiates
from spikenm.methods.flips import PREVIOUS, flip_count, step_flips
from spikenm.progress import Progress
from spikenm.schedules import schedule_value

from .blocks import softmax_block, to_blocks
from .eid import eid_loss as _eid_loss
from .nn_credit import CreditCollector

__all__ = ["SpikeNMHandle", "LayerStats", "DEFAULT_EID_DECAY", "LOGITS"]

DEFAULT_EID_DECAY = 0.5
"""Trace decay of the credits when neither `sparsify` nor the method gives one: the
default LIF ``beta`` (S4.3)."""

STATE_FORMAT = "spikenm.nn/1"


@dataclass(frozen=True)
class LayerStats:
    """Diagnostics of one masked layer (SPEC S1.9, S5.9).

    Attributes
    ----------
    flip_rate : float or None
        Fraction of mask entries that differ between the hard masks of the last completed
        step and the one before; None until the method has two such steps.
    entropy : float or None
        Mean over blocks of ``H = -sum_i p_i log p_i``, ``p = softmax(kappa * logits)``
        (S1.7) at the current step's logit scale; ``log m`` for uniform logits, 0 for a
        decided block; None for a method without block logits.
    """

    flip_rate: float | None
    entropy: float | None


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The unmasked weight ``W`` of a layer (the parametrization's ``original``)."""
    if parametrize.is_parametrized(module, "weight"):
        w = module.parametrizations["weight"].original  # type: ignore[index]
    else:
        w = module.weight
    assert isinstance(w, torch.Tensor)
    return w


def _rate(flips: tuple[Any, int] | None) -> float | None:
    return None if flips is None or not flips[1] else float(flips[0]) / flips[1]


def _detached(state: MethodState) -> MethodState:
    return MethodState({k: v.detach() if isinstance(v, torch.Tensor) else v
                        for k, v in state.arrays.items()}, dict(state.meta))


class SpikeNMHandle:
    """What `spikenm.backends.torch.nn.sparsify` returns (module docstring for a step).

    Attributes
    ----------
    n, m : int
        The pattern.
    method : Method
        The mask method (S6.0).
    setup : MethodSetup
        Layers (ordinals), weight shapes, ``total_steps``, seed, dtype.
    layers : dict str -> nn.Module
        Masked layers by module name.
    ordinals : dict str -> int
        Layer ordinal of each masked layer: its position among the Linear/ConvNd modules
        of ``model.named_modules()`` (S5.2).
    dense : dict str -> str
        Every other Linear/ConvNd layer with the reason it is dense.
    skipped : dict str -> str
        The layers kept dense because their input size does not fit ``m``.
    time_steps : int or None
        The time convention of the EID hooks (`spikenm.backends.torch.nn_credit`).
    finalized : bool
    """

    def __init__(self, n: int, m: int, method: Method, setup: MethodSetup,
                 layers: dict[str, nn.Module], ordinals: dict[str, int],
                 dense: dict[str, str], skipped: dict[str, str], time_steps: int | None,
                 eid_decay: float | None, progress: bool | None = None,
                 distributed: bool | None = None) -> None:
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(f"distributed={distributed!r} is invalid; expected None "
                            f"(automatic), True or False")
        self.distributed = distributed
        self.n, self.m = n, m
        self.method = method
        self.setup = setup
        self.layers = layers
        self.ordinals = ordinals
        self.dense = dense
        self.skipped = skipped
        self.time_steps = time_steps
        self.eid_decay = eid_decay
        self.finalized = False
        self._module = {ordinals[name]: mod for name, mod in layers.items()}
        self._names = {k: name for name, k in ordinals.items()}
        self._collector = CreditCollector(
            {k: (self._names[k], mod) for k, mod in self._module.items()},
            DEFAULT_EID_DECAY if eid_decay is None else eid_decay, time_steps)
        self._collector.attach()
        self._state = _detached(method.init(setup, self._weights()))
        self._step = 0
        self._warned = False
        self._targets: dict[int, tuple[torch.Tensor, float, float]] = {}
        self._targets_for: tuple[int, Any] | None = None
        self._scale = 1.0
        self._flips: tuple[Any, int] | None = None
        self._layer_flips: dict[int, tuple[Any, int] | None] = {k: None for k in self._module}
        self._progress = Progress(setup.total_steps, sys.stderr, "sparsify", "step",
                                  bar=None if progress is None else progress)
        self._reset_step()

    def __repr__(self) -> str:
        state = "finalized" if self.finalized else f"step={self._step}"
        return (f"SpikeNMHandle({self.method.name}, {self.n}:{self.m}, {state}, "
                f"masked={list(self.layers)}, dense={list(self.dense)})")

    # -- per-step caches -----------------------------------------------------------------
    def _reset_step(self) -> None:
        self._sm: StepMasks | None = None
        self._after: MethodState | None = None
        self._snapshot: dict[int, torch.Tensor] = {}
        self._leaves: dict[int, torch.Tensor] = {}
        self._applied: dict[int, torch.Tensor] = {}
        self._grad_sum: dict[int, torch.Tensor] = {}
        self._offset: dict[int, torch.Tensor] = {}
        self._eid_called = False
        self._eval: dict[int, torch.Tensor] | None = None

    def _weights(self) -> dict[int, torch.Tensor]:
        return {k: dense_weight(mod).detach() for k, mod in self._module.items()}

    def _open(self) -> None:
        if self.finalized:
            raise RuntimeError("this handle was finalized: the model has plain weights now")

    def _prepare(self) -> StepMasks:
        """The `StepMasks` of the current step (computed once per step)."""
        if self._sm is not None:
            return self._sm
        self._open()
        s = self._step
        self._snapshot = {k: w.clone() for k, w in self._weights().items()}
        arrays = dict(self._state.arrays)
        leaves = {}
        for k, v in self._state.group(LOGITS).items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                leaves[k] = v.detach().requires_grad_(True)
                arrays[f"{LOGITS}{k}"] = leaves[k]
        with torch.enable_grad():
            after, sm = self.method.masks(self.setup, MethodState(arrays, self._state.meta),
                                          self._snapshot, s)
        differentiable = any(isinstance(v, torch.Tensor) and v.requires_grad
                             for v in sm.masks.values())
        self._leaves = leaves if differentiable else {}
        self._after = _detached(after)
        self._applied = {k: v.detach() for k, v in sm.masks.items()}
        self._collector.active = frozenset(sm.credit_layers)
        self._collector.decay = self._decay(sm)
        self._collector.signed = bool(sm.eid_signed)
        self._sm = sm
        return sm

    def _decay(self, sm: StepMasks) -> float:
        if self.eid_decay is not None:
            return float(self.eid_decay)
        return float(sm.eid_decay) if sm.eid_decay >= 0 else DEFAULT_EID_DECAY

    # -- the MaskSource of nn_mask.NMMask --------------------------------------------------
    def layer_mask(self, layer: int, training: bool) -> torch.Tensor | None:
        """The mask a masked weight applies now: the step's mask in train mode (None in a
        dense phase: the weight itself), the masks the method would end with now in eval
        mode (``method.final_masks``, cached per step; S5.11, as the trainer evaluates)."""
        if not training:
            return self._eval_masks().get(layer)
        self._prepare()
        return self._applied.get(layer)

    def _eval_masks(self) -> dict[int, torch.Tensor]:
        if self._eval is None:
            self._open()
            masks = self.method.final_masks(self.setup, self._state, self._weights())
            self._eval = {k: v.detach() for k, v in masks.items()}
        return self._eval

    def weight_backward(self, layer: int, weight: torch.Tensor, mask: torch.Tensor,
                        grad: torch.Tensor) -> torch.Tensor:
        """Sum ``G`` of ``layer`` for the step and return ``dL/dW`` from
        ``method.weight_grads``.  ``weight_grads`` must be affine in ``G``; its constant
        part (SR-STE's decay) is counted once per step however many calls and backward
        passes the step has."""
        sm = self._prepare()
        with torch.no_grad():
            g = grad.detach()
            first = layer not in self._grad_sum
            self._grad_sum[layer] = g.clone() if first else self._grad_sum[layer] + g
            out = self.method.weight_grads(self.setup, sm, {layer: weight}, {layer: g})[layer]
            if not first:
                if layer not in self._offset:
                    zero = torch.zeros_like(g)
                    self._offset[layer] = self.method.weight_grads(
                        self.setup, sm, {layer: weight}, {layer: zero})[layer]
                out = out - self._offset[layer]
        return out

    # -- the user's calls ----------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """The current step ``s`` (0 before the first `step`)."""
        return self._step

    @property
    def current(self) -> StepMasks:
        """The `StepMasks` of the current step: ``phase``, ``temperature``, ``scale``,
        ``lr_window`` and ``reset_optimizer`` (ASP, S6.5: re-create the weight optimizer
        before its update of this step)."""
        return self._prepare()

    def lr_factor(self) -> float:
        """The cosine learning-rate factor of the current step,
        ``(1 + cos(pi j / P)) / 2`` with ``(start, P)`` the method's ``lr_window``
        (default ``(0, total_steps)``) and ``j = s - start`` (S5.6, S6.5): set the
        optimizer's learning rate to ``lr * handle.lr_factor()`` before its step to follow
        the trainer's schedule."""
        start, length = self._prepare().lr_window or (0, self.setup.total_steps)
        return schedule_value("cosine", 1.0, 0.0, max(self._step - start, 0), length + 1)

    def eid_loss(self) -> torch.Tensor:
        """The EID term of this step's loss (S2.6, S5.5); add it to the task loss::

            loss = criterion(out, y) + handle.eid_loss()

        ``sum_k lambda_s * L_eid(logits_k, q_k, kappa_s)`` over the masked layers, with
        the targets ``q_k`` of ``method.eid_targets`` (from the running credit of the
        steps before this one) as constants; differentiable in the step's logits, so the
        backward pass gives S2.7's gradient, which `step` adds to the task gradient.  A
        0-d zero (no gradient) when EID is off, outside the search phase and before the
        first credit.  With gradient accumulation, add it to every micro-batch loss and
        scale it like that loss."""
        self._prepare()
        self._eid_called = True
        targets = self._step_targets()
        total: torch.Tensor | None = None
        for k, (q, lam, kappa) in sorted(targets.items()):
            leaf = self._leaves.get(k)
            if leaf is None or lam == 0:
                continue
            term = lam * _eid_loss(leaf, q, self.m, float(kappa))
            total = term if total is None else total + term
        if total is None:
            ref = next(iter(self._snapshot.values()))
            return torch.zeros((), dtype=ref.dtype, device=ref.device)
        return total

    def new_sequence(self) -> None:
        """Restart the EID traces (``e_0 = 0``): call it between two sequences run in one
        step without a backward pass in between (with time steps as repeated calls)."""
        self._collector.new_sequence()

    def step(self) -> None:
        """End the current step: logit gradients, EID credits, the method's update and,
        in a fixed-mask phase, ``W <- W * mask`` (module docstring); the next step's
        masks are drawn at its first weight access.  Call it once per optimizer update,
        after ``optimizer.step()``."""
        sm = self._prepare()
        s = self._step
        weights = self._snapshot
        all_mean = self._all_mean()
        if all_mean is not None and self._grad_sum:  # S5.14: G of the global batch
            keys = sorted(self._grad_sum)
            flat = all_mean(torch.cat([self._grad_sum[k].reshape(-1) for k in keys]))
            offset = 0
            for k in keys:
                size = self._grad_sum[k].numel()
                self._grad_sum[k] = flat[offset:offset + size].reshape(
                    self._grad_sum[k].shape)
                offset += size
        grads = {k: self._grad_sum.get(k, torch.zeros_like(w)) for k, w in weights.items()}
        logit_grads = self._logit_grads(sm, weights) if self._leaves else None
        credits = self._collector.reduce(weights, all_mean) if sm.credit_layers else {}
        if not sm.credit_layers:
            self._collector.clear()
        assert self._after is not None
        with torch.no_grad():
            changed, compared = step_flips(self._after, sm)
            state = self.method.update(self.setup, self._after, sm, weights, grads, credits,
                                       s, logit_grads=logit_grads)
            if sm.fixed:
                for k, mask in self._applied.items():
                    dense_weight(self._module[k]).mul_(mask)
            self._count_flips(sm, changed, compared)
        if sm.scale > 0:
            self._scale = float(sm.scale)
        self._state = _detached(state)
        self._step = s + 1
        if self._step <= self.setup.total_steps:
            self._progress.update()
        if self._step >= self.setup.total_steps:
            self._progress.close()
        self._reset_step()

    def world_size(self) -> int:
        """The processes whose steps this handle reduces over (S5.14): the size of the
        initialized ``torch.distributed`` default group, 1 without one or with
        ``distributed=False``.

        Raises
        ------
        ValueError
            With ``distributed=True`` when ``torch.distributed`` is not initialized.
        """
        if self.distributed is False:
            return 1
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_world_size())
        if self.distributed:
            raise ValueError("sparsify(..., distributed=True) needs an initialized "
                             "torch.distributed process group "
                             "(torch.distributed.init_process_group) before handle.step()")
        return 1

    def _all_mean(self) -> Any:
        """A tensor's mean over the processes (None outside a data-parallel run)."""
        world = self.world_size()
        if world <= 1:
            return None
        import torch.distributed as dist

        if dist.get_rank() != 0 and self._progress.has_bar:  # one bar per run: rank 0's
            self._progress.close()
            self._progress = Progress(self.setup.total_steps, sys.stderr, "sparsify", "step",
                                      initial=min(self._step, self.setup.total_steps),
                                      bar=False)

        def mean(t: torch.Tensor) -> torch.Tensor:
            out = t.detach().clone(memory_format=torch.contiguous_format)
            dist.all_reduce(out)
            return out / world
        return mean

    @property
    def progress(self) -> str:
        """``"step s/S [rate step/s, time left]"``: the steps done by `step` and, from
        this process's steps, the rate and the time to ``total_steps``."""
        return f"step {self._step}/{self.setup.total_steps} {self._progress.suffix()}"

    def _logit_grads(self, sm: StepMasks, weights: Mapping[int, torch.Tensor]
                     ) -> dict[int, torch.Tensor]:
        keys = sorted(self._leaves)
        outs, ins, cots = [], [], []
        for k in keys:
            mask = sm.masks.get(k)
            if k in self._grad_sum and isinstance(mask, torch.Tensor) and mask.requires_grad:
                outs.append(mask)
                cots.append(self._grad_sum[k] * weights[k])
        ins = [self._leaves[k] for k in keys]
        task: tuple[torch.Tensor | None, ...] = (None,) * len(keys)
        if outs:
            task = torch.autograd.grad(outs, ins, cots, allow_unused=True)
        self._check_eid()
        out = {}
        for k, g_task, leaf in zip(keys, task, ins):
            g = torch.zeros_like(leaf) if g_task is None else g_task.detach()
            if leaf.grad is not None:
                g = g + leaf.grad.detach()
            out[k] = g
        return out

    def _step_targets(self) -> dict[int, tuple[torch.Tensor, float, float]]:
        """``method.eid_targets`` of this step, computed once per step and state (every
        micro-batch's `eid_loss` and the forgotten-term check share them)."""
        state = self._after or self._state
        cached = self._targets_for
        if cached is None or cached[0] != self._step or cached[1] is not state:
            self._targets = self.method.eid_targets(self.setup, state, self._step)
            self._targets_for = (self._step, state)
        return self._targets

    def _check_eid(self) -> None:
        """Warn once when EID is active this step but its gradient never reached the
        logits (``handle.eid_loss()`` missing from the loss)."""
        if self._warned or not self._grad_sum:
            return                      # no backward pass this step: nothing to warn about
        targets = self._step_targets()
        active = [k for k, (_, lam, _) in targets.items() if lam != 0 and k in self._leaves]
        if not active:
            return
        if not self._eid_called:
            problem = "handle.eid_loss() was not called"
        elif all(self._leaves[k].grad is None for k in active):
            problem = "the result of handle.eid_loss() was not back-propagated"
        else:
            return
        self._warned = True
        warnings.warn(
            f"{self.method.name} has EID on in its search phase, but at step {self._step} "
            f"{problem}, so the masks learn without it: write "
            f"`loss = task_loss + handle.eid_loss()` before loss.backward() (or use a "
            f"method without EID). This warning is shown once.", UserWarning, stacklevel=4)

    def _count_flips(self, sm: StepMasks, changed: Any, compared: int) -> None:
        """Keep the step's flip counts (device tensors; numbers only when read)."""
        if not sm.hard:
            return
        assert self._after is not None
        previous = self._after.group(PREVIOUS)
        self._flips = None if changed is None else (changed, compared)
        self._layer_flips = {}
        for k in self._module:
            c, total = flip_count({k: previous[k]} if k in previous else {},
                                  {k: sm.hard[k]} if k in sm.hard else {})
            self._layer_flips[k] = None if c is None else (c, total)

    # -- diagnostics ---------------------------------------------------------------------
    @property
    def flip_rate(self) -> float | None:
        """Flip rate of the last completed step, all masked layers pooled (S5.9)."""
        return _rate(self._flips)

    def stats(self) -> dict[str, LayerStats]:
        """Flip rate of the last completed step and block entropy, per masked layer."""
        sm = self._prepare()
        scale = float(sm.scale) if sm.scale > 0 else self._scale
        logits = self._state.group(LOGITS)
        out = {}
        for name, k in self.ordinals.items():
            entropy = None
            pi = logits.get(k)
            if isinstance(pi, torch.Tensor) and pi.shape[-1] % self.m == 0 and tuple(
                    pi.shape) == tuple(to_block_layout(self._snapshot[k]).shape):
                p = softmax_block(to_blocks(scale * pi.detach(), self.m))
                entropy = float(-torch.special.xlogy(p, p).sum(-1).mean())
            out[name] = LayerStats(_rate(self._layer_flips.get(k)), entropy)
        return out

    def logit_parameters(self) -> list[torch.Tensor]:
        """The method's mask logits (``logits/k`` of the state, block layout), live: an
        in-place change under ``torch.no_grad()`` between steps changes the state.  They
        are not ``nn.Parameter`` objects and belong in no user optimizer: `step` trains
        them with the method's own optimizer."""
        return [v for _, v in sorted(self._state.group(LOGITS).items())]

    def masks(self) -> dict[str, torch.Tensor]:
        """The masks the model would end with now (``method.final_masks``), by layer name,
        in the weight's layout."""
        self._open()
        final = self.method.final_masks(self.setup, self._state, self._weights())
        return {name: final[k].detach() for name, k in self.ordinals.items()}

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The method state at the start of the current step, the step counter and the
        diagnostics (tensors and plain values: ``torch.save``/``torch.load(...,
        weights_only=True)`` work).  Saved with ``model.state_dict()`` and the
        optimizer's, it resumes a run exactly: build the model, call `sparsify` with the
        same arguments, then load the three.  Take it between steps (after `step`): what
        a step has accumulated so far is not in it."""
        self._open()
        return {
            "format": STATE_FORMAT,
            "method": self.method.name,
            "pattern": [self.n, self.m],
            "layers": dict(self.ordinals),
            "total_steps": self.setup.total_steps,
            "seed": self.setup.seed,
            "step": self._step,
            "arrays": {k: v.detach().clone() for k, v in self._state.arrays.items()},
            "meta": dict(self._state.meta),
            "warned": self._warned,
            "scale": self._scale,
            "flips": _flips_out(self._flips),
            "layer_flips": {str(k): _flips_out(v) for k, v in self._layer_flips.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict` of a handle made by the same `sparsify` call (same
        method, pattern, layers, ``total_steps`` and seed); a ``ValueError`` names what
        differs."""
        self._open()
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a SpikeNMHandle state_dict (expected format "
                             f"{STATE_FORMAT!r})")
        mine = {"method": self.method.name, "pattern": [self.n, self.m],
                "layers": dict(self.ordinals), "total_steps": self.setup.total_steps,
                "seed": self.setup.seed}
        for key, value in mine.items():
            theirs = state.get(key)
            if (list(theirs) if key == "pattern" and theirs is not None else theirs) != value:
                raise ValueError(f"state_dict has {key}={theirs!r}, but this handle was made "
                                 f"with {key}={value!r}; call sparsify with the same "
                                 f"arguments as the saved run")
        device = next(iter(self._snapshot_or_weights().values())).device
        arrays = {k: torch.as_tensor(v).to(device) for k, v in state["arrays"].items()}
        self._state = MethodState(arrays, dict(state["meta"]))
        self._step = int(state["step"])
        shown = self._progress.has_bar
        self._progress.close()
        self._progress = Progress(self.setup.total_steps, sys.stderr, "sparsify", "step",
                                  initial=min(self._step, self.setup.total_steps), bar=shown)
        self._warned = bool(state["warned"])
        self._scale = float(state["scale"])
        self._flips = _flips_in(state.get("flips"))
        self._layer_flips = {int(k): _flips_in(v)
                             for k, v in state.get("layer_flips", {}).items()}
        self._collector.clear()
        self._reset_step()

    def _snapshot_or_weights(self) -> dict[int, torch.Tensor]:
        return self._snapshot or self._weights()

    # -- the end -------------------------------------------------------------------------
    def finalize(self) -> dict[str, torch.Tensor]:
        """Squash the final masks into the weights and remove the parametrizations.

        Each masked layer's weight becomes the plain parameter ``W * mask`` with the
        method's final mask (S5.8; the same ``nn.Parameter`` object as before, so an
        optimizer holding it stays valid); the hooks go away and every weight is checked
        with `spikenm.api.check_nm`.  The handle is closed afterwards.

        Returns
        -------
        dict str -> torch.Tensor
            The final 0/1 mask of every masked layer, in the weight's layout.
        """
        masks = self.masks()
        self._progress.close()
        self._collector.detach()
        for name, mod in self.layers.items():
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
            with torch.no_grad():
                dense_weight(mod).mul_(masks[name].to(dense_weight(mod).dtype))
        self.finalized = True
        self._reset_step()
        for name, mod in self.layers.items():
            check_nm(to_block_layout(dense_weight(mod).detach()), self.n, self.m,
                     name=f"{name}.weight")
        return masks


def _flips_out(flips: tuple[Any, int] | None) -> list[float] | None:
    return None if flips is None else [float(flips[0]), int(flips[1])]


def _flips_in(flips: Any) -> tuple[float, int] | None:
    return None if flips is None else (float(flips[0]), int(flips[1]))


def numpy_to(device: torch.device) -> Any:
    """``MethodSetup.from_numpy`` for ``device``: same dtype and values."""
    def from_numpy(a: Any) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)
    return from_numpy
