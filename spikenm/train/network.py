"""Network construction shared by every backend: architecture, initial parameters (S4.10)
and the choice of masked layers (S5.1)."""

from __future__ import annotations

import numpy as np

from .config import ModelConfig, SparsityConfig
from .model_backend import Arch, LayerSpec


def build_arch(model: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> Arch:
    """The `Arch` for ``model`` on inputs of ``input_shape`` ``(C, H, W)``.

    ``mlp``: ``Linear(C*H*W, h_1) ... Linear(h_last, classes)``.  ``conv``: for every
    channel count a conv (kernel ``k``, padding ``k // 2``) with ``q x q`` average pooling
    (``model.pools``, default 2), then the hidden Linear layers and the readout.

    Examples
    --------
    >>> arch = build_arch(ModelConfig(hidden=(32,)), (1, 8, 8), 10)
    >>> [(l.kind, l.in_features, l.out_features) for l in arch.layers]
    [('linear', 64, 32), ('linear', 32, 10)]
    """
    layers: list[LayerSpec] = []
    if model.arch == "mlp":
        features = int(np.prod(input_shape))
    else:
        if len(input_shape) != 3:
            raise ValueError(f"a conv net needs (C, H, W) inputs, got {input_shape}")
        c, h, w = input_shape
        pools = model.pools or (2,) * len(model.channels)
        for out, q in zip(model.channels, pools):
            if h % q or w % q:
                raise ValueError(
                    f"conv stage {len(layers)} sees a {h}x{w} map; {q}x{q} pooling needs "
                    f"sizes divisible by {q}: change model.pools or model.channels"
                )
            layers.append(LayerSpec("conv", c, out, model.kernel, 1, model.kernel // 2, q))
            c, h, w = out, h // q, w // q
        features = c * h * w
    for width in model.hidden:
        layers.append(LayerSpec("linear", features, width))
        features = width
    layers.append(LayerSpec("linear", features, num_classes))
    return Arch(tuple(int(s) for s in input_shape), tuple(layers))


def init_params(arch: Arch, seed: int, gain: float, dtype: str
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial ``(weight, bias)`` per layer in NumPy (S4.10).

    Layer by layer from ``default_rng(seed)``: ``W ~ N(0, gain^2 / fan_in)`` drawn in
    float64 and cast to ``dtype``; ``b = 0``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for spec in arch.layers:
        shape = spec.weight_shape()
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape) * (gain / np.sqrt(fan_in))
        out.append((w.astype(dtype), np.zeros(spec.out_features, dtype)))
    return out


def masked_layers(arch: Arch, sparsity: SparsityConfig) -> tuple[int, ...]:
    """Indices of the layers that carry an ``n:m`` mask (S5.1); none for ``dense``.

    Raises
    ------
    ValueError
        When a layer to mask has an input size that is not a multiple of ``m``, or when
        no layer is left to mask.
    """
    if sparsity.method == "dense":
        return ()
    n, m = sparsity.nm
    last = len(arch.layers) - 1
    chosen = []
    for index, spec in enumerate(arch.layers):
        if (index == 0 and sparsity.dense_first) or (index == last and sparsity.dense_last):
            continue
        if spec.in_features % m:
            raise ValueError(
                f"layer {index} ({spec.kind}, weight {spec.weight_shape()}) has "
                f"{spec.in_features} inputs, not a multiple of m={m}; change the width, "
                f"the pattern, or keep that layer dense (sparsity.dense_first/dense_last)"
            )
        chosen.append(index)
    if not chosen:
        raise ValueError(
            f"method {sparsity.method!r} has no layer to mask: the network has "
            f"{len(arch.layers)} layers and dense_first={sparsity.dense_first}, "
            f"dense_last={sparsity.dense_last}; add hidden layers or mask the first/last"
        )
    if sparsity.method == "maskllm" and n == m:
        raise ValueError(f"maskllm needs n < m, got pattern {sparsity.pattern} (dense)")
    return tuple(chosen)


VGG11_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
"""Conv widths of VGG-11 (configuration "A" of Simonyan & Zisserman)."""
VGG11_POOL_AFTER = (0, 1, 3, 5, 7)
"""Conv layers followed by 2x2 pooling (the "M" entries of configuration "A")."""


def vgg11_arch(input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
               hidden: tuple[int, ...] = (), width: int = 64) -> Arch:
    """Spiking VGG-11 as an `Arch`: 8 conv layers (3x3, stride 1, padding 1, LIF after
    each, 2x2 average pooling of the spikes after conv 1, 2, 4, 6, 8), Linear + LIF
    layers of widths ``hidden`` and the readout.

    ``width`` scales every conv width by ``width / 64`` (64 is the paper's network).  On
    ``32 x 32`` inputs the last conv map is ``1 x 1``, so the first Linear layer sees
    ``8 * width`` features.  The default (no hidden Linear layer, the usual CIFAR head) is
    the network of ``spikenm/configs/cifar10_vgg11.toml``, i.e. `spikenm.train.network.
    build_arch` with ``model.channels = VGG11_CHANNELS`` and pools 2 after the layers
    of `VGG11_POOL_AFTER`; ``hidden=(4096, 4096)`` gives the original ImageNet head.

    Raises
    ------
    ValueError
        When a pooling stage would see an odd map size, or ``width < 1``.

    Examples
    --------
    >>> arch = vgg11_arch(hidden=(4096, 4096))
    >>> [l.out_features for l in arch.layers]
    [64, 128, 256, 256, 512, 512, 512, 512, 4096, 4096, 10]
    >>> arch.layers[8].in_features
    512
    """
    if width < 1:
        raise ValueError(f"width={width} is invalid; expected a positive integer")
    c, h, w = input_shape
    layers: list[LayerSpec] = []
    for index, base in enumerate(VGG11_CHANNELS):
        out = max(1, base * width // 64)
        pool = 2 if index in VGG11_POOL_AFTER else 1
        if pool > 1 and (h % 2 or w % 2):
            raise ValueError(f"VGG-11 conv {index} sees a {h}x{w} map; its 2x2 pooling needs "
                             f"even sizes: use a {input_shape[0]}x32x32 input (or 2^k sizes)")
        layers.append(LayerSpec("conv", c, out, 3, 1, 1, pool))
        c, h, w = out, h // pool, w // pool
    features = c * h * w
    for size in hidden:
        layers.append(LayerSpec("linear", features, size))
        features = size
    layers.append(LayerSpec("linear", features, num_classes))
    return Arch(tuple(int(s) for s in input_shape), tuple(layers))
