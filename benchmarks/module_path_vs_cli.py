"""The PyTorch module path against the CLI trainer on the same spiking conv net (issue 7).

Three ways to train the trainer's ``--arch conv`` network of ``spikenm/configs/
mnist5k_conv.toml`` (conv16-pool-conv32-pool-fc128-fc10, LIF, T = 4, direct encoding)
with SpikeNM 2:4 on the shipped ``mnist5k`` subset, for the same seeds and step budget:

* ``cli``      -- ``spikenm train --backend torch`` (subprocess); its ``model.npz`` is
  checked layer by layer with ``check_nm``;
* ``torch``    -- a plain PyTorch module (``nn.Conv2d``/``nn.Linear`` and a hand-written
  LIF with the ATan surrogate, one call per time step) trained with
  ``sparsify(model, 2, 4, total_steps=S)``, ``handle.eid_loss()`` and ``handle.step()``;
* ``snntorch`` -- the same layers with ``snntorch.Leaky`` neurons (reset to zero; its
  reset is detached in the backward pass and it fires at ``U > theta`` where S4.3 fires at
  ``>=``: the only differences from the trainer's neuron).

The module paths copy what the trainer fixes: the initialization of S4.10
(``spikenm.snn.init_params`` with the run seed), the data order and batches of S5.10 and
the encoding (``spikenm.train.encoding``), the weight optimizer (``torch.optim.Adam``,
``optim.lr``, betas, eps) with the cosine learning rate of S5.6 (``handle.lr_factor()``),
and the test evaluation of S5.11.  The method is the default of ``sparsify`` -- SpikeNM
with EID and the trainer's default hyper-parameters -- so the CLI runs get
``--set sampler.logit_lr=0.05`` (the default; the shipped conv config raises it to 0.1).
The budget defaults to 2 epochs (124 steps) instead of the config's 20, for a small CPU.

Prints one line per run and, per path, the mean +- standard error of the test accuracy
over the seeds; every masked layer of every run must be exactly 2:4 (else the script
fails).

Run: ``python benchmarks/module_path_vs_cli.py [--epochs 2] [--seeds 0,1,2]
[--paths cli,torch,snntorch] [--threads 2] [--json out.json] [--no-eid]``
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikenm import api
from spikenm.backends.torch.nn import sparsify
from spikenm.methods.spikenm import SpikeNM
from spikenm.seeds import EVAL_STEP_BASE
from spikenm.snn import init_params
from spikenm.train.config import TrainConfig, load_config
from spikenm.train.data import Dataset, load_dataset
from spikenm.train.encoding import batch_indices, encode
from spikenm.train.setup import build_network

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "spikenm" / "configs" / "mnist5k_conv.toml"
METHOD_OVERRIDES = ["sampler.logit_lr=0.05"]
"""The CLI runs use the method defaults of ``sparsify`` (see the module docstring)."""


class ATanSpike(torch.autograd.Function):
    """``S = [H >= theta]`` forward, ATan surrogate (S4.4) backward."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, theta: float, alpha: float  # type: ignore[override]
                ) -> torch.Tensor:
        ctx.save_for_backward(h)
        ctx.theta, ctx.alpha = theta, alpha
        return (h >= theta).to(h.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (h,) = ctx.saved_tensors
        a = ctx.alpha
        return g * (a / 2) / (1 + (math.pi / 2 * a * (h - ctx.theta)) ** 2), None, None


class LIF(nn.Module):
    """The trainer's neuron (S4.3): ``H = beta V + I``, spike at ``H >= theta``, hard reset
    ``V = H (1 - S)`` (not detached).  ``reset()`` before every sequence."""

    def __init__(self, beta: float, theta: float, alpha: float) -> None:
        super().__init__()
        self.beta, self.theta, self.alpha = beta, theta, alpha
        self.v: torch.Tensor | float = 0.0

    def reset(self) -> None:
        self.v = 0.0

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        h = self.beta * self.v + current
        s = ATanSpike.apply(h, self.theta, self.alpha)
        self.v = h * (1.0 - s)
        return s


class SnnTorchLIF(nn.Module):
    """``snntorch.Leaky`` with the trainer's beta, threshold and surrogate, reset to zero."""

    def __init__(self, beta: float, theta: float, alpha: float) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.leaky = snntorch.Leaky(beta=beta, threshold=theta,
                                    spike_grad=surrogate.atan(alpha=alpha),
                                    reset_mechanism="zero")
        self.mem: torch.Tensor | None = None

    def reset(self) -> None:
        self.mem = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.mem is None:
            self.mem = self.leaky.init_leaky()
        spk, self.mem = self.leaky(current, self.mem)
        return spk


class ConvSNN(nn.Module):
    """The ``conv`` network of S4.2 for ``channels``, ``hidden`` (one layer), 3x3 convs with
    padding 1 and 2x2 average pooling; ``neuron`` builds each LIF layer."""

    def __init__(self, in_ch: int, size: int, classes: int, channels: tuple[int, int],
                 hidden: int, neuron: Callable[[], nn.Module]) -> None:
        super().__init__()
        c0, c1 = channels
        self.conv0 = nn.Conv2d(in_ch, c0, 3, padding=1)
        self.conv1 = nn.Conv2d(c0, c1, 3, padding=1)
        self.fc2 = nn.Linear(c1 * (size // 4) ** 2, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        self.lifs = nn.ModuleList([neuron(), neuron(), neuron()])

    def weighted(self) -> list[nn.Module]:
        return [self.conv0, self.conv1, self.fc2, self.fc3]

    def forward(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Logits ``(1/T) sum_t I_t`` of the readout (S4.8), one call per time step."""
        for lif in self.lifs:
            lif.reset()  # type: ignore[operator]
        out = 0.0
        for _ in range(time_steps):
            s = F.avg_pool2d(self.lifs[0](self.conv0(x)), 2)
            s = F.avg_pool2d(self.lifs[1](self.conv1(s)), 2)
            s = self.lifs[2](self.fc2(s.flatten(1)))
            out = out + self.fc3(s)
        return out / time_steps  # type: ignore[return-value]


def build_model(cfg: TrainConfig, data: Dataset, snntorch: bool) -> ConvSNN:
    """The module with the trainer's initialization (S4.10) for ``cfg.run.seed``."""
    graph = build_network(cfg.model, data.input_shape, data.num_classes)
    if cfg.model.arch != "conv" or len(cfg.model.channels) != 2 or len(cfg.model.hidden) != 1:
        raise ValueError("this benchmark builds the two-conv, one-hidden-layer conv net")
    lif = cfg.lif
    neuron = (lambda: SnnTorchLIF(lif.beta, lif.theta, lif.alpha)) if snntorch else (
        lambda: LIF(lif.beta, lif.theta, lif.alpha))
    c, h, _ = data.input_shape
    model = ConvSNN(c, h, data.num_classes, tuple(cfg.model.channels),  # type: ignore[arg-type]
                    cfg.model.hidden[0], neuron)
    params = init_params(graph, cfg.run.seed, cfg.model.init_gain, cfg.run.dtype)
    with torch.no_grad():
        for k, mod in enumerate(model.weighted()):
            for name in ("weight", "bias"):
                value = torch.from_numpy(params[f"layer{k}.{name}"])
                target = getattr(mod, name)
                if tuple(target.shape) != tuple(value.shape):
                    raise ValueError(f"layer{k}.{name}: module {tuple(target.shape)} vs graph "
                                     f"{tuple(value.shape)}")
                target.copy_(value)
    return model.to(torch.float64 if cfg.run.dtype == "float64" else torch.float32)


def evaluate(model: nn.Module, cfg: TrainConfig, data: Dataset) -> float:
    """Test accuracy in eval mode, batches of ``run.eval_batch_size`` (S5.11)."""
    model.eval()
    correct = 0
    bs = cfg.run.eval_batch_size
    with torch.no_grad():
        for i, start in enumerate(range(0, data.x_test.shape[0], bs)):
            x = encode(data.x_test[start:start + bs], data.pixel_max, cfg.run.dtype,
                       cfg.data.encoding, cfg.lif.time_steps, cfg.run.seed, EVAL_STEP_BASE - i)
            logits = model(torch.from_numpy(x), cfg.lif.time_steps)
            y = torch.from_numpy(data.y_test[start:start + bs])
            correct += int((logits.argmax(-1) == y).sum())
    return correct / data.x_test.shape[0]


def run_module_path(cfg: TrainConfig, snntorch: bool) -> dict[str, Any]:
    """Train with ``sparsify`` + ``eid_loss`` + ``step``; finalize; test accuracy.  The
    method is ``sparsify``'s default, or SpikeNM without EID when ``cfg.eid.enabled`` is
    false (``--no-eid``)."""
    data = load_dataset(cfg.data)
    model = build_model(cfg, data, snntorch)
    o = cfg.optim
    spe = data.x_train.shape[0] // o.batch_size
    total = spe * o.epochs
    n, m = cfg.sparsity.nm
    if cfg.eid.enabled:
        handle = sparsify(model, n, m, total_steps=total, seed=cfg.run.seed)
    else:
        handle = sparsify(model, n, m, total_steps=total, seed=cfg.run.seed,
                          method=SpikeNM(eid=False))
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    cache: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    model.train()
    for step in range(total):
        idx = batch_indices(cfg.run.seed, step, spe, o.batch_size, data.x_train.shape[0], cache)
        x = torch.from_numpy(encode(data.x_train[idx], data.pixel_max, cfg.run.dtype,
                                    cfg.data.encoding, cfg.lif.time_steps, cfg.run.seed, step))
        y = torch.from_numpy(data.y_train[idx])
        loss = F.cross_entropy(model(x, cfg.lif.time_steps), y) + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = o.lr * handle.lr_factor()
        opt.step()
        handle.step()
    seconds = time.perf_counter() - t0
    flip = handle.flip_rate
    handle.finalize()
    for name in handle.layers:
        w = model.get_submodule(name).weight.detach()
        api.check_nm(api.to_block_layout(w), n, m, name=f"{name}.weight")
    return {"test_acc": evaluate(model, cfg, data), "seconds": seconds, "steps": total,
            "masked": sorted(handle.layers), "last_flip_rate": flip}


def run_cli(cfg: TrainConfig, cfg_args: list[str], threads: int) -> dict[str, Any]:
    """``spikenm train`` in a subprocess; its summary and the 2:4 check of ``model.npz``."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "spikenm.cli", "train", "--config", str(CONFIG),
               "--backend", "torch", "--seed", str(cfg.run.seed), "--out", out, "--quiet",
               "--torch-threads", str(threads), *cfg_args]
        subprocess.run(cmd, check=True, cwd=ROOT)
        summary = json.loads((Path(out) / "summary.json").read_text())
        with np.load(Path(out) / "model.npz", allow_pickle=False) as z:
            masked = []
            for row in summary["layers"]:
                if row["masked"]:
                    k = row["layer"]
                    w = z[f"layer{k}.weight"]
                    api.check_nm(np.ascontiguousarray(api.to_block_layout(w)),
                                 *cfg.sparsity.nm, name=f"layer{k}.weight")
                    masked.append(k)
    return {"test_acc": summary["test_acc"], "seconds": summary["seconds"],
            "steps": summary["steps"], "masked": masked}


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(a.mean()), se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--paths", default="cli,torch,snntorch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every run")
    parser.add_argument("--json", default="", help="write every run's result here")
    parser.add_argument("--no-eid", action="store_true",
                        help="SpikeNM without EID on every path (a diagnostic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    paths = args.paths.split(",")
    unknown = set(paths) - {"cli", "torch", "snntorch"}
    if unknown:
        raise SystemExit(f"unknown paths {sorted(unknown)}; expected cli, torch, snntorch")
    method_overrides = METHOD_OVERRIDES + (["eid.enabled=false"] if args.no_eid else [])
    overrides = [f"optim.epochs={args.epochs}", "run.backend=torch", *method_overrides]
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    for seed in seeds:
        cfg = load_config(CONFIG, overrides + [f"run.seed={seed}"])
        for path in paths:
            if path == "cli":
                cli_args = ["--epochs", str(args.epochs)]
                for item in method_overrides:
                    cli_args += ["--set", item]
                r = run_cli(cfg, cli_args, args.threads)
            else:
                r = run_module_path(cfg, snntorch=path == "snntorch")
            r["seed"] = seed
            results[path].append(r)
            print(f"{path:9s} seed {seed}: test acc {r['test_acc']:.4f}  {r['steps']} steps "
                  f"{r['seconds']:.0f} s  masked {r['masked']} exactly 2:4", flush=True)
    what = "SpikeNM 2:4 without EID" if args.no_eid else "SpikeNM 2:4"
    print(f"\nmnist5k conv net, {what}, {args.epochs} epochs, seeds {seeds}:")
    print("| path | test accuracy (mean +- se) | runs |")
    print("|---|---|---|")
    for path, rows in results.items():
        mean, se = mean_se([r["test_acc"] for r in rows])
        print(f"| {path} | {100 * mean:.2f} +- {100 * se:.2f} % | {len(rows)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
