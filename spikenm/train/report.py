"""Aggregation, markdown table, claim verdicts and plots for ``spikenm reproduce``.

A *run* is the summary of one `spikenm.train.loop.train` call as `spikenm.train.reproduce`
saves it: ``variant`` (the grid variant, e.g. ``spikenm`` or ``spikenm-noeid``),
``pattern``, ``seed``, ``test_acc``, ``flip_rate`` (sampled masks, S5.9),
``argmax_flip_rate`` and ``inclusion_variance`` (S5.9a; absent or None when the run did
not measure them), ``firing_rates``, ``seconds``, ``flip_history`` and
``variance_history`` (lists of ``[step, value]``).

Statistics use the sample standard deviation (``ddof = 1``) over seeds.  A verdict rests
on tests of a difference of means ``d = mean(a) - mean(b)`` with
``se = sqrt(s_a^2 / k_a + s_b^2 / k_b)``: ``d`` is *within noise* when ``|d| <= 2 se``,
and ``2 se`` is the smallest difference the seeds can detect.  With fewer than two seeds
in a group, or no spread at all (``se = 0``), nothing is decided.  Every test is run
again with the fixed random mask (variant ``random``, same pattern) in place of the
method: when the random mask passes too, the test cannot tell a learned mask from a
random one and the verdict says so (``NOT DISCRIMINATING``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

VARIANT_ORDER = ("dense", "spikenm", "spikenm-noeid", "spikenm-global", "spikenm-block",
                 "spikenm-gated", "spikenm-inclusion", "spikenm-signed", "srste", "asp",
                 "maskllm", "random")
"""Order of the variants in tables and plots (`spikenm.train.reproduce.VARIANT_SETTINGS`);
other variant names follow in alphabetical order."""
CONTROL = "random"
"""The variant every test is repeated with (a fixed random mask)."""
BASELINES = ("srste", "asp", "maskllm")
"""The comparison methods of claim (c)."""

REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT reproduced"
NOT_DISCRIMINATING = "NOT DISCRIMINATING"
NOT_DECIDED = "NOT DECIDED: not enough seeds"
PARTLY = "PARTLY"


@dataclass(frozen=True)
class Metric:
    """A per-run number the verdicts compare: the run key, its label and how it prints
    (``scale`` times the value with ``digits`` decimals and ``unit``)."""

    key: str
    label: str
    scale: float = 1.0
    digits: int = 4
    unit: str = ""

    def format(self, value: float, signed: bool = False, unit: bool = True) -> str:
        """``value`` scaled, never rounded to a misleading zero: a nonzero value below the
        last printed decimal is shown with two significant digits."""
        v = self.scale * value
        sign = "+" if signed else ""
        if v != 0 and abs(v) < 0.5 * 10.0 ** -self.digits:
            text = f"{v:{sign}.2g}"
        else:
            text = f"{v:{sign}.{self.digits}f}"
        return text + (self.unit if unit else "")


ACCURACY = Metric("test_acc", "test accuracy", 100.0, 2, " pts")
FLIP = Metric("flip_rate", "sampled flip rate")
ARGMAX_FLIP = Metric("argmax_flip_rate", "argmax flip rate")
INCLUSION_VARIANCE = Metric("inclusion_variance", "inclusion variance")
METRICS = (ACCURACY, FLIP, ARGMAX_FLIP, INCLUSION_VARIANCE)


def _number(run: Mapping[str, Any], key: str) -> float | None:
    """``run[key]`` as a float, None when absent or None.

    Raises
    ------
    TypeError
        When the value is not a number.
    """
    value = run.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"run {run.get('variant')!r} {run.get('pattern')!r} seed "
                        f"{run.get('seed')!r}: {key}={value!r}, expected a number or None")
    return float(value)


@dataclass(frozen=True)
class Group:
    """All seeds of one (variant, pattern): per metric key (`METRICS`) the values of the
    runs that have it, mean firing rate and seconds per run."""

    variant: str
    pattern: str
    values: Mapping[str, tuple[float, ...]]
    rates: tuple[float, ...]
    seconds: tuple[float, ...]

    def of(self, metric: Metric) -> tuple[float, ...]:
        """The per-seed values of ``metric`` (empty when no run measured it)."""
        return self.values.get(metric.key, ())

    @property
    def accs(self) -> tuple[float, ...]:
        return self.of(ACCURACY)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accs))

    @property
    def std(self) -> float:
        return _std(self.accs)


def _std(xs: Sequence[float]) -> float:
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def group_runs(runs: list[dict[str, Any]]) -> dict[tuple[str, str], Group]:
    """Runs grouped by ``(variant, pattern)``."""
    table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        table.setdefault((r["variant"], r["pattern"]), []).append(r)
    out = {}
    for key, rs in table.items():
        values = {}
        for m in METRICS:
            xs = tuple(x for x in (_number(r, m.key) for r in rs) if x is not None)
            if xs:
                values[m.key] = xs
        out[key] = Group(key[0], key[1], values,
                         tuple(float(np.mean(r["firing_rates"])) for r in rs),
                         tuple(r["seconds"] for r in rs))
    return out


def variant_order(names: Sequence[str] | set[str]) -> list[str]:
    """``names`` in `VARIANT_ORDER`, unknown ones after it alphabetically (none dropped)."""
    names = set(names)
    return [v for v in VARIANT_ORDER if v in names] + sorted(names - set(VARIANT_ORDER))


def _difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``(mean(a) - mean(b), se)``; ``se`` is NaN when a group has fewer than 2 values or
    neither has any spread (nothing to measure the noise by)."""
    if not a or not b:
        raise ValueError(f"a difference of means needs values in both groups, got "
                         f"{len(a)} and {len(b)}")
    d = float(np.mean(a) - np.mean(b))
    if min(len(a), len(b)) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return d, math.nan
    se = math.sqrt(_std(a) ** 2 / len(a) + _std(b) ** 2 / len(b))
    return d, (se if se > 0 else math.nan)


