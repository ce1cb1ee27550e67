"""All conformance checks, in SPEC order."""

from __future__ import annotations

from .api_checks import CHECKS as _API
from .check import Check
from .eid_checks import CHECKS as _EID
from .packed_checks import CHECKS as _PACKED
from .plumbing_checks import CHECKS as _PLUMBING
from .probability_checks import CHECKS as _PROBABILITY
from .sampler_checks import CHECKS as _SAMPLER


def _order(check: Check) -> tuple[int, int, int, str]:
    section, _, number = check.id.split(":")[0][1:].partition(".")
    return (int(section), int(number), 1 if check.needs == "dispatch" else 0, check.id)


CHECKS: tuple[Check, ...] = tuple(
    sorted(_PLUMBING + _PACKED + _SAMPLER + _PROBABILITY + _EID + _API, key=_order)
)
"""Every check, ordered by clause (protocol-level checks before API-level ones)."""

UNCOVERED = {
    "S0.6": "the comparison rule every check applies",
    "S0.7": "describes the array-API backend; its checks are the S1-S3 rows",
    "S1.9": "diagnostics computed by the trainer, no backend function",
    "S2.4": "running credit kept by the trainer, no backend function",
    "S2.8": "total loss assembled by the trainer",
}
"""SPEC S0-S3 clauses without a row of their own, and why."""


def checks_using(member: str) -> list[str]:
    """Ids of the checks that call protocol member ``member``."""
    return [check.id for check in CHECKS if member in check.uses]


def select(selectors: tuple[str, ...] | list[str]) -> tuple[Check, ...]:
    """The checks matching any selector (a check id or a clause id); all when empty.

    Raises
    ------
    ValueError
        A selector matches no check.
    """
    if not selectors:
        return CHECKS
    unknown = [s for s in selectors if not any(c.matches(s) for c in CHECKS)]
    if unknown:
        known = sorted({c for check in CHECKS for c in check.covers} | {check.id for check in CHECKS})
        raise ValueError(f"unknown clause or check id(s) {unknown}; expected some of {known}")
    return tuple(c for c in CHECKS if any(c.matches(s) for s in selectors))
