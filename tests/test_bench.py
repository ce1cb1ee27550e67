"""The benchmark command's plumbing (no timing is asserted anywhere)."""

from __future__ import annotations

import json

import pytest

from spikenm.bench import TOPICS, Table
from spikenm.bench.__main__ import main
from spikenm.bench.timing import Timing, compare, pin_threads, ratio_row


def test_table_markdown_has_title_columns_rows_and_notes() -> None:
    t = Table("Title", ("a", "b"), (("1", "2"), ("3", "4")), ("note",))
    assert t.markdown().splitlines() == ["### Title", "", "| a | b |", "| --- | --- |",
                                         "| 1 | 2 |", "| 3 | 4 |", "", "- note"]


def test_compare_interleaves_every_contender_and_counts_repeats() -> None:
    calls: list[str] = []
    out = compare({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")},
                  repeats=3)
    assert calls == ["x", "x", "y", "y"] + ["x", "y"] * 3  # 2 warm-ups, then round-robin
    assert set(out) == {"x", "y"} and all(isinstance(t, Timing) and t.repeats == 3
                                          for t in out.values())
    assert all(0 <= t.min <= t.median for t in out.values())
    ratios = ratio_row({"a": Timing(1.0, 2.0, 1), "b": Timing(0.5, 1.0, 1)}, "a")
    assert ratios == {"b": 2.0}


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_counts_are_refused(bad: int) -> None:
    with pytest.raises(ValueError, match=rf"threads={bad} is invalid"):
        pin_threads(bad)
    with pytest.raises(ValueError, match=rf"repeats={bad} is invalid"):
        compare({"x": lambda: None}, repeats=bad)


def test_unknown_topic_and_folder_json_are_usage_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["--only", "nope"])
    assert exc.value.code == 2 and "--only nope is not a topic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--json", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_every_topic_module_exposes_tables() -> None:
    import importlib

    for topic in TOPICS:
        module = importlib.import_module(f"spikenm.bench.{topic}")
        assert callable(module.tables), topic
    assert json.dumps(list(TOPICS))


def test_scaling_slope_is_the_log_log_fit() -> None:
    from spikenm.bench.scaling import slope

    sizes = [10**5, 10**6, 10**7]
    assert abs(slope(sizes, [1e-3, 1e-2, 1e-1]) - 1.0) < 1e-12
    assert abs(slope(sizes, [1e-3, 1e-1, 1e1]) - 2.0) < 1e-12   # quadratic
    with pytest.raises(ValueError, match="at least 2"):
        slope([10], [1.0])
