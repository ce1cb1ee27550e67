"""Every built-in backend passes the conformance suite (ci profile), check by check.

One test per (backend, check): a failure names the backend and the SPEC clause and
carries the suite's reproduction snippet.  Nothing is skipped for a missing framework:
torch, jax and array-api-strict are part of the test environment.
"""

from __future__ import annotations

import pytest

from spikenm.conformance.check import Check
from spikenm.conformance.registry import CHECKS
from spikenm.conformance.runner import RunConfig, apply_xfails, run_check, xfails_for
from spikenm.conformance.selection import select

from conformance_helpers import Subjects

BACKENDS = ("numpy", "torch", "jax", "array_api_strict")
CONFIG = RunConfig(profile="ci")

_subject = Subjects(select)
_restore_jax_x64 = _subject.restoring_fixture()


@pytest.mark.parametrize("check", CHECKS, ids=[c.id for c in CHECKS])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_conforms(backend: str, check: Check) -> None:
    import spikenm.reference as reference

    subject = _subject(backend)
    xfails, path = xfails_for(subject, CONFIG)
    assert xfails == {}, f"{path} must stay empty for a built-in backend"
    result = apply_xfails(run_check(check, subject, reference, CONFIG), check, xfails, path)
    if check.needs == "differentiable" and not subject.differentiable:
        assert result.status == "n/a", result.message
        return
    assert result.status == "pass", (
        f"{backend} fails {check.id} ({result.title}): {result.status}\n{result.message}\n\n{result.repro}"
    )


def test_selection_facts_of_the_builtin_backends() -> None:
    facts = {name: _subject(name) for name in BACKENDS}
    assert all(s.dispatches for s in facts.values()), "spikenm.api must dispatch each built-in backend's arrays to it"
    assert [s.differentiable for s in facts.values()] == [True, True, True, False]
    assert any("jax_enable_x64" in note for note in facts["jax"].notes)
    assert facts["torch"].framework == "torch" and facts["array_api_strict"].framework == "array_api_strict"
    for name, subject in facts.items():
        assert {"float32", "float64", "int8"} <= set(subject.pack_dtypes), name
