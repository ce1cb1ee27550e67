"""The training loop (SPEC S5): one code path for every method, network and backend.

`train` builds the run (`spikenm.train.setup`), repeats `spikenm.train.step.train_step`,
logs progress, evaluates in eval mode (`spikenm.train.evaluation`) and writes metrics,
checkpoints, the final model and a summary.  Checkpoints are atomic and resuming is
bit-identical (S5.12), metric records included (the open logging interval is
checkpointed too, `spikenm.train.state.LogState`).  The loop knows no method by name:
phases, schedules, optimizer resets and learning-rate windows come from the method's
`StepMasks`.

A train record (``metrics.jsonl``, one per logging interval) holds ``step``, ``epoch``,
``loss``, ``acc``, ``flip_rate`` (S5.9), ``phase``, ``temperature``, ``scale``, ``lr``,
``firing_rates``, ``ms_per_step`` and the sampling-variance metrics of S5.9a
(`spikenm.train.variance`): ``inclusion_variance``, ``block_entropy``,
``argmax_flip_rate`` with their ``_active``/``_silent`` variants and
``inclusion_samples`` (None outside a sampling phase and for methods without sampled
masks), ``variance_layers`` (the same per masked layer), and ``grad_variance``,
``grad_snr``, ``grad_step`` (the last gradient measurement of the interval, None
without one) with ``grad_points`` (every measurement of the interval).  The summary
(``summary.json``) adds to the test metrics, the per-layer report and ``flip_rate``
the means over the search's logging steps of the nine sampling keys,
``inclusion_samples``, the means of ``grad_variance`` and ``grad_snr`` over the
measurements, and ``sampling_variance`` with the last values, the per-layer means and
last values and every gradient measurement with its step
(`spikenm.train.variance.summary_fields`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from spikenm.optim import opt_init

from . import variance
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_to_dict
from .evaluation import evaluate, final_params, layer_report
from .metrics import MetricsLog, printer, progress_line, summary_text
from .setup import Setup, build_setup
from .state import (LogState, TrainState, log_state_from_arrays, log_state_to_arrays,
                    state_from_arrays, state_to_arrays)
from .step import StepInfo, train_step

__all__ = ["TrainResult", "initial_state", "train", "CHECKPOINT", "METRICS", "SUMMARY",
           "MODEL"]

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.npz"
RUN_ONLY_KEYS = ("quiet", "log_every", "checkpoint_every", "eval_every", "eval_batch_size",
                 "out")
"""``run`` keys that do not change the numbers of a run (may differ on resume)."""


@dataclass(frozen=True)
class TrainResult:
    """Outcome of `train`: the summary, the metric records and the final model in NumPy
    (``params`` with ``W * mask``, batch-norm ``buffers``, ``masks`` by layer ordinal)."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[int, np.ndarray] = field(default_factory=dict)


def initial_state(setup: Setup) -> TrainState:
    """Step-0 state: NumPy-initialized parameters and buffers (S4.10, S4.13) on the
    device, a zero optimizer state and the method's initial state."""
    from spikenm.snn import init_buffers, init_params

    cfg, model = setup.cfg, setup.model
    params = {k: model.from_numpy(v) for k, v in
              init_params(setup.graph, cfg.run.seed, cfg.model.init_gain, cfg.run.dtype).items()}
    buffers = {k: model.from_numpy(v) for k, v in init_buffers(setup.graph, cfg.run.dtype).items()}
    opt = opt_init(cfg.optim.optimizer, [params[k] for k in setup.param_keys])
    weights = {k: params[f"layer{k}.weight"] for k in setup.layers}
    return TrainState(0, params, buffers, opt, setup.method.init(setup.method_setup, weights))


