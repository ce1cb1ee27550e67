"""One example of one check: builds inputs, calls the backend, judges the results.

A `Trial` records every input and call in a `Script`, so a failure carries a snippet
that rebuilds the exact inputs with NumPy, converts them with the backend's
``from_numpy`` and repeats the failing call.  Results go through the same steps in
order: the call runs, the result has the backend's array type (a backend returning
NumPy arrays for torch inputs fails here), the dtype, the shape, then the values.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from . import tolerance
from .repro import Script, array_literal, value_text
from .selection import Subject, numpy_dtype


class ConformanceFailure(AssertionError):
    """A backend broke a SPEC clause; ``str()`` is the message with the reproduction."""

    def __init__(self, check_id: str, message: str, repro: str) -> None:
        self.check_id = check_id
        self.message = message
        self.repro = repro
        indented = "\n".join("    " + line for line in repro.splitlines())
        super().__init__(f"[{check_id}] {message}\n\nReproduce with:\n{indented}")


class NotApplicable(Exception):
    """Raised by a check that does not apply to this backend (reported as n/a)."""


def _short(a: np.ndarray) -> str:
    a = np.asarray(a)
    return np.array2string(a, threshold=48, floatmode="unique", separator=", ", max_line_width=100)


class Trial:
    """Inputs, calls and verdicts of one example of check ``check_id``."""

    def __init__(self, subject: Subject, check_id: str, reference: Any) -> None:
        self.subject = subject
        self.be = subject.backend
        self.ref = reference
        self.check_id = check_id
        self.script = Script(subject.backend_expr(), subject.snippet_imports())
        self._names: dict[int, str] = {}
        self._alive: list[Any] = []
        self._printable: list[str] = []
        self.compared_blocks = 0
        self.skipped_blocks = 0
        self.cases = 0

    # -- recording -----------------------------------------------------------------------

    def new_case(self) -> None:
        """Start a new case inside a fixed check (its snippet starts afresh)."""
        self.cases += 1
        self.script.clear()
        self._names.clear()
        self._alive.clear()
        self._printable.clear()

    def _bind(self, value: Any, name: str) -> None:
        self._names[id(value)] = name
        self._alive.append(value)

    def _arg(self, value: Any) -> str:
        name = self._names.get(id(value))
        if name is not None:
            return name
        if isinstance(value, list):
            return "[" + ", ".join(self._arg(v) for v in value) + "]"
        return value_text(value)

    def judged(self, ok: np.ndarray) -> np.ndarray:
        """Count the blocks whose values are compared (``ok``) and those that are not
        (ill-conditioned, see `spikenm.conformance.conditioning`); returns ``ok``."""
        ok = np.asarray(ok, dtype=bool)
        self.compared_blocks += int(ok.sum())
        self.skipped_blocks += int(ok.size - ok.sum())
        return ok

    def note(self, line: str) -> None:
        """Add a plain statement (e.g. an import) to the snippet."""
        self.script.add(line)

    # -- inputs and calls ----------------------------------------------------------------

    def array(self, name: str, a: np.ndarray, *, source: str | None = None) -> Any:
        """``be.from_numpy(a)``, recorded as ``name``; ``source`` replaces the literal
        (for large, programmatically built inputs)."""
        a = np.asarray(a)
        literal = source if source is not None else array_literal(a)
        self.script.add(f"{name} = be.from_numpy({literal})")
        try:
            x = self.be.from_numpy(a)
        except Exception as exc:  # noqa: BLE001 - any error of the backend is a finding
            self.fail(f"be.from_numpy raised {type(exc).__name__}: {exc} for a {a.dtype} array of shape {a.shape}")
        self._bind(x, name)
        return x

    def call(self, fn: str, *args: Any, out: str = "out", api: bool = False, core: str | None = None,
             **kwargs: Any) -> Any:
        """Call ``be.fn`` (or ``spikenm.api.fn`` with ``api=True``) and record it.

        With ``core="eid_variants"`` the call is ``spikenm.eid_variants.fn(be, *args)``: a
        composition of backend primitives that the core runs on the backend itself.
        ``out`` names the result in the snippet; ``"values, indices"`` unpacks a tuple.
        An exception from the call is a failure of the check.
        """
        if core is None:
            owner, target = ("api" if api else "be"), self._target(fn, api)
        else:
            composed = getattr(importlib.import_module(f"spikenm.{core}"), fn)
            owner = core
            target = functools.partial(composed, self.be)
            self.script.add(f"from spikenm import {core}")
        text = ", ".join(([] if core is None else ["be"]) + [self._arg(a) for a in args]
                         + [f"{k}={self._arg(v)}" for k, v in kwargs.items()])
        self.script.add(f"{out} = {owner}.{fn}({text})")
        try:
            result = target(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any error of the backend is a finding
            self.fail(f"{owner}.{fn} raised {type(exc).__name__}: {exc}")
        names = [part.strip() for part in out.split(",")]
        if len(names) > 1 and isinstance(result, tuple) and len(result) == len(names):
            for value, name in zip(result, names):
                self._bind(value, name)
        else:
            self._bind(result, out)
        self._printable = [name if api else f"be.to_numpy({name})" for name in names]
        return result

    def raises(
        self, kinds: type[BaseException] | tuple[type[BaseException], ...], fn: str,
        *args: Any, mentions: Sequence[str] = (), api: bool = True, **kwargs: Any,
    ) -> BaseException:
        """Call ``fn`` expecting an exception of ``kinds`` whose message contains every
        string of ``mentions``; anything else is a failure."""
        owner = "api" if api else "be"
        target = self._target(fn, api)
        text = ", ".join([self._arg(a) for a in args] + [f"{k}={self._arg(v)}" for k, v in kwargs.items()])
        self.script.add(f"{owner}.{fn}({text})  # must raise {self._kind_names(kinds)}")
        self._printable = []
        try:
            target(*args, **kwargs)
        except kinds as exc:
            missing = [word for word in mentions if word not in str(exc)]
            if missing:
                self.fail(
                    f"{owner}.{fn} raised {type(exc).__name__} as expected, but its message does "
                    f"not name {missing}: {exc!s}"
                )
            return exc
        except Exception as exc:  # noqa: BLE001
            self.fail(
                f"{owner}.{fn} raised {type(exc).__name__} ({exc}); expected {self._kind_names(kinds)}"
            )
        self.fail(f"{owner}.{fn} returned normally; expected {self._kind_names(kinds)}")

    @staticmethod
    def _kind_names(kinds: type[BaseException] | tuple[type[BaseException], ...]) -> str:
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        return " or ".join(k.__name__ for k in kinds)

    def _target(self, fn: str, api: bool) -> Callable[..., Any]:
        if api:
            from spikenm import api as api_module

            return getattr(api_module, fn)
        return getattr(self.be, fn)

    # -- results -------------------------------------------------------------------------

    def numpy(self, value: Any, what: str, dtype: str | None = None) -> np.ndarray:
        """NumPy copy of a backend array (bfloat16 bit patterns viewed back)."""
        try:
            a = np.asarray(self.be.to_numpy(value))
        except Exception as exc:  # noqa: BLE001
            self.fail(f"be.to_numpy of {what} raised {type(exc).__name__}: {exc}")
        if dtype == "bfloat16" and a.dtype == np.uint16:
            a = a.view(numpy_dtype("bfloat16"))
        return a

    def result(
        self, value: Any, what: str, *, dtype: str | None, shape: tuple[int, ...] | None,
    ) -> np.ndarray:
        """Check type, dtype and shape of a result, in that order; its NumPy copy."""
        want = self.subject.array_type
        if not isinstance(value, want):
            self.fail(
                f"{what} returned a {type(value).__module__}.{type(value).__qualname__}; expected "
                f"a {want.__module__}.{want.__qualname__}, the backend's own array type (the "
                f"type of its inputs)"
            )
        if dtype is not None:
            try:
                got = self.be.dtype_name(value)
            except Exception as exc:  # noqa: BLE001
                self.fail(f"be.dtype_name of {what} raised {type(exc).__name__}: {exc}")
            if got != dtype:
                self.fail(f"{what} has dtype {got}; expected {dtype}")
        got_shape = tuple(int(s) for s in value.shape)
        if shape is not None and got_shape != tuple(shape):
            self.fail(f"{what} has shape {got_shape}; expected {tuple(shape)}")
        return self.numpy(value, what, dtype)

    # -- verdicts ------------------------------------------------------------------------

    def expect(
        self, problem: str | None, what: str, *,
        expected: np.ndarray | None = None, got: np.ndarray | None = None,
    ) -> None:
        """Fail with ``what: problem`` when ``problem`` is not None."""
        if problem is not None:
            self.fail(f"{what}: {problem}", expected=expected, got=got)

    def expect_exact(self, expected: np.ndarray, got: np.ndarray, what: str) -> None:
        """Exact equality (masks, indices, counts)."""
        self.expect(tolerance.exact(np.asarray(expected), got), what, expected=expected, got=got)

    def expect_close(
        self, expected: np.ndarray, got: np.ndarray, dtype: str, what: str, *,
        scale: float | np.ndarray = 1.0, where: np.ndarray | None = None,
    ) -> None:
        """S0.6 tolerance (``scale`` multiplies the absolute part)."""
        problem = tolerance.close(np.asarray(expected), got, dtype, scale=scale, where=where)
        self.expect(problem, what, expected=expected, got=got)

    def expect_scaled(
        self, expected: np.ndarray, got: np.ndarray, dtype: str, what: str, *,
        where: np.ndarray | None = None, floor: float = 0.0,
    ) -> None:
        """S0.6 gradient rule: compared after scaling by the largest magnitude (at least
        ``floor``, see `spikenm.conformance.tolerance.close_scaled`)."""
        problem = tolerance.close_scaled(np.asarray(expected), got, dtype, where=where, floor=floor)
        self.expect(problem, what, expected=expected, got=got)

    def require(self, condition: bool, message: str) -> None:
        """Fail with ``message`` unless ``condition``."""
        if not condition:
            self.fail(message)

    def fail(
        self, message: str, *, expected: np.ndarray | None = None, got: np.ndarray | None = None,
    ) -> NoReturn:
        """Raise `ConformanceFailure` with the snippet recorded so far."""
        lines = [message]
        if expected is not None:
            lines.append(f"expected: {_short(expected)}")
        if got is not None:
            lines.append(f"got:      {_short(got)}")
        text = "\n".join(lines)
        for expr in self._printable:
            self.script.add(f"print({expr})")
        self._printable = []
        repro = self.script.render(f"{self.check_id}: {text}")
        raise ConformanceFailure(self.check_id, text, repro)
