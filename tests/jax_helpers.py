"""Helpers shared by the JAX tests."""

from __future__ import annotations

import contextlib
from typing import Iterator

import jax

COMPILE = "/jax/core/compile/backend_compile_duration"
"""The monitoring event of one XLA compilation."""


@contextlib.contextmanager
def counting_compiles() -> Iterator[list[str]]:
    """The XLA compilations (``backend_compile`` events) while the block runs."""
    seen: list[str] = []

    def listener(event: str, duration: float, **kwargs: object) -> None:
        if event == COMPILE:
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
