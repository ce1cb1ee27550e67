"""Data-parallel torch model backend (SPEC S5.14): the global batch of every call split
over the processes of a ``torch.distributed`` group, reduced so that each process gets
the numbers of one process on the whole batch.

`spikenm.backends.torch.snn.model_backend` returns a `DDPModelBackend` when
``torch.distributed`` is initialized with more than one process, or when ``WORLD_SIZE``
(set by ``torchrun``) is above 1; the group is then created from the ``torchrun``
environment (`init_group`: ``gloo`` on CPU, ``nccl`` on CUDA, each process on
``cuda:LOCAL_RANK`` for ``run.device = "cuda"``).

Every process receives the same global batch (the trainer's data order and encoding do
not depend on the process, S5.2, S5.10) and keeps its shard: ``B // K`` samples, one
more on the first ``B mod K`` processes (`shard_bounds`).  Per training call:

* the loss of a shard is its summed cross-entropy over ``B``, so the global loss
  (the batch mean of S4.8) is the sum over processes and so is every gradient
  ``dL/dparam`` (``sum_k (B_k / B) g_k`` for the shard means ``g_k``);
* batch norm uses the statistics of the global batch (`snn_graph.Shard`: a
  differentiable all-reduce of the per-channel sums inside the graph, S4.13), so the
  running statistics are updated identically everywhere;
* EID credits: the per-step inner sums ``sum_b d_t[b] e_t[b]`` of S2.3 (the time-summed
  one for S2.9) are summed over the processes *before* the absolute value
  (`snn_credit.step_sums`, `snn_credit.credit_from_sums`);
* loss, correct count and spike counts (firing rates, S4.9) are summed.

All gradients and credit sums travel in one all-reduce, the scalars in a second; the
results are bitwise identical on every process, so parameters, optimizer states and
method states stay identical without further communication.  `DDPModelBackend.evaluate`
splits the evaluation batch the same way and sums loss, correct count, sample count and
spike counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from spikenm.snn.graph import Graph
from spikenm.snn.model import EIDRequest, EvalResult, StepResult
from spikenm.snn.neuron import LIFParams

from .snn_credit import credit_from_sums, step_sums
from .snn_graph import Shard, graph_forward

__all__ = ["DDPModelBackend", "shard_bounds", "distributed_requested", "init_group",
           "all_sum"]


class _AllSum(torch.autograd.Function):
    """Sum over the processes of the group; the backward pass sums the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor,  # type: ignore[override]
                group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any,  # type: ignore[override]
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=ctx.group)
        return out, None


