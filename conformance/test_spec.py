"""The conformance suite as pytest tests: one test per check of SPEC.md.

Run with ``pytest --pyargs spikenm.conformance --spikenm-backend NAME`` (array backend)
or ``--spikenm-model-backend NAME`` (model backend), plugin loaded, or with
``SPIKENM_BACKEND=NAME`` / ``SPIKENM_MODEL_BACKEND=NAME``.
"""

from __future__ import annotations

import pytest

from spikenm.conformance.pytest_plugin import conformance_session, outcome_of
from spikenm.conformance.registry import CHECKS, MODEL_CHECKS


@pytest.mark.spikenm_conformance
@pytest.mark.parametrize("check_id", [check.id for check in CHECKS])
def test_check(check_id: str, request: pytest.FixtureRequest) -> None:
    """Run check ``check_id`` on the selected array backend."""
    session = conformance_session(request.config)
    if session.subject is None:
        pytest.skip("no array backend selected (--spikenm-backend NAME)")
    outcome_of(session.run(check_id))


@pytest.mark.spikenm_conformance
@pytest.mark.parametrize("check_id", [check.id for check in MODEL_CHECKS])
def test_model_check(check_id: str, request: pytest.FixtureRequest) -> None:
    """Run model-backend check ``check_id`` on the selected model backend."""
    session = conformance_session(request.config).model
    if session is None:
        pytest.skip("no model backend selected (--spikenm-model-backend NAME)")
    outcome_of(session.run(check_id))
