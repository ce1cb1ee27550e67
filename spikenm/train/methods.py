"""The masking methods of the trainer (SPEC S5, S6), written once for every backend.

Each step the loop calls `prepare_masks` (which masks to apply, ``W_eff = W * mask``)
and, after the model backend's backward pass, `mask_gradients` (``dL/dW`` and the
gradients of any mask logits).  Phases:

* ``dense``  -- no mask (method ``dense``; the first phase of ``asp``);
* ``search`` -- a mask sampled every step from learned logits (``spikenm``, ``maskllm``);
* ``srste``  -- magnitude top-n every step with straight-through gradients;
* ``fixed``  -- a fixed mask (``random``; the end phase of ``spikenm``/``maskllm``/``asp``).

Arrays are of the model backend's framework; only operators, ``.reshape``, `spikenm.api`
and the array backend's ``sample_mask_vjp`` / ``eid_loss_vjp`` are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from spikenm import api
from spikenm.dispatch import backend_for

from spikenm import seeds
from . import maskllm
from .config import TrainConfig
from .model_backend import LayerParams, ModelBackend
from spikenm.optim import OptHyper, OptState, opt_init, opt_update
from spikenm.schedules import schedule_value, warmup_factor

Array = Any


@dataclass(frozen=True)
class MethodContext:
    """Static facts of a run that the methods need."""

    cfg: TrainConfig
    model: ModelBackend
    layers: tuple[int, ...]
    weight_shapes: dict[int, tuple[int, ...]]
    total_steps: int
    search_steps: int
    dense_steps: int
    cands: maskllm.CandidateMatrices | None = None

    @property
    def method(self) -> str:
        return self.cfg.sparsity.method

    @property
    def nm(self) -> tuple[int, int]:
        return self.cfg.sparsity.nm

    @property
    def eid_on(self) -> bool:
        return self.method == "spikenm" and self.cfg.eid.enabled


@dataclass(frozen=True)
class MaskState:
    """Per-layer mask state (dicts keyed by layer index)."""

    logits: dict[int, Array] = field(default_factory=dict)
    logit_opt: OptState | None = None
    fixed: dict[int, Array] = field(default_factory=dict)
    credits: dict[int, Array] = field(default_factory=dict)
    previous: dict[int, Array] = field(default_factory=dict)


@dataclass(frozen=True)
class StepMasks:
    """Masks of one step: ``masks`` (framework layout) multiply the weights; ``hard``
    (block layout) feed the flip rate; ``aux`` keeps what the backward pass needs."""

    phase: str
    masks: dict[int, Array]
    hard: dict[int, Array]
    aux: dict[int, Any]
    temperature: float = 0.0
    scale: float = 0.0
    entered_fixed: bool = False


def phase_of(ctx: MethodContext, step: int) -> str:
    """The phase of ``step`` for the run's method."""
    method = ctx.method
    if method == "dense":
        return "dense"
    if method in ("spikenm", "maskllm"):
        return "search" if step < ctx.search_steps else "fixed"
    if method == "srste":
        return "srste"
    if method == "asp":
        return "dense" if step < ctx.dense_steps else "fixed"
    return "fixed"


def make_context(cfg: TrainConfig, model: ModelBackend, layers: tuple[int, ...],
                 weight_shapes: dict[int, tuple[int, ...]], total_steps: int) -> MethodContext:
    """Phase lengths (S5.8, S6.5) and, for maskllm, the candidate matrices."""
    search = max(1, round(cfg.sparsity.search_fraction * total_steps))
    dense = max(1, round(cfg.baselines.asp_dense_fraction * total_steps))
    if cfg.sparsity.method == "asp" and dense >= total_steps:
        raise ValueError(
            f"asp needs fine-tuning steps after the dense phase; {total_steps} steps with "
            f"asp_dense_fraction={cfg.baselines.asp_dense_fraction} leave none"
        )
    cands = None
    if cfg.sparsity.method == "maskllm":
        n, m = cfg.sparsity.nm
        cands = maskllm.CandidateMatrices(n, m, model.from_numpy, cfg.run.dtype)
    return MethodContext(cfg, model, layers, weight_shapes, total_steps, search, dense, cands)


def _block_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if len(shape) == 2 else (shape[0],) + tuple(shape[2:]) + (shape[1],)


