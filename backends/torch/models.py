"""Paper-scale spiking networks for CIFAR-size inputs, in PyTorch: VGG-11 and ResNet-19.

Both are meant for CIFAR-10/100 runs (``3 x 32 x 32`` inputs, 100+ epochs) on a GPU; on
a CPU they are only shape-checked on tiny inputs.  Neurons are the LIF neurons of SPEC
S4.3-S4.5 (`spikenm.backends.torch.snn_lif`), inputs are direct-encoded ``(B, C, H, W)``
(shown at every step) or time-major ``(T, B, C, H, W)``, and the readout is
non-spiking, ``logits = (1/T) sum_t I_t`` (S4.8).

VGG-11
    A plain stack of conv (3x3, padding 1) + LIF layers with 2x2 average pooling of the
    spikes, then Linear layers: it *is* a `spikenm.train.model_backend.Arch`
    (`vgg11_arch`), so every model backend -- and the trainer core -- runs it unchanged.
    Without normalization layers (the Arch has none): train it with the S4.10 gain
    initialization and direct encoding.

ResNet-19
    As in the tdBN paper (Zheng et al., AAAI 2021): a 3x3 conv stem of ``w`` channels,
    three stages of BasicBlocks (3 blocks of ``w``, 3 of ``2w`` with stride 2, 2 of ``4w``
    with stride 2, ``w = 128``), global average pooling of the spikes, ``Linear(4w, 256)``
    + LIF and the ``Linear(256, classes)`` readout: 17 convs + 2 Linear = 19 weight layers.
    Normalization is **threshold-dependent batch norm (tdBN)**: per channel over
    ``(T, B, H, W)`` (the time axis merged into the batch axis),
    ``y = alpha * theta * lambda * (x - mean) / sqrt(var + eps) + beta`` with ``alpha = 1``,
    and ``alpha = 1 / sqrt(2)`` on the two branches that are added in a residual block.
    A BasicBlock is ``LIF(tdBN(conv(LIF(tdBN(conv(x))))) + shortcut(x))``, the shortcut
    being the identity or ``tdBN(conv1x1(x, stride))``.  Residual additions and batch
    norm do not fit the sequential `Arch`, so ResNet-19 is an ``nn.Module``
    (`ResNet19`); N:M masks are applied by calling it with effective weights through
    ``torch.func.functional_call(model, {name: W * mask}, (x,))``, the prunable weights
    being `prunable_weights` (in SPEC S0.2 layout after `spikenm.api.to_block_layout`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from spikenm.train.config import LIFConfig

from .snn_lif import lif_over_time

__all__ = ["TDBatchNorm", "BasicBlock",
           "ResNet19", "resnet19", "prunable_weights"]



class TDBatchNorm(nn.Module):
    """Threshold-dependent batch norm (tdBN) of time-major maps ``(T, B, C, H, W)``.

    Per channel over ``(T, B, H, W)``:
    ``y = alpha * theta * lambda * (x - mean) / sqrt(var + eps) + beta`` with learned
    ``lambda`` (init 1) and ``beta`` (init 0); running statistics as ``nn.BatchNorm2d``.
    """

    def __init__(self, channels: int, theta: float, alpha: float = 1.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.gain = alpha * theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.norm(x.reshape((t * b,) + tuple(x.shape[2:])))
        y = (self.gain * self.weight)[:, None, None] * y + self.bias[:, None, None]
        return y.reshape(x.shape)


def _conv_t(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to every step of ``(T, B, C, H, W)`` (time merged into batch)."""
    t, b = x.shape[:2]
    y = conv(x.reshape((t * b,) + tuple(x.shape[2:])))
    return y.reshape((t, b) + tuple(y.shape[1:]))


