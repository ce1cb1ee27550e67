"""Sampler benchmark (issue item "a fused sampler"): forward+backward of the N:M sampler
(SPEC S1.3-S1.5) on torch and JAX against a MaskLLM-style Gumbel-softmax over all
``C(m, n)`` candidate masks of a block, and on torch against the plain-torch floor.

Contenders, all forward+backward to the logits with a fixed upstream cotangent, one
thread, interleaved (`spikenm.bench.timing.compare`):

- ``ours``: the backend's ``sample_mask(hard=True)`` (keys, hard mask, soft mask and the
  S1.5 backward; torch: one ``autograd.Function``, JAX: ``jax.jit`` of ``jax.grad``
  through the ``custom_vjp``); ``ours soft``: ``hard=False``, the same computation as the
  floor.
- ``floor`` (torch): the minimal torch expression of the same successive softmax on the
  ``(G, m)`` block view with autograd (`_floor_torch`).
- ``MaskLLM-style``: per block, logits over the ``C(m, n)`` candidates,
  ``y = softmax((logits + gumbel) / tau)``, mask ``= y @ P`` with the ``(C, m)`` 0/1
  candidate matrix ``P``.  Its cost grows with ``C(m, n)`` (12870 at 8:16), so it is timed
  on the first blocks only (at most `_MASKLLM_ENTRIES` candidate logits) and its time is
  scaled per weight: it is linear in the number of blocks.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable

import numpy as np

from . import Table
from .timing import compare, pin_threads

__all__ = ["tables", "candidates"]

PATTERNS = ((2, 4), (4, 8), (8, 16))
GOALS = {(2, 4): 1.0, (4, 8): 4.0, (8, 16): 100.0}
"""Speed-up goals over the MaskLLM-style sampler (issue 9)."""
FLOOR_GOAL = 1.2
"""Goal: at most this many times the plain-torch floor's time."""
_MASKLLM_ENTRIES = 2**22
"""Most candidate logits (blocks times ``C(m, n)``) the MaskLLM-style contender is timed on."""
_TAU = 0.5


