"""One example of a model-backend check: converts a `Case`, calls the backend, judges the
`StepResult` / `EvalResult` against the NumPy reference model backend (SPEC S4.11).

Order of the verdicts, as for array backends: the call runs; the result has the fields of
the interface; every array is the backend's own type, with the parameters' dtype and the
expected shape and keys; the host values (loss, count, firing rates) are Python numbers;
then the values against the reference: loss and firing rates within S0.6 (``atol = rtol``),
gradients and credits after scaling by their largest magnitude, buffers within S0.6.  A
parameter's gradient is scaled by at least ``sqrt(rtol)`` times the step's largest gradient
(float64: 2.4e-4, float32: 3.7e-2): one far smaller than the others is rounding-dominated
(cancellation, e.g. batch norm over two entries, whose output hardly depends on its input).  A gradient that is 0 in exact arithmetic (the bias of a layer read only by batch norm,
`shift_invariant`) has only rounding to compare: it must stay below ``sqrt(eps)`` times
the step's largest gradient.

Values are compared only on *well-conditioned* examples: S4.11 excludes inputs where some
``H_t`` lies within ``delta`` (``1e-6`` in float64, ``1e-3`` in float32) of ``theta``,
where the spike function jumps.  The suite detects them through the interface alone: the
reference runs with ``theta - delta`` and ``theta + delta`` as well, and an example whose
firing rates or loss change is ill-conditioned; the seed is then advanced (up to
`RESEEDS` times).  An example that stays ill-conditioned is checked for everything but
values and counted as not judged.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from spikenm.snn.model import EIDRequest

from .model_cases import Case, CaseArrays
from .tolerance import eps, rtol
from .trial import Trial

RESEEDS = 4
DELTA = {"float64": 1e-6, "float32": 1e-3}
"""Distance to the threshold below which an ``H_t`` makes the example ill-conditioned."""


@dataclass
class Inputs:
    """A case converted for the backend under test (and its NumPy originals)."""

    case: Case
    arrays: CaseArrays
    params: dict[str, Any]
    buffers: dict[str, Any]
    x: Any
    y: Any
    eid: EIDRequest | None


@dataclass
class Expected:
    """The reference's results for a case (NumPy), and whether values are comparable."""

    step: Any
    conditioned: bool


def shift_invariant(case: Case) -> set[str]:
    """Bias keys whose gradient is 0 in exact arithmetic: the bias of a ``linear``/``conv``
    layer read only by a ``bn`` node (train-mode batch norm removes per-channel shifts,
    S4.13), so that only rounding is left to compare."""
    graph = case.graph
    consumers = graph.consumers()
    out = set()
    for k, i in enumerate(graph.layers):
        readers = consumers[i]
        if graph.nodes[i].bias and len(readers) == 1 and graph.nodes[readers[0]].op == "bn":
            out.add(f"layer{k}.bias")
    return out


def credit_shape(case: Case, k: int) -> tuple[int, ...]:
    """Block-layout shape of layer ``k``'s credit: ``(out, in)`` or ``(out, k, k, in)``."""
    shape = case.graph.layer_node(k).weight_shape()
    return shape if len(shape) == 2 else (shape[0], *shape[2:], shape[1])


