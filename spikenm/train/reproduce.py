"""``spikenm reproduce``: a grid of methods x patterns x seeds on shipped data, a markdown
table, plots and plain verdicts on the paper's claims (see `spikenm.train.report`).

Every run of a grid shares the data, network, initialization per seed, step budget and
weight optimizer (SPEC S6).  Every finished run is saved at once (atomically) in
``OUT/runs.json``, keyed by its whole configuration: running a grid again with the same
``--out`` reuses every run whose configuration is already there (whichever grid it came
from), so an interrupted grid continues where it stopped and a larger grid reruns only
the new cells.  ``OUT/results.json`` holds exactly the runs of one grid and is written
only when that grid is complete, so it is never replaced by a partial grid; the report
and the plots are made from the runs of ``results.json`` (`load_results` checks that they
are this grid's).  Besides the default variants a grid can run the EID variants
``spikenm-global``, ``-block``, ``-gated``, ``-inclusion`` and ``-signed`` (SPEC S2.9,
S2.11); the report repeats the claims for each.  The saved runs are measurements of the code that
made them: delete ``OUT`` (or use another) to measure again after changing the code.

Crash safety (S5.12b): ``OUT`` must be a folder (or not exist) that holds no `train` run
(`spikenm.train.loop.RUN_FILES`); the temporary files a killed grid left for its own
files (`GRID_FILES`) are removed at the start; SIGINT/SIGTERM stop the grid at the next
step of the current run, or between runs, raising `spikenm.train.loop.Interrupted` after
every finished run is saved (the cut run is not: it is rerun when the grid continues).
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from ..atomic import atomic_path, remove_stale_temps
from ..progress import Progress
from . import distributed, report
from .config import TrainConfig, config_to_dict, load_config
from .loop import RUN_FILES, Interrupted, StopRequest, stop_signals, train

@dataclass(frozen=True)
class Variant:
    """A column of the grid: configuration settings (``section.key=value``) and whether it
    is run per pattern (a dense baseline is run once per seed)."""

    settings: tuple[str, ...]
    patterned: bool = True


_SPIKENM_EID = ("sparsity.method=spikenm", "eid.enabled=true")

VARIANT_SETTINGS: dict[str, Variant] = {
    "dense": Variant(("sparsity.method=dense",), patterned=False),
    "spikenm": Variant(_SPIKENM_EID),
    "spikenm-noeid": Variant(("sparsity.method=spikenm", "eid.enabled=false")),
    "srste": Variant(("sparsity.method=srste",)),
    "asp": Variant(("sparsity.method=asp",)),
    "maskllm": Variant(("sparsity.method=maskllm",)),
    "random": Variant(("sparsity.method=random",)),
    # the EID variants (S2.9, S2.11): each differs from ``spikenm`` in one setting
    "spikenm-global": Variant(_SPIKENM_EID + ("eid.variant=global",)),
    "spikenm-block": Variant(_SPIKENM_EID + ("eid.variant=block",)),
    "spikenm-gated": Variant(_SPIKENM_EID + ("eid.variant=gated",)),
    "spikenm-inclusion": Variant(_SPIKENM_EID + ("eid.variant=inclusion",)),
    "spikenm-signed": Variant(_SPIKENM_EID + ("eid.credit=signed",)),
}
"""Grid variant -> its settings (the report's labels, `spikenm.train.report`).  ``spikenm``
is the method with the configuration's default EID (``eid.variant``, ``eid.credit``); the
``spikenm-<variant>`` ones set ``eid.variant`` and ``spikenm-signed`` sets
``eid.credit=signed`` with the default targets.  A variant whose configuration equals
another's (e.g. ``spikenm-global`` while ``global`` is the default) reuses its saved
runs."""
VARIANTS = tuple(VARIANT_SETTINGS)
"""Every grid variant (``--methods`` chooses among them)."""
DEFAULT_VARIANTS = ("dense", "spikenm", "spikenm-noeid", "srste", "asp", "maskllm", "random")
"""The variants a grid runs unless told otherwise."""
EID_VARIANTS = tuple(v for v in VARIANTS if v.startswith("spikenm") and v != "spikenm-noeid")
"""The variants that are SpikeNM with EID (the report repeats the claims for each)."""


@dataclass(frozen=True)
class Grid:
    """What `run_grid` runs: ``variants`` x ``patterns`` x ``seeds`` (dense once per seed),
    each with ``overrides`` (``section.key=value``) on top of the defaults."""

    name: str
    data: str
    seeds: tuple[int, ...]
    patterns: tuple[str, ...]
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANT_SETTINGS]
        if unknown:
            raise ValueError(f"Grid {self.name!r}: unknown variant(s) {unknown}, expected "
                             f"some of {VARIANTS}")


QUICK = Grid("quick", "digits", (0, 1, 2, 3, 4), ("2:4", "1:4", "2:8", "1:8"),
             overrides=("optim.epochs=15", "model.hidden=32,32",
                        "sparsity.dense_first=false"))
"""The README's main check: 125 short runs (5 seeds x (dense + 6 methods x 4 patterns))
on the 8x8 digits with the first layer masked and two narrow hidden layers, a setting
where sparsity costs accuracy (a fixed random 2:4 mask is clearly below dense), so the
verdicts can tell the methods apart; one to two minutes on 2 cores."""

FULL = Grid("full", "mnist5k", (0, 1, 2), ("2:4", "1:4", "2:8", "1:8"),
            overrides=("optim.epochs=25", "model.hidden=256,256,256"))
"""The grid behind docs/results.md: the MNIST 5k subset, 3 seeds, four patterns."""


def run_config(grid: Grid, variant: str, pattern: str, seed: int, backend: str,
               overrides: tuple[str, ...] = ()) -> TrainConfig:
    """The `TrainConfig` of one grid cell: defaults, then the grid's settings, then the
    user's ``overrides`` (``section.key=value``), then the cell's variant, pattern and
    seed."""
    v = VARIANT_SETTINGS[variant]
    cell = list(v.settings) + ([f"sparsity.pattern={pattern}"] if v.patterned else [])
    cfg = load_config(None, list(grid.overrides) + list(overrides) + cell)
    return replace(
        cfg, data=replace(cfg.data, name=grid.data),
        run=replace(cfg.run, seed=seed, backend=backend, quiet=True, out="", eval_every=0))


def cells(grid: Grid) -> list[tuple[str, str, int]]:
    """``(variant, pattern, seed)`` of every run, the unpatterned (dense) ones first."""
    out = []
    for seed in grid.seeds:
        out += [(v, "dense", seed) for v in grid.variants if not VARIANT_SETTINGS[v].patterned]
    for pattern in grid.patterns:
        for variant in grid.variants:
            if VARIANT_SETTINGS[variant].patterned:
                out += [(variant, pattern, seed) for seed in grid.seeds]
    return out


RUNS_FILE = "runs.json"
"""Every finished run in ``OUT``, with its configuration (the key of reuse)."""
RESULTS_FILE = "results.json"
"""The runs of the last complete grid run into ``OUT``."""
REPORT_FILE = "report.md"
"""The markdown report of `write_report`."""
GRID_FILES = (RUNS_FILE, RESULTS_FILE, REPORT_FILE)
"""The files of ``OUT`` written atomically (their stale temporary files are removed)."""


def run_key(cfg: TrainConfig) -> str:
    """The key under which a run is saved and reused: its whole configuration as JSON."""
    return json.dumps(config_to_dict(cfg), sort_keys=True)


def history(records: list[dict[str, Any]], key: str) -> list[list[float]]:
    """``[step, value]`` of every per-interval train record with a ``key`` value (S5.9,
    S5.9a; empty when the run did not log it).

    Raises
    ------
    TypeError
        When a value is not a number.
    """
    out = []
    for r in records:
        if r.get("type") != "train" or r.get(key) is None:
            continue
        value = r[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"train record of step {r.get('step')}: {key}={value!r}, "
                            f"expected a number or None")
        out.append([r["step"], float(value)])
    return out


def grid_key(grid: Grid, backend: str, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """What ``OUT/results.json`` records as the grid its runs belong to (JSON types)."""
    return json.loads(json.dumps({"grid": asdict(grid), "backend": backend,
                                  "overrides": list(overrides)}))


def _load_runs(path: Path) -> dict[str, dict[str, Any]]:
    """The saved runs of ``OUT/runs.json`` by `run_key` (empty when there is none).

    Raises
    ------
    ValueError
        When the file is not what `run_grid` writes (naming the file).
    """
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        runs = saved["runs"]
        return {json.dumps(r["config"], sort_keys=True): r for r in runs}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a spikenm reproduce run file ({exc!r}); move it "
                         f"away or choose another --out") from None


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1)


def check_out(out: Path) -> list[Path]:
    """Check the grid's output folder and remove the stale temporary files of
    `GRID_FILES` (`spikenm.atomic.remove_stale_temps`); returns those removed.

    Raises
    ------
    ValueError
        When ``out`` is a file, or a folder holding a `train` run
        (`spikenm.train.loop.RUN_FILES`).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, expected a folder (new or holding "
                         f"a grid)")
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held:
        raise ValueError(f"--out {str(out)!r} holds a spikenm train run ({', '.join(held)}),"
                         f" not a grid: choose another folder")
    return remove_stale_temps(out, GRID_FILES)


def run_grid(grid: Grid, backend: str, out_dir: str | Path, overrides: tuple[str, ...] = (),
             stream: TextIO | None = None) -> list[dict[str, Any]]:
    """Run (or continue) ``grid``; returns one record per cell.  Runs already saved in
    ``OUT/runs.json`` with the same configuration are reused, not rerun.  One progress
    line per cell goes to ``stream`` when given.

    Raises
    ------
    ValueError
        When ``OUT`` is not a grid's folder (`check_out`) or its ``runs.json`` is not
        one of `run_grid`; or in a data-parallel process (``WORLD_SIZE > 1``, S5.14): a
        grid runs in one process.
    Interrupted
        SIGINT or SIGTERM arrived (`spikenm.train.loop.stop_signals`); every run finished
        before it is in ``OUT/runs.json``.
    """
    rank, size = distributed.world()
    if size > 1:
        raise ValueError(f"reproduce runs in one process, but this is rank {rank} of "
                         f"{size} (WORLD_SIZE={size}): run the grid without torchrun, or "
                         f"train one configuration data-parallel with `spikenm train`")
    out = Path(out_dir)
    removed = check_out(out)
    if removed and stream is not None:
        stream.write(f"removed {len(removed)} stale temporary file(s) of a killed grid: "
                     + ", ".join(p.name for p in removed) + "\n")
    with stop_signals() as stop:
        return _run_cells(grid, backend, out, overrides, stream, stop)


def _stopped(signum: int, done: int, total: int, out: Path, during: str) -> Interrupted:
    return Interrupted(signum, f"stopped by {signal.Signals(signum).name} {during}; {done} of "
                               f"{total} runs are saved in {out / RUNS_FILE}: run the same "
                               f"command to continue")


def _run_cells(grid: Grid, backend: str, out: Path, overrides: tuple[str, ...],
               stream: TextIO | None, stop: StopRequest) -> list[dict[str, Any]]:
    runs_path = out / RUNS_FILE
    saved = _load_runs(runs_path)
    key = grid_key(grid, backend, overrides)
    todo = cells(grid)
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with Progress(len(todo), stream, "reproduce", "run") as bar:
        for i, (variant, pattern, seed) in enumerate(todo):
            cfg = run_config(grid, variant, pattern, seed, backend, overrides)
            cell_key = run_key(cfg)
            reused = cell_key in saved
            if stop.signum is not None:
                raise _stopped(stop.signum, len(runs), len(todo), out, f"before run {i + 1}")
            if reused:
                run = dict(saved[cell_key], variant=variant, pattern=pattern, seed=seed)
            else:
                try:
                    result = train(cfg, stream=None)
                except Interrupted as exc:
                    raise _stopped(exc.signum, len(runs), len(todo), out,
                                   f"in run {i + 1} ({variant} {pattern} seed {seed})") from None
                s = result.summary
                run = {"variant": variant, "pattern": pattern, "seed": seed,
                       "test_acc": s["test_acc"], "flip_rate": s["flip_rate"],
                       "argmax_flip_rate": s.get("argmax_flip_rate"),
                       "inclusion_variance": s.get("inclusion_variance"),
                       "firing_rates": s["firing_rates"], "seconds": s["seconds"],
                       "flip_history": history(result.records, "flip_rate"),
                       "variance_history": history(result.records, "inclusion_variance"),
                       "layers": s["layers"], "config": json.loads(cell_key)}
                saved[cell_key] = run
                _write_json(runs_path, {"runs": list(saved.values())})
            runs.append(run)
            bar.update()
            flip = "" if run["flip_rate"] is None else f"  flip {run['flip_rate']:.4f}"
            how = "saved run reused" if reused else f"{run['seconds']:.1f} s"
            bar.write(f"[{i + 1}/{len(todo)}] {variant:<14} {pattern:<5} seed {seed}  "
                      f"test acc {run['test_acc']:.4f}{flip}  {how}  "
                      f"(elapsed {time.perf_counter() - t0:.0f} s)")
    _write_json(out / RESULTS_FILE, {"key": key, "runs": runs})
    return runs


def load_results(grid: Grid, backend: str, out_dir: str | Path,
                 overrides: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The runs of ``OUT/results.json``, checked to belong to this grid.

    Raises
    ------
    ValueError
        When the file is missing, malformed or holds another grid (naming the file).
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise ValueError(f"{path} does not exist: run the grid first (run_grid)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        key, runs = saved["key"], saved["runs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a spikenm reproduce results file ({exc!r})") from None
    if key != grid_key(grid, backend, overrides):
        raise ValueError(f"{path} holds another grid ({key}), not "
                         f"{grid_key(grid, backend, overrides)}")
    return runs


def write_report(grid: Grid, backend: str, out_dir: str | Path, command: str,
                 overrides: tuple[str, ...] = ()) -> str:
    """Markdown report (table, claims with their power, plot notes) of the runs in
    ``OUT/results.json`` (`load_results`), written to ``OUT/report.md`` next to the plots
    made from the same runs (`spikenm.train.report.write_plots`)."""
    out = Path(out_dir)
    runs = load_results(grid, backend, out, overrides)
    groups = report.group_runs(runs)
    notes = report.write_plots(runs, groups, out)
    present = report.variant_order({r["variant"] for r in runs})
    extra = [v for v in EID_VARIANTS if v != "spikenm" and v in present]
    sections = []
    for v in extra:
        sections += ["", f"The same claims for `{v}` "
                         f"({', '.join(VARIANT_SETTINGS[v].settings[len(_SPIKENM_EID):])}):", "",
                     *[f"- {c}" for c in report.claims(groups, method=v)]]
    text = "\n".join([
        f"# spikenm reproduce ({grid.name})",
        "",
        f"Command: `{command}`",
        "",
        f"Data `{grid.data}`, backend `{backend}`, seeds {list(grid.seeds)}, settings "
        f"{', '.join(grid.overrides + tuple(overrides)) or 'defaults'}; every method has the "
        f"same budget. Variants: "
        + "; ".join(f"`{v}` = {', '.join(VARIANT_SETTINGS[v].settings)}" for v in present
                    if v in VARIANT_SETTINGS) + ".",
        "",
        report.markdown_table(groups),
        "",
        "Claims of the paper at this scale (rule: a difference is 'within noise' when "
        "|Δ| <= 2 se of the difference of means over seeds, so 2 se is the smallest "
        "difference the seeds can detect; every test is repeated with the fixed random "
        "mask in the method's place, and a verdict the random mask passes too is NOT "
        "DISCRIMINATING):",
        "",
        *[f"- {c}" for c in report.claims(groups)],
        *sections,
        "",
        *[f"- {n}" for n in notes],
        "",
    ])
    with atomic_path(out / REPORT_FILE) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return text
