"""``maskllm``: Gumbel-softmax over the ``C(m, n)`` candidate masks of a block (SPEC S6.6).

A block of ``m`` weights has ``C = C(m, n)`` logits ``phi``, one per candidate mask
(rows of ``M``, ``(C, m)``, ones at ``itertools.combinations(range(m), n)``).  With Gumbel
noise ``g`` (``seed_of(seed, 4, s, k)``), temperature ``tau`` and scale ``kappa``::

    y = softmax_C((kappa phi + g) / tau),    mask_block = y M
    dL/dy = (dL/dmask)_block M^T
    dL/dphi = (kappa / tau) y (dL/dy - sum_C(y dL/dy))

Logit arrays (``logits/k``) have the block layout of the weight with the last axis
``G * m`` replaced by ``G * C``.  After the search phase the mask is fixed to
``M[argmax phi]`` per block (first maximum).  Only operators, ``.reshape``, ``@`` and the
array backend are used, so every array framework works.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from spikenm import seeds
from spikenm.api import from_block_layout, to_block_layout

from . import blocks
from .base import MethodDefaults, MethodSetup, MethodState, StepMasks
from .common import (LOGITS, Ramp, adam_arrays, adam_step, block_shape, check_fraction,
                     check_positive, fix_masks, fixed_masks, phase_steps)
from .flips import remember

__all__ = ["MaskLLM", "CandidateMatrices", "candidates", "logits_shape", "soft_mask",
           "soft_mask_vjp", "hard_mask", "from_config"]

Array = Any

CANDIDATES = "candidates/"
"""State keys of the candidate matrices ``M``, ``M^T`` and a ``(C, 1)`` ones column (kept
in the state so they live on the caller's device)."""


def candidates(n: int, m: int) -> np.ndarray:
    """The ``(C(m, n), m)`` candidate matrix (float64 0/1).

    Examples
    --------
    >>> candidates(1, 3)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    rows = list(itertools.combinations(range(m), n))
    out = np.zeros((len(rows), m))
    for r, idx in enumerate(rows):
        out[r, list(idx)] = 1.0
    return out


def logits_shape(block_shape: tuple[int, ...], n: int, m: int) -> tuple[int, ...]:
    """Shape of the candidate logits for a weight whose block layout is ``block_shape``."""
    c = math.comb(m, n)
    return tuple(block_shape[:-1]) + (block_shape[-1] // m * c,)


@dataclass(frozen=True)
class CandidateMatrices:
    """``M``, ``M^T`` and a ``(C, 1)`` ones column as arrays of one framework."""

    n: int
    m: int
    matrix: Array
    transposed: Array
    ones: Array

    @property
    def count(self) -> int:
        return math.comb(self.m, self.n)

    @classmethod
    def build(cls, n: int, m: int, convert: Callable[[np.ndarray], Array], dtype: str
              ) -> "CandidateMatrices":
        base = candidates(n, m).astype(dtype)
        return cls(n, m, convert(base), convert(np.ascontiguousarray(base.T)),
                   convert(np.ones((base.shape[0], 1), dtype)))

    def arrays(self) -> dict[str, Array]:
        return {f"{CANDIDATES}matrix": self.matrix, f"{CANDIDATES}transposed": self.transposed,
                f"{CANDIDATES}ones": self.ones}

    @classmethod
    def of_state(cls, n: int, m: int, state: MethodState) -> "CandidateMatrices":
        a = state.arrays
        return cls(n, m, a[f"{CANDIDATES}matrix"], a[f"{CANDIDATES}transposed"],
                   a[f"{CANDIDATES}ones"])


def soft_mask(phi: Array, noise: Array, cands: CandidateMatrices, temperature: float,
              scale: float) -> tuple[Array, Array]:
    """``(mask, y)``: the soft mask (block layout) and the candidate weights ``y``."""
    c, m = cands.count, cands.m
    y = blocks.probs(phi + noise * (1.0 / scale), c, scale / temperature)
    lead = tuple(y.shape[:-1])
    g = y.shape[-1] // c
    mask = (y.reshape(lead + (g, c)) @ cands.matrix).reshape(lead + (g * m,))
    return mask, y


def soft_mask_vjp(y: Array, grad_mask: Array, cands: CandidateMatrices, temperature: float,
                  scale: float) -> Array:
    """``dL/dphi`` from ``dL/dmask`` (block layout) for the ``y`` of `soft_mask`."""
    c, m = cands.count, cands.m
    lead = tuple(y.shape[:-1])
    g = y.shape[-1] // c
    gy = grad_mask.reshape(lead + (g, m)) @ cands.transposed
    yb = y.reshape(lead + (g, c))
    inner = (yb * gy) @ cands.ones
    return ((scale / temperature) * (yb * (gy - inner))).reshape(lead + (g * c,))


def hard_mask(scores: Array, cands: CandidateMatrices) -> Array:
    """``M[argmax]`` per block (first maximum): the mask of the best candidate."""
    c, m = cands.count, cands.m
    onehot = blocks.topn(scores, 1, c)
    lead = tuple(onehot.shape[:-1])
    g = onehot.shape[-1] // c
    return (onehot.reshape(lead + (g, c)) @ cands.matrix).reshape(lead + (g * m,))


@dataclass(frozen=True)
class MaskLLM(MethodDefaults):
    """MaskLLM-style mask learning (S6.6); ``n = m`` is refused.

    Attributes
    ----------
    search_fraction : float
        Share of the steps that learn the mask (``sparsity.search_fraction``).
    temperature, scale : Ramp
        ``tau`` (4 -> 0.05) and ``kappa`` (100 -> 500), both linear, over the search phase.
    logit_lr : float
        Adam learning rate of the candidate logits (``baselines.maskllm_logit_lr``).
    """

    search_fraction: float = 0.8
    temperature: Ramp = field(default_factory=lambda: Ramp(4.0, 0.05, "linear"))
    scale: Ramp = field(default_factory=lambda: Ramp(100.0, 500.0, "linear"))
    logit_lr: float = 2e-4
    name: str = "maskllm"

    def __post_init__(self) -> None:
        check_fraction("maskllm search_fraction", self.search_fraction)
        check_positive("maskllm logit_lr", self.logit_lr)

    def search_steps(self, total_steps: int) -> int:
        """``S_search`` (S5.8)."""
        return phase_steps(self.search_fraction, total_steps)

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        if setup.n == setup.m:
            raise ValueError(f"maskllm needs n < m, got pattern {setup.n}:{setup.m} (dense)")
        shapes = {k: logits_shape(block_shape(setup.weight_shapes[k]), setup.n, setup.m)
                  for k in setup.layers}
        cands = CandidateMatrices.build(setup.n, setup.m, setup.from_numpy, setup.dtype)
        return MethodState({**adam_arrays(setup, shapes), **cands.arrays()},
                           {"logit_steps": 0})

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        search = self.search_steps(setup.total_steps)
        cands = CandidateMatrices.of_state(setup.n, setup.m, state)
        if step >= search:
            state, _ = fix_masks(setup, state, lambda k: from_block_layout(
                hard_mask(state.arrays[f"{LOGITS}{k}"], cands)))
            return state, StepMasks("fixed", fixed_masks(state))
        tau, kappa = self.temperature.at(step, search), self.scale.at(step, search)
        masks, hard, aux = {}, {}, {}
        for k in setup.layers:
            phi = state.arrays[f"{LOGITS}{k}"]
            noise = blocks.gumbel(phi, seeds.seed_of(setup.seed, seeds.MASKLLM_NOISE, step, k))
            soft, y = soft_mask(phi, noise, cands, tau, kappa)
            masks[k], aux[k], hard[k] = from_block_layout(soft), y, hard_mask(y, cands)
        return state, StepMasks("search", masks, hard, aux, tau, kappa)

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        if sm.phase != "search":
            return state
        if logit_grads is None:
            cands = CandidateMatrices.of_state(setup.n, setup.m, state)
            logit_grads = {k: soft_mask_vjp(sm.aux[k], to_block_layout(grads[k] * weights[k]),
                                            cands, sm.temperature, sm.scale)
                           for k in setup.layers}
        return remember(adam_step(state, logit_grads, self.logit_lr), sm)

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        fixed = fixed_masks(state)
        cands = CandidateMatrices.of_state(setup.n, setup.m, state)
        return {k: fixed[k] if k in fixed else from_block_layout(
            hard_mask(state.arrays[f"{LOGITS}{k}"], cands)) for k in setup.layers}

    # -- for callers with their own autodiff ----------------------------------------------
    def mask_parameters(self, state: MethodState) -> dict[int, Array]:
        """The candidate logits ``phi`` of every layer."""
        return state.group(LOGITS)


def from_config(cfg: Any = None) -> MaskLLM:
    """MaskLLM from ``cfg.sparsity.search_fraction`` and ``cfg.baselines`` (the
    constructor defaults without ``cfg``)."""
    if cfg is None:
        return MaskLLM()
    b = cfg.baselines
    return MaskLLM(search_fraction=cfg.sparsity.search_fraction,
                   temperature=Ramp(b.maskllm_temperature_start, b.maskllm_temperature_end,
                                    "linear"),
                   scale=Ramp(b.maskllm_scale_start, b.maskllm_scale_end, "linear"),
                   logit_lr=b.maskllm_logit_lr)