def all_sum(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """``tensor`` summed over the processes of ``group`` (default: the world),
    differentiable: the gradient of every process's input is the sum of the gradients
    of the outputs (the objective is the sum of the processes' objectives)."""
    return _AllSum.apply(tensor, group)  # type: ignore[no-any-return]


def shard_bounds(total: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of process ``rank``'s shard of a batch of ``total`` samples over
    ``world`` processes: ``total // world`` samples each, one more for the first
    ``total % world`` ranks, in rank order (S5.14).

    Examples
    --------
    >>> [shard_bounds(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def distributed_requested() -> bool:
    """True when ``torch.distributed`` is initialized with more than one process, or not
    initialized but ``WORLD_SIZE`` (set by ``torchrun``) is above 1."""
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; "
                         f"torchrun sets it to the number of processes") from None


def init_group(device: str) -> str:
    """Initialize the default process group from the ``torchrun`` environment if needed
    (``gloo`` for a CPU ``device``, ``nccl`` for CUDA) and return the device of this
    process: ``"cuda"`` becomes ``cuda:LOCAL_RANK``.

    Raises
    ------
    ValueError
        When ``torch.distributed`` is unavailable or the ``torchrun`` variables
        (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) are missing.
    """
    if not dist.is_available():
        raise ValueError("data-parallel training needs torch.distributed, which this torch "
                         "build lacks")
    cuda = str(device).startswith("cuda")
    if cuda and str(device) == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if cuda and torch.cuda.is_available():
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")
                   if v not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} asks for "
                             f"data-parallel training but {', '.join(missing)} are not set; "
                             f"start the processes with torchrun (S5.14)")
        dist.init_process_group("nccl" if cuda else "gloo")
    return str(device)


class DDPModelBackend:
    """The torch model backend of one process of a data-parallel group (module
    docstring; SPEC S5.14).

    Attributes
    ----------
    name : ``"torch"``
    device : str
        This process's device.
    rank, world_size : int
        This process's rank and the number of processes.
    inner : TorchModelBackend
        The single-device backend that runs each shard.
    """

    name = "torch"

    def __init__(self, inner: Any, group: Any = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("DDPModelBackend needs an initialized torch.distributed "
                             "process group (torch.distributed.init_process_group)")
        self.inner = inner
        self.device = inner.device
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def __repr__(self) -> str:
        return (f"DDPModelBackend(device={self.device!r}, rank={self.rank}, "
                f"world_size={self.world_size})")

    def from_numpy(self, a: np.ndarray) -> torch.Tensor:
        """``a`` as a torch tensor on `device`."""
        return self.inner.from_numpy(a)  # type: ignore[no-any-return]

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        """A host NumPy copy of ``x``."""
        return self.inner.to_numpy(x)  # type: ignore[no-any-return]

    # -- agreement between the processes (the trainer's loop) -----------------------------
    def any_flag(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any (a stop request)."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.inner._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return bool(t.item())

    def barrier(self) -> None:
        """Wait until every process of the group is here."""
        dist.barrier(group=self.group)

    def _shard(self, batch: int, what: str) -> tuple[int, int]:
        if batch < self.world_size:
            raise ValueError(f"{what} has {batch} samples for {self.world_size} data-parallel "
                             f"processes; every process needs at least one sample (S5.14)")
        return shard_bounds(batch, self.rank, self.world_size)

    @staticmethod
    def _take(x: torch.Tensor, static: bool, start: int, stop: int) -> torch.Tensor:
        return x[start:stop] if static else x[:, start:stop]

    # -- the two calls -------------------------------------------------------------------
    def forward_backward(self, graph: Graph, params: Mapping[str, torch.Tensor],
                         buffers: Mapping[str, torch.Tensor], x: torch.Tensor,
                         y: torch.Tensor, lif: LIFParams, eid: EIDRequest | None = None
                         ) -> StepResult:
        """Train mode on this process's shard of the global batch ``x``, ``y``; the
        result is that of one process on the whole batch (module docstring, S5.14)."""
        inner = self.inner
        static, batch = inner._check(graph, params, buffers, x, y, lif)
        layers = inner._eid_layers(graph, params, eid)
        start, stop = self._shard(batch, "the training batch")
        xs, ys = self._take(x, static, start, stop), y[start:stop]
        shard = Shard(stop - start, batch, lambda t: all_sum(t, self.group))
        keys = list(graph.param_shapes())
        leaves = {k: params[k].detach().requires_grad_(True) for k in keys}
        with torch.enable_grad():
            run = graph_forward(graph, leaves, buffers, xs, lif, train=True, static=static,
                                keep=layers, shard=shard)
            loss = F.cross_entropy(run.logits, ys.long(), reduction="sum") / batch
            wrt = [leaves[k] for k in keys] + [run.currents[k] for k in layers]
            found = torch.autograd.grad(loss, wrt, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt)]
        sums: list[torch.Tensor] = []
        if eid is not None:
            with torch.no_grad():
                for j, k in enumerate(layers):
                    a, st = run.inputs[k]
                    sums.append(step_sums(graph.layer_node(k), a.detach(), st,
                                          grads[len(keys) + j], eid.weights[j],
                                          float(eid.decay), eid.signed))
        own = grads[:len(keys)] + sums
        flat = torch.cat([g.detach().reshape(-1) for g in own])
        dist.all_reduce(flat, group=self.group)
        reduced, offset = [], 0
        for g in own:
            reduced.append(flat[offset:offset + g.numel()].reshape(g.shape))
            offset += g.numel()
        credits: dict[int, torch.Tensor] = {}
        for j, k in enumerate(layers):
            credits[k] = credit_from_sums(graph.layer_node(k), reduced[len(keys) + j],
                                          eid.weights[j])  # type: ignore[union-attr]
        correct = (torch.argmax(run.logits.detach(), dim=1) == ys).sum()
        scalars = torch.stack([loss.detach().to(torch.float64), correct.to(torch.float64)]
                              + [s.detach().sum(dtype=torch.float64) for s in run.spikes])
        dist.all_reduce(scalars, group=self.group)
        host = scalars.tolist()
        local = stop - start
        rates = tuple(host[2 + i] / (s.numel() // local * batch)
                      for i, s in enumerate(run.spikes))
        return StepResult(loss=host[0], correct=int(round(host[1])),
                          grads=dict(zip(keys, reduced[:len(keys)])),
                          buffers={k: run.buffers[k] for k in graph.buffer_shapes()},
                          credits=credits, firing_rates=rates)

    def evaluate(self, graph: Graph, params: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 lif: LIFParams) -> EvalResult:
        """Eval mode on this process's shard of ``x``, ``y``; summed loss, correct
        count, sample count and spike sums and counts of the whole batch (S5.14).  A
        process whose shard is empty (a batch smaller than the group) contributes 0."""
        static, batch = self.inner._check(graph, params, buffers, x, y, lif)
        start, stop = shard_bounds(batch, self.rank, self.world_size)
        lifs = len(graph.neurons)
        if stop > start:
            r = self.inner.evaluate(graph, params, buffers, self._take(x, static, start, stop),
                                    y[start:stop], lif)
            values = [r.loss_sum, r.correct, r.count, *r.spike_sums, *r.spike_counts]
        else:
            values = [0.0] * (3 + 2 * lifs)
        t = torch.tensor(values, dtype=torch.float64, device=self.inner._device)
        dist.all_reduce(t, group=self.group)
        host = t.tolist()
        return EvalResult(loss_sum=host[0], correct=int(round(host[1])),
                          count=int(round(host[2])), spike_sums=tuple(host[3:3 + lifs]),
                          spike_counts=tuple(int(round(v)) for v in host[3 + lifs:]))
