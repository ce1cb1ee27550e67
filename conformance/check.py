"""What a conformance check is, and the clause titles read from the shipped SPEC.md."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal, Optional

from hypothesis.strategies import DataObject

from .trial import Trial

Body = Callable[[Trial, Optional[DataObject]], None]


@dataclass(frozen=True)
class Check:
    """One row of the conformance table.

    Attributes
    ----------
    id : str
        ``S1.2`` for the protocol-level check of clause S1.2; ``S1.2:api`` for the same
        clause through `spikenm.api`; ``S1.7:sampling`` for a second check of a clause.
    covers : tuple of str
        SPEC clause ids it judges (``--clauses`` and xfail files may name any of them).
    summary : str
        What the check does, one line.
    body : callable
        ``body(trial, data)``: draws inputs from ``data`` (None for fixed checks), calls
        the backend through ``trial`` and raises `ConformanceFailure` on a violation.
    uses : tuple of str
        Protocol members it calls (a backend missing one is refused up front).
    kind : ``"property"`` or ``"fixed"``
        Property checks run under Hypothesis; fixed checks run their own cases once
        (statistical tests with fixed seeds).
    needs : None, ``"differentiable"`` or ``"dispatch"``
        Gradient checks apply to differentiable backends, API checks to backends that
        `spikenm.api` dispatches to; otherwise the row is reported as n/a.
    budget : float
        Fraction of the profile's ``max_examples`` a property check runs.
    golden : callable or None
        ``golden(trial)``: fixed examples stated in SPEC.md, run once before the
        Hypothesis examples.
    target : ``"array"`` or ``"model"``
        What the check judges: an array backend (`spikenm.protocol.Backend`, S0-S3) or a
        model backend (`spikenm.snn.ModelBackend`, S4), whose checks get a
        `spikenm.conformance.model_trial.ModelTrial`.
    """

    id: str
    covers: tuple[str, ...]
    summary: str
    body: Body
    uses: tuple[str, ...]
    kind: Literal["property", "fixed"] = "property"
    needs: Literal[None, "differentiable", "dispatch"] = None
    budget: float = 1.0
    golden: Callable[[Trial], None] | None = None
    target: Literal["array", "model"] = "array"

    @property
    def clause(self) -> str:
        """Display form of `covers`: ``S2.1-S2.3`` for consecutive clauses, else a list."""
        if len(self.covers) == 1:
            return self.covers[0]
        parts = [tuple(int(x) for x in c[1:].split(".")) for c in self.covers]
        consecutive = all(
            b[0] == a[0] and b[1] == a[1] + 1 for a, b in zip(parts, parts[1:])
        )
        return f"{self.covers[0]}-{self.covers[-1]}" if consecutive else ",".join(self.covers)

    def matches(self, selector: str) -> bool:
        """True when ``selector`` is this check's id or one of the clauses it covers."""
        return selector == self.id or selector in self.covers


@lru_cache(maxsize=1)
def clause_titles() -> dict[str, str]:
    """``{"S1.3": "Soft mask (successive softmax)", ...}`` from the installed SPEC.md."""
    from spikenm import spec_path

    text = spec_path().read_text(encoding="utf-8")
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"\*\*(S\d+\.\d+) ([^*]+?)\.?\*\*", text)}


def title_of(check: Check) -> str:
    """SPEC title(s) of the clauses a check covers."""
    titles = clause_titles()
    names = [titles.get(c, c) for c in check.covers]
    return " / ".join(dict.fromkeys(names))

