"""PyTorch inference modules for packed N:M layers (SPEC S3.1, S3.6).

`pack_model` turns a finalized model (every masked Linear/Conv layer exactly ``n:m``,
e.g. after ``handle.finalize()`` of `spikenm.backends.torch.nn.sparsify`) into a copy in
which those layers are `PackedLinear` / `PackedConv` modules holding only the packed
values and uint8 indices (``n/m`` of the weights plus one byte per kept entry).  On CPU
their forward runs the reference kernels on the tensors' memory: for 0/1 inputs (spikes)
the event-driven kernel that adds the weights of the active inputs only, for other
inputs the float kernel (`spikenm.reference.spmm_kernels.choose_kernel` decides, S3.6).

Where that path does not apply -- another device, a dtype other than float32/float64,
or an input that needs a gradient -- the layer computes the same product from the dense
weight (unpacked once and cached per device and dtype), so the result is always the
layer's output and gradients flow to the input; the packed buffers themselves are not
trained.

Example
-------
>>> import torch
>>> from torch import nn
>>> from spikenm.backends.torch.packed_modules import pack_model
>>> lin = nn.Linear(8, 3)
>>> with torch.no_grad():
...     lin.weight[:, 1::2] = 0.0                     # a 2:4 weight
>>> packed = pack_model(nn.Sequential(lin), 2, 4)
>>> type(packed[0]).__name__, packed[0].values.shape
('PackedLinear', torch.Size([3, 4]))
>>> x = (torch.rand(5, 8) < 0.2).float()
>>> bool(torch.allclose(packed(x), lin(x)))
True
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikenm import validation
from spikenm.api import unpack
from spikenm.packed import Packed

from .nn import export_packed
from .packing import _on_host as host_tensors  # the backend's own host test
from .spmm_host import runs_on_host, spmm_on_host

__all__ = ["PackedLinear", "PackedConv", "pack_model", "to_sparse_semi_structured"]


class _PackedLayer(nn.Module):
    """Shared buffers and dispatch of the packed layers: ``values``/``indices`` as a 2-D
    ``(out, G*n)`` packed matrix over the block-layout inputs ``K`` (S0.2)."""

    def __init__(self, packed: Packed, bias: torch.Tensor | None) -> None:
        super().__init__()
        validation.packed(packed)  # type, fields, shapes, indices (S3.10)
        if packed.axis != 1 or len(packed.shape) < 2:
            raise ValueError(
                f"expected a packed layer weight (out, in, *kernel) with blocks along axis "
                f"1, got shape {packed.shape} with axis {packed.axis}"
            )
        if not isinstance(packed.values, torch.Tensor):
            raise TypeError(f"expected torch packed arrays, got "
                            f"{type(packed.values).__name__}; pack the torch weight")
        out = packed.shape[0]
        self.n, self.m = packed.n, packed.m
        self.weight_shape = tuple(packed.shape)
        self.register_buffer("values", packed.values.detach().reshape(out, -1).contiguous())
        self.register_buffer("indices", packed.indices.detach().reshape(out, -1).contiguous())
        if bias is not None and tuple(bias.shape) != (out,):
            raise ValueError(f"bias must have shape ({out},), got {tuple(bias.shape)}")
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(),
                                                           requires_grad=False)
        self._dense: tuple[Any, torch.Tensor] | None = None

    def dense_weight(self) -> torch.Tensor:
        """The dense weight in the layer's own layout ``(out, in, *kernel)`` (cached per
        device, dtype and buffer version)."""
        key = (self.values.device, self.values.dtype, self.values._version,  # noqa: SLF001
               self.indices._version)  # noqa: SLF001
        if self._dense is None or self._dense[0] != key:
            lead = (self.weight_shape[0], *self.weight_shape[2:])
            shaped = Packed(self.values.reshape(*lead, -1), self.indices.reshape(*lead, -1),
                            self.n, self.m, self.weight_shape, 1)
            self._dense = (key, unpack(shaped))
        return self._dense[1]

    def _on_host(self, x: torch.Tensor) -> bool:
        """The reference kernels apply (the torch backend's own host test, S3.6) and no
        gradient is wanted."""
        return (not (torch.is_grad_enabled() and x.requires_grad)
                and x.dtype == self.values.dtype
                and host_tensors(self.values, self.indices, x)
                and runs_on_host(self.values, self.indices, x))

    def _product(self, cols: torch.Tensor) -> torch.Tensor:
        """``W_blocks @ cols`` for ``cols`` ``(K, P)`` on the host path, ``(out, P)``."""
        return spmm_on_host(self.values, self.indices, self.n, self.m, cols)

    def extra_repr(self) -> str:
        return (f"{self.n}:{self.m}, weight_shape={self.weight_shape}, "
                f"bias={self.bias is not None}")


class PackedLinear(_PackedLayer):
    """``y = x @ W.T + b`` with ``W`` stored packed (see the module docstring).

    Parameters
    ----------
    packed : Packed
        The weight ``(out, in)`` packed along axis 1 (`spikenm.api.pack(w, n, m, axis=1)`).
    bias : torch.Tensor or None
    """

    @property
    def in_features(self) -> int:
        return self.weight_shape[1]

    @property
    def out_features(self) -> int:
        return self.weight_shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"input must have {self.in_features} features in its last "
                             f"axis, got shape {tuple(x.shape)}")
        if not self._on_host(x):
            return F.linear(x, self.dense_weight().to(x.dtype), self.bias)
        flat = x.reshape(-1, self.in_features)
        y = (self._product(flat[0]).unsqueeze(0) if flat.shape[0] == 1
             else self._product(flat.T).T)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class PackedConv(_PackedLayer):
    """A packed Conv1d/Conv2d (``groups=1``, zero padding): the input patches
    (``F.unfold``, in the block layout's ``(*kernel, in)`` order) times the packed
    weight.

    Parameters
    ----------
    packed : Packed
        The weight ``(out, in, *kernel)`` packed along axis 1.
    bias : torch.Tensor or None
    stride, padding, dilation : tuple of int
        As in the convolution it replaces (one entry per spatial axis).
    """

    def __init__(self, packed: Packed, bias: torch.Tensor | None, *,
                 stride: tuple[int, ...], padding: tuple[int, ...],
                 dilation: tuple[int, ...]) -> None:
        super().__init__(packed, bias)
        self.spatial = len(self.weight_shape) - 2
        if self.spatial not in (1, 2):
            raise ValueError(f"PackedConv handles 1-D and 2-D convolutions, got a weight "
                             f"of shape {self.weight_shape}")
        for name, v in (("stride", stride), ("padding", padding), ("dilation", dilation)):
            if len(v) != self.spatial:
                raise ValueError(f"{name} must have {self.spatial} entries, got {v}")
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = self.weight_shape[1]
        if x.ndim != self.spatial + 2 or x.shape[1] != c_in:
            raise ValueError(f"input must be (batch, {c_in}, *spatial) with {self.spatial} "
                             f"spatial axes, got shape {tuple(x.shape)}")
        if not self._on_host(x):
            conv = F.conv1d if self.spatial == 1 else F.conv2d
            return conv(x, self.dense_weight().to(x.dtype), self.bias, self.stride,
                        self.padding, self.dilation)
        one = (1,) if self.spatial == 1 else ()
        x2 = x.unsqueeze(2) if self.spatial == 1 else x
        kernel = one + self.weight_shape[2:]
        cols = F.unfold(x2, kernel, dilation=one + self.dilation,
                        padding=(0,) * len(one) + self.padding, stride=one + self.stride)
        batch, _, places = cols.shape
        taps = cols.shape[1] // c_in
        # (B, in * taps, L) -> (taps * in, B * L): the block layout's (*kernel, in) order
        cols = cols.view(batch, c_in, taps, places).permute(2, 1, 0, 3).reshape(-1, batch * places)
        y = self._product(cols).view(-1, batch, places).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias[:, None]
        out_size = _out_size(x.shape[2:], self.weight_shape[2:], self.stride, self.padding,
                             self.dilation)
        return y.reshape(batch, -1, *out_size)


def _out_size(size: Iterable[int], kernel: Iterable[int], stride: tuple[int, ...],
              padding: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                 for s, k, st, p, d in zip(size, kernel, stride, padding, dilation))


def _conv_padding(name: str, mod: nn.Module) -> tuple[int, ...]:
    pad = mod.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * len(mod.kernel_size)
        total = [d * (k - 1) for k, d in zip(mod.kernel_size, mod.dilation)]
        if any(t % 2 for t in total):
            raise ValueError(f"layer {name!r}: padding='same' with an even effective kernel "
                             f"pads asymmetrically, which PackedConv does not do; list it in "
                             f"dense=")
        return tuple(t // 2 for t in total)
    return tuple(pad)


def _packed_module(name: str, mod: nn.Module, packed: Packed) -> nn.Module:
    if isinstance(mod, nn.Linear):
        return PackedLinear(packed, mod.bias)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and not isinstance(mod, nn.Conv3d):
        if mod.groups != 1:
            raise ValueError(f"layer {name!r} has groups={mod.groups}; PackedConv needs "
                             f"groups=1 (list it in dense=)")
        if mod.padding_mode != "zeros":
            raise ValueError(f"layer {name!r} has padding_mode={mod.padding_mode!r}; "
                             f"PackedConv pads with zeros only (list it in dense=)")
        return PackedConv(packed, mod.bias, stride=tuple(mod.stride),
                          padding=_conv_padding(name, mod), dilation=tuple(mod.dilation))
    raise ValueError(f"layer {name!r} is a {type(mod).__name__}, which has no packed module "
                     f"(Linear, Conv1d and Conv2d do); list it in dense=")


def pack_model(model: nn.Module, n: int, m: int, *, dense: Iterable[str] = ()) -> nn.Module:
    """A copy of ``model`` whose ``n:m`` Linear/Conv1d/Conv2d layers are packed modules.

    Parameters
    ----------
    model : nn.Module
        A finalized model: every Linear/ConvNd layer is exactly ``n:m`` along its input
        axis, or named in ``dense`` (pass ``handle.dense`` of `sparsify`).
    n, m : int
    dense : iterable of str
        Layers kept as they are.

    Returns
    -------
    nn.Module
        A deep copy; ``model`` is not changed.  Every other module (neurons, batch norm,
        pooling) is copied as is; a state tensor a module keeps from its last forward
        inside an autograd graph (snnTorch's ``mem``, for one) is copied detached, since
        such a tensor cannot be deep-copied.

    Raises
    ------
    ValueError
        As `spikenm.backends.torch.nn.export_packed` (a layer neither ``n:m`` nor listed
        in ``dense``, a layer still parametrized), or a layer with no packed module
        (Conv3d, grouped or non-zero-padded convolutions): nothing is left dense
        without being listed.
    """
    weights = export_packed(model, n, m, dense=dense)
    out = copy.deepcopy(model, _detached_state(model))
    for key, packed in weights.items():
        name = key[: -len(".weight")]
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        mod = getattr(parent, attr) if attr else out
        replacement = _packed_module(name, mod, packed)
        if not attr:
            return replacement
        setattr(parent, attr, replacement)
    return out


def _detached_state(model: nn.Module) -> dict[int, torch.Tensor]:
    """A ``deepcopy`` memo mapping every non-leaf tensor held by ``model``'s modules
    (attributes, buffers, and dicts/lists of them: state left from a forward pass, as
    snnTorch's ``mem`` and SpikingJelly's ``v``) to a detached copy."""
    memo: dict[int, torch.Tensor] = {}
    todo: list[Any] = [vars(mod) for mod in model.modules()]
    while todo:
        value = todo.pop()
        if isinstance(value, torch.Tensor):
            if not value.is_leaf:
                memo[id(value)] = value.detach().clone()
        elif isinstance(value, dict):
            todo.extend(v for v in value.values() if not isinstance(v, nn.Module))
        elif isinstance(value, (list, tuple)):
            todo.extend(v for v in value if not isinstance(v, nn.Module))
    return memo


def to_sparse_semi_structured(packed: Packed, device: str | torch.device = "cuda") -> Any:
    """PyTorch's ``SparseSemiStructuredTensor`` of a 2:4 ``Packed`` weight, for 2:4
    sparse tensor-core inference on a CUDA GPU (``torch.sparse.to_sparse_semi_structured``
    of the dense matrix on ``device``; ``torch.mm`` / ``F.linear`` then use it).

    Parameters
    ----------
    packed : Packed
        2-D ``(rows, k)`` 2:4 weight packed along axis 1 (torch or NumPy arrays), float16,
        bfloat16 or int8 as PyTorch's format requires.
    device : str or torch.device
        A CUDA device.

    Raises
    ------
    ValueError
        Not 2:4 along axis 1 of a 2-D weight, or ``device`` is not a CUDA device or none
        is available (the format exists only there).
    TypeError
        A value dtype PyTorch's format does not take.
    """
    validation.packed(packed)  # type, fields, shapes, indices (S3.10)
    if (packed.n, packed.m) != (2, 4) or len(packed.shape) != 2 or packed.axis != 1:
        raise ValueError(f"expected a 2-D 2:4 weight packed along axis 1, got {packed.n}:"
                         f"{packed.m} of shape {packed.shape} along axis {packed.axis}")
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(f"semi-structured sparse tensors need a CUDA device; got "
                         f"{str(dev)!r} (CUDA available: {torch.cuda.is_available()}); on "
                         f"CPU use pack_model / PackedLinear")
    values = packed.values if isinstance(packed.values, torch.Tensor) else \
        torch.from_numpy(np.asarray(packed.values))
    if values.dtype not in (torch.float16, torch.bfloat16, torch.int8):
        raise TypeError(f"semi-structured sparse tensors hold float16, bfloat16 or int8; got "
                        f"{values.dtype} (cast the weight before packing)")
    indices = packed.indices if isinstance(packed.indices, torch.Tensor) else \
        torch.from_numpy(np.asarray(packed.indices))
    dense = unpack(Packed(values, indices, 2, 4, packed.shape, 1))
    return torch.sparse.to_sparse_semi_structured(dense.to(dev))
