"""Training-step overhead (issue goals: a SpikeNM step over a dense step): the trainer on
each model backend for the MLP and the conv net, and the PyTorch module path on a wide
Linear SNN in eager mode and under ``torch.compile``.

Every comparison runs its contenders interleaved (`spikenm.bench.timing.compare`) on the
same batch; a step is one optimizer update including the method's work (masks, sampler
VJP, EID credits, logit Adam).  The trainer contenders keep stepping from their own state,
so every timed step is a real step of the search phase.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import Table
from .timing import compare

__all__ = ["tables"]

_NETWORKS = {"mlp": ["model.arch=mlp", "model.hidden=256,256"],
             "conv": ["model.arch=conv"]}


def _trainer_stepper(backend: str, arch: str, method: str) -> Callable[[], None]:
    from dataclasses import replace

    from spikenm.train.config import load_config
    from spikenm.train.loop import initial_state
    from spikenm.train.setup import build_setup
    from spikenm.train.step import train_step

    sets = _NETWORKS[arch] + [f"sparsity.method={method}", "sparsity.pattern=2:4",
                              "optim.epochs=50", "sampler.variance_draws=0"]
    cfg = load_config(None, sets)
    cfg = replace(cfg, data=replace(cfg.data, name="mnist5k"),
                  run=replace(cfg.run, backend=backend, quiet=True, out=""))
    setup = build_setup(cfg)
    box = {"state": initial_state(setup)}
    cache: dict[int, Any] = {}

    def step() -> None:
        box["state"], _ = train_step(setup, box["state"], cache)
    return step


def _trainer_table(quick: bool) -> Table:
    rows = []
    for backend in ("numpy", "torch", "jax"):
        for arch in _NETWORKS:
            try:
                dense = _trainer_stepper(backend, arch, "dense")
                sparse = _trainer_stepper(backend, arch, "spikenm")
            except ImportError as exc:
                rows.append((backend, arch, "–", "–", f"not run: {exc}"))
                continue
            t = compare({"dense": dense, "spikenm": sparse}, repeats=5 if quick else 15)
            rows.append((backend, arch,
                         f"{1e3 * t['dense'].min:.1f} / {1e3 * t['dense'].median:.1f}",
                         f"{1e3 * t['spikenm'].min:.1f} / {1e3 * t['spikenm'].median:.1f}",
                         f"{t['spikenm'].median / t['dense'].median:.2f}"))
    return Table("Trainer step: SpikeNM 2:4 (EID on) over dense, MNIST 5k batch",
                 ("backend", "network", "dense ms min / median", "spikenm ms min / median",
                  "spikenm / dense"), tuple(rows),
                 ("goal: conv <= 1.3x on torch and jax, MLP <= 1.5x, numpy <= 1.5x",
                  "MLP 784-256-256-10, conv net of spikenm/configs/mnist5k_conv.toml, "
                  "T = 4, batch 64, float32"))


def _module_path_table(quick: bool) -> Table:
    import torch
    from torch import nn

    from spikenm.backends.torch import nn as snn

    width, batch, steps_t = (1024, 32, 4) if quick else (2048, 32, 4)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width),
                             nn.ReLU(), nn.Linear(width, 10))

    x = torch.randn(steps_t, batch, width)

    def stepper(model: nn.Module, handle: Any, forward: Callable[..., Any]
                ) -> Callable[[], None]:
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step() -> None:
            opt.zero_grad()
            out = sum(forward(x[t]) for t in range(steps_t))
            loss = out.square().mean()
            if handle is not None:
                loss = loss + handle.eid_loss()
            loss.backward()
            opt.step()
            if handle is not None:
                handle.step()
        return step

    contenders = {}
    for mode in ("eager", "compiled"):
        dense = net()
        masked = net()
        handle = snn.sparsify(masked, 2, 4, total_steps=10**6, dense_first=False,
                              dense_last=True)
        wrap = torch.compile if mode == "compiled" else (lambda mod: mod)
        contenders[f"dense {mode}"] = stepper(dense, None, wrap(dense))
        contenders[f"masked {mode}"] = stepper(masked, handle, wrap(masked))
    t0 = time.perf_counter()
    for step in contenders.values():  # compile outside the timings
        step()
    warm = time.perf_counter() - t0
    t = compare(contenders, repeats=3 if quick else 10)
    rows = []
    for mode in ("eager", "compiled"):
        d, s = t[f"dense {mode}"].median, t[f"masked {mode}"].median
        rows.append((mode, f"{1e3 * d:.1f}", f"{1e3 * s:.1f}", f"{s / d:.2f}",
                     f"{t['masked eager'].median / s:.2f}"))
    ratio = t["masked eager"].median / t["dense eager"].median
    speedup = t["masked eager"].median / t["masked compiled"].median
    masked_weights = 2 * width * width
    return Table(f"PyTorch module path: masked step over dense step ({width}-wide Linear "
                 f"x 3, T = {steps_t} calls, batch {batch})",
                 ("mode", "dense ms (median)", "masked ms (median)", "masked / dense",
                  "masked eager / this"),
                 tuple(rows),
                 (f"goal: masked / dense <= 1.5x: {'met' if ratio <= 1.5 else 'not met'} "
                  f"({ratio:.2f}x eager); torch.compile >= eager: "
                  f"{'met' if speedup >= 1.0 else 'not met'} ({speedup:.2f}x)",
                  f"What limits it: the masked step adds, per masked weight "
                  f"({masked_weights:,} here), noise, the sampler forward and backward, the "
                  f"EID loss and credits and the logits' Adam update, about "
                  f"{1e9 * (t['masked eager'].median - t['dense eager'].median) / masked_weights:.0f}"
                  f" ns per weight, against "
                  f"{1e9 * t['dense eager'].median / (3 * width * width):.1f} ns per weight for "
                  f"the whole dense step at {steps_t * batch} samples per step: the ratio "
                  f"falls as the batch grows.",
                  f"torch.compile wraps the model (the forward with its parametrized weights); "
                  f"eid_loss and step stay eager. Warm-up with compilation: {warm:.0f} s."))


def tables(quick: bool) -> list[Table]:
    """The step-overhead tables (see the module docstring)."""
    return [_trainer_table(quick), _module_path_table(quick)]
