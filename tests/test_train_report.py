"""Verdicts of `spikenm reproduce` state their power: one seed decides nothing, and a
claim that a random mask passes too is reported as not discriminating."""

from __future__ import annotations

from spikenm.train import report


def _runs(table: dict[tuple[str, str], list[float]]) -> list[dict]:
    return [{"variant": v, "pattern": p, "seed": i, "test_acc": a, "flip_rate": None,
             "firing_rates": [0.1], "seconds": 1.0}
            for (v, p), accs in table.items() for i, a in enumerate(accs)]


def _claim(table: dict[tuple[str, str], list[float]], tag: str) -> str:
    lines = report.claims(report.group_runs(_runs(table)))
    return next(line for line in lines if line.startswith(tag))


def test_one_seed_is_not_enough_and_never_gives_a_zero_2se() -> None:
    table = {("dense", "dense"): [0.95], ("spikenm", "2:4"): [0.90],
             ("srste", "2:4"): [0.93], ("spikenm-noeid", "2:8"): [0.9],
             ("spikenm", "2:8"): [0.91]}
    a = _claim(table, "(a)")
    assert "NOT DECIDED (not enough seeds)" in a and "2se 0.00" not in a
    c = _claim(table, "(c)")
    assert "NOT DECIDED" in c and "not enough seeds" in c
    b2 = _claim(table, "(b2)")
    assert "NOT DECIDED" in b2


def test_a_random_mask_that_passes_makes_the_verdict_not_discriminating() -> None:
    base = {("dense", "dense"): [0.950, 0.952, 0.948],
            ("spikenm", "2:4"): [0.951, 0.949, 0.950]}
    passing_control = {**base, ("random", "2:4"): [0.949, 0.951, 0.950]}
    a = _claim(passing_control, "(a)")
    assert a.startswith("(a) 2:4 accuracy within noise of dense or above: NOT DISCRIMINATING")
    assert "random-mask control passes" in a and "detectable difference 2se" in a
    failing_control = {**base, ("random", "2:4"): [0.90, 0.91, 0.905]}
    a = _claim(failing_control, "(a)")
    assert ": REPRODUCED" in a and "random-mask control fails it" in a
    below = {**failing_control, ("spikenm", "2:4"): [0.90, 0.91, 0.905]}
    assert ": NOT reproduced" in _claim(below, "(a)")
