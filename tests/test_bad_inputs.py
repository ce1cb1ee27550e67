"""Hypothesis-driven bad inputs through every public function of `spikenm.api` on NumPy,
torch and JAX (SPEC S0.5, S0.8, S3.10).

`test_bad_input_is_refused_clearly` draws a function, a good call, and one mutation that
makes the call invalid by construction (a non-array, a wrong dtype or rank, a block axis
of the wrong length, NaN or inf, a value beyond the S0.8 bound, a bad pattern, axis,
temperature or scale, a corrupt `Packed`), runs it on the three backends and requires a
``ValueError`` or ``TypeError`` whose message names the argument, the same type and
message on every backend; a result is a silent failure.
`test_accepted_inputs_give_finite_results` draws inputs of every magnitude (values,
temperatures and scales from the subnormal range to the largest float) and requires that
every call the API accepts returns finite values (S0.8).  Both print their tallies
(``-s`` shows them): tried, rejected clearly, silent, unclear.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikenm import api
from spikenm.packed import Packed

BACKENDS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy": lambda a: a,
    "torch": torch.from_numpy,
    "jax": jnp.asarray,
}
TALLY: Counter[str] = Counter()
FINITE: Counter[str] = Counter()


def _examples(factor: int) -> int:
    return settings.default.max_examples * factor


# -- good calls ------------------------------------------------------------------------------

MATH = {
    # name: (positional, array arguments with their block role, other arguments)
    "sample_mask": (["logits", "n", "m"], ["logits", "noise"],
                    {"n": 2, "m": 4, "temperature": 0.5, "scale": 2.0, "axis": -1}),
    "topn_mask": (["scores", "n", "m"], ["scores"], {"n": 2, "m": 4, "axis": -1}),
    "final_mask": (["logits", "n", "m"], ["logits"], {"n": 2, "m": 4, "axis": -1}),
    "relaxed_topn": (["scores", "n", "m"], ["scores"], {"n": 2, "m": 4, "temperature": 0.5, "axis": -1}),
    "block_probs": (["logits", "m"], ["logits"], {"m": 4, "scale": 2.0, "axis": -1}),
    "credit_scores": (["credits", "m"], ["credits"], {"m": 4, "axis": -1}),
    "eid_targets": (["credits", "m"], ["credits"], {"m": 4, "temperature": 0.5, "axis": -1}),
    "eid_loss": (["logits", "targets", "m"], ["logits", "targets"], {"m": 4, "scale": 2.0, "axis": -1}),
    "pack": (["w", "n", "m"], ["w"], {"n": 2, "m": 4, "axis": -1}),
    "is_nm": (["x", "n", "m"], ["x"], {"n": 2, "m": 4, "axis": -1}),
    "check_nm": (["x", "n", "m"], ["x"], {"n": 2, "m": 4, "axis": -1}),
}
FLOAT_ONLY = ("sample_mask", "topn_mask", "final_mask", "relaxed_topn", "block_probs", "credit_scores",
              "eid_targets", "eid_loss")
PATTERNED = ("sample_mask", "topn_mask", "final_mask", "relaxed_topn", "pack", "is_nm", "check_nm")
TEMPERATURE = ("sample_mask", "relaxed_topn", "eid_targets")
SCALE = ("sample_mask", "block_probs", "eid_loss")
BOUNDED = {"block_probs": "logits", "eid_loss": "logits", "credit_scores": "credits",
           "eid_targets": "credits", "sample_mask": "noise", "relaxed_topn": "scores"}
"""An array argument with an S0.8 value bound below ``F / 16`` at the good call."""


def _good(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    _, arrays, others = MATH[name]
    out: dict[str, Any] = dict(others)
    for a in arrays:
        out[a] = np.full(shape, 0.25, dtype=np.float32)
    return out


def _call(name: str, fw: str, args: dict[str, Any]) -> Any:
    positional = MATH[name][0] if name in MATH else []
    conv = {k: BACKENDS[fw](v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
    if name in MATH:
        return getattr(api, name)(*[conv.pop(k) for k in positional], **conv)
    return OTHER[name](fw, conv)


NON_ARRAYS = st.sampled_from([None, [0.0, 1.0, 2.0, 3.0], "abc", 3.0, 7, {"a": 1}, (1.0, 2.0), object()])
BAD_SCALARS = st.one_of(
    st.sampled_from([0.0, -1.0, -1e-30, math.nan, math.inf, -math.inf, 1e39, 1e-40, 1e-46, 1e-320]),
    st.floats(max_value=0.0),
    st.sampled_from(["1", None, [1.0], True]),
)
"""Temperatures/scales that every float32 call refuses: not a number, <= 0, not finite,
inf in float32 (1e39), subnormal or 0 in float32, a bool."""


def _mutations(data: st.DataObject, name: str, shape: tuple[int, ...]) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """A mutation of the good call: ``(kind, args, words)`` where ``words`` are the
    names of which at least one must appear in the message."""
    args = _good(name, shape)
    arrays = MATH[name][1]
    kinds = ["non-array", "0-d array", "block axis length", "complex dtype"]
    if name in FLOAT_ONLY:
        kinds += ["integer dtype", "float16", "non-finite"]
    if name in PATTERNED:
        kinds += ["pattern"]
    else:
        kinds += ["block size"]
    if "axis" in args:
        kinds += ["axis"]
    if name in TEMPERATURE:
        kinds += ["temperature"]
    if name in SCALE:
        kinds += ["scale"]
    if name in BOUNDED:
        kinds += ["beyond the S0.8 bound"]
    if len(arrays) == 2:
        kinds += ["shape mismatch"]
    kind = data.draw(st.sampled_from(kinds), label="kind")
    target = data.draw(st.sampled_from(arrays), label="argument")
    if kind == "non-array":
        args[target] = data.draw(NON_ARRAYS, label="value")
        return kind, args, (target,)
    if kind == "0-d array":
        for a in arrays:
            args[a] = np.array(0.25, dtype=np.float32)
        return kind, args, (arrays[0],)
    if kind == "block axis length":
        k = data.draw(st.integers(1, 15).filter(lambda v: v % 4), label="K")
        for a in arrays:
            args[a] = np.zeros(shape[:-1] + (k,), dtype=np.float32)
        return kind, args, (arrays[0],)
    if kind == "complex dtype":
        args[target] = args[target].astype(np.complex64)
        return kind, args, (target, "dtypes")
    if kind == "integer dtype":
        dt = data.draw(st.sampled_from(["int8", "int32", "uint8", "bool"]), label="dtype")  # JAX: no int64 without x64
        args[target] = args[target].astype(dt)
        return kind, args, (target, "dtypes")
    if kind == "float16":
        args[target] = args[target].astype(np.float16)
        return kind, args, (target, "dtypes")
    if kind == "non-finite":
        flat = data.draw(st.integers(0, int(np.prod(shape)) - 1), label="entry")
        bad = args[target].copy()
        bad.reshape(-1)[flat] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="bad value")
        args[target] = bad
        return kind, args, (target,)
    if kind == "pattern":
        which = data.draw(st.sampled_from(["n too large", "n < 1", "m < 2", "n float", "m float", "m bool"]),
                          label="pattern")
        if which == "n too large":
            args["n"] = data.draw(st.integers(5, 1000), label="n")
        elif which == "n < 1":
            args["n"] = data.draw(st.integers(-1000, 0), label="n")
        elif which == "m < 2":
            args["m"] = data.draw(st.integers(-1000, 1), label="m")
        elif which == "n float":
            args["n"] = float(data.draw(st.integers(1, 4), label="n"))
        elif which == "m float":
            args["m"] = 4.0
        else:
            args["m"] = True
        return kind, args, ("n", "m")
    if kind == "block size":
        args["m"] = data.draw(st.sampled_from([1, 0, -3, 4.0, "4", None, True]), label="m")
        return kind, args, ("m",)
    if kind == "axis":
        ndim = len(shape)
        args["axis"] = data.draw(st.one_of(st.integers(ndim, 50), st.integers(-50, -ndim - 1),
                                           st.sampled_from([1.0, "1", None])), label="axis")
        return kind, args, ("axis",)
    if kind in ("temperature", "scale"):
        args[kind] = data.draw(BAD_SCALARS, label=kind)
        return kind, args, (kind,)
    if kind == "beyond the S0.8 bound":
        a = BOUNDED[name]
        flat = data.draw(st.integers(0, int(np.prod(shape)) - 1), label="entry")
        bad = args[a].copy()
        bad.reshape(-1)[flat] = data.draw(st.sampled_from([2.2e37, 1e38, 3e38]), label="value")
        args[a] = bad
        return kind, args, (a,)
    # shape mismatch
    second = arrays[1]
    other = data.draw(st.sampled_from([shape[:-1] + (shape[-1] * 2,), (1,) + shape, shape[::-1] + (4,)]),
                      label="other shape")
    args[second] = np.zeros(other, dtype=np.float32)
    return kind, args, ("shapes", second)


# -- the other public functions ----------------------------------------------------------------

def _packed(fw: str, indices: np.ndarray | None = None, **fields: Any) -> Packed:
    p = api.pack(np.array([[0, 1, 2, 0, 3, 0, 0, 4]] * 2, dtype=np.float32), 2, 4)
    idx = np.array(p.indices) if indices is None else indices
    conv = BACKENDS[fw]
    values = fields.pop("values", np.array(p.values))
    return Packed(conv(values) if isinstance(values, np.ndarray) else values,
                  conv(idx) if isinstance(idx, np.ndarray) else idx,
                  fields.pop("n", 2), fields.pop("m", 4), fields.pop("shape", (2, 8)), fields.pop("axis", 1))


def _ones(fw: str) -> Any:
    return BACKENDS[fw](np.ones(8, dtype=np.float32))


def _save(p: Any) -> None:
    import os
    import tempfile

    folder = tempfile.mkdtemp(prefix="spikenm-bad-")
    try:
        api.save_packed(os.path.join(folder, "p.npz"), p)
    finally:
        left = os.listdir(folder)
        for f in left:
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)
        assert not left, f"save_packed left {left}"


PACKED_USERS: dict[str, Callable[[str, Any], Any]] = {
    "unpack": lambda fw, p: api.unpack(p),
    "spmm": lambda fw, p: api.spmm(p, _ones(fw)),
    "save_packed": lambda fw, p: _save(p),
    "to_cutlass": lambda fw, p: api.to_cutlass(p),
}
OTHER: dict[str, Callable[[str, dict[str, Any]], Any]] = {}


def _packed_mutation(data: st.DataObject) -> tuple[str, Callable[[str], Packed], tuple[str, ...]]:
    """A corrupt Packed: ``(kind, build(fw), words)``."""
    kind = data.draw(st.sampled_from(["index >= m", "not increasing", "field", "array type"]), label="packed")
    idx = np.array(_packed("numpy").indices)
    row = data.draw(st.integers(0, 1), label="row")
    block = data.draw(st.integers(0, 1), label="block")
    if kind == "index >= m":
        idx[row, 2 * block + data.draw(st.integers(0, 1), label="slot")] = data.draw(st.integers(4, 255), label="index")
        return kind, lambda fw: _packed(fw, idx), ("packed indices",)
    if kind == "not increasing":
        value = data.draw(st.integers(0, 3), label="index")
        first = data.draw(st.booleans(), label="first slot")
        lo, hi = (value, data.draw(st.integers(0, value), label="second")) if first else (value, value)
        idx[row, 2 * block: 2 * block + 2] = [lo, hi]
        return kind, lambda fw: _packed(fw, idx), ("packed indices",)
    if kind == "field":
        field = data.draw(st.sampled_from(["n", "m", "shape", "axis"]), label="field")
        value = data.draw({
            "n": st.sampled_from([0, 5, 2.0, None, True]),
            "m": st.sampled_from([1, 3, 300, 4.0, "4"]),
            "shape": st.sampled_from([(2, 12), (8, 2), (2,), 8, None, (2, -8), (2, 8.0)]),
            "axis": st.sampled_from([0, 2, -1, 1.0, None]),
        }[field], label="value")
        return kind, lambda fw: _packed(fw, **{field: value}), (field, "Packed", "n", "m")
    which = data.draw(st.sampled_from(["values None", "indices list", "indices int32", "values 1-D"]), label="array")
    if which == "values None":
        return kind, lambda fw: _packed(fw, values=None), ("Packed values",)
    if which == "indices list":
        return kind, lambda fw: _packed(fw, idx.tolist()), ("Packed indices",)
    if which == "indices int32":
        return kind, lambda fw: _packed(fw, idx.astype(np.int32)), ("Packed indices",)
    return kind, lambda fw: _packed(fw, values=np.zeros(4, np.float32)), ("Packed values",)


def _judge(calls: dict[str, Callable[[], Any]], words: tuple[str, ...], what: str) -> None:
    """Every backend must refuse with ValueError/TypeError naming one of ``words``; the
    same type and message everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    for fw, call in calls.items():
        TALLY["tried"] += 1
        try:
            call()
        except (ValueError, TypeError) as exc:
            text = str(exc)
            if not any(w in text for w in words):
                TALLY["unclear"] += 1
                pytest.fail(f"{what} [{fw}]: {type(exc).__name__}({text}) names none of {words}")
            TALLY["clear"] += 1
            # S0.5: JAX alone also takes a 0-d array as temperature/scale, and says so
            seen[fw] = (type(exc).__name__, text.replace(" or a 0-d jax array", ""))
            continue
        except Exception as exc:  # noqa: BLE001 - any other escape is a finding
            TALLY["unclear"] += 1
            pytest.fail(f"{what} [{fw}]: {type(exc).__name__}: {exc}")
        TALLY["silent"] += 1
        pytest.fail(f"{what} [{fw}]: accepted silently")
    assert len(set(seen.values())) == 1, f"{what}: the backends disagree: {seen}"


