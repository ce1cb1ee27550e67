"""PyTorch model backend: a spiking `spikenm.snn.graph.Graph` trained by BPTT with
autograd (SPEC S4), implementing `spikenm.snn.model.ModelBackend` on one device (S4.16).

``model_backend(device)`` returns a `TorchModelBackend` bound to ``device`` (``"cpu"``,
``"cuda"``, ``"cuda:1"``, ``"mps"``).  The forward pass is
`spikenm.backends.torch.snn_graph.graph_forward`; one ``torch.autograd.grad`` call over
that single graph gives ``dL/dparam`` for every parameter and, for EID, the learning
signals ``d_t = dL/dI_t`` of the requested layers (the gradient of their current tensors,
before any batch norm), from which `spikenm.backends.torch.snn_credit` computes the
credits (S2.3, or the signed S2.9).  Everything stays on the device; a step copies to the
host only the loss, the correct count and the firing rates, in one transfer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikenm.snn.graph import Graph
from spikenm.snn.model import EIDRequest, EvalResult, StepResult, check_call, check_eid_request
from spikenm.snn.neuron import LIFParams

from . import arrays
from .snn_credit import layer_credit
from .snn_graph import graph_forward

__all__ = ["TorchModelBackend", "model_backend", "available_devices", "canonical_device"]


def available_devices() -> list[str]:
    """The devices torch can use here: ``"cpu"``, ``"cuda:i"`` per GPU, ``"mps"``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def canonical_device(device: str | torch.device) -> torch.device:
    """``device`` as an existing torch device (``"cuda"`` is the current CUDA device).

    Raises
    ------
    TypeError
        When ``device`` is not a string or a ``torch.device``.
    ValueError
        When it names no device, or one this machine does not have (the message lists
        `available_devices`).

    Examples
    --------
    >>> canonical_device("cpu")
    device(type='cpu')
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device={device!r} is a {type(device).__name__}; expected a string "
                        f"such as 'cpu' or 'cuda:0'")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc}); available "
                         f"devices: {available_devices()}") from exc
    if dev.type == "cpu" and dev.index in (None, 0):
        return torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    if dev.type == "mps" and dev.index in (None, 0) and "mps" in available_devices():
        return torch.device("mps")
    raise ValueError(f"device {str(device)!r} is not available; available devices: "
                     f"{available_devices()}")


def _host_floats(values: list[torch.Tensor]) -> list[float]:
    """Scalars to Python floats in one device-to-host transfer."""
    return torch.stack([v.detach().to(torch.float64) for v in values]).tolist()


def _rate(s: torch.Tensor) -> torch.Tensor:
    """Mean of a spike tensor, summed in float64 (exact counts, S4.9)."""
    return s.sum(dtype=torch.float64) / s.numel()


class TorchModelBackend:
    """The torch model backend on one device (module docstring; SPEC S4, S4.16).

    Attributes
    ----------
    name : ``"torch"``
    device : str
        The canonical device string (``"cpu"``, ``"cuda:0"`` ...).

    Examples
    --------
    >>> import numpy as np
    >>> from spikenm.snn import LIFParams, init_buffers, init_params, mlp
    >>> g = mlp((4,), 3, (8,))
    >>> mb = model_backend("cpu")
    >>> p = {k: mb.from_numpy(v) for k, v in init_params(g, 0, 2.0, "float64").items()}
    >>> x = mb.from_numpy(np.full((2, 4), 0.5)); y = mb.from_numpy(np.array([0, 1]))
    >>> r = mb.forward_backward(g, p, {}, x, y, LIFParams())
    >>> sorted(r.grads), r.grads["layer0.weight"].shape
    (['layer0.bias', 'layer0.weight', 'layer1.bias', 'layer1.weight'], torch.Size([8, 4]))
    """

    name = "torch"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self._device = canonical_device(device)
        self.device = str(self._device)

    def __repr__(self) -> str:
        return f"TorchModelBackend(device={self.device!r})"

    # -- arrays --------------------------------------------------------------------------
    def from_numpy(self, a: np.ndarray) -> torch.Tensor:
        """``a`` as a torch tensor on `device` (a copy, same dtype and values)."""
        return arrays.from_numpy(np.asarray(a)).to(self._device)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        """A host NumPy copy of ``x``."""
        return arrays.to_numpy(x)

    # -- checks --------------------------------------------------------------------------
    def _check(self, graph: Graph, params: Mapping[str, Any], buffers: Mapping[str, Any],
               x: Any, y: Any, lif: Any) -> tuple[bool, int]:
        """Types and devices of every input, then `check_call`."""
        if not isinstance(graph, Graph):
            raise TypeError(f"graph is a {type(graph).__name__}; expected a "
                            f"spikenm.snn.Graph")
        if not isinstance(lif, LIFParams):
            raise TypeError(f"lif is a {type(lif).__name__}; expected spikenm.snn.LIFParams")
        named = [(f"params[{k!r}]", v) for k, v in params.items()]
        named += [(f"buffers[{k!r}]", v) for k, v in buffers.items()]
        named += [("x", x)] + ([] if y is None else [("y", y)])
        for label, value in named:
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{label} is a {type(value).__name__}; expected a "
                                f"torch.Tensor (use the backend's from_numpy)")
            if value.device != self._device:
                raise ValueError(f"{label} is on device {str(value.device)!r}; this backend "
                                 f"runs on {self.device!r} (use its from_numpy)")
        return check_call(graph, params, buffers, x, y, lif, arrays.dtype_name)

    def _eid_layers(self, graph: Graph, params: Mapping[str, torch.Tensor],
                    eid: EIDRequest | None) -> tuple[int, ...]:
        layers = check_eid_request(graph, eid)
        if eid is None:
            return ()
        for k, w in zip(layers, eid.weights):
            like = params[f"layer{k}.weight"]
            if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(like.shape) \
                    or w.dtype != like.dtype or w.device != like.device:
                got = (f"{tuple(w.shape)} {arrays.dtype_name(w)} on {w.device}"
                       if isinstance(w, torch.Tensor) else type(w).__name__)
                raise ValueError(f"EID weight of layer {k} is {got}; expected a tensor like "
                                 f"layer{k}.weight: {tuple(like.shape)} "
                                 f"{arrays.dtype_name(like)} on {like.device}")
        return layers

    # -- the two calls -------------------------------------------------------------------
    def forward_backward(self, graph: Graph, params: Mapping[str, torch.Tensor],
                         buffers: Mapping[str, torch.Tensor], x: torch.Tensor,
                         y: torch.Tensor, lif: LIFParams, eid: EIDRequest | None = None
                         ) -> StepResult:
        """Train mode (S4, S4.13): loss, correct count, ``dL/dparam``, new running
        statistics, EID credits (S2.3, or S2.9 with ``eid.signed``) and firing rates
        (S4.9)."""
        static, _ = self._check(graph, params, buffers, x, y, lif)
        layers = self._eid_layers(graph, params, eid)
        keys = list(graph.param_shapes())
        leaves = {k: params[k].detach().requires_grad_(True) for k in keys}
        with torch.enable_grad():
            run = graph_forward(graph, leaves, buffers, x, lif, train=True, static=static,
                                keep=layers)
            loss = F.cross_entropy(run.logits, y.long())
            wrt = [leaves[k] for k in keys] + [run.currents[k] for k in layers]
            found = torch.autograd.grad(loss, wrt, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt)]
        credits: dict[int, torch.Tensor] = {}
        if eid is not None:
            with torch.no_grad():
                for j, k in enumerate(layers):
                    a, st = run.inputs[k]
                    credits[k] = layer_credit(graph.layer_node(k), a.detach(), st,
                                              grads[len(keys) + j], eid.weights[j],
                                              float(eid.decay), eid.signed)
        correct = (torch.argmax(run.logits.detach(), dim=1) == y).sum()
        host = _host_floats([loss, correct] + [_rate(s.detach()) for s in run.spikes])
        return StepResult(loss=host[0], correct=int(host[1]),
                          grads=dict(zip(keys, grads[:len(keys)])),
                          buffers={k: run.buffers[k] for k in graph.buffer_shapes()},
                          credits=credits, firing_rates=tuple(host[2:]))

    def evaluate(self, graph: Graph, params: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 lif: LIFParams) -> EvalResult:
        """Eval mode (running statistics, S4.13): summed loss, correct count and spike
        sums (S4.8, S4.9); nothing changes."""
        static, batch = self._check(graph, params, buffers, x, y, lif)
        with torch.no_grad():
            run = graph_forward(graph, params, buffers, x, lif, train=False, static=static)
            loss_sum = F.cross_entropy(run.logits, y.long(), reduction="sum")
            correct = (torch.argmax(run.logits, dim=1) == y).sum()
            host = _host_floats([loss_sum, correct]
                                + [s.sum(dtype=torch.float64) for s in run.spikes])
        return EvalResult(loss_sum=host[0], correct=int(host[1]), count=int(batch),
                          spike_sums=tuple(host[2:]),
                          spike_counts=tuple(int(s.numel()) for s in run.spikes))


def model_backend(device: str = "cpu") -> Any:
    """The torch model backend bound to ``device`` (S4.16).

    In a data-parallel run (``torch.distributed`` initialized with several processes,
    or ``WORLD_SIZE > 1`` under ``torchrun``) it is the
    `spikenm.backends.torch.snn_ddp.DDPModelBackend` of this process (S5.14), which
    creates the process group from the ``torchrun`` environment if needed; otherwise a
    `TorchModelBackend`.

    Raises
    ------
    ValueError
        When ``device`` does not exist here; the message lists the available devices.

    Examples
    --------
    >>> model_backend().device
    'cpu'
    """
    from . import snn_ddp

    if snn_ddp.distributed_requested():
        return snn_ddp.DDPModelBackend(TorchModelBackend(snn_ddp.init_group(device)))
    return TorchModelBackend(device)
