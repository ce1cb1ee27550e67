"""Learnable N:M sparsity for ordinary PyTorch models: ``sparsify -> train -> finalize``.

The workflow of ``torch.ao.pruning`` (prepare, train with ``step()``, squash the mask),
with the SpikeNM sampler (SPEC S5) instead of a magnitude rule:

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
...                       nn.Linear(16, 4))
>>> handle = sparsify(model, 2, 4)                  # masks layer "2" only (first/last dense)
>>> sorted(handle.layers), sorted(handle.dense)
(['2'], ['0', '4'])
>>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
>>> for _ in range(3):
...     loss = model(torch.randn(5, 8)).square().mean()
...     opt.zero_grad(); loss.backward(); opt.step()
...     handle.step()                               # next mask noise, schedules
>>> masks = handle.finalize()                       # plain, n:m-clean weights
>>> packed = export_packed(model, 2, 4, dense=handle.dense)
>>> sorted(packed), packed["2.weight"].values.shape
(['2.weight'], torch.Size([16, 8]))

What `sparsify` does, per selected ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` /
``nn.Conv3d``: it registers an `NMMask` parametrization on ``weight`` (blocks of ``m``
along the input dimension, conv weights channels last, SPEC S0.2), which owns the logits
and the buffers of the layer, so everything is in the model's ``state_dict``.  There is no
global state and the optimizer is not touched: the logits are ordinary parameters of the
model (`SpikeNMHandle.logit_parameters` separates them for their own learning rate,
S5.7).  A layer is masked, or listed in `SpikeNMHandle.dense` with the reason it is not;
an input size that is not a multiple of ``m`` is an error unless ``skip_unfit=True``, and
then the layer is listed in `SpikeNMHandle.skipped` and a warning says so.

In train mode every access to a masked ``weight`` recomputes ``W * mask`` from the logits
and the step's noise (drawn once per step), so repeated accesses within one step -- the
``T`` time steps of a spiking network, gradient accumulation -- see the same mask; wrap
the forward pass in ``torch.nn.utils.parametrize.cached()`` to compute it once.  Call
`SpikeNMHandle.step` once per optimizer update, after ``optimizer.step()``.

Layer index ``l`` (in the noise seed ``seed_of(seed, 0, step, l)`` of S5.2) is the
position of the layer among all Linear/ConvNd modules of ``model.named_modules()``,
masked or not, as the trainer counts the layers of its network.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from spikenm.api import block_probs, check_nm, final_mask, from_block_layout, layer_fits
from spikenm.api import pack, to_block_layout
from spikenm.packed import Packed
from spikenm import validation

from .nn_mask import NMMask, Schedule, as_schedule

__all__ = ["sparsify", "SpikeNMHandle", "LayerStats", "export_packed", "Schedule", "NMMask",
           "SUPPORTED"]

SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Module types whose ``weight`` can carry an N:M mask (blocks along the input axis)."""


@dataclass(frozen=True)
class LayerStats:
    """Diagnostics of one masked layer (SPEC S1.9).

    Attributes
    ----------
    flip_rate : float or None
        Fraction of mask entries that differ between the hard masks sampled in the last
        two completed steps; None until two consecutive steps each ran a train-mode
        forward pass.
    entropy : float
        Mean over blocks of ``H = -sum_i p_i log p_i`` with ``p = softmax(scale * logits)``
        (S1.7) at the current scale; ``log m`` for uniform logits, 0 for a decided block.
    """

    flip_rate: float | None
    entropy: float


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _patterns(arg: str, value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{arg} must be a collection of layer names, got the string {value!r}; "
                        f"write {arg}=[{value!r}]")
    out = tuple(value)
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"{arg} must hold layer names (str), got {p!r}")
    return out


def _check_patterns(arg: str, patterns: tuple[str, ...], candidates: list[str],
                    model: nn.Module) -> None:
    """Every name or glob pattern must match a supported layer."""
    modules = dict(model.named_modules())
    for p in patterns:
        if any(fnmatch.fnmatchcase(c, p) for c in candidates):
            continue
        if p in modules:
            raise ValueError(
                f"{arg} names {p!r}, a {type(modules[p]).__name__}; only "
                f"{', '.join(t.__name__ for t in SUPPORTED)} layers can be masked"
            )
        raise ValueError(
            f"{arg} entry {p!r} matches no Linear/ConvNd layer; the model has {candidates}"
        )