class ModelTrial(Trial):
    """Inputs, calls and verdicts of one example of a model-backend check; ``ref`` is the
    NumPy reference model backend."""

    # -- inputs --------------------------------------------------------------------------

    def _convert(self, a: np.ndarray, what: str) -> Any:
        try:
            return self.be.from_numpy(a)
        except Exception as exc:  # noqa: BLE001 - any error of the backend is a finding
            self.fail(f"be.from_numpy raised {type(exc).__name__}: {exc} for {what} "
                      f"({a.dtype}, shape {a.shape})")

    def inputs(self, case: Case, *, eid: bool = True) -> Inputs:
        """Build the case's arrays with NumPy and convert them with ``from_numpy``."""
        arrays = case.arrays()
        self.note(f"case = {case!r}")
        self.note("params_np, buffers_np, x_np, y_np, dense_np = case.arrays()")
        self.note("params = {k: be.from_numpy(v) for k, v in params_np.items()}")
        params = {k: self._convert(v, f"parameter {k}") for k, v in arrays.params.items()}
        self.note("buffers = {k: be.from_numpy(v) for k, v in buffers_np.items()}")
        buffers = {k: self._convert(v, f"buffer {k}") for k, v in arrays.buffers.items()}
        self.note("x, y = be.from_numpy(x_np), be.from_numpy(y_np)")
        x, y = self._convert(arrays.x, "input x"), self._convert(arrays.y, "labels y")
        request = None
        if eid and case.eid_layers:
            self.note("eid = EIDRequest(case.eid_layers, tuple(be.from_numpy(dense_np[k]) "
                      "for k in case.eid_layers), case.eid_decay, case.eid_signed)")
            request = EIDRequest(case.eid_layers, tuple(
                self._convert(arrays.dense[k], f"dense weight {k}") for k in case.eid_layers),
                case.eid_decay, case.eid_signed)
            self._bind(request, "eid")
        for value, label in ((params, "params"), (buffers, "buffers"), (x, "x"), (y, "y"),
                             (case.graph, "case.graph"), (case.lif, "case.lif")):
            self._bind(value, label)
        return Inputs(case, arrays, params, buffers, x, y, request)

    # -- calls ---------------------------------------------------------------------------

    def run(self, fn: str, *args: Any, out: str = "out") -> Any:
        """Call ``be.fn(*args)``, recorded; an exception is a failure."""
        text = ", ".join(self._arg(a) for a in args)
        self.script.add(f"{out} = be.{fn}({text})")
        try:
            result = getattr(self.be, fn)(*args)
        except Exception as exc:  # noqa: BLE001 - any error of the backend is a finding
            self.fail(f"be.{fn} raised {type(exc).__name__}: {exc}")
        self._bind(result, out)
        self._printable = [out]
        return result

    def step(self, inp: Inputs, out: str = "out") -> Any:
        """``be.forward_backward`` on converted inputs."""
        args = [inp.case.graph, inp.params, inp.buffers, inp.x, inp.y, inp.case.lif]
        return self.run("forward_backward", *args, *([inp.eid] if inp.eid else []), out=out)

    def evaluate(self, inp: Inputs, out: str = "out") -> Any:
        """``be.evaluate`` on converted inputs."""
        return self.run("evaluate", inp.case.graph, inp.params, inp.buffers, inp.x, inp.y,
                        inp.case.lif, out=out)

    # -- the reference -------------------------------------------------------------------

    def _reference(self, case: Case, mode: str) -> Any:
        a = case.arrays()
        if mode == "eval":
            return self.ref.evaluate(case.graph, a.params, a.buffers, a.x, a.y, case.lif)
        eid = EIDRequest(case.eid_layers, tuple(a.dense[k] for k in case.eid_layers),
                         case.eid_decay, case.eid_signed) if case.eid_layers else None
        return self.ref.forward_backward(case.graph, a.params, a.buffers, a.x, a.y, case.lif,
                                         eid)

    def _fingerprint(self, result: Any, mode: str) -> tuple[Any, ...]:
        if mode == "eval":
            return (result.loss_sum, result.correct, tuple(result.spike_sums))
        return (result.loss, result.correct, tuple(result.firing_rates))

    def expected(self, case: Case, mode: str = "train") -> tuple[Case, Expected]:
        """The reference's results for ``case`` (``mode``: ``"train"`` for
        ``forward_backward``, ``"eval"``), reseeding up to `RESEEDS` times to find a
        well-conditioned example; returns the case used."""
        delta = DELTA[case.dtype] * max(1.0, case.lif.theta)
        for attempt in range(RESEEDS):
            here = case if attempt == 0 else replace(case, seed=case.seed + attempt)
            result = self._reference(here, mode)
            print_ = self._fingerprint(result, mode)
            shifted = [self._fingerprint(self._reference(here.with_theta(here.lif.theta + s),
                                                         mode), mode)
                       for s in (-delta, delta)]
            if all(p == print_ for p in shifted):
                return here, Expected(result, True)
        return here, Expected(result, False)

    # -- verdicts on structure -----------------------------------------------------------

    def check_array(self, value: Any, what: str, *, dtype: str, shape: tuple[int, ...]
                    ) -> np.ndarray:
        """Type, dtype and shape of one array result, in that order; its NumPy copy."""
        want = self.subject.array_type
        if not isinstance(value, want):
            self.fail(f"{what} is a {type(value).__module__}.{type(value).__qualname__}; "
                      f"expected a {want.__module__}.{want.__qualname__}, the backend's own "
                      f"array type (of its from_numpy), on its device")
        try:
            a = np.asarray(self.be.to_numpy(value))
        except Exception as exc:  # noqa: BLE001
            self.fail(f"be.to_numpy of {what} raised {type(exc).__name__}: {exc}")
        if a.dtype.name != dtype:
            self.fail(f"{what} has dtype {a.dtype.name}; expected {dtype}, the parameters' "
                      f"dtype")
        if tuple(a.shape) != tuple(shape):
            self.fail(f"{what} has shape {tuple(a.shape)}; expected {tuple(shape)}")
        return a

    def table(self, given: Any, what: str, want: Mapping[Any, tuple[int, ...]], dtype: str
              ) -> dict[Any, np.ndarray]:
        """A dict result: exactly the keys of ``want``, each array of that shape."""
        if not isinstance(given, Mapping):
            self.fail(f"{what} is a {type(given).__name__}; expected a dict")
        if set(given) != set(want):
            self.fail(f"{what} has keys {sorted(given, key=str)}; expected "
                      f"{sorted(want, key=str)}")
        return {k: self.check_array(given[k], f"{what}[{k!r}]", dtype=dtype, shape=want[k])
                for k in want}

    def host_float(self, value: Any, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.fail(f"{what} is {type(value).__module__}.{type(value).__qualname__} "
                      f"{value!r}; expected a Python float on the host (S4.16)")
        return float(value)

    def host_int(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.fail(f"{what} is {type(value).__module__}.{type(value).__qualname__} "
                      f"{value!r}; expected a Python int on the host (S4.16)")
        return int(value)

    def fields(self, result: Any, names: tuple[str, ...], what: str) -> None:
        missing = [n for n in names if not hasattr(result, n)]
        if missing:
            self.fail(f"{what} returned a {type(result).__name__} without {missing}; expected "
                      f"a spikenm.snn.{'StepResult' if 'grads' in names else 'EvalResult'}")

    def step_result(self, inp: Inputs, result: Any) -> dict[str, Any]:
        """Structure of a `StepResult`; its NumPy copies."""
        case = inp.case
        self.fields(result, ("loss", "correct", "grads", "buffers", "credits",
                             "firing_rates"), "forward_backward")
        loss = self.host_float(result.loss, "loss")
        correct = self.host_int(result.correct, "correct")
        self.require(0 <= correct <= case.batch,
                     f"correct = {correct}; expected a count in [0, {case.batch}]")
        rates = result.firing_rates
        if not isinstance(rates, (tuple, list)) or len(rates) != len(case.graph.neurons):
            self.fail(f"firing_rates is {rates!r}; expected a tuple of "
                      f"{len(case.graph.neurons)} floats, one per lif node (S4.9)")
        rates = [self.host_float(r, f"firing_rates[{i}]") for i, r in enumerate(rates)]
        self.require(all(0.0 <= r <= 1.0 for r in rates),
                     f"firing_rates {rates} are not in [0, 1] (means of 0/1 spikes, S4.9)")
        grads = self.table(result.grads, "grads", case.graph.param_shapes(), case.dtype)
        buffers = self.table(result.buffers, "buffers", case.graph.buffer_shapes(), case.dtype)
        wanted = {k: credit_shape(case, k) for k in (case.eid_layers if inp.eid else ())}
        credits = self.table(result.credits, "credits", wanted, case.dtype)
        for k, c in credits.items():
            self.require(bool(np.all(c >= 0)),
                         f"credits[{k}] has negative entries; expected |W| * sum_t |...| >= 0"
                         f"{' (signed, S2.9: |W| * |sum_t ...|)' if case.eid_signed else ''}")
        return dict(loss=loss, correct=correct, rates=rates, grads=grads, buffers=buffers,
                    credits=credits)

    def eval_result(self, inp: Inputs, result: Any) -> dict[str, Any]:
        """Structure of an `EvalResult`, with the counts checked exactly."""
        case = inp.case
        self.fields(result, ("loss_sum", "correct", "count", "spike_sums", "spike_counts"),
                    "evaluate")
        count = self.host_int(result.count, "count")
        self.require(count == case.batch, f"count = {count}; expected the batch {case.batch}")
        correct = self.host_int(result.correct, "correct")
        self.require(0 <= correct <= count, f"correct = {correct}; expected [0, {count}]")
        loss_sum = self.host_float(result.loss_sum, "loss_sum")
        want = [case.lif.time_steps * case.batch * int(np.prod(case.graph.shapes[i]))
                for i in case.graph.neurons]
        sums, counts = result.spike_sums, result.spike_counts
        if not isinstance(counts, (tuple, list)) or \
                [self.host_int(c, "spike_counts") for c in counts] != want:
            self.fail(f"spike_counts are {counts!r}; expected {want} (T * B * units of each "
                      f"lif node)")
        if not isinstance(sums, (tuple, list)) or len(sums) != len(want):
            self.fail(f"spike_sums are {sums!r}; expected {len(want)} floats")
        sums = [self.host_float(s, f"spike_sums[{i}]") for i, s in enumerate(sums)]
        self.require(all(0 <= s <= c and s == int(s) for s, c in zip(sums, want)),
                     f"spike_sums {sums} are not whole numbers in [0, {want}]")
        return dict(loss_sum=loss_sum, correct=correct, sums=sums)

    def unchanged(self, inp: Inputs, buffers_too: bool) -> None:
        """The caller's parameters (and buffers) hold their values after the call."""
        tables = [("parameter", inp.params, inp.arrays.params)]
        if buffers_too:
            tables.append(("buffer", inp.buffers, inp.arrays.buffers))
        for kind, given, original in tables:
            for key, value in given.items():
                now = np.asarray(self.be.to_numpy(value))
                if not np.array_equal(now, original[key]):
                    self.fail(f"the call changed the caller's {kind} {key}; a call must not "
                              f"modify its inputs (new statistics are returned, S4.13)")

    # -- verdicts on values --------------------------------------------------------------

    def compare_step(self, case: Case, want: Any, got: dict[str, Any], what: str = "") -> None:
        """S4.11: loss, correct, firing rates, gradients, buffers and credits."""
        dt = case.dtype
        tag = f" ({what})" if what else ""
        self.expect_close(np.array(want.loss), np.array(got["loss"]), dt, f"loss{tag}")
        self.require(want.correct == got["correct"],
                     f"correct = {got['correct']}{tag}; the reference counts {want.correct}")
        self.expect_close(np.array(want.firing_rates, dtype=np.float64),
                          np.array(got["rates"], dtype=np.float64), dt, f"firing_rates{tag}")
        zero = shift_invariant(case)
        top = max((float(np.max(np.abs(np.asarray(v)), initial=0.0))
                   for v in want.grads.values()), default=0.0)
        for key, g in got["grads"].items():
            if key in zero:
                limit = math.sqrt(eps(dt)) * top
                worst = float(np.max(np.abs(g.astype(np.float64)), initial=0.0))
                self.require(worst <= limit,
                             f"grads[{key!r}]{tag} reaches {worst:.3g}; the bias of a layer "
                             f"read only by batch norm has gradient 0 (S4.13 removes any "
                             f"per-channel shift), so |grad| <= sqrt(eps) * {top:.3g} (the "
                             f"step's largest gradient) = {limit:.3g} is expected")
                continue
            self.expect_scaled(np.asarray(want.grads[key]), g, dt, f"grads[{key!r}]{tag}",
                               floor=math.sqrt(rtol(dt)) * top)
        for key, b in got["buffers"].items():
            self.expect_close(np.asarray(want.buffers[key]), b, dt, f"buffers[{key!r}]{tag}")
        for k, c in got["credits"].items():
            self.expect_scaled(np.asarray(want.credits[k]), c, dt, f"credits[{k}]{tag}")

    def compare_eval(self, case: Case, want: Any, got: dict[str, Any]) -> None:
        """S4.11 in eval mode: summed loss, correct count, spike sums (exact)."""
        self.expect_close(np.array(want.loss_sum), np.array(got["loss_sum"]), case.dtype,
                          "loss_sum", scale=float(case.batch))
        self.require(want.correct == got["correct"],
                     f"correct = {got['correct']}; the reference counts {want.correct}")
        self.expect_exact(np.array(want.spike_sums, dtype=np.float64),
                          np.array(got["sums"], dtype=np.float64), "spike_sums")
