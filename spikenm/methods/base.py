"""The mask-method interface (SPEC S6.0): one object per method, explicit state, pure steps.

A method is an immutable object holding its hyper-parameters (schedules, learning rates,
EID options).  Everything that changes during training is in a `MethodState` that the
caller keeps and passes back, so a state can be checkpointed, restored, sharded or
carried through ``jax.jit``.  The calls, per optimizer step ``s``::

    state = method.init(setup, weights)                        # once
    state, sm = method.masks(setup, state, weights, s)         # masks of step s
    # caller: W_eff = W * sm.masks[k]; forward/backward -> G = dL/dW_eff, credits
    dW = method.weight_grads(setup, sm, weights, G)            # dL/dW per masked layer
    state = method.update(setup, state, sm, weights, G, credits, s)   # logits, EID, moments
    masks = method.final_masks(setup, state, weights)          # after the last step

``weights``, ``G``, ``credits`` and every mask are dicts keyed by the *layer ordinal* of
the masked layers (`MethodSetup.layers`, S5.1); weights, gradients and ``sm.masks`` are in
the framework layout (Linear ``(out, in)``, Conv ``(out, in, k, k)``); logits and credits
in block layout (`spikenm.api.to_block_layout`).  Arrays are of the caller's framework and
device; only operators and `spikenm.api` touch them, so one method serves the NumPy,
PyTorch and JAX trainers and the PyTorch module path alike.

Where the caller's autodiff produces the gradient of the mask parameters itself (the
PyTorch module path differentiates through `spikenm.api.sample_mask` and through the EID
term built from `Method.eid_targets`), it passes that *total* gradient as ``logit_grads``
to `Method.update`, which then adds neither its own VJP nor its EID gradient but still
folds the step's credits into the running credit and applies its optimizer.  The task
part equals the VJP route exactly (S5.4); the EID part uses the running credit of the
steps before (S5.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

__all__ = ["Array", "MethodSetup", "MethodState", "StepMasks", "Method", "SampledMasks",
           "MethodDefaults"]

Array = Any


@dataclass(frozen=True)
class MethodSetup:
    """Static facts of a run that a method needs.

    Attributes
    ----------
    n, m : int
        The pattern.
    layers : tuple of int
        Layer ordinals of the masked layers.
    weight_shapes : dict int -> tuple
        Framework-layout weight shape of each masked layer.
    total_steps : int
        ``S``, the optimizer steps of the run.
    seed : int
        Run seed; noise of step ``s``, layer ``k`` is ``seed_of(seed, stream, s, k)``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    from_numpy : callable
        NumPy array -> array of the caller's framework on its device.
    """

    n: int
    m: int
    layers: tuple[int, ...]
    weight_shapes: Mapping[int, tuple[int, ...]]
    total_steps: int
    seed: int
    dtype: str
    from_numpy: Callable[[Any], Array]


@dataclass(frozen=True)
class MethodState:
    """Everything of a method that changes during training.

    ``arrays`` maps names to arrays (logits ``"logits/3"``, optimizer moments, running
    credits, fixed masks, the previous masks for the flip rate ...); ``meta`` holds
    JSON-serialisable counters.  `spikenm.train.state` stores both in checkpoints as they
    are, so a method's state round-trips without the trainer knowing its layout.
    """

    arrays: Mapping[str, Array] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def group(self, prefix: str) -> dict[int, Array]:
        """The arrays named ``prefix + str(layer)``, keyed by layer ordinal (e.g.
        ``state.group("logits/")``)."""
        return {int(key[len(prefix):]): value for key, value in self.arrays.items()
                if key.startswith(prefix) and key[len(prefix):].isdigit()}


@dataclass(frozen=True)
class StepMasks:
    """The masks of one step and what the method needs back after the backward pass.

    Attributes
    ----------
    phase : str
        ``"dense"`` (no masks), ``"search"`` (masks from learned parameters), ``"fixed"``
        (a fixed mask; the caller multiplies the weights by it after every update, S5.8),
        or a method's own name for another rule (e.g. ``"srste"``).
    masks : dict int -> array
        Framework-layout mask of each masked layer (empty in ``"dense"``).
    hard : dict int -> array
        Block-layout 0/1 masks for the flip rate (S5.9); empty where not meaningful.
    aux : dict
        Whatever `Method.update` needs (noise, soft samples ...).
    temperature, scale : float
        The schedules' values at this step (0 where unused), for logging.
    reset_optimizer : bool
        True on the step where the caller must restart the weight optimizer (ASP, S6.5).
    lr_window : tuple of int
        ``(start, length)`` of the cosine learning-rate schedule this step lies in (S5.6;
        ASP restarts it after pruning, S6.5).
    credit_layers : tuple of int
        Layers whose EID credits `Method.update` wants from this step's backward pass.
    eid_decay : float
        Trace decay ``lam`` for those credits (S2.1); negative means the neuron's beta.
    eid_signed : bool
        Those credits summed over time before the absolute value (S2.9).
    """

    phase: str
    masks: Mapping[int, Array] = field(default_factory=dict)
    hard: Mapping[int, Array] = field(default_factory=dict)
    aux: Mapping[Any, Any] = field(default_factory=dict)
    temperature: float = 0.0
    scale: float = 0.0
    reset_optimizer: bool = False
    lr_window: tuple[int, int] | None = None
    credit_layers: tuple[int, ...] = ()
    eid_decay: float = -1.0
    eid_signed: bool = False

    @property
    def fixed(self) -> bool:
        """True in a ``"fixed"`` phase: the caller multiplies the masked weights by
        `masks` after every update, so pruned weights stay exactly 0 (S5.8)."""
        return self.phase == "fixed"


@runtime_checkable
class Method(Protocol):
    """A mask method (module docstring for the calls).

    An optional attribute ``uses_masks`` (default True) set to False marks a method that
    never masks (``dense``): the trainer then masks no layer and checks no layer's fit
    (S5.1).  An optional ``eid`` (default False) says whether the method requests EID
    credits, for summaries.
    """

    name: str
    """Registry name (``"spikenm"``, ``"srste"`` ...), written into summaries."""

    def init(self, setup: MethodSetup, weights: Mapping[int, Array]) -> MethodState:
        """State before step 0 (logits at 0, fixed random masks, ...)."""

    def masks(self, setup: MethodSetup, state: MethodState, weights: Mapping[int, Array],
              step: int) -> tuple[MethodState, StepMasks]:
        """The masks of ``step`` (entering a fixed phase fixes them in the state)."""

    def weight_grads(self, setup: MethodSetup, sm: StepMasks, weights: Mapping[int, Array],
                     grads: Mapping[int, Array]) -> dict[int, Array]:
        """``dL/dW`` of every masked layer from ``G = dL/dW_eff`` (S5.4, S6.4)."""

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        """The state after the backward pass of ``step``: mask-parameter gradients (from
        ``G * W`` by the method's VJP, or ``logit_grads`` when given), EID from
        ``credits``, the mask-parameter optimizer, the flip-rate bookkeeping."""

    def eid_targets(self, setup: MethodSetup, state: MethodState, step: int
                    ) -> dict[int, tuple[Array, float, float]]:
        """Per masked layer ``(q, lambda_s, kappa_s)``: EID block targets from the running
        credit so far (constants), the term's weight and the logit scale at ``step``;
        empty when EID is off, outside the search phase or before the first credit."""

    def final_masks(self, setup: MethodSetup, state: MethodState,
                    weights: Mapping[int, Array]) -> dict[int, Array]:
        """Framework-layout masks the trained model ends with (S5.8)."""


class SampledMasks(Protocol):
    """Optional part of a `Method` whose masks are Gumbel top-``n`` draws from per-entry
    logits (SpikeNM): the trainer's sampling-variance metrics (S5.9a) read them."""

    def sampling_logits(self, setup: MethodSetup, state: MethodState, step: int
                        ) -> dict[int, tuple[Array, float]] | None:
        """Per masked layer ``(pi, kappa_s)``: block-layout logits and the logit scale of
        ``step``'s draw ``topn(kappa_s * pi + g)``; None outside a sampling phase."""


class MethodDefaults:
    """The common parts of a `Method`, for a method class to inherit and override.

    ``weight_grads`` is ``dL/dW = G * mask`` for every layer the step masks and ``G``
    elsewhere (S5.4, S5.8); ``update`` keeps the state (a method without trained mask
    parameters); ``eid_targets`` is empty (no EID).  A subclass still defines ``name``,
    ``init``, ``masks`` and ``final_masks``.
    """

    uses_masks = True
    eid = False

    def weight_grads(self, setup: MethodSetup, sm: StepMasks, weights: Mapping[int, Array],
                     grads: Mapping[int, Array]) -> dict[int, Array]:
        return {k: g * sm.masks[k] if k in sm.masks else g for k, g in grads.items()}

    def update(self, setup: MethodSetup, state: MethodState, sm: StepMasks,
               weights: Mapping[int, Array], grads: Mapping[int, Array],
               credits: Mapping[int, Array], step: int,
               logit_grads: Mapping[int, Array] | None = None) -> MethodState:
        return state

    def eid_targets(self, setup: MethodSetup, state: MethodState, step: int
                    ) -> dict[int, tuple[Array, float, float]]:
        return {}

    def sampling_logits(self, setup: MethodSetup, state: MethodState, step: int
                        ) -> dict[int, tuple[Array, float]] | None:
        return None
