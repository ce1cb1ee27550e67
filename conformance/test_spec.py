"""The conformance suite as pytest tests: one test per check of SPEC.md.

Run with ``pytest --pyargs spikenm.conformance --spikenm-backend NAME`` (plugin loaded)
or ``SPIKENM_BACKEND=NAME pytest --pyargs spikenm.conformance``.
"""

from __future__ import annotations

import pytest

from spikenm.conformance.pytest_plugin import conformance_session, outcome_of
from spikenm.conformance.registry import CHECKS


@pytest.mark.spikenm_conformance
@pytest.mark.parametrize("check_id", [check.id for check in CHECKS])
def test_check(check_id: str, request: pytest.FixtureRequest) -> None:
    """Run check ``check_id`` on the selected backend."""
    outcome_of(conformance_session(request.config).run(check_id))