class _Tally:
    """Sums of one logging interval; the flip counts stay device arrays until `fold`.
    Also holds the interval's gradient measurements and the previous logging step's
    final masks (S5.9a); `snapshot`/`restore` carry all of it through a checkpoint."""

    def __init__(self) -> None:
        self.reset()
        self.pending: list[tuple[Any, int]] = []
        self.argmax_previous: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.loss, self.correct, self.count, self.steps = 0.0, 0, 0, 0
        self.changed, self.compared = 0.0, 0
        self.points: dict[int, dict[str, Any]] = {}

    def add_point(self, point: dict[str, Any]) -> None:
        """A gradient measurement (one per step: a repeated step replaces it)."""
        self.points[int(point["step"])] = point

    def grad_fields(self) -> dict[str, Any]:
        """``grad_variance``, ``grad_snr``, ``grad_step`` of the interval's last
        measurement (None without one) and ``grad_points``."""
        points = [self.points[s] for s in sorted(self.points)]
        last = points[-1] if points else {}
        return {"grad_variance": last.get("grad_variance"), "grad_snr": last.get("grad_snr"),
                "grad_step": last.get("step"), "grad_points": points}

    def snapshot(self) -> LogState:
        """The interval so far (after `fold`) as a checkpointable `LogState`."""
        sums = {"loss": self.loss, "correct": self.correct, "count": self.count,
                "steps": self.steps, "changed": self.changed, "compared": self.compared}
        return LogState(sums, tuple(self.points[s] for s in sorted(self.points)),
                        dict(self.argmax_previous))

    def restore(self, log: LogState) -> None:
        """Continue the interval of a checkpoint's `LogState`."""
        sums = log.sums
        self.loss, self.correct = float(sums.get("loss", 0.0)), int(sums.get("correct", 0))
        self.count, self.steps = int(sums.get("count", 0)), int(sums.get("steps", 0))
        self.changed = float(sums.get("changed", 0.0))
        self.compared = int(sums.get("compared", 0))
        self.points = {int(p["step"]): dict(p) for p in log.grad_points}
        self.argmax_previous = dict(log.argmax_previous)

    def add(self, info: StepInfo) -> None:
        self.loss += info.loss
        self.correct += info.correct
        self.count += info.count
        self.steps += 1
        if info.compared:
            self.pending.append((info.changed, info.compared))

    def fold(self, state: TrainState) -> TrainState:
        """Move the pending flip counts to the host, into this interval and ``state``."""
        changed = sum(float(c) for c, _ in self.pending)
        compared = sum(t for _, t in self.pending)
        self.pending.clear()
        self.changed += changed
        self.compared += compared
        return replace(state, flip_changed=state.flip_changed + changed,
                       flip_total=state.flip_total + compared)


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


