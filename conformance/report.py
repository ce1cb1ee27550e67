"""The printed table and the JSON report of a conformance run."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from .registry import MODEL_UNCOVERED, UNCOVERED
from .runner import FAILING, SuiteResult, checks_for, hypothesis_settings, is_model

SCHEMA = "spikenm.conformance.report/1"


def _versions() -> dict[str, str]:
    import hypothesis
    import numpy

    import spikenm

    return {
        "spikenm": spikenm.__version__,
        "numpy": numpy.__version__,
        "hypothesis": hypothesis.__version__,
        "python": platform.python_version(),
    }


def _model_backend(subject: Any) -> dict[str, Any]:
    return {
        "kind": "model",
        "selected_as": subject.spec,
        "name": subject.name,
        "object": repr(subject.backend)[:200],
        "device": subject.device,
        "array_type": f"{subject.array_type.__module__}.{subject.array_type.__qualname__}",
        "framework": subject.framework,
        "framework_version": subject.framework_version,
        "notes": subject.notes,
    }


def metadata(result: SuiteResult) -> dict[str, Any]:
    """Who was tested with what: backend, versions, platform, Hypothesis settings."""
    subject, config = result.subject, result.config
    from hypothesis import settings

    checks = checks_for(subject)
    effective = hypothesis_settings(config, checks[0])
    profile = settings.get_profile(config.profile)
    model = is_model(subject)
    return {
        "backend": _model_backend(subject) if model else {
            "kind": "array",
            "selected_as": subject.spec,
            "name": subject.name,
            "object": repr(subject.backend)[:200],
            "array_type": f"{subject.array_type.__module__}.{subject.array_type.__qualname__}",
            "framework": subject.framework,
            "framework_version": subject.framework_version,
            "differentiable": subject.differentiable,
            "api_dispatches_to_it": subject.dispatches,
            "packing_dtypes": list(subject.pack_dtypes),
            "unsupported_dtypes": subject.unsupported,
            "notes": subject.notes,
        },
        "versions": _versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "executable": sys.executable},
        "hypothesis": {
            "profile": config.profile,
            "max_examples": config.max_examples if config.max_examples is not None else profile.max_examples,
            "per_check_budget": {check.id: check.budget for check in checks},
            "derandomize": effective.derandomize,
            "seed": config.seed,
            "shrink": config.shrink,
        },
        "clauses_selected": list(config.clauses),
        "xfail_file": result.xfail_file,
        "xfails": result.xfails,
        "started": result.started,
        "seconds": round(result.seconds, 3),
    }


def to_json(result: SuiteResult) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    return {
        "schema": SCHEMA,
        "passed": result.ok,
        "summary": result.counts(),
        "metadata": metadata(result),
        "checks": [
            {
                "id": r.id, "clause": r.clause, "covers": list(r.covers), "title": r.title,
                "summary": r.summary, "status": r.status, "examples": r.examples,
                "seconds": round(r.seconds, 3), "blocks_compared": r.blocks_compared,
                "blocks_not_judged": r.blocks_skipped, "message": r.message, "repro": r.repro,
            }
            for r in result.results
        ],
        "not_covered": MODEL_UNCOVERED if is_model(result.subject) else UNCOVERED,
    }


def write_json(result: SuiteResult, path: str | Path) -> None:
    """Write `to_json` to ``path`` (UTF-8, indented)."""
    Path(path).write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")


def _cut(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def table(result: SuiteResult, *, details: bool = True) -> str:
    """The per-clause table, then the full message and reproduction of every failure."""
    s = result.subject
    model = is_model(s)
    if model:
        lines = [
            f"spikenm conformance: model backend {s.label} (name {s.name!r}, {s.framework} "
            f"{s.framework_version}, device {s.device}) against the NumPy reference model backend",
            f"profile {result.config.profile}, {result.seconds:.1f} s",
        ]
    else:
        lines = [
            f"spikenm conformance: backend {s.label} (name {s.name!r}, {s.framework} {s.framework_version}, "
            f"differentiable={s.differentiable}, api dispatch={s.dispatches})",
            f"profile {result.config.profile}, {result.seconds:.1f} s; packing dtypes: {', '.join(s.pack_dtypes)}",
        ]
    lines += [f"note: {note}" for note in s.notes]
    header = ("check", "clause", "title", "examples", "status", "first failure")
    rows = [
        (r.id, r.clause, _cut(r.title, 38), str(r.examples), r.status,
         _cut(r.message, 70) if r.status != "pass" else "")
        for r in result.results
    ]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    lines.append(fmt.format(*header))
    lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 13)
    lines += [fmt.format(*row).rstrip() for row in rows]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    verdict = "PASSED" if result.ok else "FAILED"
    lines.append(f"{verdict}: {counts}")
    skipped = sum(r.blocks_skipped for r in result.results)
    if skipped:
        compared = sum(r.blocks_compared for r in result.results)
        if model:
            lines.append(
                f"values were compared on {compared} examples; {skipped} examples with some H_t "
                f"within delta of theta (S4.11) were checked for structure only (see "
                f"spikenm.conformance.model_trial)"
            )
        else:
            lines.append(
                f"floating values were compared on {compared} blocks; {skipped} ill-conditioned blocks were "
                f"checked for invariants only (see spikenm.conformance.conditioning)"
            )
    if details:
        for r in result.results:
            if r.status in FAILING or r.status == "xfail":
                lines += ["", f"== {r.id} ({r.title}): {r.status}", r.message]
                if r.repro:
                    lines += ["-- reproduce with:", r.repro]
    return "\n".join(lines)