def candidates(n: int, m: int) -> np.ndarray:
    """`spikenm.methods.maskllm.candidates` (every mask with ``n`` ones out of ``m``) in
    float32, the dtype the contenders run in.

    Examples
    --------
    >>> candidates(1, 3)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    from spikenm.methods.maskllm import candidates as all_masks

    return all_masks(n, m).astype(np.float32)


def _sizes(weights: int, n: int, m: int) -> tuple[int, int]:
    """``(blocks, maskllm_blocks)``: all blocks of ``weights`` and those MaskLLM-style is
    timed on."""
    blocks = weights // m
    return blocks, max(1, min(blocks, _MASKLLM_ENTRIES // math.comb(m, n)))


def _floor_torch(x: Any, noise: Any, n: int, m: int, tau: float) -> Any:
    """Plain torch: the successive softmax of S1.3 on the ``(G, m)`` view, autograd."""
    import torch

    alpha = (x + noise).reshape(-1, m)
    s = 0
    for j in range(n):
        a = torch.softmax(alpha / tau, dim=-1)
        s = s + a
        if j + 1 < n:
            alpha = alpha + torch.log(1.0 - a)
    return s.reshape(x.shape)


def _torch_contenders(weights: int, n: int, m: int) -> tuple[dict[str, Callable[[], Any]],
                                                             float]:
    import torch

    from spikenm.backends.torch import sampler

    gen = torch.Generator().manual_seed(0)
    blocks, small = _sizes(weights, n, m)
    shape = (blocks * m // 1024, 1024) if blocks * m % 1024 == 0 else (blocks, m)
    x = torch.randn(shape, generator=gen).requires_grad_()
    noise = -torch.log(-torch.log(torch.rand(shape, generator=gen).clamp(1e-7, 1 - 1e-7)))
    cot = torch.randn(shape, generator=gen)
    pat = torch.from_numpy(candidates(n, m))
    c = pat.shape[0]
    cl = torch.randn(small, c, generator=gen).requires_grad_()
    cg = -torch.log(-torch.log(torch.rand(small, c, generator=gen).clamp(1e-7, 1 - 1e-7)))
    ccot = torch.randn(small, m, generator=gen)

    def run(fn: Callable[[], Any], leaf: Any, g: Any) -> Callable[[], None]:
        def call() -> None:
            fn().backward(g)
            leaf.grad = None
        return call

    return {
        "ours": run(lambda: sampler.sample_mask(x, noise, n, m, _TAU, 1.0, True), x, cot),
        "ours soft": run(lambda: sampler.sample_mask(x, noise, n, m, _TAU, 1.0, False), x,
                         cot),
        "floor": run(lambda: _floor_torch(x, noise, n, m, _TAU), x, cot),
        "MaskLLM-style": run(lambda: torch.softmax((cl + cg) / _TAU, dim=-1) @ pat, cl, ccot),
    }, blocks / small


def _jax_contenders(weights: int, n: int, m: int) -> tuple[dict[str, Callable[[], Any]],
                                                           float]:
    import jax
    import jax.numpy as jnp

    from spikenm.backends.jax import sampler

    blocks, small = _sizes(weights, n, m)
    shape = (blocks * m // 1024, 1024) if blocks * m % 1024 == 0 else (blocks, m)
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    x = jax.random.normal(keys[0], shape)
    noise = jax.random.gumbel(keys[1], shape)
    cot = jax.random.normal(keys[2], shape)
    pat = jnp.asarray(candidates(n, m))
    cl = jax.random.normal(keys[3], (small, pat.shape[0]))
    cg = jax.random.gumbel(keys[4], cl.shape)
    ccot = jax.random.normal(keys[5], (small, m))

    ours = jax.jit(jax.grad(lambda l, g, c: jnp.sum(
        sampler.sample_mask(l, g, n, m, _TAU, 1.0, True) * c)))
    maskllm = jax.jit(jax.grad(lambda l, g, p, c: jnp.sum(
        (jax.nn.softmax((l + g) / _TAU, axis=-1) @ p) * c)))
    return {
        "ours": lambda: ours(x, noise, cot).block_until_ready(),
        "MaskLLM-style": lambda: maskllm(cl, cg, pat, ccot).block_until_ready(),
    }, blocks / small


def _table(framework: str, weights: int, repeats: int, threads: dict[str, Any]) -> Table:
    build = _torch_contenders if framework == "torch" else _jax_contenders
    rows = []
    for n, m in PATTERNS:
        contenders, factor = build(weights, n, m)
        t = compare(contenders, repeats=repeats)
        ours = t["ours"].median
        mllm = t["MaskLLM-style"].median * factor
        goal = GOALS[(n, m)]
        row = [f"{n}:{m}", f"{ours * 1e3:.1f}", f"{mllm * 1e3:.1f}",
               f"{mllm / ours:.2f}x", f">= {goal:g}x {'met' if mllm / ours >= goal else 'NOT met'}"]
        if framework == "torch":
            floor = t["floor"].median
            soft = t["ours soft"].median
            row += [f"{floor * 1e3:.1f}", f"{soft / floor:.2f}x", f"{ours / floor:.2f}x",
                    f"<= {FLOOR_GOAL}x {'met' if soft / floor <= FLOOR_GOAL else 'NOT met'}"]
        rows.append(tuple(row))
    columns = ["n:m", "ours ms", "MaskLLM-style ms", "speed-up", "goal"]
    if framework == "torch":
        columns += ["floor ms", "soft / floor", "hard / floor", "floor goal (soft)"]
    notes = (
        f"{weights} float32 weights, forward+backward to the logits, median of {repeats} "
        f"interleaved repeats; threads: {threads}.",
        "MaskLLM-style: softmax over all C(m, n) candidates per block, then y @ P; timed on "
        f"at most {_MASKLLM_ENTRIES} candidate logits and scaled per weight (linear in "
        "blocks).",
        "ours = sample_mask(hard=True) of the backend (no api validation); "
        + ("soft = hard=False, the same computation as the floor (plain torch successive "
           "softmax on the (G, m) view with autograd)." if framework == "torch"
           else "jax.jit(jax.grad(...)) through the custom_vjp."),
    )
    return Table(f"Sampler fwd+bwd, {framework}", tuple(columns), tuple(rows), notes)


def _pin() -> dict[str, Any]:
    """Pin torch (imported here) to the command's thread count (default 1) and XLA's CPU
    client to one thread when JAX is not imported yet; returns what was set."""
    jax_fresh = "jax" not in sys.modules
    if jax_fresh:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                                   "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    import jax  # noqa: F401
    import torch  # noqa: F401

    info = pin_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    info["jax"] = "1 (XLA_FLAGS)" if jax_fresh else "not pinned (imported before)"
    return info


def tables(quick: bool) -> list[Table]:
    """The sampler tables: torch and JAX, 2:4 / 4:8 / 8:16, ~1M weights with ``quick``,
    4M otherwise."""
    threads = _pin()
    weights = 2**20 if quick else 2**22
    repeats = 5 if quick else 15
    return [_table("torch", weights, repeats, threads), _table("jax", weights, repeats, threads)]