def verdict(delta: float, se: float) -> str:
    """``above``/``below`` when ``|delta| > 2 se``, else ``within noise``;
    ``not enough seeds`` when ``se`` is NaN (fewer than 2 seeds in a group, or no
    spread)."""
    if math.isnan(se):
        return "not enough seeds"
    if abs(delta) <= 2 * se:
        return "within noise"
    return "above" if delta > 0 else "below"


RULES = {
    "not below": lambda d, se: d >= -2 * se,
    "above": lambda d, se: d > 2 * se,
    "below": lambda d, se: d < -2 * se,
}
"""A test's rule on ``(d, se)``: at least within noise, clearly above, clearly below."""


@dataclass(frozen=True)
class Comparison:
    """One difference of means of ``metric`` between ``a`` and ``b`` under ``rule``
    (`RULES`); ``passed`` is None when nothing is decided (``se`` NaN)."""

    a: str
    b: str
    metric: Metric
    rule: str
    means: tuple[float, float]
    se: float
    seeds: tuple[int, int]

    @property
    def delta(self) -> float:
        return self.means[0] - self.means[1]

    @property
    def passed(self) -> bool | None:
        return None if math.isnan(self.se) else bool(RULES[self.rule](self.delta, self.se))

    def power(self) -> str:
        """The smallest difference the seeds can detect (2 se) with the seed counts."""
        k = f"{self.seeds[0]} vs {self.seeds[1]} seeds"
        if math.isnan(self.se):
            return (f"no detectable difference with {k} (needs 2 or more seeds per group "
                    f"and some spread)")
        return f"detectable difference 2se {self.metric.format(2 * self.se)} with {k}"

    def describe(self) -> str:
        m = self.metric
        return (f"{self.a} {m.format(self.means[0], unit=False)} vs {self.b} "
                f"{m.format(self.means[1], unit=False)} (Δ {m.format(self.delta, signed=True)}, "
                f"{verdict(self.delta, self.se)}; {self.power()})")


