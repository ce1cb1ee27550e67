"""Hypothesis profiles shared by the conformance suite and the project's tests.

* ``ci``: derandomized, bounded example counts: the same examples on every run.
* ``dev``: more examples, random: the default for local runs.
* ``thorough``: many examples, for validating a new backend before a release.

Choose with the environment variable ``SPIKENM_HYPOTHESIS_PROFILE``; when it is unset the
profile is ``ci`` if the ``CI`` environment variable is set, else ``dev``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("ci", derandomize=True, max_examples=25, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=100, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=1000, print_blob=True, **_COMMON)

PROFILES = ("ci", "dev", "thorough")


def selected_profile() -> str:
    """Name of the profile chosen by the environment (see module docstring)."""
    name = os.environ.get("SPIKENM_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(
            f"SPIKENM_HYPOTHESIS_PROFILE={name!r} is not a known profile; expected one of {PROFILES}"
        )
    return name


def load_selected_profile() -> str:
    """Load the selected profile into Hypothesis and return its name."""
    name = selected_profile()
    settings.load_profile(name)
    return name
