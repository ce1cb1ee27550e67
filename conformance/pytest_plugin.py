"""pytest integration: ``pytest --pyargs spikenm.conformance --spikenm-backend NAME``.

The options are registered by this plugin.  pytest reads the command line before it
collects a package given with ``--pyargs``, so the plugin must be loaded first: with
``-p spikenm.conformance.pytest_plugin``, or automatically through the ``pytest11``
entry point of the installed package.  Without the plugin, ``SPIKENM_BACKEND=NAME``
(and ``SPIKENM_HYPOTHESIS_PROFILE``) select the same things.

Each check of the suite is one test (``test_check[S1.2]``): ``pass`` passes, ``FAIL`` and
``ERROR`` fail with the message and the reproduction snippet, ``n/a`` is skipped,
``xfail`` is an expected failure and ``XPASS`` fails.  No backend selected, an unknown
one, or an incomplete one stops the session with a usage error before any test runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROFILES = ("ci", "dev", "thorough")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--spikenm-*`` options."""
    group = parser.getgroup("spikenm-conformance", "spikenm conformance suite")
    group.addoption("--spikenm-backend", default=None,
                    help="backend under test: numpy, torch, jax, array_api_strict or package.module:OBJECT "
                         "(default: $SPIKENM_BACKEND)")
    group.addoption("--spikenm-profile", default=None, choices=PROFILES,
                    help="Hypothesis profile (default: $SPIKENM_HYPOTHESIS_PROFILE, else ci under CI, else dev)")
    group.addoption("--spikenm-max-examples", type=int, default=None, help="examples per property check")
    group.addoption("--spikenm-seed", type=int, default=None, help="Hypothesis seed (randomized, reproducible)")
    group.addoption("--spikenm-xfails", default=None, help="expected-failure file")
    group.addoption("--spikenm-report", default=None, help="write the JSON report of the run to this path")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of the conformance tests."""
    config.addinivalue_line("markers", "spikenm_conformance: a check of the spikenm conformance suite")


def _option(config: pytest.Config, name: str) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # the plugin is not loaded: options are unknown
        return None


@dataclass
class Session:
    """The backend under test and the results gathered so far."""

    subject: Any
    config: Any
    reference: Any
    xfails: dict[str, str]
    xfail_path: Path | None
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, check_id: str) -> Any:
        """Run one check (once per session) and return its `CheckResult`."""
        from spikenm.conformance.registry import CHECKS
        from spikenm.conformance.runner import apply_xfails, run_check

        if check_id not in self.results:
            check = next(c for c in CHECKS if c.id == check_id)
            outcome = run_check(check, self.subject, self.reference, self.config)
            self.results[check_id] = apply_xfails(outcome, check, self.xfails, self.xfail_path)
        return self.results[check_id]


def open_session(config: pytest.Config) -> Session:
    """Select the backend from the options or the environment; a usage error otherwise."""
    from spikenm.conformance import profiles
    from spikenm.conformance.runner import RunConfig, check_profile, xfails_for
    from spikenm.conformance.selection import BackendSelectionError, select

    spec = _option(config, "spikenm_backend") or os.environ.get("SPIKENM_BACKEND")
    try:
        subject = select(spec)
        run_config = RunConfig(
            profile=_option(config, "spikenm_profile") or profiles.selected_profile(),
            max_examples=_option(config, "spikenm_max_examples"),
            seed=_option(config, "spikenm_seed"),
            xfail_file=_option(config, "spikenm_xfails"),
        )
        check_profile(run_config.profile)
        xfails, path = xfails_for(subject, run_config)
    except (BackendSelectionError, ValueError, OSError) as exc:
        raise pytest.UsageError(f"spikenm conformance: {exc}") from exc
    import spikenm.reference as reference

    return Session(subject, run_config, reference, xfails, path)


SESSION_KEY = pytest.StashKey[Session]()


def conformance_session(config: pytest.Config) -> Session:
    """The session of this pytest run (opened on first use)."""
    if SESSION_KEY not in config.stash:
        config.stash[SESSION_KEY] = open_session(config)
    return config.stash[SESSION_KEY]


def outcome_of(result: Any) -> None:
    """Turn a `CheckResult` into the pytest outcome of its test."""
    text = f"[{result.id}] {result.title}: {result.message}"
    if result.repro:
        text += "\n\nReproduce with:\n" + result.repro
    if result.status == "pass":
        return
    if result.status == "n/a":
        pytest.skip(result.message)
    if result.status == "xfail":
        pytest.xfail(text)
    pytest.fail(text, pytrace=False)


def write_report(config: pytest.Config) -> None:
    """Write the JSON report when ``--spikenm-report`` was given and checks ran."""
    path = _option(config, "spikenm_report")
    session = config.stash.get(SESSION_KEY, None)
    if not path or session is None or not session.results:
        return
    from datetime import datetime, timezone

    from spikenm.conformance.report import write_json
    from spikenm.conformance.runner import SuiteResult

    result = SuiteResult(
        session.subject, session.config, list(session.results.values()),
        sum(r.seconds for r in session.results.values()),
        datetime.now(timezone.utc).isoformat(timespec="seconds"), session.xfails,
        str(session.xfail_path) if session.xfail_path else None,
    )
    write_json(result, path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the report at the end of the run."""
    write_report(session.config)
