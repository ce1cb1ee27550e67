"""The N:M mask parametrization of one PyTorch layer weight (SPEC S0.2, S1, S5.2-S5.3, S5.8).

`NMMask` is a ``torch.nn.utils.parametrize`` parametrization: registered on the
``weight`` of an ``nn.Linear`` or ``nn.ConvNd`` it makes ``module.weight`` return

* in train mode (search): ``W * from_block_layout(h)`` with
  ``h = sample_mask(logits, n, m, noise=gumbel_like(logits, seed_of(seed, 0, step, index)),
  temperature, scale, hard=True)``: the hard mask's values with the relaxed mask's
  gradient (straight-through, S1.4), so both ``W`` and ``logits`` get gradients;
* in eval mode, or after `NMMask.fixed` is set (S5.8): ``W * from_block_layout(topn(logits))``
  (`spikenm.api.final_mask`), deterministic.

The logits (an ``nn.Parameter`` of the weight's shape in block layout, channels last for
a conv, initialised to 0) and the buffers ``pattern = [n, m]``, ``layer_index``, ``seed``,
``step``, ``temperature``, ``scale`` and ``fixed`` live in the module, hence in the
model's ``state_dict``; nothing is held in a global.  `Schedule` is a value that follows
one of the schedules of S5.6 over the steps of the search phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikenm.api import final_mask, from_block_layout, gumbel_like, sample_mask, to_block_layout
from spikenm.schedules import SCHEDULES
from spikenm.schedules import schedule_value
from spikenm.seeds import MASK_NOISE, seed_of

__all__ = ["Schedule", "NMMask", "as_schedule"]


@dataclass(frozen=True)
class Schedule:
    """A value that goes from ``start`` to ``end`` over ``steps`` steps (SPEC S5.6).

    At step ``j``, with ``u = min(1, j / max(1, steps - 1))``: ``constant`` is ``start``,
    ``linear`` is ``start + (end - start) u``, ``cosine`` is
    ``end + (start - end) (1 + cos(pi u)) / 2`` and ``exp`` is ``start (end / start)^u``.
    After ``steps`` steps the value stays at ``end``.  The SpikeNM defaults over a search
    phase of ``S`` steps are ``Schedule("exp", 1.0, 0.2, S)`` for the temperature and
    ``Schedule("linear", 1.0, 10.0, S)`` for the logit scale.

    Examples
    --------
    >>> s = Schedule("linear", 1.0, 10.0, 10)
    >>> s.at(0), s.at(9), s.at(100)
    (1.0, 10.0, 10.0)
    """

    kind: str
    start: float
    end: float
    steps: int

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule kind {self.kind!r} is unknown; expected one of {SCHEDULES}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"schedule {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"schedule {name} must be finite and > 0, got {value!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"schedule steps must be an integer >= 1, got {self.steps!r}")

    def at(self, step: int) -> float:
        """The value at step ``step`` (``>= 0``)."""
        return schedule_value(self.kind, float(self.start), float(self.end), int(step),
                              self.steps)


def as_schedule(name: str, value: float | Schedule) -> Schedule:
    """``value`` as a `Schedule`: a number becomes a constant one.

    Raises ``TypeError`` for anything else and ``ValueError`` for a number that is not
    finite and ``> 0``.

    Examples
    --------
    >>> as_schedule("temperature", 0.5).at(3)
    0.5
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a positive number or a spikenm Schedule, got {value!r} "
            f"({type(value).__name__})"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return Schedule("constant", float(value), float(value), 1)


