"""The error catalogue (`error_catalogue`): every case of ``tests/error_cases_*.py`` raises
its documented exception with a matching message (a silent result fails), and
``docs/errors.md`` is the rendering of the cases (SPEC S0.5, S0.8, S3.10).

``SPIKENM_WRITE_ERRORS_DOC=1 pytest tests/test_errors_doc.py`` rewrites the document.
"""

from __future__ import annotations

import os
from functools import lru_cache

import pytest

import error_catalogue as catalogue

CASES = catalogue.collect()


@lru_cache(maxsize=None)
def _outcome(index: int) -> catalogue.Outcome:
    return catalogue.run(CASES[index])


def test_cases_are_named_once_and_documented() -> None:
    """Each (function, kind) names one case; every expected type of a function (not a CLI
    command, whose cases carry the one-line stderr in their own type) is a documented one."""
    keys = [(c.function, c.kind) for c in CASES]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    odd = [(c.function, c.kind, c.error) for c in CASES
           if c.function.split()[0] != "spikenm" and not issubclass(c.error, catalogue.DOCUMENTED)]
    assert odd == []
    assert len(CASES) >= 700


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c.function}/{c.kind}" for c in CASES])
def test_case_raises_its_documented_error(index: int) -> None:
    outcome = _outcome(index)
    case = outcome.case
    assert outcome.verdict != "silent", f"{case.function} accepted {case.kind!r} silently"
    assert outcome.raised == case.error.__name__, (
        f"{case.function} with {case.kind!r} raised {outcome.raised}: {outcome.text}; "
        f"expected {case.error.__name__}")
    assert outcome.verdict == "clear", (
        f"{case.function} with {case.kind!r}: message {outcome.text!r} does not match "
        f"{case.message!r}")


def test_errors_md_is_the_rendering_of_the_cases() -> None:
    outcomes = [_outcome(i) for i in range(len(CASES))]
    counts = catalogue.tally(outcomes)
    print(f"\nerror catalogue: {counts['tried']} bad inputs tried, {counts['clear']} rejected "
          f"clearly, {counts['silent']} silent, {counts['unclear']} unclear")
    text = catalogue.render(outcomes)
    if os.environ.get("SPIKENM_WRITE_ERRORS_DOC") == "1":
        catalogue.DOC.write_text(text, encoding="utf-8")
    assert catalogue.DOC.exists(), "docs/errors.md is missing; SPIKENM_WRITE_ERRORS_DOC=1 writes it"
    assert catalogue.DOC.read_text(encoding="utf-8") == text, (
        "docs/errors.md is stale; regenerate it with SPIKENM_WRITE_ERRORS_DOC=1 pytest "
        "tests/test_errors_doc.py")


def test_render_and_normalise() -> None:
    """The renderer: one table per function, `|` escaped, temporary paths shortened."""
    import tempfile

    def bad() -> None:
        raise ValueError(f"{tempfile.gettempdir()}/spikenm-x1/c.npz: a | b")

    case = catalogue.Case("f", "kind", bad, ValueError, "a")
    silent = catalogue.Case("g", "quiet", lambda: None, ValueError, "a")
    outcomes = [catalogue.run(case), catalogue.run(silent)]
    assert [o.verdict for o in outcomes] == ["clear", "silent"]
    text = catalogue.render(outcomes)
    assert "## `f`" in text and "## `g`" in text
    assert "| kind | `ValueError` | <tmp>/c.npz: a \\| b |" in text
    assert "| quiet | `(none)` |  |" in text
    wrong = catalogue.run(catalogue.Case("f", "k", bad, TypeError, "a"))
    assert wrong.verdict == "unclear"