def init_mask_state(ctx: MethodContext) -> MaskState:
    """Logits at 0 (S5.7, S6.6) and, for ``random``, the fixed masks (S6.7)."""
    n, m = ctx.nm
    dtype = ctx.cfg.run.dtype
    logits: dict[int, Array] = {}
    fixed: dict[int, Array] = {}
    for layer in ctx.layers:
        bshape = _block_shape(ctx.weight_shapes[layer])
        if ctx.method == "spikenm":
            logits[layer] = ctx.model.from_numpy(np.zeros(bshape, dtype))
        elif ctx.method == "maskllm":
            logits[layer] = ctx.model.from_numpy(
                np.zeros(maskllm.logits_shape(bshape, n, m), dtype))
        elif ctx.method == "random":
            zeros = np.zeros(bshape, dtype)
            noise = api.gumbel_like(zeros, seeds.seed_of(ctx.cfg.run.seed, seeds.RANDOM_MASK,
                                                         0, layer))
            block = api.topn_mask(noise, n, m)
            fixed[layer] = ctx.model.from_numpy(np.ascontiguousarray(
                api.from_block_layout(block)))
    opt = opt_init("adam", [logits[k] for k in sorted(logits)]) if logits else None
    return MaskState(logits=logits, logit_opt=opt, fixed=fixed)


def _schedules(ctx: MethodContext, step: int) -> tuple[float, float]:
    if ctx.method == "maskllm":
        b = ctx.cfg.baselines
        return (schedule_value("linear", b.maskllm_temperature_start, b.maskllm_temperature_end,
                               step, ctx.search_steps),
                schedule_value("linear", b.maskllm_scale_start, b.maskllm_scale_end, step,
                               ctx.search_steps))
    s = ctx.cfg.sampler
    return (schedule_value(s.temperature_schedule, s.temperature_start, s.temperature_end,
                           step, ctx.search_steps),
            schedule_value(s.scale_schedule, s.scale_start, s.scale_end, step,
                           ctx.search_steps))


def _final_block_mask(ctx: MethodContext, state: MaskState, layer: int, weight: Array) -> Array:
    """The block-layout mask a method ends with (S5.8, S6.4-S6.6)."""
    n, m = ctx.nm
    if ctx.method == "spikenm":
        return api.final_mask(state.logits[layer], n, m)
    if ctx.method == "maskllm":
        assert ctx.cands is not None
        return maskllm.hard_mask(state.logits[layer], ctx.cands)
    return api.topn_mask(abs(api.to_block_layout(weight)), n, m)


def final_masks(ctx: MethodContext, state: MaskState, params: list[LayerParams]
                ) -> dict[int, Array]:
    """Masks of the trained model (framework layout): the fixed ones, else derived."""
    out = {}
    for layer in ctx.layers:
        if layer in state.fixed:
            out[layer] = state.fixed[layer]
        else:
            out[layer] = api.from_block_layout(
                _final_block_mask(ctx, state, layer, params[layer].weight))
    return out


def prepare_masks(ctx: MethodContext, state: MaskState, params: list[LayerParams], step: int
                  ) -> tuple[MaskState, StepMasks]:
    """The masks of ``step`` (entering the fixed phase fixes them first)."""
    phase = phase_of(ctx, step)
    n, m = ctx.nm
    seed = ctx.cfg.run.seed
    if phase == "dense":
        return state, StepMasks(phase, {}, {}, {})
    if phase == "fixed":
        entered = any(layer not in state.fixed for layer in ctx.layers)
        if entered:
            fixed = dict(state.fixed)
            for layer in ctx.layers:
                if layer not in fixed:
                    fixed[layer] = api.from_block_layout(
                        _final_block_mask(ctx, state, layer, params[layer].weight))
            state = replace(state, fixed=fixed, previous={})
        return state, StepMasks(phase, dict(state.fixed), {}, {}, entered_fixed=entered)
    if phase == "srste":
        hard = {layer: api.topn_mask(abs(api.to_block_layout(params[layer].weight)), n, m)
                for layer in ctx.layers}
        masks = {layer: api.from_block_layout(h) for layer, h in hard.items()}
        return state, StepMasks(phase, masks, hard, {})
    tau, kappa = _schedules(ctx, step)
    masks, hard, aux = {}, {}, {}
    for layer in ctx.layers:
        pi = state.logits[layer]
        if ctx.method == "spikenm":
            noise = api.gumbel_like(pi, seeds.seed_of(seed, seeds.MASK_NOISE, step, layer))
            h = api.sample_mask(pi, n, m, noise=noise, temperature=tau, scale=kappa, hard=True)
            masks[layer], hard[layer], aux[layer] = api.from_block_layout(h), h, noise
        else:
            assert ctx.cands is not None
            noise = api.gumbel_like(pi, seeds.seed_of(seed, seeds.MASKLLM_NOISE, step, layer))
            soft, y = maskllm.soft_mask(pi, noise, ctx.cands, tau, kappa)
            masks[layer], aux[layer] = api.from_block_layout(soft), y
            hard[layer] = maskllm.hard_mask(y, ctx.cands)
    return state, StepMasks(phase, masks, hard, aux, tau, kappa)


