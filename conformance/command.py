"""``python -m spikenm.conformance``: run the suite on one backend from the command line.

``--backend NAME`` judges an array backend (SPEC S0-S3); ``--model-backend NAME`` judges a
model backend (SPEC S4, with the EID credits of S2.3/S5.5) created for ``--device``.  One
of the two per run.

Exit status: 0 when every check passes (n/a and listed xfails allowed), 1 when a check
fails, errors or passes unexpectedly (XPASS), 2 for a usage error (no or unknown
backend, both kinds at once, incomplete backend, unknown clause id, bad xfail file).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import profiles


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="python -m spikenm.conformance",
        description="Check a spikenm backend against SPEC.md, clause by clause.",
    )
    p.add_argument("--backend", default=None,
                   help="array backend: numpy (alias reference), torch, jax, array_api_strict, a "
                        "registered name, or package.module:OBJECT (default: $SPIKENM_BACKEND; "
                        "there is no other default)")
    p.add_argument("--model-backend", default=None,
                   help="model backend (SPEC S4): numpy, torch, jax, a registered name, or "
                        "package.module:FACTORY (default: $SPIKENM_MODEL_BACKEND)")
    p.add_argument("--device", default=None,
                   help="device the model backend is created for (default: $SPIKENM_DEVICE, "
                        "else cpu)")
    p.add_argument("--profile", choices=profiles.PROFILES, default=None,
                   help="Hypothesis profile (default: $SPIKENM_HYPOTHESIS_PROFILE, else ci under CI, else dev)")
    p.add_argument("--max-examples", type=int, default=None, help="examples per property check (overrides the profile)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--derandomize", action="store_true", default=None,
                       help="the same examples on every run")
    group.add_argument("--seed", type=int, default=None, help="random but reproducible examples from this seed")
    p.add_argument("--clauses", default="", help="comma-separated clause or check ids, e.g. S1.2,S3.4 (default: all)")
    p.add_argument("--xfails", default=None, help="expected-failure file (default: xfail/<backend>.txt of the suite)")
    p.add_argument("--report", default=None, help="write the JSON report to this path")
    p.add_argument("--no-shrink", action="store_true", help="report the first failing example without shrinking it")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = parser().parse_args(argv)
    from .registry import CHECKS, UNCOVERED

    if args.list:
        from .registry import MODEL_CHECKS, MODEL_UNCOVERED

        for title, checks, uncovered in (("array backends (--backend)", CHECKS, UNCOVERED),
                                         ("model backends (--model-backend)", MODEL_CHECKS,
                                          MODEL_UNCOVERED)):
            print(f"# {title}")
            for check in checks:
                print(f"{check.id:<15} {check.clause:<10} {check.summary}")
            for clause, why in uncovered.items():
                print(f"{'-':<15} {clause:<10} not a row: {why}")
        return 0
    from .report import table, write_json
    from .runner import RunConfig, run_model_suite, run_suite
    from .selection import BackendSelectionError

    model = args.model_backend or (None if args.backend else os.environ.get("SPIKENM_MODEL_BACKEND"))
    backend = args.backend or (None if model else os.environ.get("SPIKENM_BACKEND"))
    if backend and model:
        print("error: give --backend (an array backend) or --model-backend (a model backend), "
              "not both", file=sys.stderr)
        return 2
    if args.max_examples is not None and args.max_examples < 1:
        print("error: --max-examples must be at least 1", file=sys.stderr)
        return 2
    config = RunConfig(
        profile=args.profile or profiles.selected_profile(),
        max_examples=args.max_examples,
        derandomize=args.derandomize,
        seed=args.seed,
        clauses=tuple(c.strip() for c in args.clauses.split(",") if c.strip()),
        shrink=not args.no_shrink,
        xfail_file=args.xfails,
    )
    try:
        if model:
            device = args.device or os.environ.get("SPIKENM_DEVICE") or "cpu"
            result = run_model_suite(model, config, device)
        else:
            result = run_suite(backend, config)
    except (BackendSelectionError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    if args.report:
        write_json(result, args.report)
        print(f"report written to {args.report}")
    return 0 if result.ok else 1
