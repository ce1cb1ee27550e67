"""The training loop (SPEC S5): one code path for every method and every backend.

Per step ``s``: take the batch of S5.10, build the masks of the method's phase
(`spikenm.train.methods`), ask the model backend for ``forward_backward`` on
``W_eff = W * mask``, turn its gradients into ``dL/dW`` and ``dL/dlogits`` (+ EID), and
apply the optimizers.  Checkpoints are atomic and resuming is bit-identical (S5.12).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from spikenm import api

from . import methods
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_to_dict
from .data import Dataset, load_dataset
from .encoding import batch_indices, encode
from .metrics import MetricsLog, printer, progress_line, summary_text
from .model_backend import Arch, EIDRequest, LayerParams, ModelBackend, load_model_backend
from .network import build_arch, init_params, masked_layers
from spikenm.optim import OptHyper, opt_init, opt_update
from spikenm.schedules import schedule_value
from spikenm.seeds import EVAL_STEP_BASE
from .state import TrainState, state_from_arrays, state_to_arrays

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.npz"
RUN_ONLY_KEYS = ("quiet", "log_every", "checkpoint_every", "eval_every", "eval_batch_size",
                 "out")
"""``run`` keys that do not change the numbers of a run (may differ on resume)."""


@dataclass(frozen=True)
class Setup:
    """Everything fixed for a run."""

    cfg: TrainConfig
    data: Dataset
    arch: Arch
    model: ModelBackend
    ctx: methods.MethodContext
    steps_per_epoch: int
    total_steps: int


@dataclass(frozen=True)
class TrainResult:
    """Outcome of `train`: the summary, the metric records, final weights and masks."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]
    weights: list[tuple[np.ndarray, np.ndarray]]
    masks: dict[int, np.ndarray]


def build_setup(cfg: TrainConfig) -> Setup:
    """Load data, build the network and method context; import only the chosen backend."""
    data = load_dataset(cfg.data)
    arch = build_arch(cfg.model, data.input_shape, data.num_classes)
    layers = masked_layers(arch, cfg.sparsity)
    model = load_model_backend(cfg.run.backend)
    count = data.x_train.shape[0]
    if count < cfg.optim.batch_size:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} exceeds the {count} training samples"
        )
    spe = count // cfg.optim.batch_size
    total = spe * cfg.optim.epochs
    shapes = {i: arch.layers[i].weight_shape() for i in layers}
    ctx = methods.make_context(cfg, model, layers, shapes, total)
    return Setup(cfg, data, arch, model, ctx, spe, total)


def initial_state(setup: Setup) -> TrainState:
    """Step-0 state: NumPy-initialized parameters (S4.10), zero optimizer state, masks."""
    cfg = setup.cfg
    params = [LayerParams(setup.model.from_numpy(w), setup.model.from_numpy(b))
              for w, b in init_params(setup.arch, cfg.run.seed, cfg.model.init_gain,
                                      cfg.run.dtype)]
    opt = opt_init(cfg.optim.optimizer, _flat(params))
    return TrainState(0, params, opt, methods.init_mask_state(setup.ctx))


def _flat(params: list[LayerParams]) -> list[Any]:
    return [a for p in params for a in (p.weight, p.bias)]


