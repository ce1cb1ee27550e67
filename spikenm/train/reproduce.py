"""``spikenm reproduce``: a grid of methods x patterns x seeds on shipped data, a markdown
table, plots and plain verdicts on the paper's claims (see `spikenm.train.report`).

Every run of a grid shares the data, network, initialization per seed, step budget and
weight optimizer (SPEC S6).  Every finished run is saved at once (atomically) in
``OUT/runs.json``, keyed by its whole configuration: running a grid again with the same
``--out`` reuses every run whose configuration is already there (whichever grid it came
from), so an interrupted grid continues where it stopped and a larger grid reruns only
the new cells.  ``OUT/results.json`` holds exactly the runs of one grid and is written
only when that grid is complete, so it is never replaced by a partial grid; the report
and plots are made from the same runs.  The saved runs are measurements of the code that
made them: delete ``OUT`` (or use another) to measure again after changing the code.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from . import report
from .config import TrainConfig, config_to_dict, load_config
from .loop import train

@dataclass(frozen=True)
class Variant:
    """A column of the grid: configuration settings (``section.key=value``) and whether it
    is run per pattern (a dense baseline is run once per seed)."""

    settings: tuple[str, ...]
    patterned: bool = True


VARIANT_SETTINGS: dict[str, Variant] = {
    "dense": Variant(("sparsity.method=dense",), patterned=False),
    "spikenm": Variant(("sparsity.method=spikenm", "eid.enabled=true")),
    "spikenm-noeid": Variant(("sparsity.method=spikenm", "eid.enabled=false")),
    "srste": Variant(("sparsity.method=srste",)),
    "asp": Variant(("sparsity.method=asp",)),
    "maskllm": Variant(("sparsity.method=maskllm",)),
    "random": Variant(("sparsity.method=random",)),
}
"""Grid variant -> its settings (the report's labels, `spikenm.train.report`)."""
VARIANTS = tuple(VARIANT_SETTINGS)


@dataclass(frozen=True)
class Grid:
    """What `run_grid` runs: ``variants`` x ``patterns`` x ``seeds`` (dense once per seed),
    each with ``overrides`` (``section.key=value``) on top of the defaults."""

    name: str
    data: str
    seeds: tuple[int, ...]
    patterns: tuple[str, ...]
    variants: tuple[str, ...] = VARIANTS
    overrides: tuple[str, ...] = ()


QUICK = Grid("quick", "digits", (0, 1, 2), ("2:4", "1:4", "2:8", "1:8"),
             overrides=("optim.epochs=15", "model.hidden=128,128,128"))
"""75 short runs on the 8x8 digits: the README's main check (about a minute on 2 cores)."""

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


def run_key(cfg: TrainConfig) -> str:
    """The key under which a run is saved and reused: its whole configuration as JSON."""
    return json.dumps(config_to_dict(cfg), sort_keys=True)


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def run_grid(grid: Grid, backend: str, out_dir: str | Path, overrides: tuple[str, ...] = (),
             stream: TextIO | None = None) -> list[dict[str, Any]]:
    """Run (or continue) ``grid``; returns one record per cell.  Runs already saved in
    ``OUT/runs.json`` with the same configuration are reused, not rerun.  One progress
    line per cell goes to ``stream`` when given."""
    out = Path(out_dir)
    runs_path = out / RUNS_FILE
    saved = _load_runs(runs_path)
    key = json.loads(json.dumps({"grid": asdict(grid), "backend": backend,
                                 "overrides": list(overrides)}))
    todo = cells(grid)
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, (variant, pattern, seed) in enumerate(todo):
        cfg = run_config(grid, variant, pattern, seed, backend, overrides)
        cell_key = run_key(cfg)
        reused = cell_key in saved
        if reused:
            run = dict(saved[cell_key], variant=variant, pattern=pattern, seed=seed)
        else:
            result = train(cfg, stream=None)
            s = result.summary
            flips = [[r["step"], r["flip_rate"]] for r in result.records
                     if r.get("type") == "train" and r.get("flip_rate") is not None]
            run = {"variant": variant, "pattern": pattern, "seed": seed,
                   "test_acc": s["test_acc"], "flip_rate": s["flip_rate"],
                   "firing_rates": s["firing_rates"], "seconds": s["seconds"],
                   "flip_history": flips, "layers": s["layers"],
                   "config": json.loads(cell_key)}
            saved[cell_key] = run
            _write_json(runs_path, {"runs": list(saved.values())})
        runs.append(run)
        if stream is not None:
            flip = "" if run["flip_rate"] is None else f"  flip {run['flip_rate']:.4f}"
            how = "saved run reused" if reused else f"{run['seconds']:.1f} s"
            stream.write(f"[{i + 1}/{len(todo)}] {variant:<14} {pattern:<5} seed {seed}  "
                         f"test acc {run['test_acc']:.4f}{flip}  {how}  "
                         f"(elapsed {time.perf_counter() - t0:.0f} s)\n")
            stream.flush()
    _write_json(out / RESULTS_FILE, {"key": key, "runs": runs})
    return runs


def write_report(grid: Grid, runs: list[dict[str, Any]], backend: str, out_dir: str | Path,
                 command: str, overrides: tuple[str, ...] = ()) -> str:
    """Markdown report (table, claims, plot notes) written to ``OUT/report.md``."""
    out = Path(out_dir)
    groups = report.group_runs(runs)
    notes = report.write_plots(runs, groups, out)
    text = "\n".join([
        f"# spikenm reproduce ({grid.name})",
        "",
        f"Command: `{command}`",
        "",
        f"Data `{grid.data}`, backend `{backend}`, seeds {list(grid.seeds)}, settings "
        f"{', '.join(grid.overrides + tuple(overrides)) or 'defaults'}; every method has the "
        f"same budget.",
        "",
        report.markdown_table(groups),
        "",
        "Claims of the paper at this scale (rule: a difference is 'within noise' when "
        "|Δ| <= 2 se of the difference of means over seeds):",
        "",
        *[f"- {c}" for c in report.claims(groups)],
        "",
        *[f"- {n}" for n in notes],
        "",
    ])
    (out / "report.md").write_text(text, encoding="utf-8")
    return text
