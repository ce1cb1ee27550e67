"""The training loop (SPEC S5): one code path for every method, network and backend.

`train` builds the run (`spikenm.train.setup`), repeats `spikenm.train.step.train_step`,
logs progress, evaluates in eval mode (`spikenm.train.evaluation`) and writes metrics,
checkpoints, the final model and a summary.  Checkpoints are atomic and resuming is
bit-identical (S5.12), metric records included (the open logging interval is
checkpointed too, `spikenm.train.state.LogState`; S5.12a).  The loop knows no method by
name: phases, schedules, optimizer resets and learning-rate windows come from the
method's `StepMasks`.

Crash safety (S5.12b): a run refuses an output folder holding another run's files
unless told to resume or overwrite it (`prepare_out`), removes the temporary files a
killed run left there (`spikenm.atomic.remove_stale_temps`), and while it runs SIGINT and
SIGTERM only ask it to stop (`stop_signals`): at the next safe point between steps it
writes a checkpoint and raises `Interrupted` (a `KeyboardInterrupt`), whose
``exit_status`` is ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).

Data-parallel runs (S5.14, ``torchrun --nproc_per_node=K -m spikenm train ... --backend
torch``): every process runs this loop on the same configuration; the model backend
splits each batch and reduces the results, so every process holds the same state.  Only
rank 0 (`spikenm.train.distributed.is_writer`) cleans and writes the output folder
(checkpoints, metrics, model, summary) and prints progress; the others only check it.
A stop signal seen by any process stops all of them after the same step, and a resume
reads the checkpoint on every process.

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
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from spikenm.atomic import atomic_path, remove_stale_temps
from spikenm.energy import energy_report
from spikenm.optim import opt_init
from spikenm.progress import Progress

from . import distributed, variance
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_to_dict
from .evaluation import evaluate, final_params, layer_report
from .metrics import MetricsLog, printer, progress_line, summary_text
from .setup import Setup, build_setup
from .state import (LogState, TrainState, check_arrays_like, log_state_from_arrays,
                    log_state_to_arrays, state_from_arrays, state_to_arrays)
from .step import StepInfo, train_step

__all__ = ["TrainResult", "initial_state", "train", "prepare_out", "stop_signals",
           "Interrupted", "StopRequest", "CHECKPOINT", "METRICS", "SUMMARY", "MODEL",
           "RUN_FILES"]

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.npz"
RUN_FILES = (CHECKPOINT, METRICS, MODEL, SUMMARY)
"""The files a run writes into ``run.out``: a folder holding any of them holds a run."""
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
        self.seconds = 0.0  # wall time of the interval before `started`
        self.started = time.perf_counter()

    def interval_seconds(self) -> float:
        return self.seconds + time.perf_counter() - self.started

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

    def snapshot(self, elapsed: float) -> LogState:
        """The interval so far (after `fold`) as a checkpointable `LogState`; ``elapsed``
        is the run's wall time so far."""
        sums = {"loss": self.loss, "correct": self.correct, "count": self.count,
                "steps": self.steps, "changed": self.changed, "compared": self.compared,
                "seconds": self.interval_seconds()}
        return LogState(sums, tuple(self.points[s] for s in sorted(self.points)),
                        dict(self.argmax_previous), elapsed)

    def restore(self, log: LogState) -> None:
        """Continue the interval of a checkpoint's `LogState`."""
        sums = log.sums
        self.loss, self.correct = float(sums.get("loss", 0.0)), int(sums.get("correct", 0))
        self.count, self.steps = int(sums.get("count", 0)), int(sums.get("steps", 0))
        self.changed = float(sums.get("changed", 0.0))
        self.compared = int(sums.get("compared", 0))
        self.points = {int(p["step"]): dict(p) for p in log.grad_points}
        self.argmax_previous = dict(log.argmax_previous)
        self.seconds, self.started = float(sums.get("seconds", 0.0)), time.perf_counter()

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


