"""Verdicts of `spikenm reproduce` state their power: every test prints the smallest
difference its seeds can detect and whether the random-mask control passes it; one seed
or no spread decides nothing; a verdict the random mask passes too is not discriminating.
Also the table, the plots and the report made from ``results.json``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spikenm.train import report, reproduce
from spikenm.train.config import EIDConfig

DENSE = ("dense", "dense")


def _runs(table: dict[tuple[str, str], list[float]],
          extra: dict[tuple[str, str], dict[str, list[float]]] | None = None) -> list[dict]:
    """Synthetic runs: accuracies per (variant, pattern) and optional per-seed metrics."""
    extra = extra or {}
    out = []
    for (v, p), accs in table.items():
        for i, a in enumerate(accs):
            run = {"variant": v, "pattern": p, "seed": i, "test_acc": a, "flip_rate": None,
                   "firing_rates": [0.1, 0.2], "seconds": 1.0}
            for key, xs in extra.get((v, p), {}).items():
                run[key] = xs[i]
            out.append(run)
    return out


def _claim(table, tag: str, extra=None, method: str = "spikenm") -> str:
    lines = report.claims(report.group_runs(_runs(table, extra)), method=method)
    return next(line for line in lines if line.startswith(tag))


def _two_se(a: list[float], b: list[float]) -> float:
    return 2 * math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


# --- claim (a): each state, the detectable difference, the control -------------------

BASE = {DENSE: [0.950, 0.952, 0.948], ("spikenm", "2:4"): [0.951, 0.949, 0.950]}


def test_a_reproduced_states_its_power_and_the_failing_control() -> None:
    table = {**BASE, ("random", "2:4"): [0.90, 0.91, 0.905]}
    a = _claim(table, "(a)")
    assert a.startswith("(a) 2:4 accuracy within noise of dense or above: REPRODUCED --")
    power = 100 * _two_se(BASE[("spikenm", "2:4")], BASE[DENSE])
    assert f"detectable difference 2se {power:.2f} pts with 3 vs 3 seeds" in a
    assert "random-mask control fails it: random 2:4 90.50 vs dense 95.00" in a
    control_power = 100 * _two_se(table[("random", "2:4")], BASE[DENSE])
    assert f"2se {control_power:.2f} pts with 3 vs 3 seeds" in a


def test_a_random_mask_that_passes_makes_the_verdict_not_discriminating() -> None:
    table = {**BASE, ("random", "2:4"): [0.949, 0.951, 0.950]}
    a = _claim(table, "(a)")
    assert a.startswith("(a) 2:4 accuracy within noise of dense or above: NOT DISCRIMINATING")
    assert "REPRODUCED" not in a
    assert "random-mask control passes the same test" in a and "detectable difference 2se" in a


def test_a_not_reproduced_when_clearly_below_dense() -> None:
    table = {**BASE, ("spikenm", "2:4"): [0.90, 0.91, 0.905],
             ("random", "2:4"): [0.90, 0.91, 0.905]}
    a = _claim(table, "(a)")
    assert ": NOT reproduced --" in a and "(Δ -4.50 pts, below;" in a


def test_one_seed_is_not_enough_and_never_gives_a_zero_2se() -> None:
    table = {DENSE: [0.95], ("spikenm", "2:4"): [0.90], ("srste", "2:4"): [0.93],
             ("spikenm-noeid", "2:8"): [0.9], ("spikenm", "2:8"): [0.91],
             ("random", "2:4"): [0.8]}
    lines = report.claims(report.group_runs(_runs(table)))
    for tag in ("(a)", "(b2)", "(c)"):
        line = next(x for x in lines if x.startswith(tag))
        assert "NOT DECIDED: not enough seeds" in line, line
        assert "2se 0" not in line and "no detectable difference with 1 vs 1 seeds" in line


def test_zero_spread_decides_nothing() -> None:
    table = {DENSE: [0.95, 0.95, 0.95], ("spikenm", "2:4"): [0.90, 0.90, 0.90]}
    a = _claim(table, "(a)")
    assert "NOT DECIDED: not enough seeds" in a and "2se 0" not in a
    assert "no detectable difference with 3 vs 3 seeds" in a


def test_a_control_with_one_seed_leaves_a_passing_verdict_undecided() -> None:
    a = _claim({**BASE, ("random", "2:4"): [0.90]}, "(a)")
    assert "NOT DECIDED: not enough seeds" in a and "random-mask control not decided" in a


def test_a_without_control_says_it_was_not_checked() -> None:
    a = _claim(BASE, "(a)")
    assert ": REPRODUCED --" in a
    assert "random-mask control not checked (the grid has no random 2:4)" in a


# --- claim (b1): variance metrics, the flip-rate fallback, the control ---------------

B1_ACC = {("spikenm", "2:4"): [0.9, 0.9, 0.91], ("spikenm-noeid", "2:4"): [0.9, 0.91, 0.9]}


def test_b1_compares_inclusion_variance_and_argmax_flip_rate() -> None:
    extra = {("spikenm", "2:4"): {"inclusion_variance": [0.10, 0.11, 0.12],
                                  "argmax_flip_rate": [0.010, 0.012, 0.011],
                                  "flip_rate": [0.9, 0.9, 0.9]},
             ("spikenm-noeid", "2:4"): {"inclusion_variance": [0.20, 0.21, 0.22],
                                        "argmax_flip_rate": [0.011, 0.010, 0.012],
                                        "flip_rate": [0.1, 0.1, 0.2]}}
    b1 = _claim({**B1_ACC, ("random", "2:4"): [0.8, 0.81, 0.8]}, "(b1)", extra)
    assert b1.startswith("(b1) EID lowers the mask flip rate and the inclusion variance")
    # the variance is clearly lower, the argmax flip rate is not: PARTLY, with counts
    assert "PARTLY (1 of 2 reproduced, 1 of 2 not reproduced)" in b1
    assert "2:4 inclusion variance: REPRODUCED" in b1
    assert "2:4 argmax flip rate: NOT reproduced" in b1
    power = _two_se([0.10, 0.11, 0.12], [0.20, 0.21, 0.22])
    assert f"detectable difference 2se {power:.4f} with 3 vs 3 seeds" in b1
    assert "sampled flip rate" not in b1  # not used when the variance metrics exist
    assert "random 2:4 has no inclusion variance" in b1


def test_b1_falls_back_to_the_sampled_flip_rate_with_a_note() -> None:
    extra = {("spikenm", "2:4"): {"flip_rate": [0.10, 0.11, 0.12]},
             ("spikenm-noeid", "2:4"): {"flip_rate": [0.20, 0.21, 0.22]}}
    b1 = _claim(B1_ACC, "(b1)", extra)
    assert ": REPRODUCED; note: the runs at 2:4 lack inclusion_variance and " \
           "argmax_flip_rate" in b1
    assert "spikenm 2:4 0.1100 vs spikenm-noeid 2:4 0.2100" in b1


def test_b1_control_that_has_the_metric_can_make_it_not_discriminating() -> None:
    extra = {("spikenm", "2:4"): {"inclusion_variance": [0.10, 0.11, 0.12]},
             ("spikenm-noeid", "2:4"): {"inclusion_variance": [0.20, 0.21, 0.22]},
             ("random", "2:4"): {"inclusion_variance": [0.0, 0.001, 0.002]}}
    table = {**B1_ACC, ("random", "2:4"): [0.8, 0.8, 0.81]}
    b1 = _claim(table, "(b1)", extra)
    assert "(b1) EID lowers" in b1 and ": NOT DISCRIMINATING -- " in b1
    assert "random-mask control passes the same test" in b1


def test_b1_not_tested_without_a_measurement() -> None:
    b1 = _claim(B1_ACC, "(b1)")
    assert b1.startswith("(b1) not tested")


# --- claims (b2) and (c) -----------------------------------------------------------------

def test_b2_states() -> None:
    table = {("spikenm", "2:8"): [0.91, 0.92, 0.93], ("spikenm-noeid", "2:8"): [0.85, 0.86, 0.87],
             ("spikenm", "1:8"): [0.80, 0.81, 0.82], ("spikenm-noeid", "1:8"): [0.80, 0.82, 0.81]}
    b2 = _claim(table, "(b2)")
    assert "PARTLY (1 of 2 reproduced, 1 of 2 not reproduced)" in b2
    assert "\n  - 2:8: REPRODUCED, spikenm 2:8 92.00 vs spikenm-noeid 2:8 86.00" in b2
    # a random mask as far above no-EID: the test cannot tell
    undecided = {**table, ("random", "2:8"): [0.91]}
    b2 = _claim(undecided, "(b2)")
    assert "(b2) EID helps accuracy at high sparsity (m >= 8: spikenm clearly above " \
           "spikenm-noeid): NOT DECIDED: not enough seeds." in b2
    assert "2:8: NOT DECIDED: not enough seeds, " in b2 and "1:8: NOT reproduced" in b2
    rigged = {**table, ("random", "2:8"): [0.91, 0.92, 0.93], ("random", "1:8"): [0.70, 0.71]}
    b2 = _claim(rigged, "(b2)")
    assert "2:8: NOT DISCRIMINATING" in b2 and "1:8: NOT reproduced" in b2
    assert "PARTLY (1 of 2 not discriminating, 1 of 2 not reproduced)" in b2


def test_c_needs_one_comparison_clearly_above() -> None:
    table = {("spikenm", "2:4"): [0.95, 0.951, 0.949], ("srste", "2:4"): [0.949, 0.95, 0.951],
             ("asp", "2:4"): [0.90, 0.91, 0.92], ("random", "2:4"): [0.80, 0.81, 0.82]}
    c = _claim(table, "(c)")
    assert "at least as good" in c and ": REPRODUCED; 1 of 2 comparisons clearly above" in c
    assert "2:4 vs asp: REPRODUCED" in c and "2:4 vs srste: REPRODUCED" in c
    level = {**table, ("asp", "2:4"): [0.95, 0.951, 0.949]}
    c = _claim(level, "(c)")
    assert "PARTLY (at least as good everywhere, clearly above nowhere)" in c
    below = {**table, ("spikenm", "2:4"): [0.80, 0.81, 0.82]}
    assert ": NOT reproduced; 0 of 2 comparisons clearly above" in _claim(below, "(c)")
    passing = {**table, ("random", "2:4"): [0.95, 0.951, 0.949]}
    c = _claim(passing, "(c)")
    assert ": NOT DISCRIMINATING; 1 of 2" in c


def test_claims_for_another_variant_name_it() -> None:
    table = {**BASE, ("spikenm-gated", "2:4"): [0.951, 0.949, 0.950]}
    a = _claim(table, "(a)", method="spikenm-gated")
    assert "spikenm-gated 2:4 95.00 vs dense 95.00" in a


def test_combine_and_the_rules() -> None:
    def chk(main: list[float], ctrl: list[float] | None) -> report.Check:
        table = {("spikenm", "2:4"): main, DENSE: [0.95, 0.951, 0.949]}
        if ctrl is not None:
            table[("random", "2:4")] = ctrl
        return report.check(report.group_runs(_runs(table)), "2:4", ("spikenm", "2:4"),
                            DENSE, report.ACCURACY, "not below")

    good, bad = [0.95, 0.951, 0.949], [0.80, 0.81, 0.82]
    assert chk(good, bad).state == report.REPRODUCED
    assert chk(good, good).state == report.NOT_DISCRIMINATING
    assert chk(bad, bad).state == report.NOT_REPRODUCED
    assert chk([0.9], bad).state == report.NOT_DECIDED
    assert report.combine([chk(good, bad), chk(good, good)]) == report.NOT_DISCRIMINATING
    assert report.combine([chk(bad, bad)] * 2) == report.NOT_REPRODUCED
    assert report.combine([chk(good, bad), chk([0.9], bad)]) == report.NOT_DECIDED
    with pytest.raises(ValueError, match="at least one check"):
        report.combine([])
    with pytest.raises(ValueError, match="rule='sideways'"):
        report.compare(report.group_runs(_runs(BASE)), ("spikenm", "2:4"), DENSE,
                        report.ACCURACY, "sideways")


def test_a_tiny_nonzero_figure_is_never_printed_as_zero() -> None:
    assert report.ACCURACY.format(0.012) == "1.20 pts"
    assert report.ACCURACY.format(3e-7) == "3e-05 pts"
    assert report.INCLUSION_VARIANCE.format(-2e-6, signed=True) == "-2e-06"
    assert report.ARGMAX_FLIP.format(0.0) == "0.0000"


def test_a_run_value_that_is_not_a_number_is_named() -> None:
    runs = _runs(BASE)
    runs[0]["inclusion_variance"] = {"pooled": 0.1}
    with pytest.raises(TypeError, match="inclusion_variance=.*expected a number or None"):
        report.group_runs(runs)


# --- table, variants, plots, report -------------------------------------------------

def test_markdown_table_has_the_variance_columns() -> None:
    extra = {("spikenm", "2:4"): {"inclusion_variance": [0.1, 0.2, 0.3],
                                  "argmax_flip_rate": [0.01, 0.02, 0.03]}}
    table = {**BASE, ("spikenm-signed", "2:4"): [0.9, 0.9, 0.91], ("mystery", "2:4"): [0.5] * 3}
    text = report.markdown_table(report.group_runs(_runs(table, extra)))
    lines = text.splitlines()
    assert "| argmax flip | incl. var. |" in lines[0]
    assert lines[2].startswith("| dense | dense | 95.00 ± 0.20 | 3 | – |")
    row = next(x for x in lines if x.startswith("| spikenm | 2:4 |"))
    assert "| 0.0200 | 0.2000 |" in row
    signed = next(x for x in lines if x.startswith("| spikenm-signed | 2:4 |"))
    assert "| – | – | – |" in signed
    assert lines[-1].startswith("| mystery | 2:4 |")  # unknown variants are kept, last


def test_eid_variants_set_one_option_each_and_are_not_run_by_default() -> None:
    expected = {"spikenm-global": ("global", "abs"), "spikenm-block": ("block", "abs"),
                "spikenm-gated": ("gated", "abs"), "spikenm-inclusion": ("inclusion", "abs"),
                "spikenm-signed": (EIDConfig().variant, "signed")}
    assert EIDConfig().credit == "abs"
    for name, (variant, credit) in expected.items():
        cfg = reproduce.run_config(reproduce.QUICK, name, "2:8", 3, "numpy")
        assert cfg.sparsity.method == "spikenm" and cfg.eid.enabled
        assert (cfg.eid.variant, cfg.eid.credit) == (variant, credit), name
        assert cfg.sparsity.pattern == "2:8" and cfg.run.seed == 3
        assert name in reproduce.VARIANTS and name not in reproduce.DEFAULT_VARIANTS
        assert name in reproduce.EID_VARIANTS
    plain = reproduce.run_config(reproduce.QUICK, "spikenm", "2:4", 0, "numpy")
    assert (plain.eid.variant, plain.eid.credit) == (EIDConfig().variant, EIDConfig().credit)
    assert reproduce.QUICK.variants == reproduce.FULL.variants == reproduce.DEFAULT_VARIANTS
    assert set(report.VARIANT_ORDER) == set(reproduce.VARIANTS)
    with pytest.raises(ValueError, match="unknown variant"):
        reproduce.Grid("g", "digits", (0,), ("2:4",), ("spikenm-magic",))


def test_quick_grid_is_the_discriminating_setting() -> None:
    q = reproduce.QUICK
    assert q.seeds == (0, 1, 2, 3, 4) and q.patterns == ("2:4", "1:4", "2:8", "1:8")
    assert len(reproduce.cells(q)) == 5 * (1 + 6 * 4) == 125
    cfg = reproduce.run_config(q, "random", "2:4", 0, "numpy")
    assert cfg.optim.epochs == 15 and cfg.model.hidden == (32, 32)
    assert cfg.sparsity.dense_first is False and cfg.data.name == "digits"


def test_cli_lists_every_variant(capsys) -> None:
    from spikenm.cli import main

    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in reproduce.VARIANTS:
        assert name in text, name
    assert "default: 5 quick" in text


def _synthetic_plot_runs(with_variance: bool) -> list[dict]:
    runs = _runs({DENSE: [0.95, 0.96], ("spikenm", "2:4"): [0.94, 0.95],
                  ("spikenm-gated", "2:4"): [0.93, 0.95], ("random", "2:4"): [0.9, 0.91],
                  ("spikenm", "1:8"): [0.8, 0.82]})
    for r in runs:
        sampled = r["variant"].startswith("spikenm")
        r["flip_history"] = [[s, 0.1 / s] for s in (10, 20, 30)] if sampled else []
        if with_variance and sampled:
            r["variance_history"] = [[s, 0.2 / s] for s in (10, 20, 30)]
    return runs


def test_plots_are_written_and_variance_only_when_recorded(tmp_path) -> None:
    runs = _synthetic_plot_runs(with_variance=True)
    notes = report.write_plots(runs, report.group_runs(runs), tmp_path / "a")
    for name in ("accuracy.png", "flip_rate.png", "variance.png"):
        data = (tmp_path / "a" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert "variance.png" in notes[0]
    runs = _synthetic_plot_runs(with_variance=False)
    notes = report.write_plots(runs, report.group_runs(runs), tmp_path / "b")
    assert (tmp_path / "b" / "accuracy.png").is_file()
    assert (tmp_path / "b" / "flip_rate.png").is_file()
    assert not (tmp_path / "b" / "variance.png").exists()
    assert any("variance.png not written" in n for n in notes)


def test_history_reads_train_records() -> None:
    records = [{"type": "train", "step": 5, "inclusion_variance": 0.25},
               {"type": "eval", "step": 5, "inclusion_variance": 0.5},
               {"type": "train", "step": 10, "inclusion_variance": None},
               {"type": "train", "step": 15, "inclusion_variance": 0.125}]
    assert reproduce.history(records, "inclusion_variance") == [[5, 0.25], [15, 0.125]]
    assert reproduce.history(records, "argmax_flip_rate") == []
    with pytest.raises(TypeError, match="step 3: inclusion_variance"):
        reproduce.history([{"type": "train", "step": 3, "inclusion_variance": [0.1]}],
                          "inclusion_variance")


def test_report_is_made_from_results_json(tmp_path) -> None:
    grid = reproduce.Grid("micro", "digits", (0, 1, 2), ("2:4",), ("dense", "spikenm", "random"))
    runs = _runs({DENSE: [0.95, 0.952, 0.948], ("spikenm", "2:4"): [0.951, 0.949, 0.950],
                  ("random", "2:4"): [0.90, 0.91, 0.905]})
    for r in runs:
        r["flip_history"] = []
    path = tmp_path / reproduce.RESULTS_FILE
    path.write_text(json.dumps({"key": reproduce.grid_key(grid, "numpy"), "runs": runs}))
    text = reproduce.write_report(grid, "numpy", tmp_path, "spikenm reproduce --test")
    assert (tmp_path / "report.md").read_text() == text
    assert "| random | 2:4 | 90.50 ± 0.50 | 3 |" in text and ": REPRODUCED --" in text
    assert (tmp_path / "accuracy.png").is_file() and (tmp_path / "flip_rate.png").is_file()
    # another grid's results are refused, not reported
    other = reproduce.Grid("micro", "digits", (0, 1), ("2:4",), ("dense", "spikenm", "random"))
    with pytest.raises(ValueError, match="holds another grid"):
        reproduce.write_report(other, "numpy", tmp_path, "x")
    with pytest.raises(ValueError, match="does not exist"):
        reproduce.write_report(grid, "numpy", tmp_path / "nowhere", "x")


def test_tiny_grid_stores_variance_metrics_and_reports_the_variants(tmp_path, monkeypatch,
                                                                    capsys) -> None:
    """One real tiny grid through the command line; the trainer's variance metrics (S5.9a)
    are injected when it does not report them, to check that they reach the report."""
    from spikenm.cli import main

    real_train = reproduce.train

    def with_variance(cfg, **kw):
        result = real_train(cfg, **kw)
        if cfg.sparsity.method == "spikenm":
            for i, r in enumerate(result.records):
                if r.get("type") == "train":
                    r.setdefault("inclusion_variance", 0.2 / (i + 1))
            result.summary.setdefault("inclusion_variance", 0.1 + 0.01 * cfg.run.seed)
            result.summary.setdefault("argmax_flip_rate", 0.01 + 0.001 * cfg.run.seed)
        return result

    monkeypatch.setattr(reproduce, "train", with_variance)
    out = tmp_path / "grid"
    code = main(["reproduce", "--quick", "--out", str(out), "--seeds", "2", "--patterns", "2:4",
                 "--methods", "dense,spikenm,spikenm-noeid,spikenm-gated,random",
                 "--set", "optim.epochs=1", "--set", "model.hidden=16,16",
                 "--set", "run.log_every=5"])
    assert code == 0
    text = capsys.readouterr().out
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 2 + 4 * 2
    gated = [r for r in runs if r["variant"] == "spikenm-gated"]
    assert all(r["config"]["eid"]["variant"] == "gated" for r in gated)
    for r in runs:
        sampled = r["variant"].startswith("spikenm")
        assert (r["inclusion_variance"] is not None) == sampled
        assert (len(r["variance_history"]) > 1) == sampled
    assert "The same claims for `spikenm-gated` (eid.variant=gated):" in text
    assert "2:4 inclusion variance:" in text and "detectable difference" in text
    for name in ("accuracy.png", "flip_rate.png", "variance.png"):
        assert (out / name).stat().st_size > 0, name