def compare(groups: Mapping[tuple[str, str], Group], a: tuple[str, str],
             b: tuple[str, str], metric: Metric, rule: str) -> Comparison:
    """The `Comparison` of ``groups[a]`` against ``groups[b]`` (both must have ``metric``)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}, expected one of {tuple(RULES)}")
    xa, xb = groups[a].of(metric), groups[b].of(metric)
    _, se = _difference(xa, xb)
    return Comparison(_name(a), _name(b), metric, rule,
                      (float(np.mean(xa)), float(np.mean(xb))), se, (len(xa), len(xb)))


def _name(key: tuple[str, str]) -> str:
    return key[0] if key[1] == "dense" else f"{key[0]} {key[1]}"


@dataclass(frozen=True)
class Check:
    """A test of the method and the same test with the random mask in its place
    (``control`` None when the grid has no random-mask value, ``why`` says why)."""

    label: str
    main: Comparison
    control: Comparison | None
    why: str = ""

    @property
    def state(self) -> str:
        """`REPRODUCED`, `NOT_REPRODUCED`, `NOT_DISCRIMINATING` or `NOT_DECIDED`."""
        if self.main.passed is None:
            return NOT_DECIDED
        if not self.main.passed:
            return NOT_REPRODUCED
        if self.control is None:
            return REPRODUCED
        if self.control.passed is None:
            return NOT_DECIDED
        return NOT_DISCRIMINATING if self.control.passed else REPRODUCED

    def control_text(self) -> str:
        if self.control is None:
            return f"random-mask control not checked ({self.why})"
        c = self.control
        how = {True: "passes the same test, so this test cannot tell a learned mask from "
                     "a random one",
               False: "fails it", None: "not decided"}[c.passed]
        return f"random-mask control {how}: {c.describe()}"

    def describe(self, state: bool = True) -> str:
        """The test, its power and the control, headed by ``label`` and the `state`
        (``state=False``: without them, for a verdict resting on this check alone)."""
        head = f"{self.label}: {self.state}, " if state else ""
        return f"{head}{self.main.describe()}; {self.control_text()}"


def check(groups: Mapping[tuple[str, str], Group], label: str, a: tuple[str, str],
          b: tuple[str, str], metric: Metric, rule: str) -> Check:
    """`compare` of ``a`` against ``b``, and of the random mask at ``a``'s pattern
    against ``b`` when the grid has it with ``metric``."""
    main = compare(groups, a, b, metric, rule)
    ctrl_key = (CONTROL, a[1])
    ctrl = groups.get(ctrl_key)
    if ctrl is None:
        return Check(label, main, None, f"the grid has no {_name(ctrl_key)}")
    if not ctrl.of(metric):
        return Check(label, main, None,
                     f"{_name(ctrl_key)} has no {metric.label}: a fixed mask is not sampled")
    return Check(label, main, compare(groups, ctrl_key, b, metric, rule))


def combine(checks: Sequence[Check]) -> str:
    """The verdict over several checks: `NOT_DECIDED` when any is undecided, else
    `REPRODUCED` (all reproduced), `NOT_DISCRIMINATING` (all passed, some only as well as
    the random mask), `NOT_REPRODUCED` (none passed) or `PARTLY` with the counts."""
    if not checks:
        raise ValueError("combine needs at least one check")
    states = [c.state for c in checks]
    if NOT_DECIDED in states:
        return NOT_DECIDED
    if all(s == REPRODUCED for s in states):
        return REPRODUCED
    if NOT_REPRODUCED not in states:
        return NOT_DISCRIMINATING
    if all(s == NOT_REPRODUCED for s in states):
        return NOT_REPRODUCED
    counts = [f"{states.count(s)} of {len(states)} {s.lower()}"
              for s in (REPRODUCED, NOT_DISCRIMINATING, NOT_REPRODUCED) if s in states]
    return f"{PARTLY} ({', '.join(counts)})"


def _patterns(groups: Mapping[tuple[str, str], Group]) -> list[str]:
    pats = sorted({p for (_, p) in groups if p != "dense"},
                  key=lambda s: (int(s.split(":")[0]) / int(s.split(":")[1]), s), reverse=True)
    return pats


def _mean_or_dash(xs: Sequence[float]) -> str:
    return f"{np.mean(xs):.4f}" if xs else "–"


def markdown_table(groups: Mapping[tuple[str, str], Group]) -> str:
    """One row per (variant, pattern): accuracy mean +- std, delta to dense, sampled flip
    rate, argmax flip rate, inclusion variance ('–' when not measured), firing rate."""
    dense = groups.get(("dense", "dense"))
    lines = ["| method | pattern | test acc (mean ± std) | seeds | Δ vs dense | "
             "sampled flip | argmax flip | incl. var. | firing rate | s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    variants = variant_order({v for v, _ in groups})
    keys = ([("dense", "dense")] if dense else []) + [
        (v, p) for p in ["dense"] + _patterns(groups) for v in variants
        if (v, p) in groups and (v, p) != ("dense", "dense")]
    for key in keys:
        g = groups[key]
        delta = "–" if dense is None or g is dense else f"{100 * (g.mean - dense.mean):+.2f}"
        lines.append(
            f"| {g.variant} | {g.pattern} | {100 * g.mean:.2f} ± {100 * g.std:.2f} | "
            f"{len(g.accs)} | {delta} | {_mean_or_dash(g.of(FLIP))} | "
            f"{_mean_or_dash(g.of(ARGMAX_FLIP))} | {_mean_or_dash(g.of(INCLUSION_VARIANCE))} | "
            f"{np.mean(g.rates):.3f} | {np.mean(g.seconds):.1f} |")
    return "\n".join(lines)


def _claim(tag: str, title: str, checks: Sequence[Check], status: str | None = None,
           note: str = "") -> str:
    status = combine(checks) if status is None else status
    if len(checks) == 1:
        return f"{tag} {title}: {status}{note} -- {checks[0].describe(state=False)}."
    return f"{tag} {title}: {status}{note}." + "".join(
        f"\n  - {c.describe()}." for c in checks)


def claims(groups: Mapping[tuple[str, str], Group], method: str = "spikenm",
           reference: str = "spikenm-noeid") -> list[str]:
    """Plain verdicts on the paper's claims for ``method`` (a grid variant; ``reference``
    is the same method without EID), each with the power of its tests and the
    random-mask control (see the module doc):

    (a) 2:4 accuracy within noise of dense or above; (b1) EID lowers the sampling variance
    (``inclusion_variance`` and ``argmax_flip_rate`` clearly below ``reference``'s at every
    pattern; the sampled ``flip_rate`` where the runs lack both, with a note); (b2) EID
    helps accuracy at ``m >= 8`` (clearly above ``reference``); (c) accuracy at least
    within noise of SR-STE, ASP and MaskLLM at every pattern and clearly above at least
    once (all passing but none clearly above is `PARTLY`).
    """
    out: list[str] = []
    dense = ("dense", "dense")
    pats = [p for p in _patterns(groups) if (method, p) in groups]
    # (a)
    if dense in groups and (method, "2:4") in groups:
        c = check(groups, "2:4", (method, "2:4"), dense, ACCURACY, "not below")
        out.append(_claim("(a)", "2:4 accuracy within noise of dense or above", [c]))
    else:
        out.append(f"(a) not tested: the grid lacks dense or {method} 2:4.")
    # (b1)
    paired = [p for p in pats if (reference, p) in groups]
    b1: list[Check] = []
    fallback: list[str] = []
    for p in paired:
        a, b = (method, p), (reference, p)
        found = [m for m in (INCLUSION_VARIANCE, ARGMAX_FLIP)
                 if groups[a].of(m) and groups[b].of(m)]
        if not found and groups[a].of(FLIP) and groups[b].of(FLIP):
            found = [FLIP]
            fallback.append(p)
        b1 += [check(groups, f"{p} {m.label}", a, b, m, "below") for m in found]
    if b1:
        note = "" if not fallback else (
            f"; note: the runs at {', '.join(fallback)} lack inclusion_variance and "
            f"argmax_flip_rate, so the sampled flip rate is compared there (it also counts "
            f"the draw's noise)")
        out.append(_claim("(b1)", f"EID lowers the mask flip rate and the inclusion "
                                  f"variance (the sampling variance: {method} clearly below "
                                  f"{reference})", b1, note=note))
    else:
        out.append(f"(b1) not tested: the grid lacks {method} and {reference} with a "
                   f"variance or flip measurement at the same pattern.")
    # (b2)
    b2 = [check(groups, p, (method, p), (reference, p), ACCURACY, "above")
          for p in paired if int(p.split(":")[1]) >= 8]
    if b2:
        out.append(_claim("(b2)", f"EID helps accuracy at high sparsity (m >= 8: {method} "
                                  f"clearly above {reference})", b2))
    else:
        out.append(f"(b2) not tested: the grid has no pattern with m >= 8 run with "
                   f"{method} and {reference}.")
    # (c)
    cc = [check(groups, f"{p} vs {o}", (method, p), (o, p), ACCURACY, "not below")
          for p in pats for o in BASELINES if (o, p) in groups]
    if cc:
        above = sum(1 for c in cc if c.main.passed is not None
                    and RULES["above"](c.main.delta, c.main.se))
        status = combine(cc)
        if status == REPRODUCED and not above:
            status = f"{PARTLY} (at least as good everywhere, clearly above nowhere)"
        out.append(_claim("(c)", f"{method} at least as good as SR-STE/ASP/MaskLLM at equal "
                                 f"pattern and clearly above at least once", cc, status,
                          f"; {above} of {len(cc)} comparisons clearly above"))
    else:
        out.append("(c) not tested: the grid lacks the baselines.")
    return out


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure on the Agg canvas (no display, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _history_plot(runs: list[dict[str, Any]], key: str, pats: list[str], ylabel: str,
                  title: str, path: Path) -> bool:
    """Mean over seeds of each run's ``key`` history (``[step, value]`` lists), one panel
    per pattern and one line per variant; False (nothing written) when no run has it."""
    have = [r for r in runs if r.get(key)]
    if not have:
        return False
    shown = [p for p in pats if any(r["pattern"] == p for r in have)]
    fig, axes = _figure(1.0 + 3.6 * len(shown), 3.6, len(shown))
    colors = {v: f"C{i}" for i, v in enumerate(variant_order({r["variant"] for r in have}))}
    for ax, p in zip(axes, shown):
        for v, color in colors.items():
            hist = [r[key] for r in have if r["variant"] == v and r["pattern"] == p]
            if not hist:
                continue
            length = min(len(h) for h in hist)
            steps = [hist[0][i][0] for i in range(length)]
            mean = np.mean([[h[i][1] for i in range(length)] for h in hist], axis=0)
            ax.plot(steps, mean, color=color, marker="o", markersize=2,
                    label=f"{v} ({len(hist)} seeds)")
        ax.set_title(p)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def write_plots(runs: list[dict[str, Any]], groups: Mapping[tuple[str, str], Group],
                out_dir: Path) -> list[str]:
    """Write ``accuracy.png`` and ``flip_rate.png`` (and ``variance.png`` when the runs
    have an ``inclusion_variance`` history) in ``out_dir``; returns notes naming them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pats = _patterns(groups)
    variants = [v for v in variant_order({v for v, _ in groups})
                if v != "dense" and any((v, p) in groups for p in pats)]
    fig, axes = _figure(2.0 + (0.9 + 0.25 * len(variants)) * len(pats), 4.2)
    ax = axes[0]
    width = 0.8 / max(1, len(variants))
    for j, v in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i, p in enumerate(pats)
              if (v, p) in groups]
        gs = [groups[(v, p)] for p in pats if (v, p) in groups]
        ax.bar(xs, [100 * g.mean for g in gs], width, yerr=[100 * g.std for g in gs],
               label=v, capsize=2, color=f"C{j % 10}", hatch="//" if j >= 10 else None)
    dense = groups.get(("dense", "dense"))
    if dense is not None:
        ax.axhline(100 * dense.mean, color="k", linestyle="--", label="dense")
    ax.set_xticks(range(len(pats)), pats)
    ax.set_ylabel("test accuracy (%)")
    lows = [100 * g.mean - 100 * g.std for g in groups.values()]
    ax.set_ylim(max(0.0, min(lows) - 3), 100)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("accuracy per method and pattern (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=120)
    written = [out_dir / "accuracy.png"]
    notes = []
    if not _history_plot(runs, "flip_history", pats, "sampled mask flip rate",
                         "sampled mask flip rate during the search phase",
                         out_dir / "flip_rate.png"):
        fig, axes = _figure(6, 4)
        axes[0].text(0.5, 0.5, "no run of this grid samples its masks", ha="center")
        axes[0].set_axis_off()
        fig.savefig(out_dir / "flip_rate.png", dpi=120)
        notes.append("flip_rate.png is empty: no run of this grid samples its masks")
    written.append(out_dir / "flip_rate.png")
    if _history_plot(runs, "variance_history", pats, "inclusion variance",
                     "inclusion variance (S5.9a) during the search phase",
                     out_dir / "variance.png"):
        written.append(out_dir / "variance.png")
    else:
        notes.append("variance.png not written: no run has an inclusion_variance history")
    return [f"plots written: {', '.join(str(p) for p in written)}"] + notes