class Interrupted(KeyboardInterrupt):
    """A run or grid stopped by SIGINT or SIGTERM (S5.12b).

    A `KeyboardInterrupt`, so code that stops on Ctrl-C stops on it too.  ``str(exc)`` is
    the one-line message (what stopped, where, what was saved).

    Attributes
    ----------
    signum : int
        The signal's number.
    checkpoint : Path or None
        The checkpoint written at the stop (None: nothing was written then).
    """

    def __init__(self, signum: int, message: str, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def exit_status(self) -> int:
        """``128 + signum``: 130 for SIGINT, 143 for SIGTERM (the shells' convention)."""
        return 128 + self.signum

    def __str__(self) -> str:
        return str(self.args[0])


class StopRequest:
    """The first stop signal received while `stop_signals` is active (``signum`` None
    until then)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active: list[StopRequest] = []


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """While active, SIGINT and SIGTERM only record a stop request (S5.12b).

    Yields the `StopRequest` the loop checks at its safe points (between steps, and
    between the runs of a grid).  A second signal raises `Interrupted` at once, wherever
    the program is (an atomic write in progress is abandoned cleanly, the previous
    checkpoint stays).  Nested uses share the outer request; outside the main thread
    nothing is installed (the request then stays empty), and a signal the process
    ignores (``SIG_IGN``, e.g. SIGINT under ``nohup``) stays ignored.  The previous
    handlers are restored on exit.
    """
    if _active:
        yield _active[-1]
        return
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise Interrupted(signum, f"stopped at once by a second "
                              f"{signal.Signals(signum).name}; no checkpoint was written "
                              f"at this point (the last complete one stays)")
        stop.signum = signum

    previous: dict[int, Any] = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    _active.append(stop)
    try:
        yield stop
    finally:
        _active.remove(stop)
        for sig, old in previous.items():
            signal.signal(sig, old)


def prepare_out(out: Path, *, resume: bool = False, overwrite: bool = False,
                clean: bool = True) -> list[Path]:
    """Check the output folder ``out`` before a run and clean it (S5.12b); returns the
    stale temporary files removed.

    ``out`` must be a folder or not exist.  A fresh run (``resume`` False) refuses a
    folder holding another run's files (any of `RUN_FILES`) unless ``overwrite``, which
    deletes those files first.  The temporary files of `RUN_FILES` that a killed run left
    (`spikenm.atomic.remove_stale_temps`: the name pattern of `spikenm.atomic.atomic_path`
    and a writer process that no longer exists) are deleted; nothing else is touched.
    With ``clean`` False (a data-parallel process other than the writer, S5.14) ``out``
    is only checked: nothing is deleted.

    Raises
    ------
    ValueError
        ``out`` is not a folder, holds another run and neither ``resume`` nor
        ``overwrite`` is set, or both are set.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: resume continues the "
                         f"run in {str(out)!r}, overwrite replaces it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"run.out (--out) {str(out)!r} is a file, expected a folder (new "
                         f"or holding a run)")
    removed = remove_stale_temps(out, RUN_FILES) if clean else []
    if not resume:
        held = [name for name in RUN_FILES if (out / name).exists()]
        if held and not overwrite:
            raise ValueError(f"run.out (--out) {str(out)!r} holds another run's files ("
                             f"{', '.join(held)}): continue it with --resume, replace it "
                             f"with --overwrite, or choose another folder")
        for name in held if clean else ():
            (out / name).unlink()
    return removed


def _save(setup: Setup, state: TrainState, out: Path, tally: _Tally, elapsed: float
          ) -> None:
    arrays, meta = state_to_arrays(state, setup.param_keys, setup.model.to_numpy)
    log_arrays, meta["log"] = log_state_to_arrays(tally.snapshot(elapsed))
    arrays.update(log_arrays)
    meta["config"] = config_to_dict(setup.cfg)
    save_checkpoint(out / CHECKPOINT, arrays, meta)


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          stop_after: int | None = None, stream: TextIO | None | str = "stdout"
          ) -> TrainResult:
    """Train one model.

    With ``cfg.run.out`` set, metrics, checkpoints, the final model and a summary are
    written there (S5.12).  The folder is checked and cleaned first (`prepare_out`: a
    folder holding another run is refused unless ``resume`` or ``overwrite``).
    ``resume`` continues from ``out/checkpoint.npz``; ``overwrite`` deletes the folder's
    run files and starts afresh; ``stop_after`` stops (with a checkpoint) after that many
    total steps, as an interrupt would.  SIGINT and SIGTERM stop the run at the next safe
    point with a checkpoint (`stop_signals`).  Progress goes to ``stream`` (default: the
    current ``sys.stdout``; None: off).  In a data-parallel run (S5.14) only rank 0
    writes files and progress; every process returns the result.

    Raises
    ------
    Interrupted
        SIGINT or SIGTERM arrived (after the checkpoint of the stop is written).
    ValueError
        An invalid output folder (`prepare_out`), a checkpoint that is not this run's, or
        a configuration the run cannot use.
    FileNotFoundError
        ``resume`` without ``out/checkpoint.npz``.
    """
    out_stream = sys.stdout if stream == "stdout" else stream
    writer = distributed.is_writer()
    shown = None if cfg.run.quiet or not writer else out_stream
    emit = printer(shown)  # type: ignore[arg-type]
    out = Path(cfg.run.out) if cfg.run.out else None
    if resume and out is None:
        raise ValueError("--resume needs run.out (--out): the folder with checkpoint.npz")
    with stop_signals() as stop:
        removed = (prepare_out(out, resume=resume, overwrite=overwrite, clean=writer)
                   if out else [])
        if removed:
            emit(f"removed {len(removed)} stale temporary file(s) of a killed run: "
                 + ", ".join(p.name for p in removed))
        return _run(cfg, resume, stop_after, stop, emit, out, shown)  # type: ignore[arg-type]


