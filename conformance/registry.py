"""All conformance checks, in SPEC order: `CHECKS` for array backends, `MODEL_CHECKS` for
model backends."""

from __future__ import annotations

from .api_checks import CHECKS as _API
from .check import Check
from .eid_checks import CHECKS as _EID
from .guard_checks import CHECKS as _GUARD
from .model_checks import CHECKS as _MODEL
from .model_checks import UNCOVERED as MODEL_UNCOVERED
from .packed_checks import CHECKS as _PACKED
from .plumbing_checks import CHECKS as _PLUMBING
from .probability_checks import CHECKS as _PROBABILITY
from .sampler_checks import CHECKS as _SAMPLER


def _order(check: Check) -> tuple[int, int, int, str]:
    section, _, number = check.id.split(":")[0][1:].partition(".")
    return (int(section), int(number), 1 if check.needs == "dispatch" else 0, check.id)


CHECKS: tuple[Check, ...] = tuple(
    sorted(_PLUMBING + _PACKED + _SAMPLER + _PROBABILITY + _EID + _API + _GUARD, key=_order)
)
"""Every array-backend check, ordered by clause (protocol-level checks before API-level
ones)."""

MODEL_CHECKS: tuple[Check, ...] = tuple(sorted(_MODEL, key=_order))
"""Every model-backend check (SPEC S4, S2.3/S5.5), ordered by clause."""

UNCOVERED = {
    "S0.6": "the comparison rule every check applies",
    "S0.7": "describes the array-API backend; its checks are the S1-S3 rows",
    "S1.9": "diagnostics computed by the trainer, no backend function",
    "S2.4": "running credit kept by the trainer, no backend function",
    "S2.8": "total loss assembled by the trainer",
    "S3.7": "the safetensors layout is spikenm.safetensors_io on host (NumPy) copies, no backend "
            "function; its digest is the S3.5 container's",
    "S3.8": "an in-memory layout the reference's 2:4 float kernel derives, not a backend "
            "function; its products are S3.6's (checked there)",
    "S3.11": "the core's file loaders (containers, checkpoints, datasets) on host files, no "
             "backend function",
}
"""SPEC S0-S3 clauses without a row of their own, and why."""


def checks_using(member: str) -> list[str]:
    """Ids of the checks that call protocol member ``member``."""
    return [check.id for check in CHECKS if member in check.uses]


def select(selectors: tuple[str, ...] | list[str], checks: tuple[Check, ...] = CHECKS
           ) -> tuple[Check, ...]:
    """The checks of ``checks`` matching any selector (a check id or a clause id); all of
    them when there is none.

    Raises
    ------
    ValueError
        A selector matches no check.
    """
    if not selectors:
        return checks
    unknown = [s for s in selectors if not any(c.matches(s) for c in checks)]
    if unknown:
        known = sorted({c for check in checks for c in check.covers} | {check.id for check in checks})
        raise ValueError(f"unknown clause or check id(s) {unknown}; expected some of {known}")
    return tuple(c for c in checks if any(c.matches(s) for s in selectors))