@settings(max_examples=_examples(8))
@given(data=st.data())
def test_bad_input_is_refused_clearly(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(sorted(MATH) + sorted(PACKED_USERS) + ["gumbel_like", "eligibility_credit"]),
                       label="function")
    if target in MATH:
        shape = data.draw(st.sampled_from([(8,), (2, 8), (2, 2, 4)]), label="shape")
        kind, args, words = _mutations(data, target, shape)
        calls = {fw: (lambda fw=fw: _call(target, fw, dict(args))) for fw in BACKENDS}
        _judge(calls, words, f"{target} with {kind}: {args!r:.300}")
        return
    if target in PACKED_USERS:
        kind, build, words = _packed_mutation(data)
        use = PACKED_USERS[target]
        _judge({fw: (lambda fw=fw: use(fw, build(fw))) for fw in BACKENDS}, words + ("Packed",),
               f"{target} with a Packed of {kind}")
        return
    if target == "gumbel_like":
        bad = data.draw(st.sampled_from(["x", "seed"]), label="argument")
        if bad == "x":
            value = data.draw(st.one_of(NON_ARRAYS, st.sampled_from(["int32", "float16", "bool"])), label="x")
            calls = {fw: (lambda fw=fw: api.gumbel_like(
                BACKENDS[fw](np.zeros(4, value)) if value in ("int32", "float16", "bool") else value, 0))
                for fw in BACKENDS}
            _judge(calls, ("x",), f"gumbel_like(x={value!r})")
        else:
            seed = data.draw(st.sampled_from([-1, -(2**40), 1.5, "7", None, True]), label="seed")
            _judge({fw: (lambda fw=fw: api.gumbel_like(BACKENDS[fw](np.zeros(4, np.float32)), seed))
                    for fw in BACKENDS}, ("seed",), f"gumbel_like(seed={seed!r})")
        return
    # eligibility_credit
    good = {"x": np.zeros((2, 1, 8), np.float32), "d": np.zeros((2, 1, 3), np.float32),
            "weight": np.zeros((3, 8), np.float32)}
    arg = data.draw(st.sampled_from(["x", "d", "weight", "decay"]), label="argument")
    if arg == "decay":
        value: Any = data.draw(st.one_of(st.floats(1.0001, 1e300), st.floats(-1e300, -1e-300),
                                         st.sampled_from([math.nan, None, "0.5"])), label="decay")
        words: tuple[str, ...] = ("decay",)
    else:
        value = data.draw(st.one_of(NON_ARRAYS, st.sampled_from(["rank", "nan", "huge", "int32"])), label=arg)
        if value == "rank":
            value = np.zeros(good[arg].shape[:-1], np.float32)
        elif value == "nan":
            value = good[arg].copy()
            value.reshape(-1)[-1] = np.nan
        elif value == "huge":
            value = good[arg].copy()
            value.reshape(-1)[0] = 1e30
        elif value == "int32":
            value = good[arg].astype(np.int32)
        words = (arg,)
    def call(fw: str) -> Any:
        args = {k: BACKENDS[fw](v) for k, v in good.items()}
        args[arg] = BACKENDS[fw](value) if isinstance(value, np.ndarray) else value
        decay = args.pop("decay", 0.5)
        return api.eligibility_credit(args["x"], args["d"], args["weight"], decay=decay)
    _judge({fw: (lambda fw=fw: call(fw)) for fw in BACKENDS}, words, f"eligibility_credit({arg}={value!r:.100})")