def _run(cfg: TrainConfig, resume: bool, stop_after: int | None, stop: StopRequest,
         emit: Callable[[str], None], out: Path | None, shown: TextIO | None
         ) -> TrainResult:
    setup = build_setup(cfg)
    distributed.check_model(setup.model)
    distributed.barrier(setup.model)  # the writer has checked and cleaned ``out``
    writer = distributed.is_writer()
    log = MetricsLog(out / METRICS if out and writer else None)
    tally = _Tally()
    elapsed = 0.0  # wall seconds of the steps of earlier sessions (resume)
    if resume:
        assert out is not None
        if not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(
                f"no checkpoint at {str(out / CHECKPOINT)!r} to resume from (a run stopped "
                f"before its first checkpoint): start it afresh, with --overwrite if "
                f"{str(out)!r} holds its other files")
        arrays, meta = load_checkpoint(out / CHECKPOINT)
        _check_resume(cfg, meta, out / CHECKPOINT)
        expected, _ = state_to_arrays(initial_state(setup), setup.param_keys,
                                      setup.model.to_numpy)
        check_arrays_like(arrays, expected, str(out / CHECKPOINT))
        state = state_from_arrays(arrays, meta, setup.param_keys, setup.model.from_numpy)
        restored = log_state_from_arrays(arrays, meta.get("log"))
        tally.restore(restored)
        elapsed = restored.elapsed
        log.truncate_after(state.step)
        emit(f"resumed from {out / CHECKPOINT} at step {state.step}/{setup.total_steps}")
    else:
        state = initial_state(setup)
    layers = ", ".join(str(k) for k in setup.layers) or "none"
    emit(f"spikenm train: method {setup.method.name} pattern {cfg.sparsity.pattern} "
         f"backend {cfg.run.backend} on {setup.model.device} arch {cfg.model.arch} "
         f"data {cfg.data.name} ({setup.data.x_train.shape[0]} train/"
         f"{setup.data.x_test.shape[0]} test) T={setup.lif.time_steps} masked layers: "
         f"{layers}; {setup.total_steps} steps")
    order_cache: dict[int, np.ndarray] = {}
    measure_at = set(variance.variance_steps(setup))
    t_start = tally.started = time.perf_counter()

    def run_seconds() -> float:
        return elapsed + time.perf_counter() - t_start

    progress = Progress(setup.total_steps, shown, "train", "step", initial=state.step)
    try:
        while True:
            stopping = distributed.any_worker(setup.model, stop.signum is not None)
            if stopping and stop.signum is None:  # another process of the run got it
                stop.signum = signal.SIGTERM
            if stopping or (stop_after is not None and stop_after <= state.step
                            < setup.total_steps):
                state = tally.fold(state)
                if out is not None and writer:
                    _save(setup, state, out, tally, run_seconds())
                if not stopping:
                    emit(f"stopped at step {state.step}; resume with --resume")
                    return TrainResult({"stopped_at": state.step}, log.records)
                assert stop.signum is not None
                where = f"at step {state.step}/{setup.total_steps}"
                if out is None:
                    raise Interrupted(stop.signum, f"stopped by {stop.name} {where}; "
                                      f"nothing saved (no run.out)")
                raise Interrupted(stop.signum, f"stopped by {stop.name} {where}; checkpoint "
                                  f"written to {out / CHECKPOINT}; continue with --resume",
                                  out / CHECKPOINT)
            if state.step >= setup.total_steps:
                break
            if state.step in measure_at:
                point = variance.gradient_point(setup, state, order_cache)
                if point is not None:
                    tally.add_point(point)
            state, info = train_step(setup, state, order_cache)
            tally.add(info)
            progress.update()
            step = state.step
            epoch_end = step % setup.steps_per_epoch == 0
            if step % cfg.run.log_every == 0 or epoch_end or step == setup.total_steps:
                state = tally.fold(state)
                sampling, tally.argmax_previous = variance.sampling_record(
                    setup, state, step - 1, info.grads, tally.argmax_previous)
                record = {
                    "type": "train", "step": step,
                    "epoch": (step - 1) // setup.steps_per_epoch + 1,
                    "loss": tally.loss / tally.steps, "acc": tally.correct / tally.count,
                    "flip_rate": tally.changed / tally.compared if tally.compared else None,
                    "phase": info.phase, "temperature": info.temperature,
                    "scale": info.scale, "lr": info.lr,
                    "firing_rates": list(info.firing_rates),
                    "ms_per_step": 1e3 * tally.interval_seconds() / tally.steps,
                    **sampling, **tally.grad_fields(),
                }
                log.write(record)
                progress.write(progress_line(record, setup.total_steps, cfg.optim.epochs))
                tally.reset()
            if epoch_end:
                epoch = step // setup.steps_per_epoch
                if cfg.run.eval_every and epoch % cfg.run.eval_every == 0 \
                        and step != setup.total_steps:
                    params, _ = final_params(setup, state)
                    record = {"type": "eval", "step": step, "epoch": epoch,
                              **evaluate(setup, params, state.buffers)}
                    log.write(record)
                    progress.write(progress_line(record, setup.total_steps, cfg.optim.epochs))
            if out is not None and writer and (
                    (cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0)
                    or (not cfg.run.checkpoint_every and epoch_end)):
                state = tally.fold(state)
                _save(setup, state, out, tally, run_seconds())
    except KeyboardInterrupt as exc:
        # a KeyboardInterrupt not of a stop signal (raised by code, or SIGINT outside the
        # main thread's handlers): it left between two steps, so the state is whole
        if out is not None and writer and not isinstance(exc, Interrupted):
            state = tally.fold(state)
            _save(setup, state, out, tally, run_seconds())
            emit(f"interrupted: checkpoint of step {state.step} written to {out / CHECKPOINT}")
        raise
    finally:
        progress.close()
    result = _finish(setup, tally.fold(state), tally, log, out if writer else None,
                     run_seconds(), emit)
    if stop.signum is not None:
        raise Interrupted(stop.signum, f"{stop.name} arrived while the final outputs were "
                          f"written; the run is complete"
                          + (f" in {out}" if out is not None else ""),
                          out / CHECKPOINT if out is not None else None)
    return result


