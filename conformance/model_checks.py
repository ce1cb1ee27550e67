"""Checks of a model backend (`spikenm.snn.ModelBackend`), SPEC S4 with S2.3/S2.9/S5.5.

Every property check draws a small graph (`spikenm.conformance.model_strategies`), runs
one call on the backend and on the NumPy reference model backend in float64, and judges
the result as `spikenm.conformance.model_trial` describes.  Fixed checks run the shipped
networks once each, the device rule and the errors of mismatched inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from spikenm.snn.archs import build_graph, resnet19, vgg11

from . import model_strategies as ms
from .check import Check
from .model_cases import Case
from .model_trial import ModelTrial
from .trial import NotApplicable, Trial

STEP = ("from_numpy", "to_numpy", "forward_backward")
EVAL = ("from_numpy", "to_numpy", "evaluate")


def _judge_step(trial: ModelTrial, case: Case, what: str = "") -> None:
    case, expected = trial.expected(case)
    inp = trial.inputs(case)
    got = trial.step_result(inp, trial.step(inp))
    trial.unchanged(inp, buffers_too=False)
    if trial.judged(np.array([expected.conditioned]))[0]:
        trial.compare_step(case, expected.step, got, what)


def _train(family: str | None, *, eid: bool = False, signed: bool = False,
           dtype: str = "float64") -> Any:
    def body(trial: Trial, data: DataObject | None) -> None:
        assert data is not None and isinstance(trial, ModelTrial)
        name = family or data.draw(st.sampled_from(sorted(ms.FAMILIES)), label="graph family")
        _judge_step(trial, ms.case(data, name, dtype=dtype, eid=eid, signed=signed))

    kind = " with signed EID credits (S2.9)" if signed else " with EID credits" if eid else ""
    body.__doc__ = (f"One train step on {family or 'any'} graphs{kind} in {dtype} against "
                    f"the reference.")
    return body


def static_and_time_major(trial: Trial, data: DataObject | None) -> None:
    """S4.7: a direct-encoded ``x`` is shown at every step, so it gives the results of the
    time-major input that repeats it ``T`` times (credits included: ``d_t`` differ per step
    even where the first layer's output does not); both equal the reference."""
    assert data is not None and isinstance(trial, ModelTrial)
    family = data.draw(st.sampled_from(["linear", "conv", "bn", "pool"]), label="graph family")
    eid = data.draw(st.booleans(), label="with EID credits")
    case, expected = trial.expected(ms.case(data, family, time_major=False, eid=eid,
                                            signed=None))
    inp = trial.inputs(case)
    direct = trial.step_result(inp, trial.step(inp, out="direct"))
    trial.note("x_t = be.from_numpy(np.repeat(x_np[None], case.lif.time_steps, axis=0))")
    repeated = np.repeat(inp.arrays.x[None], case.lif.time_steps, axis=0)
    x_t = trial._convert(repeated, "time-major x")
    trial._bind(x_t, "x_t")
    result = trial.run("forward_backward", case.graph, inp.params, inp.buffers, x_t, inp.y,
                       case.lif, *([inp.eid] if inp.eid else []), out="repeated")
    over_t = trial.step_result(inp, result)
    if trial.judged(np.array([expected.conditioned]))[0]:
        trial.compare_step(case, expected.step, direct, "direct-encoded x")
        trial.compare_step(case, expected.step, over_t, "x repeated over T, time-major")


def eval_mode(trial: Trial, data: DataObject | None) -> None:
    """S4.13 eval mode: running statistics, nothing changes; summed loss, counts and spike
    sums (S4.8, S4.9) against the reference."""
    assert data is not None and isinstance(trial, ModelTrial)
    family = data.draw(st.sampled_from(["bn", "bn", "residual", "pool", "linear"]),
                       label="graph family")
    case, expected = trial.expected(ms.case(data, family), "eval")
    inp = trial.inputs(case, eid=False)
    got = trial.eval_result(inp, trial.evaluate(inp))
    trial.unchanged(inp, buffers_too=True)
    if trial.judged(np.array([expected.conditioned]))[0]:
        trial.compare_eval(case, expected.step, got)


SHIPPED = {
    "mlp": lambda: build_graph("mlp", (1, 8, 8), 4, hidden=(8, 8)),
    "conv": lambda: build_graph("conv", (1, 8, 8), 4, channels=(4, 4), hidden=(8,)),
    "vgg11": lambda: vgg11((1, 8, 8), 4, width=1 / 32, hidden=(8,)),
    "resnet19": lambda: resnet19((1, 8, 8), 4, width=1 / 32),
}
"""The shipped networks (S4.15) at a width that runs in a second."""


SIGNED_SHIPPED = ("conv", "resnet19")
"""The shipped networks whose step `shipped_networks` repeats with signed credits (S2.9):
the conv stacks, where the signed credit is one weight gradient of the stacked steps."""


def shipped_networks(trial: Trial, data: DataObject | None) -> None:
    """S4.15: one train step of every shipped network (narrow), EID on the masked layers
    1..L-2 (S5.1), against the reference; the conv stacks of `SIGNED_SHIPPED` once more
    with signed credits (S2.9)."""
    assert isinstance(trial, ModelTrial)
    from spikenm.snn.neuron import LIFParams

    for arch, build in SHIPPED.items():
        graph = build()
        layers = tuple(range(1, len(graph.layers) - 1))
        for signed in (False, True) if arch in SIGNED_SHIPPED else (False,):
            trial.new_case()
            _judge_step(trial, Case(graph, LIFParams(beta=0.75, time_steps=2), batch=3,
                                    seed=11, gain=2.5, eid_layers=layers, eid_decay=0.75,
                                    eid_signed=signed),
                        f"{arch}, signed credits" if signed else arch)


BOGUS_DEVICE = "cuda:97"


def devices(trial: Trial, data: DataObject | None) -> None:
    """S4.16: a device that does not exist is a ValueError naming it and the devices that
    are there (at least the one the backend under test was created for)."""
    assert isinstance(trial, ModelTrial)
    factory = trial.subject.factory
    if factory is None:
        raise NotApplicable("the model backend was given as an object; there is no factory "
                            "to create it for another device")
    trial.new_case()
    spec = trial.subject.spec
    trial.note(f"model_backend({spec!r}, device={BOGUS_DEVICE!r})  # must raise ValueError")
    have = str(trial.be.device)
    try:
        factory(BOGUS_DEVICE)
    except ValueError as exc:
        missing = [w for w in (BOGUS_DEVICE, have) if w not in str(exc)]
        if missing:
            trial.fail(f"the factory raised ValueError as expected, but its message does not "
                       f"name {missing} (the device asked for and the ones available): {exc}")
        return
    except Exception as exc:  # noqa: BLE001
        trial.fail(f"the factory raised {type(exc).__name__} ({exc}) for device "
                   f"{BOGUS_DEVICE!r}; expected ValueError")
    trial.fail(f"the factory created a backend for device {BOGUS_DEVICE!r}, which does not "
               f"exist here; expected ValueError")


def _mismatch_case() -> Case:
    from spikenm.snn.graph import Graph, Node
    from spikenm.snn.neuron import LIFParams

    graph = Graph((4,), (Node("linear", (-1,), 4, 3, bias=False), Node("bn", (0,)),
                         Node("lif", (1,)), Node("linear", (2,), 3, 2)))
    return Case(graph, LIFParams(time_steps=2), batch=3, seed=5)


def mismatched_inputs(trial: Trial, data: DataObject | None) -> None:
    """S4.14 keys and shapes: a missing, unexpected or misshapen parameter or buffer is a
    ValueError naming the key; a wrong number of time steps or labels a ValueError; an
    input of another dtype than the parameters a TypeError."""
    assert isinstance(trial, ModelTrial)
    case = _mismatch_case()
    t, b = case.lif.time_steps, case.batch

    def variant(label: str, note: str, **change: Any) -> list[Any]:
        trial.new_case()
        inp = trial.inputs(case, eid=False)
        args = {"params": inp.params, "buffers": inp.buffers, "x": inp.x, "y": inp.y}
        for key, value in change.items():
            args[key] = value(inp) if callable(value) else value
            trial._bind(args[key], f"bad_{key}")
        trial.note(f"# {label}: {note}")
        return [case.graph, args["params"], args["buffers"], args["x"], args["y"], case.lif]

    def without(table: str, key: str) -> Any:
        return lambda inp: {k: v for k, v in getattr(inp, table).items() if k != key}

    fixes = [
        ("missing parameter", "layer1.weight dropped", ValueError, ["layer1.weight"],
         dict(params=without("params", "layer1.weight"))),
        ("unexpected parameter", "layer7.weight added", ValueError, ["layer7.weight"],
         dict(params=lambda inp: {**inp.params, "layer7.weight": inp.params["layer1.weight"]})),
        ("misshapen parameter", "layer0.weight transposed", ValueError, ["layer0.weight"],
         dict(params=lambda inp: {**inp.params, "layer0.weight": trial._convert(
             inp.arrays.params["layer0.weight"].T.copy(), "transposed weight")})),
        ("missing buffer", "bn0.running_var dropped", ValueError, ["bn0.running_var"],
         dict(buffers=without("buffers", "bn0.running_var"))),
        ("time steps", f"time-major x with {t + 1} steps for T = {t}", ValueError, [],
         dict(x=lambda inp: trial._convert(np.zeros((t + 1, b, 4)), "x"))),
        ("labels", f"{b + 1} labels for a batch of {b}", ValueError, [],
         dict(y=lambda inp: trial._convert(np.zeros(b + 1, np.int64), "y"))),
        ("input dtype", "float32 x with float64 parameters", TypeError, [],
         dict(x=lambda inp: trial._convert(inp.arrays.x.astype(np.float32), "x"))),
    ]
    for label, note, kind, mentions, change in fixes:
        args = variant(label, note, **change)
        trial.raises(kind, "forward_backward", *args, mentions=mentions, api=False)
    args = variant("evaluate", "layer1.weight dropped", params=without("params", "layer1.weight"))
    trial.raises(ValueError, "evaluate", *args, mentions=["layer1.weight"], api=False)


def _model(check_id: str, covers: tuple[str, ...], summary: str, body: Any,
           uses: tuple[str, ...] = STEP, kind: str = "property", budget: float = 0.2) -> Check:
    return Check(check_id, covers, summary, body, uses=uses, kind=kind,  # type: ignore[arg-type]
                 budget=budget, target="model")


CHECKS = (
    _model("S4.5:linear", ("S4.1", "S4.3", "S4.4", "S4.5", "S4.8", "S4.9"),
           "step on Linear+LIF graphs: loss, grads, rates (hard/soft, detach)",
           _train("linear"), budget=0.3),
    _model("S4.5:conv", ("S4.2", "S4.5"),
           "step on conv graphs: kernel 1/3, stride 1/2, bias or not, flatten", _train("conv")),
    _model("S4.6", ("S4.6",), "step with q x q pooling of input/spikes, global pooling",
           _train("pool")),
    _model("S4.7", ("S4.7", "S4.1"), "direct-encoded x equals x repeated over T, credits too",
           static_and_time_major),
    _model("S4.13", ("S4.13",), "train-mode batch norm: grads of gamma/beta, new statistics",
           _train("bn")),
    _model("S4.13:eval", ("S4.13", "S4.8", "S4.9"),
           "evaluate: running statistics, loss sum, spike sums, nothing changes",
           eval_mode, uses=EVAL),
    _model("S4.14", ("S4.14",), "residual add (2-3 inputs), fan-out: gradients summed",
           _train("residual")),
    _model("S4.14:keys", ("S4.14",), "mismatched keys, shapes, T, labels, dtype -> errors",
           mismatched_inputs, uses=STEP + ("evaluate",), kind="fixed"),
    _model("S4.15", ("S4.15", "S5.1"),
           "mlp, conv, vgg11, resnet19 (narrow): one step with EID (conv stacks signed too)",
           shipped_networks, kind="fixed"),
    _model("S4.16", ("S4.16",), "a device that does not exist -> ValueError naming it",
           devices, uses=(), kind="fixed"),
    _model("S2.3:model", ("S2.3", "S5.5"),
           "EID credits of requested layers (dense W, block layout) vs reference",
           _train(None, eid=True), budget=0.3),
    _model("S2.9:model", ("S2.9", "S5.5"),
           "signed EID credits (time sum before |.|; conv: one stacked weight gradient)",
           _train(None, eid=True, signed=True), budget=0.3),
    _model("S4.11:float32", ("S4.11", "S0.4"),
           "float32 step: float32 results within the float32 tolerance", _train(None,
                                                                                  dtype="float32")),
)
"""The model-backend checks."""

UNCOVERED = {
    "S4.10": "initialization is spikenm.snn.init_params in the core, not a backend function",
    "S4.12": "NIR exchange is spikenm.nir_io, not a backend function",
}
"""SPEC S4 clauses without a model-backend row, and why."""

__all__ = ["CHECKS", "UNCOVERED", "SHIPPED", "SIGNED_SHIPPED", "BOGUS_DEVICE"]