def _unflat(flat: list[Any]) -> list[LayerParams]:
    return [LayerParams(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def weight_lr(setup: Setup, step: int) -> float:
    """Weight learning rate at ``step`` (S5.6; ASP restarts it after pruning, S6.5)."""
    o = setup.cfg.optim
    if o.lr_schedule == "constant":
        return o.lr
    start, length = 0, setup.total_steps
    if setup.ctx.method == "asp":
        dense = setup.ctx.dense_steps
        start, length = (0, dense) if step < dense else (dense, setup.total_steps - dense)
    return schedule_value("cosine", o.lr, 0.0, step - start, length + 1)


def train_step(setup: Setup, state: TrainState, order_cache: dict[int, np.ndarray]
               ) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer step from ``state``; returns the new state and step metrics."""
    cfg, ctx, model = setup.cfg, setup.ctx, setup.model
    step = state.step
    idx = batch_indices(cfg.run.seed, step, setup.steps_per_epoch, cfg.optim.batch_size,
                        setup.data.x_train.shape[0], order_cache)
    x = model.from_numpy(encode(setup.data.x_train[idx], setup.data.pixel_max, cfg.run.dtype,
                                cfg.data.encoding, cfg.lif.time_steps, cfg.run.seed, step))
    y = model.from_numpy(setup.data.y_train[idx])
    masks, sm = methods.prepare_masks(ctx, state.masks, state.params, step)
    weight_opt = state.weight_opt
    if sm.entered_fixed and ctx.method == "asp":  # S6.5: fresh optimizer after pruning
        weight_opt = opt_init(cfg.optim.optimizer, _flat(state.params))
    eid = None
    if ctx.eid_on and sm.phase == "search":
        decay = cfg.eid.decay if cfg.eid.decay >= 0 else cfg.lif.beta
        eid = EIDRequest(ctx.layers, tuple(state.params[i].weight for i in ctx.layers), decay)
    result = model.forward_backward(setup.arch, methods.effective_params(state.params, sm),
                                    x, y, cfg.lif, eid)
    wgrads, lgrads, masks = methods.mask_gradients(ctx, masks, sm, state.params, result.grads,
                                                   result.credits, step)
    masks = methods.update_logits(ctx, masks, lgrads)
    changed, total, masks = methods.flip_count(masks, sm)
    o = cfg.optim
    lr = weight_lr(setup, step)
    decay = tuple(v for _ in state.params for v in (o.weight_decay, 0.0))
    new_flat, weight_opt = opt_update(
        _flat(state.params), _flat(wgrads), weight_opt,
        OptHyper(lr, o.beta1, o.beta2, o.eps, o.momentum, decay))
    new_params = _unflat(new_flat)
    # a fixed mask keeps pruned weights at exactly zero after the update
    if sm.phase == "fixed":
        new_params = [LayerParams(p.weight * sm.masks[i], p.bias) if i in sm.masks else p
                      for i, p in enumerate(new_params)]
    in_search = sm.phase in ("search", "srste")
    new_state = TrainState(
        step + 1, new_params, weight_opt, masks,
        state.flip_changed + (changed if in_search else 0.0),
        state.flip_total + (total if in_search else 0))
    info = {"loss": result.loss, "correct": result.correct, "count": int(idx.shape[0]),
            "flip_changed": changed, "flip_total": total, "phase": sm.phase,
            "temperature": sm.temperature, "scale": sm.scale, "lr": lr,
            "firing_rates": result.firing_rates}
    return new_state, info


def final_params(setup: Setup, state: TrainState
                 ) -> tuple[list[LayerParams], dict[int, Any]]:
    """``W * mask`` for masked layers with the method's final masks (S5.8)."""
    final = methods.final_masks(setup.ctx, state.masks, state.params)
    params = [LayerParams(p.weight * final[i], p.bias) if i in final else p
              for i, p in enumerate(state.params)]
    return params, final


def evaluate(setup: Setup, params: list[LayerParams]) -> dict[str, Any]:
    """Test loss, accuracy and firing rates of ``params`` (S5.11, S4.9)."""
    cfg, model, data = setup.cfg, setup.model, setup.data
    loss = 0.0
    correct = count = 0
    spikes: np.ndarray | None = None
    sizes: np.ndarray | None = None
    bs = cfg.run.eval_batch_size
    for i, start in enumerate(range(0, data.x_test.shape[0], bs)):
        sl = slice(start, start + bs)
        x = encode(data.x_test[sl], data.pixel_max, cfg.run.dtype, cfg.data.encoding,
                   cfg.lif.time_steps, cfg.run.seed, EVAL_STEP_BASE - i)
        r = model.evaluate(setup.arch, tuple(params), model.from_numpy(x),
                           model.from_numpy(data.y_test[sl]), cfg.lif)
        loss += r.loss_sum
        correct += r.correct
        count += r.count
        s, c = np.array(r.spike_sums), np.array(r.spike_counts, dtype=np.float64)
        spikes = s if spikes is None else spikes + s
        sizes = c if sizes is None else sizes + c
    rates = [] if spikes is None or sizes is None else (spikes / np.maximum(sizes, 1)).tolist()
    return {"test_loss": loss / max(count, 1), "test_acc": correct / max(count, 1),
            "test_count": count, "firing_rates": rates}


def _layer_report(setup: Setup, params: list[LayerParams], final: dict[int, Any]
                  ) -> list[dict[str, Any]]:
    """Per-layer N:M check (``check_nm``) and packing of the final weights."""
    n, m = setup.cfg.sparsity.nm
    rows = []
    for i, p in enumerate(params):
        w = setup.model.to_numpy(p.weight)
        row: dict[str, Any] = {"layer": i, "shape": list(w.shape), "masked": i in final}
        if i in final:
            block = np.ascontiguousarray(api.to_block_layout(w))
            api.check_nm(block, n, m, name=f"layer {i} weight")
            packed = api.pack(block, n, m, mask=np.ascontiguousarray(
                api.to_block_layout(setup.model.to_numpy(final[i]))))
            row.update(pattern=f"{n}:{m}", check="ok (check_nm passed, packed)",
                       kept_fraction=float(setup.model.to_numpy(final[i]).mean()),
                       packed_bytes=int(packed.values.nbytes + packed.indices.nbytes),
                       dense_bytes=int(w.nbytes))
        else:
            row.update(pattern="dense", check="dense")
        rows.append(row)
    return rows


def _check_resume(cfg: TrainConfig, meta: dict[str, Any], path: Path) -> None:
    saved = meta.get("config", {})
    now = config_to_dict(cfg)
    diffs = []
    for section, table in now.items():
        for key, value in table.items():
            if section == "run" and key in RUN_ONLY_KEYS:
                continue
            if saved.get(section, {}).get(key) != value:
                diffs.append(f"{section}.{key}: checkpoint {saved.get(section, {}).get(key)!r}"
                             f" vs now {value!r}")
    if diffs:
        raise ValueError(f"cannot resume from {path}: the configuration differs ("
                         + "; ".join(diffs) + ")")


def _save(setup: Setup, state: TrainState, out: Path) -> None:
    arrays, meta = state_to_arrays(state, setup.model.to_numpy)
    meta["config"] = config_to_dict(setup.cfg)
    save_checkpoint(out / CHECKPOINT, arrays, meta)


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None,
          stream: TextIO | None | str = "stdout") -> TrainResult:
    """Train one model.  With ``cfg.run.out`` set, metrics, checkpoints, the final model and
    a summary are written there; ``resume`` continues from ``out/checkpoint.npz``;
    ``stop_after`` stops (with a checkpoint) after that many total steps, as an interrupt
    would.  Progress goes to ``stream`` (default: the current ``sys.stdout``; None: off)."""
    out_stream = sys.stdout if stream == "stdout" else stream
    emit = printer(None if cfg.run.quiet else out_stream)  # type: ignore[arg-type]
    setup = build_setup(cfg)
    out = Path(cfg.run.out) if cfg.run.out else None
    log = MetricsLog(out / METRICS if out else None)
    if resume:
        if out is None:
            raise ValueError("--resume needs run.out (--out): the folder with checkpoint.npz")
        arrays, meta = load_checkpoint(out / CHECKPOINT)
        _check_resume(cfg, meta, out / CHECKPOINT)
        state = state_from_arrays(arrays, meta, setup.model.from_numpy)
        log.truncate_after(state.step)
        emit(f"resumed from {out / CHECKPOINT} at step {state.step}/{setup.total_steps}")
    else:
        state = initial_state(setup)
        if out is not None and (out / METRICS).exists():
            (out / METRICS).unlink()
    layers = ", ".join(str(i) for i in setup.ctx.layers) or "none"
    emit(f"spikenm train: method {cfg.sparsity.method} pattern {cfg.sparsity.pattern} "
         f"backend {cfg.run.backend} data {cfg.data.name} ({setup.data.x_train.shape[0]} train/"
         f"{setup.data.x_test.shape[0]} test) T={cfg.lif.time_steps} masked layers: {layers}; "
         f"{setup.total_steps} steps")
    order_cache: dict[int, np.ndarray] = {}
    acc = {"loss": 0.0, "correct": 0, "count": 0, "changed": 0.0, "total": 0, "n": 0}
    t_start = t_log = time.perf_counter()
    try:
        while state.step < setup.total_steps:
            if stop_after is not None and state.step >= stop_after:
                if out is not None:
                    _save(setup, state, out)
                emit(f"stopped at step {state.step}; resume with --resume")
                return TrainResult({"stopped_at": state.step}, log.records, [], {})
            state, info = train_step(setup, state, order_cache)
            for key, src in (("loss", "loss"), ("correct", "correct"), ("count", "count"),
                             ("changed", "flip_changed"), ("total", "flip_total")):
                acc[key] += info[src]
            acc["n"] += 1
            step = state.step
            epoch_end = step % setup.steps_per_epoch == 0
            if step % cfg.run.log_every == 0 or epoch_end or step == setup.total_steps:
                now = time.perf_counter()
                record = {
                    "type": "train", "step": step,
                    "epoch": (step - 1) // setup.steps_per_epoch + 1,
                    "loss": acc["loss"] / acc["n"], "acc": acc["correct"] / acc["count"],
                    "flip_rate": acc["changed"] / acc["total"] if acc["total"] else None,
                    "phase": info["phase"], "temperature": info["temperature"],
                    "scale": info["scale"], "lr": info["lr"],
                    "firing_rates": list(info["firing_rates"]),
                    "ms_per_step": 1e3 * (now - t_log) / acc["n"],
                }
                log.write(record)
                emit(progress_line(record, setup.total_steps, cfg.optim.epochs))
                acc = dict.fromkeys(acc, 0)
                acc["loss"] = acc["changed"] = 0.0
                t_log = now
            if epoch_end:
                epoch = step // setup.steps_per_epoch
                if cfg.run.eval_every and epoch % cfg.run.eval_every == 0 \
                        and step != setup.total_steps:
                    params, _ = final_params(setup, state)
                    record = {"type": "eval", "step": step, "epoch": epoch,
                              **evaluate(setup, params)}
                    log.write(record)
                    emit(progress_line(record, setup.total_steps, cfg.optim.epochs))
            if out is not None and (
                    (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0)
                    or (not cfg.run.checkpoint_every and epoch_end)):
                _save(setup, state, out)
    except KeyboardInterrupt:
        if out is not None:
            _save(setup, state, out)
            emit(f"interrupted: checkpoint of step {state.step} written to {out / CHECKPOINT}")
        raise
    return _finish(setup, state, log, out, time.perf_counter() - t_start, emit)


def _finish(setup: Setup, state: TrainState, log: MetricsLog, out: Path | None,
            seconds: float, emit: Any) -> TrainResult:
    cfg = setup.cfg
    params, final = final_params(setup, state)
    ev = evaluate(setup, params)
    summary = {
        "method": cfg.sparsity.method, "pattern": cfg.sparsity.pattern if final else "dense",
        "eid": setup.ctx.eid_on, "backend": cfg.run.backend, "data": cfg.data.name,
        "seed": cfg.run.seed, "steps": state.step, "seconds": seconds,
        **ev,
        "flip_rate": state.flip_changed / state.flip_total if state.flip_total else None,
        "layers": _layer_report(setup, params, final),
    }
    log.write({"type": "summary", "step": state.step, **summary})
    if out is not None:
        _save(setup, state, out)

        arrays = {}
        for i, p in enumerate(params):
            arrays[f"layer{i}/weight"] = setup.model.to_numpy(p.weight)
            arrays[f"layer{i}/bias"] = setup.model.to_numpy(p.bias)
            if i in final:
                arrays[f"layer{i}/mask"] = setup.model.to_numpy(final[i])
        save_checkpoint(out / MODEL, arrays, {"kind": "model", "config": config_to_dict(cfg)})
        (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    emit(summary_text(summary))
    weights = [(setup.model.to_numpy(p.weight), setup.model.to_numpy(p.bias)) for p in params]
    masks = {i: setup.model.to_numpy(v) for i, v in final.items()}
    return TrainResult(summary, log.records, weights, masks)