def _graph_record(setup: Setup) -> dict[str, Any]:
    g = setup.graph
    return {"input_shape": list(g.input_shape),
            "nodes": [{**asdict(n), "inputs": list(n.inputs)} for n in g.nodes]}


def _energy_totals(setup: Setup, rates: list[float], final: Mapping[int, Any]
                   ) -> dict[str, float] | None:
    """Per-sample totals of `spikenm.energy.energy_report` (S7) from the test firing rates
    (None when the evaluation measured no rates)."""
    if len(rates) != len(setup.graph.neurons):
        return None
    n, m = setup.cfg.sparsity.nm
    return energy_report(setup.graph, rates, setup.lif.time_steps,
                         {k: n / m for k in final}).totals


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
        "energy": _energy_totals(setup, ev["firing_rates"], final),
    }
    log.write({"type": "summary", "step": state.step, **summary})
    np_params = {k: model.to_numpy(v) for k, v in params.items()}
    np_buffers = {k: model.to_numpy(v) for k, v in state.buffers.items()}
    np_masks = {k: model.to_numpy(v) for k, v in final.items()}
    if out is not None:
        _save(setup, state, out, tally, seconds)
        arrays = {**np_params, **np_buffers,
                  **{f"layer{k}.mask": v for k, v in np_masks.items()}}
        save_checkpoint(out / MODEL, arrays, {"kind": "model", "config": config_to_dict(cfg),
                                              "graph": _graph_record(setup)})
        with atomic_path(out / SUMMARY) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    emit(summary_text(summary))
    return TrainResult(summary, log.records, np_params, np_buffers, np_masks)
