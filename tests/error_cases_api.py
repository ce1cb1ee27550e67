"""Error-catalogue cases of `spikenm.api`: every public function x every kind of bad input
(wrong type, None, wrong shape, wrong dtype, non-finite, bad pattern, bad axis, bad
temperature or scale, values out of the S0.8 range, corrupt `Packed`), on NumPy, and on
torch and JAX for the kinds whose code path differs by backend (array types, dtypes,
values, packed objects).  The message regexes are the same on every backend: the errors
are raised by the shared checks of `spikenm.validation` (SPEC S0.5, S0.8, S3.10).

``CASES`` is a list of `error_catalogue.Case`; `tests/test_errors_doc.py` runs them and
renders ``docs/errors.md``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

from spikenm import api
from spikenm.packed import Packed

from error_catalogue import Case

BACKENDS: dict[str, Callable[[np.ndarray], Any]] = {
    "numpy": lambda a: a,
    "torch": torch.from_numpy,
    "jax": jnp.asarray,
}
"""How each backend's arrays are made from NumPy ones (float32 and uint8 only, so the
cases do not depend on ``jax_enable_x64``)."""

F32 = np.float32
NOT_ARRAY = r"must be an array \(NumPy, PyTorch, JAX or an array-API array\); got"


def _z(shape: tuple[int, ...] = (2, 8), dtype: Any = F32, fill: float = 0.0) -> np.ndarray:
    return np.full(shape, fill, dtype=dtype)


def _with(a: np.ndarray, index: tuple[int, ...], value: float) -> np.ndarray:
    b = a.copy()
    b[index] = value
    return b


class Fn:
    """A public function with a good call: ``positional`` names in order, ``arrays`` the
    NumPy value of every array argument, ``others`` the other arguments."""

    def __init__(self, name: str, positional: list[str], arrays: dict[str, np.ndarray],
                 others: dict[str, Any], *, math: bool = True, blocks: tuple[str, ...] = ()):
        self.name = name
        self.positional = positional
        self.arrays = arrays
        self.others = others
        self.math = math
        self.blocks = blocks

    def call(self, fw: str, **changes: Any) -> Callable[[], Any]:
        """The call with ``changes`` applied (NumPy arrays converted to backend ``fw``)."""
        def go() -> Any:
            args = {k: BACKENDS[fw](v) for k, v in self.arrays.items()}
            args.update(self.others)
            for k, v in changes.items():
                args[k] = BACKENDS[fw](v) if isinstance(v, np.ndarray) else v
            pos = [args.pop(k) for k in self.positional]
            return getattr(api, self.name)(*pos, **args)
        return go


FUNCTIONS = [
    Fn("sample_mask", ["logits", "n", "m"], {"logits": _z(), "noise": _z()},
       {"n": 2, "m": 4, "temperature": 1.0, "scale": 1.0, "hard": True, "axis": -1},
       blocks=("logits", "noise")),
    Fn("gumbel_like", ["x", "seed"], {"x": _z()}, {"seed": 0}),
    Fn("topn_mask", ["scores", "n", "m"], {"scores": _z()}, {"n": 2, "m": 4, "axis": -1},
       blocks=("scores",)),
    Fn("final_mask", ["logits", "n", "m"], {"logits": _z()}, {"n": 2, "m": 4, "axis": -1},
       blocks=("logits",)),
    Fn("relaxed_topn", ["scores", "n", "m"], {"scores": _z()},
       {"n": 2, "m": 4, "temperature": 1.0, "axis": -1}, blocks=("scores",)),
    Fn("block_probs", ["logits", "m"], {"logits": _z()}, {"m": 4, "scale": 1.0, "axis": -1},
       blocks=("logits",)),
    Fn("eligibility_credit", ["x", "d", "weight"],
       {"x": _z((2, 1, 8)), "d": _z((2, 1, 3)), "weight": _z((3, 8))}, {"decay": 0.5}),
    Fn("credit_scores", ["credits", "m"], {"credits": _z()}, {"m": 4, "axis": -1},
       blocks=("credits",)),
    Fn("eid_targets", ["credits", "m"], {"credits": _z()},
       {"m": 4, "temperature": 1.0, "axis": -1}, blocks=("credits",)),
    Fn("eid_loss", ["logits", "targets", "m"], {"logits": _z(), "targets": _z(fill=0.25)},
       {"m": 4, "scale": 1.0, "axis": -1}, blocks=("logits", "targets")),
    Fn("pack", ["w", "n", "m"], {"w": _z()}, {"n": 2, "m": 4, "axis": -1}, math=False,
       blocks=("w",)),
    Fn("is_nm", ["x", "n", "m"], {"x": _z()}, {"n": 2, "m": 4, "axis": -1}, math=False,
       blocks=("x",)),
    Fn("check_nm", ["x", "n", "m"], {"x": _z()}, {"n": 2, "m": 4, "axis": -1}, math=False,
       blocks=("x",)),
]
BY_NAME = {f.name: f for f in FUNCTIONS}
PATTERNED = ("sample_mask", "topn_mask", "final_mask", "relaxed_topn", "pack", "is_nm", "check_nm")
BLOCK_ONLY = ("block_probs", "credit_scores", "eid_targets", "eid_loss")
TEMPERATURES = ("sample_mask", "relaxed_topn", "eid_targets")
SCALES = ("sample_mask", "block_probs", "eid_loss")


def _label(kind: str, fw: str) -> str:
    return kind if fw == "numpy" else f"{kind} [{fw}]"


def _mixed(f: Fn, fw: str, first: str, second: str) -> Callable[[], Any]:
    """``f`` with ``first`` of backend ``fw`` and ``second`` a NumPy array."""
    def go() -> Any:
        args = {k: BACKENDS[fw](v) for k, v in f.arrays.items()}
        args[second] = f.arrays[second]
        args.update(f.others)
        return getattr(api, f.name)(*[args.pop(k) for k in f.positional], **args)
    return go


def _array_cases() -> list[Case]:
    """Array arguments: type, None, dtype, rank, block length, shape and dtype mismatch,
    NaN and inf, mixed frameworks."""
    cases: list[Case] = []
    for f in FUNCTIONS:
        for fw in BACKENDS:
            for a in f.arrays:
                cases += [
                    Case(f.name, _label(f"None as {a}", fw), f.call(fw, **{a: None}), TypeError,
                         rf"^{a} {NOT_ARRAY} None$"),
                    Case(f.name, _label(f"a list as {a}", fw), f.call(fw, **{a: f.arrays[a].tolist()}),
                         TypeError, rf"^{a} {NOT_ARRAY} builtins\.list$"),
                ]
                if fw == "numpy":
                    cases.append(Case(f.name, f"a string as {a}", f.call(fw, **{a: "abc"}), TypeError,
                                      rf"^{a} {NOT_ARRAY} builtins\.str$"))
                if f.math:
                    own = a == next(iter(f.arrays)) or f.name == "eligibility_credit"
                    first = next(iter(f.arrays))
                    for bad, hint in (("int32", ""), ("float16", r" \(cast to float32 first\)")):
                        message = (rf"^{a} must be float32 or float64, got {bad}{hint}$" if own else
                                   rf"^dtypes must match \({first}: float32, {a}: {bad}\)$")
                        cases.append(Case(f.name, _label(f"{a} of {bad}", fw),
                                          f.call(fw, **{a: f.arrays[a].astype(bad)}), TypeError, message))
                if f.math and f.name != "gumbel_like":
                    for bad in (np.nan, np.inf):
                        text = "NaN" if np.isnan(bad) else "inf"
                        cases.append(Case(
                            f.name, _label(f"{text} in {a}", fw),
                            f.call(fw, **{a: _with(f.arrays[a], (0,) * (f.arrays[a].ndim - 1) + (1,), bad)}),
                            ValueError, rf"^{a} contains NaN or inf \(first at index \({'0, ' * (f.arrays[a].ndim - 1)}1,?\): "
                                        rf"{text.lower()}\); expected finite values$"))
            for a in f.blocks:
                cases += [
                    Case(f.name, _label(f"{a} with 6 entries along the block axis", fw),
                         f.call(fw, **{n: _z((2, 6)) for n in f.blocks}), ValueError,
                         rf"^{f.blocks[0]} has 6 entries along axis 1 \(shape \(2, 6\)\); expected a positive "
                         rf"multiple of m=4$"),
                    Case(f.name, _label(f"0-d {a}", fw), f.call(fw, **{n: np.array(0.0, F32) for n in f.blocks}),
                         ValueError, rf"^{f.blocks[0]} must have at least one axis, got a 0-d array$"),
                ]
                break
            if len(f.blocks) == 2:
                first, second = f.blocks
                cases.append(Case(f.name, _label(f"{second} of another shape", fw),
                                  f.call(fw, **{second: _z((2, 4))}), ValueError,
                                  rf"^shapes must match \({first}: \(2, 8\), {second}: \(2, 4\)\)$"))
                if fw != "jax":  # JAX holds float64 only with jax_enable_x64
                    cases.append(Case(f.name, _label(f"{second} of another dtype (float64)", fw),
                                      f.call(fw, **{second: f.arrays[second].astype(np.float64)}), TypeError,
                                      rf"^dtypes must match \({first}: float32, {second}: float64\)$"))
                if fw != "numpy":
                    cases.append(Case(f.name, _label(f"{second} from NumPy", fw),
                                      _mixed(f, fw, first, second), TypeError,
                                      rf"^arrays from different frameworks cannot be mixed "
                                      rf"\({first}: {fw}, {second}: numpy\)$"))
    return cases


def _scalar_cases() -> list[Case]:
    """Patterns, axes, temperatures, scales, other scalars; values out of the S0.8 range."""
    cases: list[Case] = []
    for name in PATTERNED:
        f = BY_NAME[name]
        cases += [
            Case(name, "n > m", f.call("numpy", n=5), ValueError, r"^n must satisfy 1 <= n <= m=4, got n=5$"),
            Case(name, "n = 0", f.call("numpy", n=0), ValueError, r"^n must satisfy 1 <= n <= m=4, got n=0$"),
            Case(name, "n a float", f.call("numpy", n=2.0), TypeError, r"^n must be an integer, got 2\.0 \(float\)$"),
            Case(name, "m = 1", f.call("numpy", m=1), ValueError, r"^m must be >= 2, got m=1$"),
            Case(name, "m a string", f.call("numpy", m="4"), TypeError, r"^m must be an integer, got '4' \(str\)$"),
        ]
    for name in BLOCK_ONLY:
        f = BY_NAME[name]
        cases += [
            Case(name, "m = 1", f.call("numpy", m=1), ValueError, r"^m must be >= 2, got m=1$"),
            Case(name, "m a float", f.call("numpy", m=4.0), TypeError, r"^m must be an integer, got 4\.0 \(float\)$"),
        ]
    for f in FUNCTIONS:
        if "axis" in f.others:
            first = f.blocks[0]
            cases += [
                Case(f.name, "axis out of range", f.call("numpy", axis=2), ValueError,
                     rf"^axis=2 is out of range for {first} with shape \(2, 8\)$"),
                Case(f.name, "axis a float", f.call("numpy", axis=1.0), TypeError, r"^axis must be an integer, got 1\.0$"),
            ]
    for name in TEMPERATURES:
        f = BY_NAME[name]
        for fw in BACKENDS:
            cases += [
                Case(name, _label("temperature 0", fw), f.call(fw, temperature=0.0), ValueError,
                     r"^temperature must be finite and > 0, got 0\.0$"),
                Case(name, _label("temperature NaN", fw), f.call(fw, temperature=float("nan")), ValueError,
                     r"^temperature must be finite and > 0, got nan$"),
                Case(name, _label("temperature 1e-50 (0 in float32)", fw), f.call(fw, temperature=1e-50),
                     ValueError, r"^temperature=1e-50 is 0\.0 in float32; expected a value that stays finite"),
                Case(name, _label("temperature 1e-40 (subnormal in float32)", fw), f.call(fw, temperature=1e-40),
                     ValueError, r"^temperature=1e-40 underflows float32 \(smallest normal number 1\.1754944e-38\)"),
                Case(name, _label("temperature below the S0.8 floor", fw), f.call(fw, temperature=1e-36),
                     ValueError, r"^temperature=1e-36 is below \S+, the smallest temperature that keeps .* finite "
                                 r"in float32 \(1024 \* \d+ / 3\.4028235e\+38, SPEC S0\.8\)$"),
            ]
        cases += [
            Case(name, "temperature a string", f.call("numpy", temperature="1"), TypeError,
                 r"^temperature must be a real number, got '1' \(str\)$"),
            Case(name, "temperature None", f.call("numpy", temperature=None), TypeError,
                 r"^temperature must be a real number, got None"),
        ]
    for name in SCALES:
        f = BY_NAME[name]
        for fw in BACKENDS:
            cases += [
                Case(name, _label("scale -1", fw), f.call(fw, scale=-1.0), ValueError,
                     r"^scale must be finite and > 0, got -1\.0$"),
                Case(name, _label("scale inf", fw), f.call(fw, scale=float("inf")), ValueError,
                     r"^scale must be finite and > 0, got inf$"),
                Case(name, _label("scale 1e39 (inf in float32)", fw), f.call(fw, scale=1e39), ValueError,
                     r"^scale=1e\+39 is inf in float32"),
                Case(name, _label("scale * |logits| above the S0.8 bound", fw),
                     f.call(fw, scale=1e37, logits=_z(fill=3.0)), ValueError,
                     r"^scale \* \|logits\| is 3e\+37 at index \(0, 0\), above \S+, the largest that keeps .* "
                     r"finite in float32 \(SPEC S0\.8\)$"),
            ]
        cases.append(Case(name, "scale a string", f.call("numpy", scale="2"), TypeError,
                          r"^scale must be a real number, got '2' \(str\)$"))
    for fw in BACKENDS:
        cases += [
            Case("block_probs", _label("|logits| above F / 16", fw), BY_NAME["block_probs"].call(
                fw, logits=_with(_z(), (1, 3), 3e37)), ValueError,
                r"^\|logits\| is 3e\+37 at index \(1, 3\), above 2\.1267647e\+37, the largest that keeps the "
                r"softmax of S1\.7 finite in float32 \(SPEC S0\.8\)$"),
            Case("sample_mask", _label("|noise| above F * t / 16", fw), BY_NAME["sample_mask"].call(
                fw, noise=_with(_z(), (0, 0), 3e37)), ValueError, r"^\|noise\| is 3e\+37 at index \(0, 0\), above "
                                                                 r"2\.1267647e\+37, the largest that keeps the keys"),
            Case("eid_loss", _label("targets above sqrt(F / (16 N))", fw), BY_NAME["eid_loss"].call(
                fw, targets=_with(_z(), (0, 2), 2e18)), ValueError,
                r"^targets is 2e\+18 at index \(0, 2\), above 1\.152921\d*e\+18, the largest that keeps the "
                r"loss of S2\.6 finite in float32 \(SPEC S0\.8\)$"),
            Case("eid_loss", _label("negative targets", fw), BY_NAME["eid_loss"].call(
                fw, targets=_with(_z(), (0, 2), -0.5)), ValueError,
                r"^targets has a negative entry at index \(0, 2\) \(-0\.5\); expected values >= 0$"),
            Case("eid_targets", _label("credits above F / (16 N)", fw), BY_NAME["eid_targets"].call(
                fw, credits=_with(_z(), (0, 0), 1e37)), ValueError,
                r"^\|credits\| is 1e\+37 at index \(0, 0\), above \S+, the largest that keeps the credit mean"),
            Case("credit_scores", _label("negative credits", fw), BY_NAME["credit_scores"].call(
                fw, credits=_with(_z(), (1, 1), -1.0)), ValueError,
                r"^credits has a negative entry at index \(1, 1\) \(-1\.0\); expected values >= 0$"),
            Case("credit_scores", _label("credits above F / (16 m)", fw), BY_NAME["credit_scores"].call(
                fw, credits=_with(_z(), (1, 1), 1e37)), ValueError,
                r"^\|credits\| is 1e\+37 at index \(1, 1\), above \S+, the largest that keeps the block masses"),
            Case("eligibility_credit", _label("|x| above the S0.8 bound", fw), BY_NAME["eligibility_credit"].call(
                fw, x=_with(_z((2, 1, 8)), (1, 0, 2), 1e20)), ValueError,
                r"^\|x\| is 1e\+20 at index \(1, 0, 2\), above \S+, the largest that keeps the credit sums"),
        ]
    sm, ec, et = BY_NAME["sample_mask"], BY_NAME["eligibility_credit"], BY_NAME["eid_targets"]
    cases += [
        Case("sample_mask", "hard a string", sm.call("numpy", hard="yes"), TypeError, r"^hard must be a bool, got 'yes'$"),
        Case("gumbel_like", "seed -1", BY_NAME["gumbel_like"].call("numpy", seed=-1), ValueError,
             r"^seed must be a non-negative integer, got -1$"),
        Case("gumbel_like", "seed a string", BY_NAME["gumbel_like"].call("numpy", seed="7"), ValueError,
             r"^seed must be a non-negative integer, got '7'$"),
        *[Case("gumbel_like", _label("a jax.random key as seed", fw),
               BY_NAME["gumbel_like"].call(fw, seed=jax.random.key(0)), TypeError,
               rf"^seed is a jax\.Array of dtype key<fry> and shape \(\); a jax\.random key is accepted "
               rf"only with a JAX x, and x is a {fw} array: pass an integer seed$")
          for fw in ("numpy", "torch")],  # S1.6
        Case("gumbel_like", _label("an int32 array as seed", "jax"),
             BY_NAME["gumbel_like"].call("jax", seed=jnp.int32(3)), TypeError,
             r"^seed is a jax\.Array of shape \(\) and dtype int32; expected an int, a typed jax\.random key"),
        Case("gumbel_like", _label("an array of two keys as seed", "jax"),
             BY_NAME["gumbel_like"].call("jax", seed=jax.random.split(jax.random.key(0))), ValueError,
             r"^seed is an array of keys of shape \(2,\); expected one key \(shape \(\)\)"),
        Case("eligibility_credit", "decay 1.5", ec.call("numpy", decay=1.5), ValueError, r"^decay must be in \[0, 1\], got 1\.5$"),
        Case("eligibility_credit", "decay a string", ec.call("numpy", decay="a"), TypeError, r"^decay must be a real number"),
        Case("eligibility_credit", "signed not a bool", ec.call("numpy", signed=1), TypeError,
             r"^signed=1 is invalid; expected True or False$"),
        Case("eligibility_credit", "x of rank 2", ec.call("numpy", x=_z((2, 8))), ValueError,
             r"^x must have 3 axes \(T, B, K\), got shape \(2, 8\)$"),
        Case("eligibility_credit", "weight of another K", ec.call("numpy", weight=_z((3, 4))), ValueError,
             r"^shapes do not fit x \(T, B, K\)=\(2, 1, 8\), d \(T, B, O\)=\(2, 1, 3\), weight \(O, K\)=\(3, 4\)$"),
        Case("credit_scores", "gated not a bool", BY_NAME["credit_scores"].call("numpy", gated="no"), TypeError,
             r"^gated='no' is invalid; expected True or False$"),
        Case("eid_targets", "unknown variant", et.call("numpy", variant="nope"), ValueError, r"variant"),
        Case("eid_targets", "variant='inclusion' without n", et.call("numpy", variant="inclusion"), ValueError,
             r"^variant='inclusion' needs n, the number kept per block$"),
        Case("eid_targets", "variant='gated' without logits", et.call("numpy", variant="gated"), ValueError,
             r"^variant='gated' needs logits="),
        Case("eid_targets", "logits with variant='global'", et.call("numpy", logits=_z()), ValueError,
             r"^logits= is used by the variants"),
        Case("eid_targets", "gated logits of another shape", et.call("numpy", variant="gated", logits=_z((2, 4))),
             ValueError, r"^logits has 4 entries|^shapes must match"),
        Case("pack", "more than n kept in a block", BY_NAME["pack"].call("numpy", w=_z(fill=1.0)), ValueError,
             r"^cannot pack w as 2:4: block 0 at \[0, 0:4\] keeps 4 entries, expected at most 2$"),
        Case("pack", "mask of another shape", BY_NAME["pack"].call("numpy", mask=_z((2, 4))), ValueError,
             r"^shapes must match \(w: \(2, 8\), mask: \(2, 4\)\)$"),
        Case("pack", "mask with a 2", BY_NAME["pack"].call("numpy", mask=_with(_z(), (0, 0), 2.0)), ValueError,
             r"^mask must contain only 0 and 1, found 2\.0$"),
        Case("pack", "m > 256", BY_NAME["pack"].call("numpy", w=_z((1, 300)), n=1, m=300), ValueError,
             r"^m=300 does not fit uint8 indices; expected m <= 256$"),
        Case("check_nm", "more than n non-zeros", BY_NAME["check_nm"].call("numpy", x=_z(fill=1.0)), ValueError,
             r"^x is not 2:4 sparse along axis 1: block 0 at \[0, 0:4\] has 4 non-zeros, expected at most 2$"),
    ]
    return cases


# -- packed objects (S3.10) --------------------------------------------------------------------

def _packed_np(dtype: Any = F32, shape: tuple[int, int] = (2, 8)) -> Packed:
    w = np.zeros(shape, dtype=dtype)
    w[:, 1::4] = 1
    w[:, 2::4] = 2
    p = api.pack(w, 2, 4)
    return Packed(np.array(p.values), np.array(p.indices), 2, 4, shape, 1)


def _as(fw: str, p: Packed, **fields: Any) -> Packed:
    values = fields.pop("values", p.values)
    indices = fields.pop("indices", p.indices)
    conv = BACKENDS[fw]
    return Packed(conv(values) if isinstance(values, np.ndarray) else values,
                  conv(indices) if isinstance(indices, np.ndarray) else indices,
                  fields.pop("n", p.n), fields.pop("m", p.m), fields.pop("shape", p.shape),
                  fields.pop("axis", p.axis))


def _idx(change: Callable[[np.ndarray], None]) -> np.ndarray:
    idx = np.array(_packed_np().indices)
    change(idx)
    return idx


CORRUPT: list[tuple[str, dict[str, Any], type[BaseException], str]] = [
    ("an index >= m in a non-last block", {"indices": _idx(lambda i: i.__setitem__((0, 1), 4))}, ValueError,
     r"^packed indices\[0, 1\] \(block 0 of row 0\) is 4; expected a value in \[0, 4\) \(SPEC S3\.1, S3\.10\)$"),
    ("a repeated index", {"indices": _idx(lambda i: i.__setitem__((1, 3), i[1, 2]))}, ValueError,
     r"^packed indices of row 1, block 1 are \[1, 1\]; expected two strictly increasing indices in \[0, 4\) "
     r"\(indices\[1, 2:4\], SPEC S3\.2, S3\.10\)$"),
    ("decreasing indices", {"indices": _idx(lambda i: i.__setitem__((0, slice(0, 2)), [2, 1]))}, ValueError,
     r"^packed indices of row 0, block 0 are \[2, 1\]; expected two strictly increasing"),
    ("int32 indices", {"indices": _packed_np().indices.astype(np.int32)}, TypeError,
     r"^Packed indices must be uint8, got int32$"),
    ("values of the wrong shape", {"values": np.zeros((2, 3), F32)}, ValueError,
     r"^Packed values has shape \(2, 3\), expected \(2, 4\) for dense shape \(2, 8\), axis 1 and 2:4$"),
    ("None as values", {"values": None}, TypeError, rf"^Packed values {NOT_ARRAY} None$"),
    ("a list as indices", {"indices": [[1, 2, 1, 2], [1, 2, 1, 2]]}, TypeError,
     rf"^Packed indices {NOT_ARRAY} builtins\.list$"),
    ("n > m", {"n": 5}, ValueError, r"^n must satisfy 1 <= n <= m=4, got n=5$"),
    ("m a float", {"m": 4.0}, TypeError, r"^m must be an integer, got 4\.0 \(float\)$"),
    ("shape not a tuple", {"shape": 8}, TypeError, r"^Packed shape must be a non-empty tuple of integers, got 8$"),
    ("a negative shape entry", {"shape": (2, -8)}, ValueError, r"^Packed shape must hold non-negative integers"),
    ("axis out of range", {"axis": 2}, ValueError, r"^Packed axis=2 does not fit shape \(2, 8\) with m=4"),
    ("axis a float", {"axis": 1.0}, TypeError, r"^Packed axis must be an integer, got 1\.0$"),
    ("complex values", {"values": np.zeros((2, 4), np.complex64)}, TypeError,
     r"^Packed values must have a real dtype \(.*\), got complex64$"),
]


def _save(p: Any) -> None:
    folder = tempfile.mkdtemp(prefix="spikenm-errors-")
    path = os.path.join(folder, "bad.npz")
    try:
        api.save_packed(path, p)
    finally:
        left = os.listdir(folder)
        for name in left:
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
        if left:
            raise AssertionError(f"save_packed left {left} after refusing")


def _packed_cases() -> list[Case]:
    cases: list[Case] = []
    users: dict[str, Callable[[Any], Any]] = {
        "unpack": api.unpack,
        "spmm": lambda p: api.spmm(p, _ones_like(p)),
        "save_packed": _save,
    }
    for fn, use in users.items():
        for fw in BACKENDS:
            for kind, fields, error, message in CORRUPT:
                if fw != "numpy" and kind in ("n > m", "m a float", "shape not a tuple", "a negative shape entry",
                                              "axis a float", "complex values"):
                    continue
                if fw == "jax" and kind == "complex values":
                    continue
                cases.append(Case(fn, _label(f"Packed with {kind}", fw),
                                  lambda use=use, fw=fw, fields=fields: use(_as(fw, _packed_np(), **dict(fields))),
                                  error, message))
        cases.append(Case(fn, "not a Packed", lambda use=use: use((np.ones(2), np.zeros(2, np.uint8))), TypeError,
                          r"^expected a spikenm Packed, got tuple$"))
    for fw in BACKENDS:
        for kind, fields, error, message in CORRUPT[:4]:
            cases.append(Case("to_cutlass", _label(f"Packed with {kind}", fw),
                              lambda fw=fw, fields=fields: api.to_cutlass(_as(fw, _cutlass_np(), **{
                                  k: _widen(v) for k, v in fields.items()})),
                              error, message))
        cases.append(Case("to_cutlass", _label("a 1:4 Packed", fw),
                          lambda fw=fw: api.to_cutlass(_as(fw, Packed(*_one_of_four()))), ValueError,
                          r"^the CUTLASS export is for the 2:4 pattern, got 1:4$"))
        cases.append(Case("to_cutlass", _label("float32 values", fw),
                          lambda fw=fw: api.to_cutlass(_as(fw, _cutlass_np(F32))), TypeError, r"float32"))
    spmm_x = [
        ("None as x", None, TypeError, rf"^x {NOT_ARRAY} None$"),
        ("x of another length", np.ones(4, F32), ValueError, r"^x must have shape \(8,\) or \(8, P\), got \(4,\)$"),
        ("x of another dtype (int32)", np.ones(8, np.int32), TypeError, r"^dtypes must match \(values: float32, x: int32\)$"),
        ("NaN in x", _with(np.ones(8, F32), (3,), np.nan), ValueError, r"^x contains NaN or inf \(first at index \(3,\)"),
    ]
    for fw in BACKENDS:
        for kind, x, error, message in spmm_x:
            cases.append(Case("spmm", _label(kind, fw),
                              lambda fw=fw, x=x: api.spmm(_as(fw, _packed_np()), None if x is None else BACKENDS[fw](x)),
                              error, message))
    cases.append(Case("spmm", "a 3-D Packed", lambda: api.spmm(api.pack(np.zeros((2, 2, 8), F32), 2, 4),
                                                                np.ones(8, F32)),
                      ValueError, r"^spmm needs a 2-D packed matrix \(O, K\) with blocks along axis 1"))
    return cases


def _ones_like(p: Packed) -> Any:
    """``x`` of ones for `api.spmm`, of the framework of ``p.values`` (NumPy otherwise)."""
    values = getattr(p, "values", None)
    if isinstance(values, torch.Tensor):
        return torch.ones(8)
    if isinstance(values, jnp.ndarray):
        return jnp.ones(8, jnp.float32)
    return np.ones(8, F32)


def _cutlass_np(dtype: Any = np.float16) -> Packed:
    return _packed_np(dtype, (32, 32))


def _widen(v: Any) -> Any:
    """A corruption of the (2, 4) test indices applied to (32, 16) cutlass indices."""
    if isinstance(v, np.ndarray) and v.shape == (2, 4):
        idx = np.array(_cutlass_np().indices)
        idx[:2, :4] = v
        return idx.astype(v.dtype)
    return v


def _one_of_four() -> tuple[Any, ...]:
    p = api.pack(np.zeros((32, 32), np.float16), 1, 4)
    return (np.array(p.values), np.array(p.indices), 1, 4, (32, 32), 1)


def _other_cases() -> list[Case]:
    """from_cutlass, load_packed's arguments, the layout helpers."""
    v16, meta = np.ones((32, 16), np.float16), np.full((32, 2), -4370, np.int16)
    cases = [
        Case("from_cutlass", "None as meta", lambda: api.from_cutlass(v16, None), TypeError, rf"^meta {NOT_ARRAY} None$"),
        Case("from_cutlass", "meta of int32", lambda: api.from_cutlass(v16, meta.astype(np.int32)), TypeError,
             r"^meta for float16 values must be int16, got int32$"),
        Case("from_cutlass", "meta of another shape", lambda: api.from_cutlass(v16, meta[:, :1]), ValueError,
             r"^meta for values of shape \(32, 16\) must have shape"),
        Case("from_cutlass", "an invalid nibble", lambda: api.from_cutlass(v16, np.zeros((32, 2), np.int16)),
             ValueError, r"^meta holds nibble 0 for row 0, block 0"),
        Case("from_cutlass", "1-D values", lambda: api.from_cutlass(v16[0], meta), ValueError,
             r"^values and meta must be 2-D"),
        Case("load_packed", "None as path", lambda: api.load_packed(None), TypeError,
             r"^path must be a str or os\.PathLike, got None$"),
        Case("load_packed", "missing file", lambda: api.load_packed(os.path.join(tempfile.gettempdir(),
                                                                                   "spikenm-no-such-file.npz")),
             FileNotFoundError, r"spikenm-no-such-file\.npz"),
        Case("save_packed", "None as path", lambda: api.save_packed(None, _packed_np()), TypeError,
             r"^path must be a str or os\.PathLike, got None$"),
    ]
    for fn in ("to_block_layout", "from_block_layout", "layer_fits"):
        arg = "blocks" if fn == "from_block_layout" else "weight"
        extra = (4,) if fn == "layer_fits" else ()
        for fw in BACKENDS:
            cases += [
                Case(fn, _label(f"None as {arg}", fw), lambda fn=fn, extra=extra: getattr(api, fn)(None, *extra),
                     TypeError, rf"^{arg} {NOT_ARRAY} None$"),
                Case(fn, _label(f"1-D {arg}", fw),
                     lambda fn=fn, fw=fw, extra=extra: getattr(api, fn)(BACKENDS[fw](np.zeros(8, F32)), *extra),
                     ValueError, rf"^{arg} must have at least 2 axes"),
            ]
        cases.append(Case(fn, f"a list as {arg}", lambda fn=fn, extra=extra: getattr(api, fn)([[1.0]], *extra),
                          TypeError, rf"^{arg} {NOT_ARRAY} builtins\.list$"))
    cases.append(Case("layer_fits", "m = 1", lambda: api.layer_fits(np.zeros((2, 8)), 1), ValueError,
                      r"^m must be >= 2, got m=1$"))
    return cases


CASES: list[Case] = _array_cases() + _scalar_cases() + _packed_cases() + _other_cases()
