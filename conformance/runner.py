"""Running the checks on one backend and collecting one result per check.

Statuses:

* ``pass``: every example satisfied the clause;
* ``FAIL``: a backend result broke the clause (message and reproduction attached);
* ``ERROR``: the check itself could not run (a bug of the suite or of its environment);
* ``n/a``: the check does not apply (gradients of a forward-only backend, API checks of a
  backend the API does not dispatch to);
* ``xfail``: failed, and listed in the backend's expected-failure file;
* ``XPASS``: passed although listed there.  It fails the run, so that stale entries are
  removed instead of hiding a later regression.

A run passes when no check is ``FAIL``, ``ERROR`` or ``XPASS``.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import profiles
from .check import Check, title_of
from .registry import select as select_checks
from .selection import Subject, describe, select
from .trial import ConformanceFailure, NotApplicable, Trial

FAILING = ("FAIL", "ERROR", "XPASS")
XFAIL_DIR = Path(__file__).with_name("xfail")


@dataclass(frozen=True)
class RunConfig:
    """How to run the suite.

    Attributes
    ----------
    profile : str
        Hypothesis profile of `spikenm.conformance.profiles` (``ci``, ``dev``, ``thorough``).
    max_examples : int or None
        Overrides the profile's example count (each check runs its ``budget`` share).
    derandomize : bool or None
        Overrides the profile's choice; ``None`` keeps it.
    seed : int or None
        Hypothesis seed (implies a randomized, reproducible run).
    clauses : tuple of str
        Only the checks matching these clause or check ids; all when empty.
    shrink : bool
        Let Hypothesis shrink a failing example to a minimal one (slower on failure).
    xfail_file : str or None
        Expected-failure file; by default ``xfail/<backend name>.txt`` of this package when
        the backend was selected by a built-in name.
    """

    profile: str = "ci"
    max_examples: int | None = None
    derandomize: bool | None = None
    seed: int | None = None
    clauses: tuple[str, ...] = ()
    shrink: bool = True
    xfail_file: str | None = None


@dataclass
class CheckResult:
    """Outcome of one check."""

    id: str
    clause: str
    covers: tuple[str, ...]
    title: str
    summary: str
    status: str
    examples: int = 0
    seconds: float = 0.0
    message: str = ""
    repro: str = ""
    blocks_compared: int = 0
    blocks_skipped: int = 0


@dataclass
class SuiteResult:
    """Outcome of a run on one backend (array or model)."""

    subject: Subject | Any
    config: RunConfig
    results: list[CheckResult]
    seconds: float
    started: str
    xfails: dict[str, str] = field(default_factory=dict)
    xfail_file: str | None = None

    @property
    def ok(self) -> bool:
        """No check failed, errored or passed unexpectedly."""
        return not any(r.status in FAILING for r in self.results)

    def counts(self) -> dict[str, int]:
        """Number of checks per status."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def read_xfails(path: str | Path, checks: tuple[Check, ...] | None = None) -> dict[str, str]:
    """``{id: reason}`` from an expected-failure file: one clause or check id per line,
    ``#`` starts a comment (the reason, when it follows an id).  ``checks`` are the ids
    allowed (default: the array-backend checks).

    Raises
    ------
    ValueError
        A line names no known clause or check id.
    """
    from .registry import CHECKS

    checks = CHECKS if checks is None else checks
    entries: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text, _, reason = raw.partition("#")
        key = text.strip()
        if not key:
            continue
        if not any(check.matches(key) for check in checks):
            raise ValueError(f"{path}:{number}: {key!r} is not a clause or check id of the suite")
        entries[key] = reason.strip()
    return entries


def is_model(subject: Any) -> bool:
    """True for a model-backend subject (`spikenm.conformance.model_selection`)."""
    from .model_selection import ModelSubject

    return isinstance(subject, ModelSubject)


def default_xfail_file(subject: Subject | Any) -> Path | None:
    """``xfail/<name>.txt`` (``xfail/model-<name>.txt`` for a model backend) for a backend
    selected by a registered name, if present: the name as given, else its registry name
    or one of its aliases (``reference`` reads ``numpy.txt``, ``array_api`` reads
    ``array_api_strict.txt``)."""
    if subject.spec is None:
        return None
    from spikenm import registry

    entry = registry.info(subject.spec)
    candidates = [subject.spec] + ([entry.name, *entry.aliases] if entry is not None else [])
    prefix = "model-" if is_model(subject) else ""
    for name in dict.fromkeys(candidates):
        path = XFAIL_DIR / f"{prefix}{name}.txt"
        if path.exists():
            return path
    return None


def hypothesis_settings(config: RunConfig, check: Check) -> settings:
    """The profile's settings with the run's overrides and the check's budget."""
    base = settings.get_profile(config.profile)
    total = config.max_examples if config.max_examples is not None else base.max_examples
    derandomize = base.derandomize if config.derandomize is None else config.derandomize
    if config.seed is not None:
        derandomize = False
    phases = tuple(Phase) if config.shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(
        base,
        max_examples=max(1, round(total * check.budget)),
        derandomize=derandomize,
        database=None,
        deadline=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
        ],
    )


def check_profile(name: str) -> None:
    """Raise ValueError unless ``name`` is a registered profile."""
    if name not in profiles.PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {profiles.PROFILES}")


