"""pytest integration: ``pytest --pyargs spikenm.conformance --spikenm-backend NAME`` (an
array backend) and/or ``--spikenm-model-backend NAME`` (a model backend, SPEC S4).

The options are registered by this plugin.  pytest reads the command line before it
collects a package given with ``--pyargs``, so the plugin must be loaded first: with
``-p spikenm.conformance.pytest_plugin``, or automatically through the ``pytest11``
entry point of the installed package.  Without the plugin, ``SPIKENM_BACKEND=NAME``,
``SPIKENM_MODEL_BACKEND=NAME`` (with ``SPIKENM_DEVICE``) and
``SPIKENM_HYPOTHESIS_PROFILE`` select the same things.

Each check of the suite is one test (``test_check[S1.2]`` for array backends,
``test_model_check[S4.13]`` for model backends): ``pass`` passes, ``FAIL`` and ``ERROR``
fail with the message and the reproduction snippet, ``n/a`` is skipped, ``xfail`` is an
expected failure and ``XPASS`` fails; the checks of the kind of backend not selected are
skipped.  No backend selected, an unknown one, or an incomplete one stops the session
with a usage error before any test runs.
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
    group.addoption("--spikenm-model-backend", default=None,
                    help="model backend under test: numpy, torch, jax or package.module:FACTORY "
                         "(default: $SPIKENM_MODEL_BACKEND)")
    group.addoption("--spikenm-device", default=None,
                    help="device the model backend is created for (default: $SPIKENM_DEVICE, "
                         "else cpu)")
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
    """The backends under test (array and/or model) and the results gathered so far."""

    subject: Any
    config: Any
    reference: Any
    xfails: dict[str, str]
    xfail_path: Path | None
    results: dict[str, Any] = field(default_factory=dict)
    model: "Session | None" = None

    def run(self, check_id: str) -> Any:
        """Run one check (once per session) and return its `CheckResult`."""
        from spikenm.conformance.runner import apply_xfails, checks_for, run_check

        if check_id not in self.results:
            check = next(c for c in checks_for(self.subject) if c.id == check_id)
            outcome = run_check(check, self.subject, self.reference, self.config)
            self.results[check_id] = apply_xfails(outcome, check, self.xfails, self.xfail_path)
        return self.results[check_id]


def _session_for(subject: Any, run_config: Any) -> Session:
    from spikenm.conformance.runner import reference_for, xfails_for

    xfails, path = xfails_for(subject, run_config)
    return Session(subject, run_config, reference_for(subject), xfails, path)


def open_session(config: pytest.Config) -> Session:
    """Select the backends from the options or the environment; a usage error otherwise.

    The returned session is the array backend's (``subject`` None when only a model
    backend was selected); ``model`` holds the model backend's session.
    """
    from spikenm.conformance import profiles
    from spikenm.conformance.model_selection import select_model
    from spikenm.conformance.runner import RunConfig, check_profile
    from spikenm.conformance.selection import BackendSelectionError, select

    spec = _option(config, "spikenm_backend") or os.environ.get("SPIKENM_BACKEND")
    model_spec = (_option(config, "spikenm_model_backend")
                  or os.environ.get("SPIKENM_MODEL_BACKEND"))
    device = _option(config, "spikenm_device") or os.environ.get("SPIKENM_DEVICE") or "cpu"
    try:
        run_config = RunConfig(
            profile=_option(config, "spikenm_profile") or profiles.selected_profile(),
            max_examples=_option(config, "spikenm_max_examples"),
            seed=_option(config, "spikenm_seed"),
            xfail_file=_option(config, "spikenm_xfails"),
        )
        check_profile(run_config.profile)
        if spec or not model_spec:
            session = _session_for(select(spec), run_config)
        else:
            session = Session(None, run_config, None, {}, None)
        if model_spec:
            session.model = _session_for(select_model(model_spec, device), run_config)
    except (BackendSelectionError, ValueError, OSError) as exc:
        raise pytest.UsageError(f"spikenm conformance: {exc}") from exc
    return session


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
    """Write the JSON report when ``--spikenm-report`` was given and checks ran: one
    report, or, with both kinds of backend, ``REPORT`` for the array backend and
    ``REPORT`` with ``.model`` before the suffix for the model backend."""
    path = _option(config, "spikenm_report")
    session = config.stash.get(SESSION_KEY, None)
    if not path or session is None:
        return
    from datetime import datetime, timezone

    from spikenm.conformance.report import write_json
    from spikenm.conformance.runner import SuiteResult

    both = session.subject is not None and session.model is not None
    for part, target in ((session, Path(path)), (session.model, None)):
        if part is None or part.subject is None or not part.results:
            continue
        if target is None:
            target = Path(path).with_suffix(".model" + Path(path).suffix) if both else Path(path)
        result = SuiteResult(
            part.subject, part.config, list(part.results.values()),
            sum(r.seconds for r in part.results.values()),
            datetime.now(timezone.utc).isoformat(timespec="seconds"), part.xfails,
            str(part.xfail_path) if part.xfail_path else None,
        )
        write_json(result, target)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the report at the end of the run."""
    write_report(session.config)