class BasicBlock(nn.Module):
    """``LIF(tdBN_a(conv(LIF(tdBN(conv(x, stride))))) + shortcut(x))`` with
    ``a = 1/sqrt(2)`` and ``shortcut = tdBN_a(conv1x1(x, stride))`` when the shape changes
    (identity otherwise)."""

    def __init__(self, cin: int, cout: int, stride: int, lif: LIFConfig) -> None:
        super().__init__()
        half = 1.0 / math.sqrt(2.0)
        self.lif = lif
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = TDBatchNorm(cout, lif.theta)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = TDBatchNorm(cout, lif.theta, half)
        self.down: nn.Conv2d | None = None
        self.down_bn: TDBatchNorm | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.down_bn = TDBatchNorm(cout, lif.theta, half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = lif_over_time(self.bn1(_conv_t(self.conv1, x)), self.lif)
        out = self.bn2(_conv_t(self.conv2, out))
        short = x
        if self.down is not None and self.down_bn is not None:
            short = self.down_bn(_conv_t(self.down, x))
        return lif_over_time(out + short, self.lif)


class ResNet19(nn.Module):
    """Spiking ResNet-19 with tdBN (see the module docstring), for CIFAR-size inputs.

    Parameters
    ----------
    num_classes : int
    in_channels : int
    lif : LIFConfig
        Neuron and ``T`` (``lif.time_steps``; the tdBN paper uses ``T = 2..6``).
    width : int
        Stem width ``w`` (128 in the paper); stages have ``w, 2w, 4w`` channels.
    """

    STAGES = ((1, 3), (2, 3), (4, 2))
    """(width multiple, blocks) per stage; stages 2 and 3 start with stride 2."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 lif: LIFConfig | None = None, width: int = 128) -> None:
        super().__init__()
        self.lif = lif or LIFConfig()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.stem_bn = TDBatchNorm(width, self.lif.theta)
        blocks = []
        cin = width
        for stage, (mult, count) in enumerate(self.STAGES):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, width * mult, stride, self.lif))
                cin = width * mult
        self.blocks = nn.ModuleList(blocks)
        self.fc1 = nn.Linear(cin, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of ``x`` ``(B, C, H, W)`` or ``(T, B, C, H, W)``."""
        t_steps = self.lif.time_steps
        if x.ndim == 4:
            x = x.expand((t_steps,) + tuple(x.shape))
        elif x.ndim != 5 or x.shape[0] != t_steps:
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (B, C, H, W) or "
                             f"(T={t_steps}, B, C, H, W)")
        a = lif_over_time(self.stem_bn(_conv_t(self.stem, x)), self.lif)
        for block in self.blocks:
            a = block(a)
        a = a.mean(dim=(-2, -1))  # global average pooling of the spikes
        a = lif_over_time(self.fc1(a), self.lif)
        return self.fc2(a).mean(dim=0)


def resnet19(num_classes: int = 10, in_channels: int = 3, lif: LIFConfig | None = None,
             width: int = 128, seed: int | None = None, gain: float = 2.0,
             dtype: torch.dtype = torch.float32) -> ResNet19:
    """A `ResNet19`; with ``seed``, conv and Linear weights are drawn like SPEC S4.10:
    module by module in `prunable_weights` order (shortcut convs after their block's
    second conv) from ``numpy.random.default_rng(seed)``,
    ``W ~ N(0, gain^2 / fan_in)`` in float64, biases 0 -- the same numbers as
    `spikenm.backends.jax.models.resnet19_init`.
    """
    model = ResNet19(num_classes, in_channels, lif, width).to(dtype)
    if seed is not None:
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            for _, param in _init_order(model):
                shape = tuple(param.shape)
                fan_in = int(np.prod(shape[1:]))
                w = rng.standard_normal(shape) * (gain / math.sqrt(fan_in))
                param.copy_(torch.from_numpy(w))
            model.fc1.bias.zero_()
            model.fc2.bias.zero_()
    return model


def _init_order(model: ResNet19) -> list[tuple[str, torch.Tensor]]:
    """Every conv/Linear weight: stem, per block conv1, conv2, shortcut, fc1, fc2."""
    out = [("stem.weight", model.stem.weight)]
    for i, block in enumerate(model.blocks):
        out += [(f"blocks.{i}.conv1.weight", block.conv1.weight),
                (f"blocks.{i}.conv2.weight", block.conv2.weight)]
        if block.down is not None:
            out.append((f"blocks.{i}.down.weight", block.down.weight))
    out += [("fc1.weight", model.fc1.weight), ("fc2.weight", model.fc2.weight)]
    return out


def prunable_weights(model: ResNet19) -> list[tuple[str, torch.Tensor]]:
    """The 3x3 conv weights of the residual blocks and ``fc1.weight``: the layers that
    carry N:M masks (SPEC S5.1 keeps the first layer -- the stem -- and the readout
    dense; the 1x1 shortcut convs stay dense too)."""
    return [(n, p) for n, p in _init_order(model)
            if n not in ("stem.weight", "fc2.weight") and ".down." not in n]