def _save(setup: Setup, state: TrainState, out: Path, tally: _Tally) -> None:
    arrays, meta = state_to_arrays(state, setup.param_keys, setup.model.to_numpy)
    log_arrays, meta["log"] = log_state_to_arrays(tally.snapshot())
    arrays.update(log_arrays)
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
    tally = _Tally()
    if resume:
        if out is None:
            raise ValueError("--resume needs run.out (--out): the folder with checkpoint.npz")
        arrays, meta = load_checkpoint(out / CHECKPOINT)
        _check_resume(cfg, meta, out / CHECKPOINT)
        state = state_from_arrays(arrays, meta, setup.param_keys, setup.model.from_numpy)
        tally.restore(log_state_from_arrays(arrays, meta.get("log")))
        log.truncate_after(state.step)
        emit(f"resumed from {out / CHECKPOINT} at step {state.step}/{setup.total_steps}")
    else:
        state = initial_state(setup)
        if out is not None and (out / METRICS).exists():
            (out / METRICS).unlink()
    layers = ", ".join(str(k) for k in setup.layers) or "none"
    emit(f"spikenm train: method {setup.method.name} pattern {cfg.sparsity.pattern} "
         f"backend {cfg.run.backend} on {setup.model.device} arch {cfg.model.arch} "
         f"data {cfg.data.name} ({setup.data.x_train.shape[0]} train/"
         f"{setup.data.x_test.shape[0]} test) T={setup.lif.time_steps} masked layers: "
         f"{layers}; {setup.total_steps} steps")
    order_cache: dict[int, np.ndarray] = {}
    measure_at = set(variance.variance_steps(setup))
    t_start = t_log = time.perf_counter()
    try:
        while state.step < setup.total_steps:
            if stop_after is not None and state.step >= stop_after:
                state = tally.fold(state)
                if out is not None:
                    _save(setup, state, out, tally)
                emit(f"stopped at step {state.step}; resume with --resume")
                return TrainResult({"stopped_at": state.step}, log.records)
            if state.step in measure_at:
                point = variance.gradient_point(setup, state, order_cache)
                if point is not None:
                    tally.add_point(point)
            state, info = train_step(setup, state, order_cache)
            tally.add(info)
            step = state.step
            epoch_end = step % setup.steps_per_epoch == 0
            if step % cfg.run.log_every == 0 or epoch_end or step == setup.total_steps:
                state = tally.fold(state)
                sampling, tally.argmax_previous = variance.sampling_record(
                    setup, state, step - 1, info.grads, tally.argmax_previous)
                now = time.perf_counter()
                record = {
                    "type": "train", "step": step,
                    "epoch": (step - 1) // setup.steps_per_epoch + 1,
                    "loss": tally.loss / tally.steps, "acc": tally.correct / tally.count,
                    "flip_rate": tally.changed / tally.compared if tally.compared else None,
                    "phase": info.phase, "temperature": info.temperature,
                    "scale": info.scale, "lr": info.lr,
                    "firing_rates": list(info.firing_rates),
                    "ms_per_step": 1e3 * (now - t_log) / tally.steps,
                    **sampling, **tally.grad_fields(),
                }
                log.write(record)
                emit(progress_line(record, setup.total_steps, cfg.optim.epochs))
                tally.reset()
                t_log = now
            if epoch_end:
                epoch = step // setup.steps_per_epoch
                if cfg.run.eval_every and epoch % cfg.run.eval_every == 0 \
                        and step != setup.total_steps:
                    params, _ = final_params(setup, state)
                    record = {"type": "eval", "step": step, "epoch": epoch,
                              **evaluate(setup, params, state.buffers)}
                    log.write(record)
                    emit(progress_line(record, setup.total_steps, cfg.optim.epochs))
            if out is not None and (
                    (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0)
                    or (not cfg.run.checkpoint_every and epoch_end)):
                state = tally.fold(state)
                _save(setup, state, out, tally)
    except KeyboardInterrupt:
        if out is not None:
            state = tally.fold(state)
            _save(setup, state, out, tally)
            emit(f"interrupted: checkpoint of step {state.step} written to {out / CHECKPOINT}")
        raise
    return _finish(setup, tally.fold(state), tally, log, out, time.perf_counter() - t_start,
                   emit)


def _graph_record(setup: Setup) -> dict[str, Any]:
    g = setup.graph
    return {"input_shape": list(g.input_shape),
            "nodes": [{**asdict(n), "inputs": list(n.inputs)} for n in g.nodes]}


def _finish(setup: Setup, state: TrainState, tally: _Tally, log: MetricsLog,
            out: Path | None, seconds: float, emit: Callable[[str], None]) -> TrainResult:
    cfg, model = setup.cfg, setup.model
    params, final = final_params(setup, state)
    ev = evaluate(setup, params, state.buffers)
    summary = {
        "method": setup.method.name, "pattern": cfg.sparsity.pattern if final else "dense",
        "eid": bool(getattr(setup.method, "eid", False)), "backend": cfg.run.backend,
        "device": model.device, "arch": cfg.model.arch,
        "width_multiplier": cfg.model.width_multiplier, "data": cfg.data.name,
        "seed": cfg.run.seed, "steps": state.step, "seconds": seconds,
        **ev,
        "flip_rate": state.flip_changed / state.flip_total if state.flip_total else None,
        **variance.summary_fields(log.records),
        "layers": layer_report(setup, params, final),
    }
    log.write({"type": "summary", "step": state.step, **summary})
    np_params = {k: model.to_numpy(v) for k, v in params.items()}
    np_buffers = {k: model.to_numpy(v) for k, v in state.buffers.items()}
    np_masks = {k: model.to_numpy(v) for k, v in final.items()}
    if out is not None:
        _save(setup, state, out, tally)
        arrays = {**np_params, **np_buffers,
                  **{f"layer{k}.mask": v for k, v in np_masks.items()}}
        save_checkpoint(out / MODEL, arrays, {"kind": "model", "config": config_to_dict(cfg),
                                              "graph": _graph_record(setup)})
        (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    emit(summary_text(summary))
    return TrainResult(summary, log.records, np_params, np_buffers, np_masks)
