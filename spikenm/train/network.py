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