class NMMask(nn.Module):
    """Parametrization ``W -> W * mask`` with a learnable ``n:m`` mask (SPEC S5.3).

    Parameters
    ----------
    weight : torch.Tensor
        The layer's weight ``(out, in)`` or ``(out, in, *kernel)`` (float32 or float64);
        only its shape, dtype and device are used.
    n, m : int
        The pattern; ``weight.shape[1]`` must be a multiple of ``m`` (checked by the
        caller, `spikenm.backends.torch.nn.sparsify`).
    layer_index : int
        Index ``l`` of the layer in the noise seed ``seed_of(seed, 0, step, l)`` (S5.2).
    seed : int
        Run seed.
    temperature, scale : float
        Initial sampler temperature ``tau`` and logit scale ``kappa``.

    Attributes
    ----------
    logits : nn.Parameter
        Basis logits, shape ``to_block_layout(weight).shape``, initialised to 0.
    sampled : torch.Tensor or None
        The hard mask (block layout, no gradient) drawn by the last train-mode forward.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.utils import parametrize
    >>> layer = torch.nn.Linear(8, 2)
    >>> _ = parametrize.register_parametrization(layer, "weight", NMMask(layer.weight, 2, 4))
    >>> layer.eval().weight.ne(0).reshape(2, 2, 4).sum(-1)
    tensor([[2, 2],
            [2, 2]])
    """

    logits: nn.Parameter
    pattern: torch.Tensor
    layer_index: torch.Tensor
    seed: torch.Tensor
    step: torch.Tensor
    temperature: torch.Tensor
    scale: torch.Tensor
    fixed: torch.Tensor

    def __init__(self, weight: torch.Tensor, n: int, m: int, *, layer_index: int = 0,
                 seed: int = 0, temperature: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.n, self.m = int(n), int(m)
        shape = tuple(to_block_layout(weight.detach()).shape)
        self.logits = nn.Parameter(torch.zeros(shape, dtype=weight.dtype, device=weight.device))
        device = weight.device
        self.register_buffer("pattern", torch.tensor([self.n, self.m], device=device))
        self.register_buffer("layer_index", torch.tensor(int(layer_index), device=device))
        self.register_buffer("seed", torch.tensor(int(seed), device=device))
        self.register_buffer("step", torch.tensor(0, device=device))
        self.register_buffer("temperature",
                             torch.tensor(float(temperature), dtype=torch.float64, device=device))
        self.register_buffer("scale",
                             torch.tensor(float(scale), dtype=torch.float64, device=device))
        self.register_buffer("fixed", torch.tensor(False, device=device))
        self.sampled: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None
        self._noise_key: tuple[Any, ...] | None = None

    def noise(self) -> torch.Tensor:
        """Gumbel noise of the current step: ``gumbel_like(logits, seed_of(seed, 0, step,
        layer_index))`` (S5.2), drawn once per step and kept until the step changes."""
        key = (int(self.seed), int(self.step), int(self.layer_index), self.logits.dtype,
               self.logits.device)
        if self._noise is None or self._noise_key != key:
            derived = seed_of(key[0], MASK_NOISE, key[1], key[2])
            self._noise = gumbel_like(self.logits.detach(), derived)
            self._noise_key = key
        return self._noise

    def block_mask(self) -> torch.Tensor:
        """The mask in block layout that `forward` applies in the current mode.

        Train mode (not fixed): the straight-through sample of S5.3, differentiable with
        respect to ``logits``; otherwise ``final_mask(logits)`` (S1.8), without gradient.
        """
        if self.training and not bool(self.fixed):
            mask = sample_mask(self.logits, self.n, self.m, noise=self.noise(),
                               temperature=float(self.temperature), scale=float(self.scale),
                               hard=True)
            self.sampled = mask.detach()
            return mask
        return final_mask(self.logits.detach(), self.n, self.m)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight * mask`` with the mask moved back to the weight's layout."""
        return weight * from_block_layout(self.block_mask())

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """Refuse a state dict saved with another pattern or layer index, then load and
        forget the per-step caches (the loaded step and seed draw their own noise)."""
        for name, mine in (("pattern", self.pattern), ("layer_index", self.layer_index)):
            theirs = state_dict.get(prefix + name)
            if theirs is not None and not torch.equal(theirs.to(mine.device), mine):
                raise ValueError(
                    f"state_dict entry {prefix + name!r} is {theirs.tolist()}, but this "
                    f"layer was sparsified with {name} {mine.tolist()}; call sparsify with "
                    f"the same n, m and layer selection as the saved model"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.sampled = None
        self._noise = None
        self._noise_key = None

    def extra_repr(self) -> str:
        return f"n={self.n}, m={self.m}, logits={tuple(self.logits.shape)}"