# -- S0.8: finite results for every accepted input ------------------------------------------------

def _magnitudes(dtype: str) -> st.SearchStrategy[float]:
    """Positive numbers of every decade of ``dtype``, subnormals included."""
    info = np.finfo(np.dtype(dtype))
    low, high = math.log10(float(info.smallest_subnormal)), math.log10(float(info.max))
    big = float(info.max)
    return st.floats(low, high).map(lambda e: float(np.dtype(dtype).type(big * 10.0 ** (e - high))))


def _arrays(data: st.DataObject, dtype: str, shape: tuple[int, ...], label: str, positive: bool = False) -> np.ndarray:
    scale = data.draw(_magnitudes(dtype), label=f"{label} magnitude")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label=f"{label} seed"))
    with np.errstate(over="ignore"):
        a = rng.normal(size=shape) * scale
        if positive:
            a = np.abs(a)
        out = a.astype(dtype)
    return np.where(np.isfinite(out), out, 0).astype(dtype)


def _finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return bool(np.all(np.isfinite(np.asarray(value))))


@settings(max_examples=_examples(8))
@given(data=st.data())
def test_accepted_inputs_give_finite_results(data: st.DataObject) -> None:
    """S0.8: a call the API accepts returns finite values, on every backend."""
    fw = data.draw(st.sampled_from(sorted(BACKENDS)), label="backend")
    x64 = fw != "jax" or bool(jax.config.jax_enable_x64)
    dtype = data.draw(st.sampled_from(["float32", "float64"] if x64 else ["float32"]), label="dtype")
    fn = data.draw(st.sampled_from(["sample_mask", "relaxed_topn", "block_probs", "eid_loss", "eid_targets",
                                    "credit_scores", "eligibility_credit"]), label="function")
    n, m = data.draw(st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (8, 16)]), label="n, m")
    shape = (2, 2 * m)
    conv = BACKENDS[fw]
    temperature = data.draw(_magnitudes(dtype), label="temperature")
    scale = data.draw(_magnitudes(dtype), label="scale")
    if fn == "sample_mask":
        call = lambda: api.sample_mask(conv(_arrays(data, dtype, shape, "logits")), n, m,  # noqa: E731
                                       noise=conv(_arrays(data, dtype, shape, "noise")),
                                       temperature=temperature, scale=scale,
                                       hard=data.draw(st.booleans(), label="hard"))
    elif fn == "relaxed_topn":
        call = lambda: api.relaxed_topn(conv(_arrays(data, dtype, shape, "scores")), n, m,  # noqa: E731
                                        temperature=temperature)
    elif fn == "block_probs":
        call = lambda: api.block_probs(conv(_arrays(data, dtype, shape, "logits")), m, scale=scale)  # noqa: E731
    elif fn == "eid_loss":
        q = np.random.default_rng(0).dirichlet(np.ones(m), size=shape[0] * 2).reshape(shape).astype(dtype)
        call = lambda: api.eid_loss(conv(_arrays(data, dtype, shape, "logits")), conv(q), m,  # noqa: E731
                                    scale=scale)
    elif fn == "eid_targets":
        variant = data.draw(st.sampled_from(["global", "block", "gated", "inclusion"]), label="variant")
        extra: dict[str, Any] = {"n": n} if variant == "inclusion" else {}
        if variant == "gated":
            extra = {"logits": conv(_arrays(data, dtype, shape, "logits")), "scale": scale}
        call = lambda: api.eid_targets(conv(_arrays(data, dtype, shape, "credits", True)), m,  # noqa: E731
                                       temperature=temperature, variant=variant, **extra)
    elif fn == "credit_scores":
        call = lambda: api.credit_scores(conv(_arrays(data, dtype, shape, "credits", True)), m,  # noqa: E731
                                         gated=data.draw(st.booleans(), label="gated"))
    else:
        call = lambda: api.eligibility_credit(  # noqa: E731
            conv(_arrays(data, dtype, (3, 2, 2 * m), "x")), conv(_arrays(data, dtype, (3, 2, 3), "d")),
            conv(_arrays(data, dtype, (3, 2 * m), "weight")), decay=data.draw(st.floats(0, 1), label="decay"),
            signed=data.draw(st.booleans(), label="signed"))
    FINITE["tried"] += 1
    try:
        out = call()
    except (ValueError, TypeError) as exc:
        FINITE["refused"] += 1
        assert "S0.8" in str(exc) or "finite and > 0" in str(exc) or " is 0.0 in " in str(exc) \
            or " is inf in " in str(exc), f"{fn} refused a drawn input with an unexpected error: {exc}"
        return
    FINITE["accepted"] += 1
    assert _finite(out), f"{fn} [{fw}, {dtype}] accepted the input and returned non-finite values: {out}"


def test_print_tallies() -> None:
    """The figures of the two properties (shown with ``-s``); at least one case each ran."""
    print(f"\nbad inputs: {TALLY['tried']} tried (calls over numpy/torch/jax), {TALLY['clear']} rejected "
          f"clearly, {TALLY['silent']} silent, {TALLY['unclear']} unclear")
    print(f"accepted-input finiteness: {FINITE['tried']} drawn, {FINITE['accepted']} accepted (all finite), "
          f"{FINITE['refused']} refused by S0.5/S0.8")
    assert TALLY["tried"] > 0 and FINITE["tried"] > 0
    assert TALLY["silent"] == 0 and TALLY["unclear"] == 0