def effective_params(params: list[LayerParams], sm: StepMasks) -> tuple[LayerParams, ...]:
    """``W_eff = W * mask`` for masked layers (S5.3); other layers unchanged."""
    return tuple(LayerParams(p.weight * sm.masks[i], p.bias) if i in sm.masks else p
                 for i, p in enumerate(params))


def mask_gradients(ctx: MethodContext, state: MaskState, sm: StepMasks,
                   params: list[LayerParams], grads: tuple[LayerParams, ...],
                   credits: dict[int, Array], step: int
                   ) -> tuple[list[LayerParams], dict[int, Array], MaskState]:
    """``dL/dW`` per layer, ``dL/dlogits`` per masked layer and the new running credits."""
    n, m = ctx.nm
    weight_grads = list(grads)
    logit_grads: dict[int, Array] = {}
    new_credits = dict(state.credits)
    for layer, mask in sm.masks.items():
        g, w = grads[layer].weight, params[layer].weight
        if sm.phase == "srste":  # S6.4: straight-through + sparse-refined decay
            gw = g + ctx.cfg.baselines.srste_decay * (1.0 - mask) * w
        else:
            gw = g * mask
        weight_grads[layer] = LayerParams(gw, grads[layer].bias)
        if sm.phase != "search":
            continue
        pi = state.logits[layer]
        g_mask = api.to_block_layout(g * w)
        if ctx.method == "spikenm":
            be = backend_for(logits=pi)
            gpi = be.sample_mask_vjp(pi, sm.aux[layer], n, m, sm.temperature, sm.scale, True,
                                     g_mask)
            if ctx.eid_on and layer in credits:
                c = credits[layer]
                mu = ctx.cfg.eid.momentum
                run = c if layer not in new_credits else mu * new_credits[layer] + (1.0 - mu) * c
                new_credits[layer] = run
                lam = ctx.cfg.eid.weight * warmup_factor(
                    step, ctx.cfg.eid.warmup_fraction * ctx.search_steps)
                if lam > 0:
                    e = ctx.cfg.eid
                    tau_e = schedule_value(e.temperature_schedule, e.temperature,
                                           e.temperature_end, step, ctx.search_steps)
                    q = api.eid_targets(run, m, temperature=tau_e)
                    one = ctx.model.from_numpy(np.array(1.0, ctx.cfg.run.dtype))
                    gpi = gpi + lam * be.eid_loss_vjp(pi, q, m, sm.scale, one)
        else:
            assert ctx.cands is not None
            gpi = maskllm.soft_mask_vjp(sm.aux[layer], g_mask, ctx.cands, sm.temperature,
                                        sm.scale)
        logit_grads[layer] = gpi
    return weight_grads, logit_grads, replace(state, credits=new_credits)


def update_logits(ctx: MethodContext, state: MaskState, logit_grads: dict[int, Array]
                  ) -> MaskState:
    """One Adam step on the mask logits (S5.7; maskllm: S6.6)."""
    if not logit_grads:
        return state
    assert state.logit_opt is not None
    keys = sorted(state.logits)
    lr = (ctx.cfg.baselines.maskllm_logit_lr if ctx.method == "maskllm"
          else ctx.cfg.sampler.logit_lr)
    new, opt = opt_update([state.logits[k] for k in keys], [logit_grads[k] for k in keys],
                          state.logit_opt, OptHyper(lr=lr))
    return replace(state, logits=dict(zip(keys, new)), logit_opt=opt)


def flip_count(state: MaskState, sm: StepMasks) -> tuple[float, int, MaskState]:
    """Entries whose hard mask changed since the previous step, entries compared (S5.9),
    and the state with ``previous`` set to this step's masks."""
    if not sm.hard:
        return 0.0, 0, state
    changed, total = 0.0, 0
    for layer, h in sm.hard.items():
        prev = state.previous.get(layer)
        if prev is not None:
            changed += float(abs(h - prev).sum())
            total += int(np.prod(tuple(h.shape)))
    return changed, total, replace(state, previous=dict(sm.hard))
