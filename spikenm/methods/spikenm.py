"""``spikenm``: learned ``n:m`` masks sampled every step, with or without EID (SPEC S5,
S6.2, S6.3).

Search phase (steps ``s < S_search = max(1, round(search_fraction * S))``): per masked
layer ``k`` with logits ``pi`` (``logits/k``, block layout, start at 0) and noise
``g = gumbel_like(pi, seed_of(seed, 0, s, k))``::

    h = sample_mask(pi, n, m, noise=g, temperature=tau_s, scale=kappa_s, hard=True)
    W_eff = W * h;   dL/dW = G * h
    dL/dpi = sample_mask_vjp(pi, g, n, m, tau_s, kappa_s, True, G * W)         (S5.4)
           + lambda_s * eid_loss_vjp(pi, q, m, kappa_s, 1)                    (S5.5, EID)

with the running credit ``C <- mu C + (1 - mu) c`` (``credit/k``; ``C = c`` first;
``c`` the S2.3 or the signed S2.9 credit) and the targets ``q`` of the chosen variant
(S2.11, `spikenm.eid_variants`: ``global`` is ``eid_targets(C, m, tau_e(s))``); the
logits take one Adam step (S5.7).
Then the mask is fixed to ``topn(pi)`` and the weights are fine-tuned (S5.8).

`StepMasks.aux` holds the noise ``g`` of each layer.  A caller with its own autodiff (the
PyTorch module path) recomputes the step's masks from differentiable logits with
`SpikeNM.masks_from_parameters` and builds the EID term from `SpikeNM.eid_targets`:
``lambda_s * eid_loss(pi, q, m, scale=kappa_s)``; the EID targets there come from the
running credit of the steps before (S6.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from spikenm import api, eid_variants, seeds
from spikenm.api import from_block_layout, to_block_layout
from spikenm.schedules import warmup_factor

from . import blocks
from .base import MethodDefaults, MethodSetup, MethodState, StepMasks
from .common import (CREDIT, LOGITS, Ramp, adam_arrays, adam_step, block_shape,
                     check_fraction, check_positive, fix_masks, fixed_masks, phase_steps,
                     with_arrays)
from .flips import remember

__all__ = ["SpikeNM", "from_config"]

Array = Any


@dataclass(frozen=True)
class SpikeNM(MethodDefaults):
    """SpikeNM; ``eid=False`` is "spikenm without EID" (S6.3).  Defaults are those of the
    trainer's configuration (`from_config` of a default `spikenm.train.TrainConfig`).

    Attributes
    ----------
    search_fraction : float
        Share of the steps that learn the mask (``sparsity.search_fraction``).
    temperature, scale : Ramp
        ``tau`` (1 -> 0.2, exp) and ``kappa`` (1 -> 10, linear) over the search phase.
    logit_lr : float
        Adam learning rate of the logits (``sampler.logit_lr``).
    eid : bool
        Eligibility-inspired distillation on (``eid.enabled``).
    eid_weight, eid_warmup_fraction, eid_momentum : float
        ``lambda_eid``, its linear warm-up share of the search phase, and the running
        credit's ``mu`` (S2.4, S5.5).
    eid_temperature : Ramp
        ``tau_e`` over the search phase (1 -> 0.05, exp).
    eid_decay : float
        Trace decay ``lam`` of the credits; negative: the neuron's ``beta``.
    eid_variant : str
        EID targets (S2.11): ``global``, ``block``, ``gated`` or ``inclusion``.
    eid_credit : str
        ``abs`` (S2.3) or ``signed`` (S2.9) step credits.
    """

    search_fraction: float = 0.8
    temperature: Ramp = field(default_factory=lambda: Ramp(1.0, 0.2, "exp"))
    scale: Ramp = field(default_factory=lambda: Ramp(1.0, 10.0, "linear"))
    logit_lr: float = 0.05
    eid: bool = True
    eid_weight: float = 0.01
    eid_warmup_fraction: float = 0.1
    eid_momentum: float = 0.9
    eid_temperature: Ramp = field(default_factory=lambda: Ramp(1.0, 0.05, "exp"))
    eid_decay: float = -1.0
    eid_variant: str = "gated"
    eid_credit: str = "abs"
    name: str = "spikenm"

    def __post_init__(self) -> None:
        check_fraction("spikenm search_fraction", self.search_fraction)
        check_positive("spikenm logit_lr", self.logit_lr)
        if not isinstance(self.eid, bool):
            raise ValueError(f"spikenm eid={self.eid!r} is invalid; expected True or False")
        if not (isinstance(self.eid_weight, (int, float)) and self.eid_weight >= 0):
            raise ValueError(f"spikenm eid_weight={self.eid_weight!r} is invalid; "
                             f"expected a number >= 0")
        check_fraction("spikenm eid_warmup_fraction", self.eid_warmup_fraction,
                       low_open=False)
        check_fraction("spikenm eid_momentum", self.eid_momentum, low_open=False,
                       high_open=True)
        if not (isinstance(self.eid_decay, (int, float)) and self.eid_decay <= 1.0):
            raise ValueError(f"spikenm eid_decay={self.eid_decay!r} is invalid; expected "
                             f"a number in [0, 1], or negative for the neuron's beta")
        eid_variants.check_variant("spikenm eid_variant", self.eid_variant)
        eid_variants.check_credit("spikenm eid_credit", self.eid_credit)
        for key in ("temperature", "scale", "eid_temperature"):
            if not isinstance(getattr(self, key), Ramp):
                raise ValueError(f"spikenm {key}={getattr(self, key)!r} is invalid; "
                                 f"expected a spikenm.methods.common.Ramp")

    # -- phases and schedules -------------------------------------------------------------
    def search_steps(self, total_steps: int) -> int:
        """``S_search`` (S5.8)."""
        return phase_steps(self.search_fraction, total_steps)

    def eid_lambda(self, step: int, search_steps: int) -> float:
        """``lambda_s = lambda_eid * min(1, (s + 1) / (w * S_search))`` (S5.5)."""
        return self.eid_weight * warmup_factor(step, self.eid_warmup_fraction * search_steps)

    # -- the protocol ---------------------------------------------------------------------
    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        shapes = {k: block_shape(setup.weight_shapes[k]) for k in setup.layers}
        return MethodState(adam_arrays(setup, shapes), {"logit_steps": 0})

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        search = self.search_steps(setup.total_steps)
        n, m = setup.n, setup.m
        if step >= search:
            state, _ = fix_masks(setup, state, lambda k: from_block_layout(
                blocks.topn(state.arrays[f"{LOGITS}{k}"], n, m)))
            return state, StepMasks("fixed", fixed_masks(state))
        tau, kappa = self.temperature.at(step, search), self.scale.at(step, search)
        masks, hard, aux = {}, {}, {}
        for k in setup.layers:
            pi = state.arrays[f"{LOGITS}{k}"]
            noise = blocks.gumbel(pi, seeds.seed_of(setup.seed, seeds.MASK_NOISE, step, k))
            h = blocks.sample(pi, noise, n, m, tau, kappa)
            masks[k], hard[k], aux[k] = from_block_layout(h), h, noise
        return state, StepMasks("search", masks, hard, aux, tau, kappa,
                                credit_layers=tuple(setup.layers) if self.eid else (),
                                eid_decay=self.eid_decay,
                                eid_signed=self.eid_credit == "signed")

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        if sm.phase != "search":
            return state
        search = self.search_steps(setup.total_steps)
        n, m = setup.n, setup.m
        lam = self.eid_lambda(step, search) if self.eid else 0.0
        tau_e = self.eid_temperature.at(step, search)
        running: dict[str, Array] = {}
        out: dict[int, Array] = {}
        for k in setup.layers:
            pi = state.arrays[f"{LOGITS}{k}"]
            if logit_grads is None:
                g = blocks.sample_vjp(pi, sm.aux[k], n, m, sm.temperature, sm.scale,
                                      to_block_layout(grads[k] * weights[k]))
            else:
                g = logit_grads[k]
            if self.eid and k in credits:
                c = credits[k]
                prev = state.arrays.get(f"{CREDIT}{k}")
                run = c if prev is None else self.eid_momentum * prev + (
                    1.0 - self.eid_momentum) * c
                running[f"{CREDIT}{k}"] = run
                if logit_grads is None and lam > 0:
                    q = self._targets(run, pi, n, m, tau_e, sm.scale)
                    g = g + lam * blocks.eid_vjp(pi, q, m, sm.scale)
            out[k] = g
        state = adam_step(with_arrays(state, running), out, self.logit_lr)
        return remember(state, sm)

    def eid_targets(self, setup: MethodSetup, state: MethodState, step: int
                    ) -> dict[int, tuple[Array, float, float]]:
        search = self.search_steps(setup.total_steps)
        if not self.eid or step >= search:
            return {}
        lam = self.eid_lambda(step, search)
        if lam <= 0:
            return {}
        tau_e, kappa = self.eid_temperature.at(step, search), self.scale.at(step, search)
        return {k: (self._targets(c, state.arrays[f"{LOGITS}{k}"], setup.n, setup.m, tau_e,
                                  kappa), lam, kappa)
                for k, c in state.group(CREDIT).items()}

    def _targets(self, credit: Array, logits: Array, n: int, m: int, tau_e: float,
                 kappa: float) -> Array:
        """The EID targets of `eid_variant` from the running credit (S2.11)."""
        return blocks.targets(self.eid_variant, credit, n, m, tau_e, logits, kappa)

    def sampling_logits(self, setup: MethodSetup, state: MethodState, step: int
                        ) -> dict[int, tuple[Array, float]] | None:
        search = self.search_steps(setup.total_steps)
        if step >= search:
            return None
        kappa = self.scale.at(step, search)
        return {k: (state.arrays[f"{LOGITS}{k}"], kappa) for k in setup.layers}

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        fixed = fixed_masks(state)
        return {k: fixed[k] if k in fixed else from_block_layout(
            blocks.topn(state.arrays[f"{LOGITS}{k}"], setup.n, setup.m))
            for k in setup.layers}

    # -- for callers with their own autodiff ----------------------------------------------
    def mask_parameters(self, state: MethodState) -> dict[int, Array]:
        """The logits ``pi`` of every layer (block layout)."""
        return state.group(LOGITS)

    def masks_from_parameters(self, setup: MethodSetup, sm: StepMasks,
                              params: Mapping[int, Array]) -> dict[int, Array]:
        """The search-phase masks of ``sm`` recomputed from ``params`` (logits, e.g. leaves
        that require gradients) with the step's noise, temperature and scale: equal in
        value to ``sm.masks``, differentiable through `spikenm.api.sample_mask`."""
        return {k: from_block_layout(api.sample_mask(
            params[k], setup.n, setup.m, noise=sm.aux[k], temperature=sm.temperature,
            scale=sm.scale, hard=True)) for k in params}


def from_config(cfg: Any = None) -> SpikeNM:
    """SpikeNM from ``cfg.sparsity``, ``cfg.sampler`` and ``cfg.eid`` of a
    `spikenm.train.TrainConfig` (the constructor defaults without ``cfg``)."""
    if cfg is None:
        return SpikeNM()
    s, e = cfg.sampler, cfg.eid
    return SpikeNM(
        search_fraction=cfg.sparsity.search_fraction,
        temperature=Ramp(s.temperature_start, s.temperature_end, s.temperature_schedule),
        scale=Ramp(s.scale_start, s.scale_end, s.scale_schedule),
        logit_lr=s.logit_lr, eid=e.enabled, eid_weight=e.weight,
        eid_warmup_fraction=e.warmup_fraction, eid_momentum=e.momentum,
        eid_temperature=Ramp(e.temperature, e.temperature_end, e.temperature_schedule),
        eid_decay=e.decay, eid_variant=e.variant, eid_credit=e.credit)