def _weight(module: nn.Module) -> torch.Tensor:
    """``module.weight`` as a tensor (the parametrized value when there is a parametrization)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight


def _describe(name: str, module: nn.Module) -> str:
    return f"layer {name!r} ({type(module).__name__}, weight {tuple(_weight(module).shape)})"


def sparsify(
    model: nn.Module, n: int, m: int, *, include: Iterable[str] | None = None,
    exclude: Iterable[str] = (), dense_first: bool = True, dense_last: bool = True,
    skip_unfit: bool = False, temperature: float | Schedule = 1.0,
    scale: float | Schedule = 1.0, seed: int = 0,
) -> SpikeNMHandle:
    """Give the Linear/ConvNd layers of ``model`` learnable ``n:m`` masks (SPEC S5).

    Parameters
    ----------
    model : nn.Module
        Changed in place: the selected weights become parametrized.
    n, m : int
        The pattern (SPEC S0.1).
    include : collection of str, optional
        Module names (as in ``model.named_modules()``) or ``fnmatch`` patterns of the
        layers that may be masked; default: every supported layer.
    exclude : collection of str
        Names or patterns of layers to keep dense.  Every entry of ``include`` and
        ``exclude`` must match a supported layer (a typo is an error, not a no-op).
    dense_first, dense_last : bool
        Keep the first / last supported layer (in module order) dense (S5.1).
    skip_unfit : bool
        Keep layers whose input size is not a multiple of ``m`` dense (listed in
        `SpikeNMHandle.skipped`, with a warning) instead of raising.
    temperature, scale : float or Schedule
        Sampler temperature ``tau`` and logit scale ``kappa``: a constant, or a
        `Schedule` advanced by `SpikeNMHandle.step` (S5.6).
    seed : int
        Run seed of the mask noise ``seed_of(seed, 0, step, layer)`` (S5.2).

    Returns
    -------
    SpikeNMHandle

    Raises
    ------
    ValueError
        Bad pattern; an ``include``/``exclude`` entry that matches no supported layer; an
        ``include`` name that ``dense_first``/``dense_last`` would drop; a layer whose
        input size is not a multiple of ``m`` (without ``skip_unfit``); an already
        parametrized or uninitialised (lazy) weight; no layer left to mask.
    TypeError
        A weight that is not float32/float64 (SPEC S0.4); bad argument types.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3),
    ...                           torch.nn.Flatten(), torch.nn.LazyLinear(4))
    >>> _ = net(torch.zeros(1, 3, 8, 8))            # materialise the lazy layer
    >>> h = sparsify(net, 2, 4)
    >>> h.layers["1"].parametrizations.weight[0].logits.shape    # (out, k, k, in)
    torch.Size([8, 3, 3, 8])
    """
    n, m = validation.pattern(n, m)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    seed = validation.seed(seed)
    if seed >= 2**63:
        raise ValueError(f"seed must be < 2**63 (it is kept in an int64 buffer), got {seed}")
    schedules = {"temperature": as_schedule("temperature", temperature),
                 "scale": as_schedule("scale", scale)}
    inc = _patterns("include", include)
    exc = _patterns("exclude", exclude) or ()
    candidates = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SUPPORTED)]
    names = [name for name, _ in candidates]
    if not candidates:
        raise ValueError(f"model ({type(model).__name__}) has no Linear/ConvNd layer to mask")
    for arg, pats in (("include", inc or ()), ("exclude", exc)):
        _check_patterns(arg, pats, names, model)
    last = len(candidates) - 1
    chosen: list[tuple[int, str, nn.Module]] = []
    dense: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for index, (name, mod) in enumerate(candidates):
        edge = ("first", "dense_first") if index == 0 and dense_first else (
            ("last", "dense_last") if index == last and dense_last else None)
        if inc is not None and not _matches(name, inc):
            dense[name] = "not matched by include"
        elif _matches(name, exc):
            dense[name] = "matched by exclude"
        elif edge is not None:
            if inc is not None and name in inc:
                raise ValueError(
                    f"include names {name!r}, the {edge[0]} layer, but {edge[1]}=True keeps "
                    f"it dense; pass {edge[1]}=False to mask it"
                )
            dense[name] = f"{edge[0]} layer ({edge[1]}=True)"
        else:
            _check_weight(name, mod)
            if layer_fits(_weight(mod), m, name=name):
                chosen.append((index, name, mod))
                continue
            reason = (f"{_describe(name, mod)} has {_weight(mod).shape[1]} inputs, not a "
                      f"multiple of m={m}")
            if not skip_unfit:
                raise ValueError(
                    f"{reason}; change the width or the pattern, exclude the layer "
                    f"(exclude=[{name!r}]) or pass skip_unfit=True to keep it dense"
                )
            skipped[name] = reason
            dense[name] = f"skipped: {reason}"
    if not chosen:
        raise ValueError(
            f"no layer left to mask among {names} (dense: {dense}); adjust include/exclude "
            f"or dense_first/dense_last"
        )
    if skipped:
        warnings.warn(
            f"sparsify keeps {len(skipped)} layer(s) dense because their input size is not "
            f"a multiple of m={m}: {'; '.join(skipped.values())}",
            UserWarning, stacklevel=2,
        )
    layers: dict[str, nn.Module] = {}
    for index, name, mod in chosen:
        mask = NMMask(_weight(mod), n, m, layer_index=index, seed=seed,
                      temperature=schedules["temperature"].at(0), scale=schedules["scale"].at(0))
        mask.train(mod.training)
        parametrize.register_parametrization(mod, "weight", mask)
        layers[name] = mod
    return SpikeNMHandle(n, m, layers, dense, skipped, schedules["temperature"],
                         schedules["scale"])


def _check_weight(name: str, mod: nn.Module) -> None:
    if parametrize.is_parametrized(mod, "weight"):
        raise ValueError(
            f"layer {name!r} already has a parametrization on its weight; finalize the "
            f"previous sparsify handle (or remove the parametrization) first"
        )
    if isinstance(mod.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"layer {name!r} ({type(mod).__name__}) is lazy and not initialised yet; run one "
            f"forward pass before sparsify"
        )
    if _weight(mod).dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"layer {name!r} has a {_weight(mod).dtype} weight; the sampler needs float32 or "
            f"float64 (SPEC S0.4): cast the model with model.float() first"
        )


class SpikeNMHandle:
    """What `sparsify` returns: the masked layers and the step of their masks.

    Attributes
    ----------
    n, m : int
        The pattern.
    layers : dict str -> nn.Module
        Masked layers by module name (each with an `NMMask` on ``weight``).
    dense : dict str -> str
        Every other Linear/ConvNd layer, with the reason it is dense (first/last layer,
        include/exclude, or skipped as unfit).
    skipped : dict str -> str
        The layers kept dense because their input size does not fit ``m``.
    temperature, scale : Schedule
        The schedules of the sampler's temperature and logit scale.
    """

    def __init__(self, n: int, m: int, layers: dict[str, nn.Module], dense: dict[str, str],
                 skipped: dict[str, str], temperature: Schedule, scale: Schedule) -> None:
        self.n, self.m = n, m
        self.layers = layers
        self.dense = dense
        self.skipped = skipped
        self.temperature = temperature
        self.scale = scale
        self.finalized = False
        self._flips: dict[str, tuple[float, int] | None] = {name: None for name in layers}
        self._previous: dict[str, torch.Tensor | None] = {name: None for name in layers}

    def __repr__(self) -> str:
        state = "finalized" if self.finalized else f"step={self.step_count}"
        return (f"SpikeNMHandle({self.n}:{self.m}, {state}, masked={list(self.layers)}, "
                f"dense={list(self.dense)})")

    def mask_module(self, name: str) -> NMMask:
        """The `NMMask` of masked layer ``name``."""
        self._open()
        if name not in self.layers:
            raise KeyError(f"{name!r} is not a masked layer; masked layers: {list(self.layers)}")
        mod = self.layers[name]
        if not parametrize.is_parametrized(mod, "weight"):
            raise RuntimeError(f"layer {name!r} lost its parametrization outside the handle")
        chain = mod.parametrizations["weight"]  # type: ignore[index]
        if len(chain) != 1 or not isinstance(chain[0], NMMask):
            raise RuntimeError(
                f"layer {name!r} has parametrizations {[type(p).__name__ for p in chain]}; "
                f"expected exactly one NMMask"
            )
        return chain[0]

    def _open(self) -> None:
        if self.finalized:
            raise RuntimeError("this handle was finalized: the model has plain weights now")

    def _masks(self) -> dict[str, NMMask]:
        return {name: self.mask_module(name) for name in self.layers}

    @property
    def step_count(self) -> int:
        """The current step ``s`` (from the layers' ``step`` buffers, so it survives a
        ``state_dict`` round trip)."""
        steps = {name: int(p.step) for name, p in self._masks().items()}
        if len(set(steps.values())) != 1:
            raise RuntimeError(f"the masked layers are at different steps: {steps}")
        return next(iter(steps.values()))

    def logit_parameters(self) -> list[nn.Parameter]:
        """The mask logits of every masked layer, e.g. for their own optimizer group::

            logits = handle.logit_parameters()
            ids = {id(p) for p in logits}
            rest = [p for p in model.parameters() if id(p) not in ids]
            opt = torch.optim.Adam([{"params": rest}, {"params": logits, "lr": 0.05}])
        """
        return [p.logits for p in self._masks().values()]

    def step(self) -> None:
        """End the current step: record the mask flip rate, advance ``step`` (new mask
        noise) and set the temperature and scale of the next step from their schedules.

        Call it once per optimizer update, after ``optimizer.step()``.
        """
        masks = self._masks()
        nxt = self.step_count + 1
        tau, kappa = self.temperature.at(nxt), self.scale.at(nxt)
        for name, p in masks.items():
            current, previous = p.sampled, self._previous[name]
            if current is not None and previous is not None and current.shape == previous.shape:
                self._flips[name] = (float((current != previous).sum()), current.numel())
            else:
                self._flips[name] = None
            self._previous[name] = current
            p.sampled = None
            with torch.no_grad():
                p.step.add_(1)
                p.temperature.fill_(tau)
                p.scale.fill_(kappa)

    def stats(self) -> dict[str, LayerStats]:
        """Flip rate of the last completed step and block entropy, per masked layer."""
        out = {}
        for name, p in self._masks().items():
            probs = block_probs(p.logits.detach(), self.m, scale=float(p.scale))
            blocks = probs.reshape(-1, self.m)
            entropy = float(-torch.special.xlogy(blocks, blocks).sum(-1).mean())
            flips = self._flips[name]
            out[name] = LayerStats(None if flips is None else flips[0] / flips[1], entropy)
        return out

    @property
    def flip_rate(self) -> float | None:
        """Flip rate of the last completed step, all masked layers pooled (S5.9)."""
        flips = [f for f in (self._flips[name] for name in self.layers) if f is not None]
        if len(flips) != len(self.layers):
            return None
        return sum(f[0] for f in flips) / sum(f[1] for f in flips)

    def fix_masks(self) -> None:
        """Fix every mask to ``final_mask(logits)`` from now on, in train mode too (the
        fine-tuning phase of S5.8): the weights keep training with ``dL/dW = G * mask``,
        the logits get no more gradient.  Stored in the ``fixed`` buffers."""
        for p in self._masks().values():
            with torch.no_grad():
                p.fixed.fill_(True)

    def masks(self) -> dict[str, torch.Tensor]:
        """The final masks ``final_mask(logits)`` per masked layer, weight layout."""
        return {name: from_block_layout(final_mask(p.logits.detach(), self.n, self.m))
                for name, p in self._masks().items()}

    def finalize(self) -> dict[str, torch.Tensor]:
        """Squash the masks into the weights and remove the parametrizations.

        Each masked layer's weight becomes the plain parameter ``W * final_mask(logits)``
        (the same ``nn.Parameter`` object as the original weight, so an optimizer that
        holds it stays valid); the logits and buffers go away.  Every weight is then
        checked with `spikenm.api.check_nm`.  The handle is closed afterwards.

        Returns
        -------
        dict str -> torch.Tensor
            The final 0/1 mask of every masked layer, in the weight's layout.
        """
        masks = self.masks()
        for name, mod in self.layers.items():
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
            with torch.no_grad():
                _weight(mod).mul_(masks[name])
        self.finalized = True
        for name, mod in self.layers.items():
            check_nm(to_block_layout(_weight(mod).detach()), self.n, self.m,
                     name=f"{name}.weight")
        return masks


def export_packed(model: nn.Module, n: int, m: int, *, dense: Iterable[str] = ()
                  ) -> dict[str, Packed]:
    """Pack the N:M weights of a finalized model (SPEC S3).

    Every Linear/ConvNd layer of ``model`` must either be named in ``dense`` (kept out of
    the result on purpose; pass ``handle.dense``) or have an ``n:m``-sparse weight
    (checked with `spikenm.api.check_nm`): a layer that is neither is an error, never
    dropped.

    Returns
    -------
    dict str -> Packed
        Keyed by the parameter name (``"<module>.weight"``, as in the ``state_dict``);
        torch arrays, dense shape in the weight's own layout, blocks along ``axis=1``.

    Raises
    ------
    ValueError
        A layer still parametrized (call ``handle.finalize()`` first), a weight that is
        not ``n:m``, or a ``dense`` name that is not a Linear/ConvNd layer.
    """
    n, m = validation.pattern(n, m)
    dense_names = _patterns("dense", dense) or ()
    candidates = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SUPPORTED)]
    known = {name for name, _ in candidates}
    unknown = [d for d in dense_names if d not in known]
    if unknown:
        raise ValueError(
            f"dense names {unknown}, which are not Linear/ConvNd layers of the model; "
            f"its layers are {sorted(known)}"
        )
    out: dict[str, Packed] = {}
    for name, mod in candidates:
        if name in dense_names:
            continue
        if parametrize.is_parametrized(mod, "weight"):
            raise ValueError(
                f"layer {name!r} is still parametrized; call handle.finalize() before "
                f"export_packed"
            )
        weight = _weight(mod).detach()
        if not layer_fits(weight, m, name=name):
            raise ValueError(
                f"{_describe(name, mod)} has {weight.shape[1]} inputs, not a multiple of "
                f"m={m}; list it in dense= to export the model without it"
            )
        try:
            check_nm(to_block_layout(weight), n, m, name=f"{name}.weight")
        except ValueError as exc:
            raise ValueError(f"{exc}; list {name!r} in dense= if it is dense on purpose") from None
        out[f"{name}.weight"] = pack(weight, n, m, axis=1)
    return out
