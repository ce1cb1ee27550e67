"""pytest configuration of the conformance package: select the backend before any test runs.

Loaded when pytest collects this package (``pytest --pyargs spikenm.conformance``).  The
``--spikenm-*`` options come from `spikenm.conformance.pytest_plugin`; without it the
environment variable ``SPIKENM_BACKEND`` selects the backend.
"""

from __future__ import annotations

import pytest

from spikenm.conformance import pytest_plugin
from spikenm.conformance.pytest_plugin import conformance_session, write_report


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of the conformance tests."""
    config.addinivalue_line("markers", "spikenm_conformance: a check of the spikenm conformance suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Open the conformance session (a usage error when no usable backend is selected)."""
    if any(item.get_closest_marker("spikenm_conformance") for item in items):
        conformance_session(config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the JSON report (when the plugin is not registered, it cannot do it)."""
    if not session.config.pluginmanager.is_registered(pytest_plugin):
        write_report(session.config)
