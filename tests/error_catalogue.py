"""The error catalogue: every public function and CLI command x every kind of bad input,
with the error it gives (the source of ``docs/errors.md``).

A case is a `Case`: ``Case(function, kind, call, error, message)``

* ``function`` -- the public function (``"api.sample_mask"``) or CLI command
  (``"spikenm train"``) the case belongs to; ``docs/errors.md`` has one table per value;
* ``kind`` -- the kind of bad input, a short phrase (``"None as logits"``); one row;
* ``call`` -- a zero-argument callable making the bad call; it must raise;
* ``error`` -- the exception type the call must raise (exactly this type, not a subclass):
  one of `DOCUMENTED` for a function; a CLI case raises its own type carrying the
  command's one-line stderr (``tests/error_cases_cli.py``);
* ``message`` -- a regular expression that ``str(exception)`` must match (``re.search``).

Cases are collected from every module ``tests/error_cases_*.py``: each defines a list
``CASES`` of `Case` objects or of plain 5-tuples in the same order (a `Case` is a named
tuple, so both are the same).  `collect` imports the modules in file-name order and
keeps their order; `run` runs one case and returns an `Outcome`; `render` writes the
Markdown of ``docs/errors.md`` from the outcomes (the message column holds the message
actually raised, with temporary paths and addresses normalised, so the document cannot
go stale: ``tests/test_errors_doc.py`` compares it, and
``SPIKENM_WRITE_ERRORS_DOC=1 pytest tests/test_errors_doc.py`` rewrites it).

``python tests/error_catalogue.py`` runs every case and prints how many were rejected
clearly (the expected type, a matching message), silently accepted, or unclear (another
exception type, or a message that does not match).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "errors.md"
DOCUMENTED = (ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError)
"""The exception types the library documents (a catalogue case expects one of them)."""


class Case(NamedTuple):
    """One bad call and the error it must give (see the module docstring)."""

    function: str
    kind: str
    call: Callable[[], Any]
    error: type[BaseException]
    message: str


class Outcome(NamedTuple):
    """What running a `Case` gave: ``verdict`` is ``"clear"`` (the expected type and a
    matching message), ``"silent"`` (no exception) or ``"unclear"`` (anything else);
    ``raised`` the exception type name (or ``"-"``) and ``text`` its message."""

    case: Case
    verdict: str
    raised: str
    text: str


def modules() -> list[Path]:
    """The ``tests/error_cases_*.py`` files, in name order."""
    return sorted(TESTS.glob("error_cases_*.py"))


def collect() -> list[Case]:
    """Every case of every ``tests/error_cases_*.py`` module (file-name order, then the
    order of each module's ``CASES``)."""
    cases: list[Case] = []
    for path in modules():
        name = f"spikenm_error_cases_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        cases.extend(Case(*case) for case in module.CASES)
    return cases


def run(case: Case) -> Outcome:
    """Run ``case.call()`` and judge it."""
    try:
        case.call()
    except BaseException as exc:  # noqa: BLE001 - every escape is judged
        if isinstance(exc, KeyboardInterrupt):
            raise
        text = str(exc)
        ok = type(exc) is case.error and re.search(case.message, text) is not None
        return Outcome(case, "clear" if ok else "unclear", type(exc).__name__, text)
    return Outcome(case, "silent", "-", "")


_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"[/\\][^\s'\":]+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


_MKDTEMP = re.compile(r"(?<=[-_])[a-z0-9_]{8}$")
"""The random suffix `tempfile.mkdtemp` gives a folder name (``spikenm-errors-1obhm3de``)."""


def normalised(text: str) -> str:
    """``text`` without what changes between runs: temporary paths become ``<tmp>/name``
    (the last component is kept, a `tempfile.mkdtemp` suffix shown as ``*``), memory
    addresses ``0x...``."""
    text = _TMP.sub(lambda m: "<tmp>/" + _MKDTEMP.sub("*", re.split(r"[/\\]", m.group(0))[-1]),
                    text)
    return _ADDRESS.sub("0x...", text)


def _cell(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line.replace("|", "\\|")


EXIT_LABELS = {"Exit2": "exit status 2, one line on stderr"}
"""How the CLI cases' outcome (`error_cases_cli.Exit2`) is shown in the tables."""


def render(outcomes: list[Outcome]) -> str:
    """The Markdown of ``docs/errors.md``: one table per function or command (in order
    of first appearance), one row per case: kind of bad input, exception, message."""
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.case.function, []).append(outcome)
    lines = [
        "# Errors",
        "",
        "Every public function of `spikenm.api` and every CLI command, with each kind of bad",
        "input and the error it gives: the exception type and the message actually raised",
        "(temporary paths shortened to `<tmp>/name`). Generated from the test cases in",
        "`tests/error_cases_*.py` by `tests/test_errors_doc.py`, which fails when this file",
        "differs; regenerate it with `SPIKENM_WRITE_ERRORS_DOC=1 pytest tests/test_errors_doc.py`.",
        "The documented exception types are `ValueError` and `TypeError`, and `FileNotFoundError`,",
        "`PermissionError`, `IsADirectoryError` from the operating system (SPEC S0.5).",
        "",
        f"{len(outcomes)} cases in {len(groups)} tables.",
        "",
    ]
    for function, rows in groups.items():
        lines += [f"## `{function}`", "", "| bad input | exception | message |", "| --- | --- | --- |"]
        for outcome in rows:
            shown = outcome.raised if outcome.verdict != "silent" else "(none)"
            shown = EXIT_LABELS.get(shown, f"`{shown}`")
            lines.append(f"| {_cell(outcome.case.kind)} | {shown} | "
                         f"{_cell(normalised(outcome.text))} |")
        lines.append("")
    return "\n".join(lines)


def tally(outcomes: list[Outcome]) -> dict[str, int]:
    """``{"tried": .., "clear": .., "silent": .., "unclear": ..}``."""
    counts = {"tried": len(outcomes), "clear": 0, "silent": 0, "unclear": 0}
    for outcome in outcomes:
        counts[outcome.verdict] += 1
    return counts


def main() -> int:
    """Run every case; print the tally and each case that was not rejected clearly."""
    sys.path.insert(0, str(TESTS))
    outcomes = [run(case) for case in collect()]
    for o in outcomes:
        if o.verdict != "clear":
            print(f"{o.verdict}: {o.case.function} / {o.case.kind}: {o.raised}: {o.text[:200]}")
    counts = tally(outcomes)
    print(f"error catalogue: {counts['tried']} bad inputs tried, {counts['clear']} rejected "
          f"clearly, {counts['silent']} silent, {counts['unclear']} unclear")
    return 0 if counts["tried"] == counts["clear"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
