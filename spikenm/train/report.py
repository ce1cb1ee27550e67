"""Aggregation, markdown table, claim verdicts and plots for ``spikenm reproduce``.

A *run* is the summary dict of one `spikenm.train.loop.train` call plus ``variant`` (the
method label, e.g. ``spikenm`` or ``spikenm-noeid``) and ``flip_history`` (a list of
``[step, flip_rate]``).  Statistics use the sample standard deviation (``ddof = 1``) over
seeds; a difference of means ``d`` between two groups counts as *within noise* when
``|d| <= 2 se`` with ``se = sqrt(s1^2 / k1 + s2^2 / k2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARIANT_ORDER = ("dense", "spikenm", "spikenm-noeid", "srste", "asp", "maskllm", "random")


@dataclass(frozen=True)
class Group:
    """All seeds of one (variant, pattern)."""

    variant: str
    pattern: str
    accs: tuple[float, ...]
    flips: tuple[float, ...]
    rates: tuple[float, ...]
    seconds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accs))

    @property
    def std(self) -> float:
        return float(np.std(self.accs, ddof=1)) if len(self.accs) > 1 else 0.0


def group_runs(runs: list[dict[str, Any]]) -> dict[tuple[str, str], Group]:
    """Runs grouped by ``(variant, pattern)``."""
    table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        table.setdefault((r["variant"], r["pattern"]), []).append(r)
    out = {}
    for key, rs in table.items():
        out[key] = Group(key[0], key[1], tuple(r["test_acc"] for r in rs),
                         tuple(r["flip_rate"] for r in rs if r["flip_rate"] is not None),
                         tuple(float(np.mean(r["firing_rates"])) for r in rs),
                         tuple(r["seconds"] for r in rs))
    return out


def compare(a: Group, b: Group) -> tuple[float, float]:
    """``(mean(a) - mean(b), se)`` of the difference of means; ``se`` is NaN when a group
    has fewer than 2 seeds (no spread to compare against)."""
    if min(len(a.accs), len(b.accs)) < 2:
        return a.mean - b.mean, math.nan
    se = math.sqrt(a.std ** 2 / len(a.accs) + b.std ** 2 / len(b.accs))
    return a.mean - b.mean, se


def verdict(delta: float, se: float) -> str:
    """``above``/``below`` when ``|delta| > 2 se``, else ``within noise``;
    ``not enough seeds`` when ``se`` is NaN (`compare` with a single seed)."""
    if math.isnan(se):
        return "not enough seeds"
    if abs(delta) <= 2 * se:
        return "within noise"
    return "above" if delta > 0 else "below"


def _power(se: float) -> str:
    """The smallest difference of means the seeds can tell from noise (``2 se``)."""
    return "not enough seeds (2 or more per group)" if math.isnan(se) else (
        f"detectable difference 2se {200 * se:.2f} pts")


def _patterns(groups: dict[tuple[str, str], Group]) -> list[str]:
    pats = sorted({p for (_, p) in groups if p != "dense"},
                  key=lambda s: (int(s.split(":")[0]) / int(s.split(":")[1]), s), reverse=True)
    return pats


def markdown_table(groups: dict[tuple[str, str], Group]) -> str:
    """One row per (variant, pattern): accuracy mean +- std, delta to dense, flip, firing."""
    dense = groups.get(("dense", "dense"))
    lines = ["| method | pattern | test acc (mean ± std) | seeds | Δ vs dense | "
             "mask flip rate | firing rate | s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    keys = ([("dense", "dense")] if dense else []) + [
        (v, p) for p in _patterns(groups) for v in VARIANT_ORDER if (v, p) in groups]
    for key in keys:
        g = groups[key]
        delta = "–" if dense is None or g is dense else f"{100 * (g.mean - dense.mean):+.2f}"
        flip = f"{np.mean(g.flips):.4f}" if g.flips else "–"
        lines.append(
            f"| {g.variant} | {g.pattern} | {100 * g.mean:.2f} ± {100 * g.std:.2f} | "
            f"{len(g.accs)} | {delta} | {flip} | {np.mean(g.rates):.3f} | "
            f"{np.mean(g.seconds):.1f} |")
    return "\n".join(lines)


def claims(groups: dict[tuple[str, str], Group]) -> list[str]:
    """Plain statements of which paper claims this grid reproduced (see module doc)."""
    out: list[str] = []
    dense = groups.get(("dense", "dense"))
    sp = {p: groups[("spikenm", p)] for p in _patterns(groups) if ("spikenm", p) in groups}
    # (a)
    if dense is not None and "2:4" in sp:
        d, se = compare(sp["2:4"], dense)
        control = groups.get(("random", "2:4"))
        note = ""
        if math.isnan(se):
            status = "NOT DECIDED (not enough seeds)"
        elif d < -2 * se:
            status = "NOT reproduced"
        else:
            status = "REPRODUCED"
            if control is not None:
                dc, sec = compare(control, dense)
                if not math.isnan(sec) and dc >= -2 * sec:
                    status = "NOT DISCRIMINATING"
                    note = (f"; the random-mask control passes the same test (random 2:4 "
                            f"Δ {100 * dc:+.2f} pts, {verdict(dc, sec)}), so this grid "
                            f"cannot tell a learned mask from a random one")
                elif not math.isnan(sec):
                    note = (f"; the random-mask control fails it (random 2:4 Δ "
                            f"{100 * dc:+.2f} pts, {verdict(dc, sec)})")
        out.append(f"(a) 2:4 accuracy within noise of dense or above: {status} -- spikenm "
                   f"2:4 {100 * sp['2:4'].mean:.2f}% vs dense {100 * dense.mean:.2f}% "
                   f"(Δ {100 * d:+.2f} pts, {_power(se)}; {verdict(d, se)}){note}.")
    else:
        out.append("(a) not tested: the grid lacks dense or spikenm 2:4.")
    # (b)
    flip_rows, help_rows, flips_ok, helps = [], [], [], []
    for p, g in sp.items():
        ne = groups.get(("spikenm-noeid", p))
        if ne is None:
            continue
        if g.flips and ne.flips:
            f1, f0 = float(np.mean(g.flips)), float(np.mean(ne.flips))
            flips_ok.append(f1 < f0)
            flip_rows.append(f"{p}: {f1:.4f} vs {f0:.4f}")
        if int(p.split(":")[1]) >= 8:
            d, se = compare(g, ne)
            helps.append(not math.isnan(se) and d > 2 * se)
            help_rows.append(f"{p}: Δ {100 * d:+.2f} pts ({verdict(d, se)})")
    if flips_ok:
        lower = all(flips_ok)
        out.append(f"(b1) EID lowers the mask flip rate: "
                   f"{'REPRODUCED' if lower else ('PARTLY' if any(flips_ok) else 'NOT reproduced')}"
                   f" -- with vs without EID, " + "; ".join(flip_rows) + ".")
    else:
        out.append("(b1) not tested: the grid lacks spikenm with and without EID.")
    if helps:
        undecided = any("not enough seeds" in r for r in help_rows)
        out.append(f"(b2) EID helps accuracy at high sparsity (m >= 8): "
                   f"{'NOT DECIDED (not enough seeds)' if undecided else 'REPRODUCED' if all(helps) else ('PARTLY' if any(helps) else 'NOT reproduced')}"
                   f" -- with minus without EID, " + "; ".join(help_rows) + ".")
    else:
        out.append("(b2) not tested: the grid has no pattern with m >= 8 run with and "
                   "without EID.")
    # (c)
    rows, wins = [], []
    for p, g in sp.items():
        for other in ("srste", "asp", "maskllm"):
            o = groups.get((other, p))
            if o is None:
                continue
            d, se = compare(g, o)
            wins.append(not math.isnan(se) and d >= -2 * se)
            rows.append(f"{p} vs {other}: Δ {100 * d:+.2f} ({verdict(d, se)})")
    if rows:
        strict = sum(1 for r in rows if "(above)" in r)
        undecided = any("not enough seeds" in r for r in rows)
        out.append(f"(c) spikenm vs SR-STE/ASP/MaskLLM at equal pattern: "
                   f"{'NOT DECIDED (not enough seeds)' if undecided else 'REPRODUCED' if all(wins) and strict else ('PARTLY' if any(wins) else 'NOT reproduced')}"
                   f" (claim: at least as good; {strict} of {len(rows)} comparisons clearly "
                   f"above) -- " + "; ".join(rows) + ".")
    else:
        out.append("(c) not tested: the grid lacks the baselines.")
    return out


def write_plots(runs: list[dict[str, Any]], groups: dict[tuple[str, str], Group],
                out_dir: Path) -> list[str]:
    """``accuracy.png`` and ``flip_rate.png`` in ``out_dir``; returns notes (a note says
    so when matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["plots skipped: matplotlib is not installed (pip install 'spikenm[plots]')"]
    out_dir.mkdir(parents=True, exist_ok=True)
    pats = _patterns(groups)
    variants = [v for v in VARIANT_ORDER if v != "dense" and any((v, p) in groups for p in pats)]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(pats), 4))
    width = 0.8 / max(1, len(variants))
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i, p in enumerate(pats)
              if (v, p) in groups]
        gs = [groups[(v, p)] for p in pats if (v, p) in groups]
        ax.bar(xs, [100 * g.mean for g in gs], width, yerr=[100 * g.std for g in gs],
               label=v, capsize=2)
    dense = groups.get(("dense", "dense"))
    if dense is not None:
        ax.axhline(100 * dense.mean, color="k", linestyle="--", label="dense")
    ax.set_xticks(range(len(pats)), pats)
    ax.set_ylabel("test accuracy (%)")
    lows = [100 * g.mean - 100 * g.std for g in groups.values()]
    ax.set_ylim(max(0.0, min(lows) - 3), 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("accuracy per method and pattern (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, p in enumerate(pats):
        for v, style in (("spikenm", "-"), ("spikenm-noeid", "--")):
            hist = [r["flip_history"] for r in runs
                    if r["variant"] == v and r["pattern"] == p and r["flip_history"]]
            if not hist:
                continue
            length = min(len(h) for h in hist)
            steps = [hist[0][i][0] for i in range(length)]
            mean = np.mean([[h[i][1] for i in range(length)] for h in hist], axis=0)
            ax.plot(steps, mean, style, color=f"C{k}",
                    label=f"{p} {'EID' if v == 'spikenm' else 'no EID'}")
    ax.set_xlabel("step")
    ax.set_ylabel("mask flip rate")
    ax.set_title("mask flip rate during the search phase")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "flip_rate.png", dpi=120)
    plt.close(fig)
    return [f"plots written: {out_dir / 'accuracy.png'}, {out_dir / 'flip_rate.png'}"]
