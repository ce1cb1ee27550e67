"""Helpers of the conformance test modules (``test_conformance_*.py``): backends with some
members replaced, and subjects selected once per test module with JAX's float64 setting
given back at the module's end."""

from __future__ import annotations

import sys
from typing import Any, Callable, Generic, Iterator, TypeVar

import pytest

S = TypeVar("S")


class Wrapped:
    """A backend (array or model backend) that delegates to ``inner`` except for the
    members given as overrides."""

    def __init__(self, inner: Any, name: str, **overrides: Callable[..., Any]) -> None:
        self._inner = inner
        self.name = name
        self.__dict__.update(overrides)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)


class Subjects(Generic[S]):
    """``select(name)`` of every backend name, called once per name and kept.

    Selecting ``jax`` turns on ``jax_enable_x64`` for the whole process; the setting from
    before the first selection is remembered, and the fixture made by `restoring_fixture`
    puts it back when the test module ends, so other test modules run with the setting
    they had.
    """

    def __init__(self, select: Callable[[str], S]) -> None:
        self._select = select
        self._selected: dict[str, S] = {}
        self._jax_x64: list[bool] = []

    def __call__(self, name: str) -> S:
        if name not in self._selected:
            if name == "jax" and not self._jax_x64:
                import jax

                self._jax_x64.append(bool(jax.config.read("jax_enable_x64")))
            self._selected[name] = self._select(name)
        return self._selected[name]

    def restore_jax_x64(self) -> None:
        """Give JAX the ``jax_enable_x64`` setting it had before ``jax`` was selected."""
        if self._jax_x64 and "jax" in sys.modules:
            sys.modules["jax"].config.update("jax_enable_x64", self._jax_x64[0])

    def restoring_fixture(self) -> Any:
        """A module-scoped autouse fixture calling `restore_jax_x64` at the module's end
        (assign it to a name in the test module)."""

        @pytest.fixture(scope="module", autouse=True)
        def _restore_jax_x64() -> Iterator[None]:
            yield
            self.restore_jax_x64()

        return _restore_jax_x64