def _not_applicable(check: Check, subject: Subject | Any) -> str | None:
    if check.needs == "differentiable" and not subject.differentiable:
        return "n/a: forward-only backend (differentiable = False)"
    if check.needs == "dispatch" and not subject.dispatches:
        return "n/a: spikenm.api does not dispatch this backend's arrays to it"
    return None


def run_check(check: Check, subject: Subject | Any, reference: Any, config: RunConfig) -> CheckResult:
    """Run one check and return its result (never raises for a backend's fault)."""
    result = CheckResult(check.id, check.clause, check.covers, title_of(check), check.summary, "pass")
    reason = _not_applicable(check, subject)
    if reason is not None:
        result.status, result.message = "n/a", reason
        return result
    start = time.perf_counter()

    def new_trial() -> Trial:
        if check.target == "model":
            from .model_trial import ModelTrial

            return ModelTrial(subject, check.id, reference)
        return Trial(subject, check.id, reference)

    def tally(trial: Trial) -> None:
        result.examples += max(1, trial.cases)
        result.blocks_compared += trial.compared_blocks
        result.blocks_skipped += trial.skipped_blocks

    try:
        if check.golden is not None:
            trial = new_trial()
            check.golden(trial)
            tally(trial)
        if check.kind == "fixed":
            trial = new_trial()
            check.body(trial, None)
            tally(trial)
        else:
            _hypothesis_run(check, config, new_trial, tally)
    except ConformanceFailure as failure:
        result.status, result.message, result.repro = "FAIL", failure.message, failure.repro
    except NotApplicable as exc:
        result.status, result.message = "n/a", f"n/a: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported as the check's own error
        result.status = "ERROR"
        result.message = f"the check could not run: {type(exc).__name__}: {exc}"
        result.repro = "".join(traceback.format_exception(exc)[-6:])
    result.seconds = time.perf_counter() - start
    return result


def _hypothesis_run(
    check: Check, config: RunConfig, new_trial: Callable[[], Trial], tally: Callable[[Trial], None],
) -> None:
    def example(data: st.DataObject) -> None:
        trial = new_trial()
        check.body(trial, data)
        tally(trial)

    example.__name__ = example.__qualname__ = "check_" + check.id.replace(".", "_").replace(":", "_")
    test = settings(hypothesis_settings(config, check))(given(data=st.data())(example))
    if config.seed is not None:
        test = hypothesis_seed(config.seed)(test)
    test()


def apply_xfails(outcome: CheckResult, check: Check, xfails: dict[str, str], path: Path | None) -> CheckResult:
    """Turn FAIL/ERROR into ``xfail`` and pass into ``XPASS`` for a listed check."""
    if any(check.matches(key) for key in xfails):
        if outcome.status in ("FAIL", "ERROR"):
            outcome.status = "xfail"
        elif outcome.status == "pass":
            outcome.status = "XPASS"
            outcome.message = f"passed, but listed in {path}: remove the entry"
    return outcome


def checks_for(subject: Subject | Any) -> tuple[Check, ...]:
    """All checks that judge ``subject``: the model checks for a model backend."""
    from .registry import CHECKS, MODEL_CHECKS

    return MODEL_CHECKS if is_model(subject) else CHECKS


def reference_for(subject: Subject | Any) -> Any:
    """What the checks compare against: the NumPy reference (array backends) or the
    NumPy reference model backend."""
    if is_model(subject):
        from spikenm.registry import model_backend

        return model_backend("numpy")
    import spikenm.reference as reference

    return reference


def xfails_for(subject: Subject | Any, config: RunConfig) -> tuple[dict[str, str], Path | None]:
    """The expected failures of a run and the file they come from."""
    path = Path(config.xfail_file) if config.xfail_file else default_xfail_file(subject)
    return (read_xfails(path, checks_for(subject)) if path is not None else {}), path


def run_subject(subject: Subject | Any, config: RunConfig = RunConfig()) -> SuiteResult:
    """Run the selected checks on an already described backend (array or model)."""
    check_profile(config.profile)
    reference = reference_for(subject)
    checks = select_checks(config.clauses, checks_for(subject))
    xfails, path = xfails_for(subject, config)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    results = [
        apply_xfails(run_check(check, subject, reference, config), check, xfails, path)
        for check in checks
    ]
    return SuiteResult(subject, config, results, time.perf_counter() - start, started, xfails,
                       str(path) if path is not None else None)


def run_suite(backend: str | Any, config: RunConfig = RunConfig()) -> SuiteResult:
    """Run the suite on a backend given by name (see `spikenm.conformance.selection`) or
    as an object implementing `spikenm.protocol.Backend`.

    Raises
    ------
    BackendSelectionError
        The backend is unknown, cannot be imported, or misses protocol members.
    """
    subject = select(backend) if isinstance(backend, str) or backend is None else describe(backend)
    return run_subject(subject, config)


def run_model_suite(backend: str | Any, config: RunConfig = RunConfig(), device: str = "cpu"
                    ) -> SuiteResult:
    """Run the model-backend checks (SPEC S4) on a model backend given by name or import
    path (created for ``device``; see `spikenm.conformance.model_selection`) or as an
    object implementing `spikenm.snn.ModelBackend`.

    Raises
    ------
    BackendSelectionError
        The backend is unknown, cannot be imported or created, or misses members.
    """
    from .model_selection import describe_model, select_model

    subject = (select_model(backend, device) if isinstance(backend, str) or backend is None
               else describe_model(backend))
    return run_subject(subject, config)
