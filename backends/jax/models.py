"""Paper-scale spiking ResNet-19 with tdBN in JAX, as pure functions, for CIFAR-size inputs.

Meant for CIFAR-10/100 runs (``3 x 32 x 32`` inputs) on a GPU; on a CPU it is only
shape-checked on tiny inputs.  (Spiking VGG-11 is a plain `Arch`,
`spikenm.train.network.vgg11_arch`, run by every model backend.)

Architecture (tdBN paper, Zheng et al., AAAI 2021; the same network as
`spikenm.backends.torch.models.ResNet19`): a 3x3 conv stem of ``w`` channels + tdBN + LIF;
BasicBlocks -- 3 of ``w``, 3 of ``2w`` (first with stride 2), 2 of ``4w`` (first with
stride 2), ``w = 128`` -- each ``LIF(tdBN_a(conv(LIF(tdBN(conv(x))))) + shortcut(x))``
with ``shortcut = tdBN_a(conv1x1(x, stride))`` when the shape changes, else the identity;
global average pooling of the spikes; ``Linear(4w, 256)`` + LIF; the non-spiking readout
``Linear(256, classes)``, ``logits = (1/T) sum_t I_t`` (SPEC S4.8).  17 convs + 2 Linear
layers.  LIF neurons are those of SPEC S4.3-S4.5 (`spikenm.backends.jax.snn_lif`).

**tdBN** (threshold-dependent batch norm), per channel over ``(T, B, H, W)``:

    y = alpha * theta * lambda * (x - mean) / sqrt(var + eps) + beta

``alpha = 1``, or ``1/sqrt(2)`` on the two branches added in a residual block; ``lambda``,
``beta`` learned.  Training uses the batch statistics (biased variance) and updates
running statistics ``r <- (1 - momentum) r + momentum * batch`` (unbiased variance), as
``torch.nn.BatchNorm2d`` does; evaluation uses the running statistics.

Parameters are a pytree of dicts (`resnet19_init`); N:M masks are applied functionally,
by calling `resnet19_apply` with ``W * mask`` in place of ``W`` for the layers listed by
`prunable_paths`.  ``jax.jit(resnet19_apply, static_argnames=("lif", "train"))`` compiles
it.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from spikenm.train.config import LIFConfig

from .snn_lif import lif_over_time

__all__ = ["STAGES", "resnet19_plan", "resnet19_init", "resnet19_apply", "prunable_paths"]

STAGES = ((1, 3), (2, 3), (4, 2))
"""(width multiple, blocks) per stage; stages 2 and 3 start with stride 2."""

Params = dict[str, Any]
_HIGHEST = lax.Precision.HIGHEST
_EPS = 1e-5


def resnet19_plan(width: int) -> tuple[tuple[int, int, int], ...]:
    """``(in_channels, out_channels, stride)`` of every BasicBlock.

    Examples
    --------
    >>> resnet19_plan(128)[2:4]
    ((128, 128, 1), (128, 256, 2))
    """
    plan = []
    cin = width
    for stage, (mult, count) in enumerate(STAGES):
        for i in range(count):
            plan.append((cin, width * mult, 2 if stage > 0 and i == 0 else 1))
            cin = width * mult
    return tuple(plan)


def _bn_params(c: int, dtype: str) -> tuple[Params, Params]:
    return ({"weight": jnp.ones(c, dtype), "bias": jnp.zeros(c, dtype)},
            {"mean": jnp.zeros(c, dtype), "var": jnp.ones(c, dtype)})


def resnet19_init(seed: int, num_classes: int = 10, in_channels: int = 3, width: int = 128,
                  gain: float = 2.0, dtype: str = "float32") -> tuple[Params, Params]:
    """Parameters and batch-norm state of ResNet-19.

    Weights are drawn like SPEC S4.10, in the order stem, per block ``conv1``, ``conv2``,
    shortcut, then ``fc1``, ``fc2``, from ``numpy.random.default_rng(seed)``:
    ``W ~ N(0, gain^2 / fan_in)`` in float64 cast to ``dtype``; biases 0, tdBN
    ``lambda = 1``, ``beta = 0``, running mean 0 and variance 1.  Conv weights are
    ``(out, in, k, k)``, Linear ``(out, in)``.
    """
    rng = np.random.default_rng(seed)

    def draw(*shape: int) -> jax.Array:
        fan_in = int(np.prod(shape[1:]))
        return jnp.asarray((rng.standard_normal(shape) * (gain / math.sqrt(fan_in)))
                           .astype(dtype))

    params: Params = {"stem": draw(width, in_channels, 3, 3)}
    state: Params = {}
    params["stem_bn"], state["stem_bn"] = _bn_params(width, dtype)
    blocks, block_states = [], []
    for cin, cout, stride in resnet19_plan(width):
        p: Params = {"conv1": draw(cout, cin, 3, 3), "conv2": draw(cout, cout, 3, 3)}
        s: Params = {}
        p["bn1"], s["bn1"] = _bn_params(cout, dtype)
        p["bn2"], s["bn2"] = _bn_params(cout, dtype)
        if stride != 1 or cin != cout:
            p["down"] = draw(cout, cin, 1, 1)
            p["down_bn"], s["down_bn"] = _bn_params(cout, dtype)
        blocks.append(p)
        block_states.append(s)
    params["blocks"], state["blocks"] = blocks, block_states
    c = width * STAGES[-1][0]
    params["fc1"] = {"weight": draw(256, c), "bias": jnp.zeros(256, dtype)}
    params["fc2"] = {"weight": draw(num_classes, 256), "bias": jnp.zeros(num_classes, dtype)}
    return params, state


def prunable_paths(params: Params) -> list[tuple[Any, ...]]:
    """Paths (keys into `resnet19_init`'s pytree) of the weights that carry N:M masks:
    the blocks' 3x3 convs and ``fc1``; the stem, the readout and the 1x1 shortcuts stay
    dense (SPEC S5.1)."""
    paths: list[tuple[Any, ...]] = []
    for i in range(len(params["blocks"])):
        paths += [("blocks", i, "conv1"), ("blocks", i, "conv2")]
    return paths + [("fc1", "weight")]


def _conv_t(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Convolution (padding ``k // 2``) of every step of ``(T, B, C, H, W)``."""
    t, b = x.shape[:2]
    p = w.shape[-1] // 2
    y = lax.conv_general_dilated(
        x.reshape((t * b,) + x.shape[2:]), w, (stride, stride), ((p, p), (p, p)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=_HIGHEST)
    return y.reshape((t, b) + y.shape[1:])


def _td_bn(x: jax.Array, p: Params, s: Params, gain: float, train: bool, momentum: float
           ) -> tuple[jax.Array, Params]:
    """tdBN of ``(T, B, C, H, W)``: ``gain * lambda * (x - mean) / sqrt(var + eps) + beta``
    per channel over ``(T, B, H, W)``; returns the output and the new running stats."""
    axes = (0, 1, 3, 4)
    if train:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        n = x.size // x.shape[2]
        s = {"mean": (1 - momentum) * s["mean"] + momentum * mean,
             "var": (1 - momentum) * s["var"] + momentum * var * (n / max(n - 1, 1))}
    else:
        mean, var = s["mean"], s["var"]
    scale = gain * p["weight"] / jnp.sqrt(var + _EPS)
    y = (x - mean[:, None, None]) * scale[:, None, None] + p["bias"][:, None, None]
    return y, s


def resnet19_apply(params: Params, state: Params, x: jax.Array, lif: LIFConfig,
                   train: bool = True, momentum: float = 0.1) -> tuple[jax.Array, Params]:
    """Logits ``(B, classes)`` of ``x`` ``(B, C, H, W)`` (direct encoding) or
    ``(T, B, C, H, W)``, and the new batch-norm state (unchanged when not ``train``)."""
    t_steps = lif.time_steps
    if x.ndim == 4:
        x = jnp.broadcast_to(x, (t_steps,) + x.shape)
    elif x.ndim != 5 or x.shape[0] != t_steps:
        raise ValueError(f"input has shape {x.shape}; expected (B, C, H, W) or "
                         f"(T={t_steps}, B, C, H, W)")
    theta = lif.theta
    half = theta / math.sqrt(2.0)
    new: Params = {}
    a, new["stem_bn"] = _td_bn(_conv_t(x, params["stem"], 1), params["stem_bn"],
                               state["stem_bn"], theta, train, momentum)
    a = lif_over_time(a, lif)
    block_states = []
    for p, s in zip(params["blocks"], state["blocks"]):
        cout, cin = p["conv1"].shape[:2]
        stride = 1 if cin == cout else 2
        ns: Params = {}
        out, ns["bn1"] = _td_bn(_conv_t(a, p["conv1"], stride), p["bn1"], s["bn1"], theta,
                                train, momentum)
        out = lif_over_time(out, lif)
        out, ns["bn2"] = _td_bn(_conv_t(out, p["conv2"], 1), p["bn2"], s["bn2"], half,
                                train, momentum)
        short = a
        if "down" in p:
            short, ns["down_bn"] = _td_bn(_conv_t(a, p["down"], stride), p["down_bn"],
                                          s["down_bn"], half, train, momentum)
        a = lif_over_time(out + short, lif)
        block_states.append(ns)
    new["blocks"] = block_states
    a = a.mean(axis=(-2, -1))  # global average pooling of the spikes
    fc1, fc2 = params["fc1"], params["fc2"]
    a = lif_over_time(jnp.matmul(a, fc1["weight"].T, precision=_HIGHEST) + fc1["bias"], lif)
    logits = (jnp.matmul(a, fc2["weight"].T, precision=_HIGHEST) + fc2["bias"]).mean(axis=0)
    return logits, (new if train else state)
