"""EID credits of ordinary PyTorch layers, collected by hooks during the user's own
forward and backward passes (SPEC S2.1-S2.3, S2.9, S5.5).

For every watched layer (an ``nn.Linear`` or ``nn.ConvNd``) a forward hook records the
layer's input ``x_t`` and registers a tensor hook on its output ``I_t`` that receives
``d_t = dL/dI_t`` in the backward pass.  When a *sequence* closes, its credit is

    c[o, j] = |W[o, j]| * sum_t | sum_b d_t[b, o] e_t[b, j] |,   e_t = lam e_{t-1} + x_t

or, with `CreditCollector.signed` (the method's ``StepMasks.eid_signed``, S2.9),
``c[o, j] = |W[o, j]| * | sum_t sum_b d_t[b, o] e_t[b, j] |``
(`spikenm.backends.torch.eid.eligibility_credit` for a Linear layer; for a conv layer
the inner sum is the conv weight gradient of ``(e_t, d_t)``, of all steps stacked when
signed, `conv_credit`), with ``W`` the dense weight of the step; the credits of the
sequences of one optimizer step add up.

Time conventions (``time_steps``):

* ``None`` (default) -- **time steps as repeated calls** (snnTorch, Norse, a hand-written
  loop): every call of the layer with its natural input rank (Linear ``(B, K)``, ConvNd
  ``(B, C, *space)``) is one time step ``t`` of the current sequence, and the trace runs
  on across the calls.  A call whose input has one leading axis more (Linear
  ``(T, B, K)``, ConvNd ``(T, B, C, *space)``: SpikingJelly's multi-step mode) is a whole
  sequence by itself, time first.
* ``T`` -- **a leading time axis**: every call holds ``T`` steps, either as
  ``(T, B, ...)`` or flattened time-major as ``(T * B, ...)`` (SpikingJelly's
  ``SeqToANNContainer`` / ``seq_to_ann_forward``); each call is a sequence.

With repeated calls, a sequence ends (its trace restarts at ``e_0 = 0``) at
`CreditCollector.reduce` (the handle's ``step()``), at `CreditCollector.new_sequence`,
when a call follows a backward pass that reached the layer (the next batch of a gradient
accumulation loop), and when the input shape changes (a new batch size).  Calls outside
train mode, under ``torch.no_grad()`` or whose output needs no gradient are not
recorded.  A call whose output gets no gradient contributes ``d_t = 0``; several
backward passes through one call add their gradients (``d_t`` of the summed loss).

Under data parallelism (S5.14; `CreditCollector.reduce` with ``all_mean``) every process
holds a shard of the batch, so the inner sums ``S_t = sum_b d_t[b] e_t[b]`` of every
sequence and step (the time-summed ``S`` when signed) are averaged over the processes
-- as ``DistributedDataParallel`` averages gradients, so ``d_t`` of the averaged loss is
``1/K`` of a process's own -- *before* the absolute value; every process must have run
the same sequences and time steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from spikenm.api import to_block_layout

from . import credit
from .eid import eligibility_credit

__all__ = ["CreditCollector", "conv_credit", "conv_weight_grad"]


def _geometry(module: nn.Module) -> dict[str, Any]:
    """Keyword arguments of `spikenm.backends.torch.credit.conv_weight_grad` for
    ``module``: its stride, padding, dilation and groups, and its own convolution unless the
    padding is zeros given as numbers."""
    padding = getattr(module, "padding")
    numeric_zeros = (getattr(module, "padding_mode", "zeros") == "zeros"
                     and not isinstance(padding, str))

    def conv(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return module._conv_forward(e, w, None)  # type: ignore[operator]

    return dict(stride=module.stride, padding=padding, dilation=module.dilation,
                groups=module.groups, conv=None if numeric_zeros else conv)


def conv_weight_grad(module: nn.Module, e: torch.Tensor, d: torch.Tensor,
                     weight: torch.Tensor) -> torch.Tensor:
    """Weight gradient of ``module``'s convolution at input ``e`` and output gradient
    ``d``: ``sum_{b, positions} d[b, o, ...] * patch(e)[b, c, ...]`` (the inner sum of
    S2.3 over the unfolded input), for any stride, padding (numbers, ``"same"``,
    ``"valid"``, any ``padding_mode``), dilation and groups of the module.

    Zero padding given as numbers uses ``torch.nn.grad.conv{N}d_weight`` (no forward
    pass); every other case is the vector-Jacobian product of the module's own
    convolution ``W -> module._conv_forward(e, W, None)``
    (`spikenm.backends.torch.credit.conv_weight_grad`).
    """
    return credit.conv_weight_grad(e, d, weight, **_geometry(module))


def conv_credit(module: nn.Module, x: torch.Tensor, d: torch.Tensor, weight: torch.Tensor,
                decay: float, signed: bool = False) -> torch.Tensor:
    """EID credit (S2.3, or S2.9 with ``signed``) of a conv layer, framework layout
    ``(out, in/groups, *kernel)``.

    ``e_t = decay e_{t-1} + x_t`` (``e_0 = 0``) on the input maps and
    ``c = |W| * sum_t |conv_weight_grad(e_t, d_t)|``, or
    ``c = |W| * |conv_weight_grad(e, d)|`` over the ``T * B`` stacked steps when signed
    (`spikenm.backends.torch.credit.conv_credit` with ``module``'s geometry).

    Parameters
    ----------
    module : nn.Conv1d / nn.Conv2d / nn.Conv3d
        Gives the geometry (stride, padding, dilation, groups).
    x : ``(T, B, C, *space)`` layer input
    d : ``(T, B, O, *space_out)`` ``dL/dI_t``
    weight : the dense weight ``(O, C / groups, *kernel)``
    decay : trace decay in ``[0, 1]``
    signed : sum over time before the absolute value (S2.9)
    """
    return credit.conv_credit(x, d, weight, decay, signed=signed, **_geometry(module))


@dataclass
class _Chunk:
    """One recorded call: input ``(T_i, B, ...)`` and the summed output gradient."""

    x: torch.Tensor
    out_shape: tuple[int, ...]
    d: torch.Tensor | None = None


@dataclass
class _Sequence:
    chunks: list[_Chunk] = field(default_factory=list)
    key: tuple[int, ...] | None = None
    backward_seen: bool = False


class CreditCollector:
    """Hooks that collect the EID credits of some layers (module docstring).

    Parameters
    ----------
    layers : dict int -> (str, nn.Module)
        Layer ordinal -> (module name, Linear/ConvNd module).
    decay : float
        Trace decay ``lam`` in ``[0, 1]`` (S2.1).
    time_steps : int or None
        The time convention (module docstring).
    signed : bool
        The signed credit of S2.9 instead of S2.3's.

    Attributes
    ----------
    active : frozenset of int
        The ordinals recorded now (the handle sets the step's ``credit_layers``); calls of
        other layers are not recorded.
    signed : bool
        Whether `reduce` computes signed credits (the handle sets the step's
        ``eid_signed``).
    """

    def __init__(self, layers: Mapping[int, tuple[str, nn.Module]], decay: float,
                 time_steps: int | None, signed: bool = False) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not (
                0.0 <= float(decay) <= 1.0):
            raise ValueError(f"eid_decay must be a number in [0, 1], got {decay!r}")
        if time_steps is not None and (isinstance(time_steps, bool)
                                       or not isinstance(time_steps, int) or time_steps < 1):
            raise ValueError(f"time_steps must be None (time steps as repeated calls) or an "
                             f"integer >= 1, got {time_steps!r}")
        if not isinstance(signed, bool):
            raise ValueError(f"signed must be True or False, got {signed!r}")
        self.layers = dict(layers)
        # rank of one time step's batched input, read without touching ``weight`` (whose
        # parametrization would run)
        self._natural = {k: 2 if isinstance(mod, nn.Linear) else 2 + len(mod.kernel_size)
                         for k, (_, mod) in self.layers.items()}
        self.decay = float(decay)
        self.time_steps = time_steps
        self.signed = signed
        self.active: frozenset[int] = frozenset()
        self._open: dict[int, _Sequence] = {k: _Sequence() for k in self.layers}
        self._closed: dict[int, list[list[_Chunk]]] = {k: [] for k in self.layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # -- hooks ---------------------------------------------------------------------------
    def attach(self) -> None:
        """Register the forward hooks (once)."""
        if self._handles:
            return
        for k, (_, module) in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook(k)))

    def detach(self) -> None:
        """Remove every hook and forget what was recorded."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    def _hook(self, k: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[object, ...], output: object) -> None:
            if (k not in self.active or not module.training or not torch.is_grad_enabled()
                    or not isinstance(output, torch.Tensor) or not output.requires_grad
                    or not args or not isinstance(args[0], torch.Tensor)):
                return
            self._record(k, module, args[0], output)
        return hook

    def _split_time(self, k: int, module: nn.Module, x: torch.Tensor, output: torch.Tensor
                    ) -> tuple[torch.Tensor, tuple[int, ...], bool]:
        """``x`` as ``(T_i, B, ...)``, the matching shape of ``d`` and whether the call is
        a whole sequence."""
        name = self.layers[k][0]
        natural = self._natural[k]
        out_shape = tuple(output.shape)
        if x.dim() == natural + 1:
            if self.time_steps is not None and x.shape[0] != self.time_steps:
                raise ValueError(
                    f"layer {name!r} got an input of shape {tuple(x.shape)} whose leading "
                    f"time axis has {x.shape[0]} steps; sparsify was given "
                    f"time_steps={self.time_steps}")
            return x, out_shape, True
        if x.dim() != natural:
            what = "(B, in) or (T, B, in)" if natural == 2 else (
                f"(B, C, *space) with {natural - 2} spatial axes, or (T, B, C, *space)")
            raise ValueError(f"layer {name!r} got an input of shape {tuple(x.shape)}; EID "
                             f"credits need {what}")
        if self.time_steps is None:
            return x.unsqueeze(0), (1,) + out_shape, False
        t = self.time_steps
        if x.shape[0] % t:
            raise ValueError(
                f"layer {name!r} got a flattened input of shape {tuple(x.shape)}, whose "
                f"first axis is not a multiple of time_steps={t}; expected (T * B, ...) "
                f"time-major")
        b = x.shape[0] // t
        return x.reshape(t, b, *x.shape[1:]), (t, b) + out_shape[1:], True

    def _record(self, k: int, module: nn.Module, x: torch.Tensor,
                output: torch.Tensor) -> None:
        xt, out_shape, whole = self._split_time(k, module, x.detach(), output)
        seq = self._open[k]
        key = tuple(xt.shape[1:])
        if whole or seq.backward_seen or (seq.key is not None and seq.key != key):
            self._close(k)
            seq = self._open[k]
        seq.key = key
        chunk = _Chunk(xt, out_shape)
        seq.chunks.append(chunk)
        if whole:
            self._close(k)

        def grad_hook(g: torch.Tensor) -> None:
            g = g.detach().reshape(chunk.out_shape)
            chunk.d = g.clone() if chunk.d is None else chunk.d + g
            seq.backward_seen = True

        output.register_hook(grad_hook)

    # -- sequences -----------------------------------------------------------------------
    def _close(self, k: int) -> None:
        seq = self._open[k]
        if seq.chunks:
            self._closed[k].append(seq.chunks)
        self._open[k] = _Sequence()

    def new_sequence(self) -> None:
        """End the current sequence of every layer: the next call starts at ``e_0 = 0``."""
        for k in self.layers:
            self._close(k)

    def clear(self) -> None:
        """Forget every recorded call."""
        self._open = {k: _Sequence() for k in self.layers}
        self._closed = {k: [] for k in self.layers}

    def reduce(self, weights: Mapping[int, torch.Tensor],
               all_mean: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
               ) -> dict[int, torch.Tensor]:
        """The credits since the last reduce, block layout, of every active layer that a
        backward pass reached (``weights``: the dense weights of the step), then
        `clear`.  With ``all_mean`` (a data-parallel run, S5.14: a tensor's mean over the
        processes) the per-step inner sums are averaged over the processes before the
        absolute value (module docstring)."""
        self.new_sequence()
        if all_mean is not None:
            return self._reduce_shared(weights, all_mean)
        out: dict[int, torch.Tensor] = {}
        for k, sequences in self._closed.items():
            if k not in self.active or not sequences:
                continue
            module = self.layers[k][1]
            w = weights[k].detach()
            total = None
            for chunks in sequences:
                if all(c.d is None for c in chunks):
                    continue                    # no backward pass reached this sequence
                c = self._sequence_credit(module, chunks, w)
                total = c if total is None else total + c
            if total is not None:
                out[k] = to_block_layout(total)
        self.clear()
        return out

    def _reduce_shared(self, weights: Mapping[int, torch.Tensor],
                       all_mean: Callable[[torch.Tensor], torch.Tensor]
                       ) -> dict[int, torch.Tensor]:
        """`reduce` of a data-parallel run: every sequence's inner sums of every layer in
        one flat tensor, averaged over the processes, then ``|W| * sum_t |S_t|``."""
        parts: list[tuple[int, torch.Tensor]] = []
        for k, sequences in sorted(self._closed.items()):
            if k not in self.active or not sequences:
                continue
            module = self.layers[k][1]
            w = weights[k].detach()
            for chunks in sequences:
                if all(c.d is None for c in chunks):
                    continue                    # no backward pass reached this sequence
                parts.append((k, self._sequence_sums(module, chunks, w)))
        self.clear()
        if not parts:
            return {}
        flat = all_mean(torch.cat([p.reshape(-1) for _, p in parts]))
        totals: dict[int, torch.Tensor] = {}
        offset = 0
        for k, p in parts:
            sums = flat[offset:offset + p.numel()].reshape(p.shape)
            offset += p.numel()
            c = credit.credit_from_sums(sums, weights[k])
            totals[k] = c if k not in totals else totals[k] + c
        return {k: to_block_layout(t) for k, t in totals.items()}

    def _sequence_sums(self, module: nn.Module, chunks: list[_Chunk], w: torch.Tensor
                       ) -> torch.Tensor:
        """The inner sums ``S_t = sum_b d_t[b] e_t[b]`` of one sequence, ``(T, *w.shape)``
        (signed: the time-summed ``S``, ``(1, *w.shape)``), in the weight's layout
        (`spikenm.backends.torch.credit.step_sums`)."""
        x, d = self._sequence_arrays(chunks, w)
        geometry = None if isinstance(module, nn.Linear) else _geometry(module)
        return credit.step_sums(x, d, w, self.decay, self.signed, geometry)

    @staticmethod
    def _sequence_arrays(chunks: list[_Chunk], w: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(T, B, ...)`` and output gradients (0 where none) of one sequence."""
        x = torch.cat([c.x for c in chunks])
        d = torch.cat([c.d if c.d is not None else
                       torch.zeros(c.out_shape, dtype=c.x.dtype, device=c.x.device)
                       for c in chunks])
        return x.to(w.dtype), d.to(w.dtype)

    def _sequence_credit(self, module: nn.Module, chunks: list[_Chunk],
                         w: torch.Tensor) -> torch.Tensor:
        x, d = self._sequence_arrays(chunks, w)
        if isinstance(module, nn.Linear):
            return eligibility_credit(x, d, w, self.decay, self.signed)
        return conv_credit(module, x, d, w, self.decay, self.signed)
