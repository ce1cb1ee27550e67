"""Packed N:M tensors in .safetensors files: round trips, and every tampered field named
(SPEC S3.1-S3.3 layout, the S3.5 checks)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy as stn
import torch
from safetensors import safe_open

import spikenm.safetensors_io as sio
from spikenm import api
from spikenm.packed import Packed

DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64")


def sparse(shape: tuple[int, ...], n: int, m: int, dtype: Any, axis: int, seed: int) -> np.ndarray:
    """A random array with exactly ``n`` non-zeros per block of ``m`` along ``axis``."""
    rng = np.random.default_rng(seed)
    moved = list(shape)
    moved.append(moved.pop(axis))
    keep = api.topn_mask(rng.random(moved), n, m)
    dense = (rng.integers(1, 100, size=moved) * keep).astype(np.float64)
    return np.moveaxis(dense, -1, axis).astype(dtype)


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def same_packed(a: Packed, b: Packed) -> bool:
    return (a.n, a.m, a.shape, a.axis) == (b.n, b.m, b.shape, b.axis) and \
        a.values.dtype == b.values.dtype and np.array_equal(bits(a.values), bits(b.values)) \
        and np.array_equal(a.indices, b.indices) and a.indices.dtype == b.indices.dtype


def read_raw(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="np") as f:
        return dict(f.metadata() or {}), {k: np.array(f.get_tensor(k)) for k in f.keys()}


def rewrite(path: Path, change: Callable[[dict[str, str], dict[str, np.ndarray]], object]
            ) -> None:
    """Apply ``change`` to the file's metadata and tensors and write it back with plain
    safetensors (what a tool that does not know spikenm would do)."""
    metadata, tensors = read_raw(path)
    change(metadata, tensors)
    stn.save_file(tensors, str(path), metadata=metadata)


def edit_entry(name: str, **fields: Any) -> Callable[[dict[str, str], dict[str, np.ndarray]], None]:
    def change(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> None:
        entries = json.loads(metadata[sio.TENSORS_KEY])
        for key, value in fields.items():
            if value is _DELETE:
                del entries[name][key]
            else:
                entries[name][key] = value
        metadata[sio.TENSORS_KEY] = json.dumps(entries)
    return change


_DELETE = object()


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "w.safetensors"
    w = sparse((4, 8), 2, 4, np.float32, 1, 0)
    c = sparse((3, 8, 2), 1, 4, np.int8, 1, 1)
    sio.save_packed_safetensors(path, {"fc.weight": api.pack(w, 2, 4),
                                       "conv.weight": api.pack(c, 1, 4, axis=1)})
    return path


def test_S3_7_docstring_examples_run() -> None:
    result = doctest.testmod(sio, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_S3_7_round_trip_every_container_dtype(tmp_path: Path, dtype: str) -> None:
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    tensors = {
        "a": api.pack(sparse((5, 8), 2, 4, np_dtype, 1, 2), 2, 4, axis=1),
        "b.weight": api.pack(sparse((2, 3, 16), 3, 8, np_dtype, 2, 3), 3, 8),
        "c": api.pack(sparse((6, 2), 1, 2, np_dtype, 0, 4), 1, 2, axis=0),
    }
    path = tmp_path / f"{dtype}.safetensors"
    sio.save_packed_safetensors(path, tensors, {"note": dtype})
    loaded = sio.load_packed_safetensors(path)
    assert sorted(loaded) == ["a", "b.weight", "c"]
    for name, packed in tensors.items():
        assert same_packed(loaded[name], packed), name
        assert np.array_equal(api.unpack(loaded[name]).astype(np.float64),
                              api.unpack(packed).astype(np.float64))
    assert sio.load_safetensors_metadata(path) == {"note": dtype}


def test_S3_7_bfloat16_is_native_BF16_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bf16.safetensors"
    w = sparse((2, 8), 2, 4, ml_dtypes.bfloat16, 1, 5)
    sio.save_packed_safetensors(path, {"w": api.pack(w, 2, 4)})
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["w.values"]["dtype"] == "BF16" and header["w.indices"]["dtype"] == "U8"


def test_S3_7_checksum_equals_the_npz_container(tmp_path: Path) -> None:
    packed = api.pack(sparse((4, 8), 2, 4, ml_dtypes.bfloat16, 1, 6), 2, 4)
    api.save_packed(tmp_path / "w.npz", packed)
    with np.load(tmp_path / "w.npz") as z:
        container_digest = str(z["sha256"])
    sio.save_packed_safetensors(tmp_path / "w.safetensors", {"w": packed})
    metadata, _ = read_raw(tmp_path / "w.safetensors")
    assert json.loads(metadata[sio.TENSORS_KEY])["w"]["sha256"] == container_digest


def test_S3_7_torch_packed_saves_and_loads_as_numpy(tmp_path: Path) -> None:
    w = torch.from_numpy(sparse((4, 8), 2, 4, np.float32, 1, 7)).to(torch.bfloat16)
    packed = api.pack(w, 2, 4)
    sio.save_packed_safetensors(tmp_path / "t.safetensors", {"w": packed})
    loaded = sio.load_packed_safetensors(tmp_path / "t.safetensors")["w"]
    assert loaded.values.dtype == ml_dtypes.bfloat16
    assert np.array_equal(loaded.values.view(np.uint16),
                          packed.values.view(torch.int16).numpy().view(np.uint16))
    assert np.array_equal(loaded.indices, packed.indices.numpy())


def test_S3_7_finalized_torch_model_exports_to_safetensors(tmp_path: Path) -> None:
    from torch import nn

    from spikenm.backends.torch.nn import export_packed, sparsify

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Conv1d(16, 8, 3), nn.Flatten(), nn.Linear(16, 2))
    handle = sparsify(model, 2, 4, total_steps=1, dense_last=False)
    with torch.no_grad():
        for logits in handle.logit_parameters():
            logits.normal_()
    handle.finalize()
    path = tmp_path / "model.safetensors"
    sio.save_packed_safetensors(path, export_packed(model, 2, 4, dense=handle.dense),
                                {"pattern": "2:4"})
    loaded = sio.load_packed_safetensors(path)
    assert sorted(loaded) == ["1.weight", "3.weight"]
    for key, packed in loaded.items():
        dense = model.state_dict()[key].numpy()
        assert np.array_equal(api.unpack(packed), dense)
        api.check_nm(api.to_block_layout(api.unpack(packed)), 2, 4)


def test_S3_7_empty_and_zero_size_round_trip(tmp_path: Path) -> None:
    sio.save_packed_safetensors(tmp_path / "e.safetensors", {})
    assert sio.load_packed_safetensors(tmp_path / "e.safetensors") == {}
    packed = api.pack(np.zeros((0, 8), np.float32), 2, 4)
    sio.save_packed_safetensors(tmp_path / "z.safetensors", {"z": packed})
    assert same_packed(sio.load_packed_safetensors(tmp_path / "z.safetensors")["z"], packed)


# -- tampered files --------------------------------------------------------------------

TAMPERS: list[tuple[str, Callable[[dict[str, str], dict[str, np.ndarray]], object], str]] = [
    ("n", edit_entry("fc.weight", n=1), r"tensor 'fc.weight': values have shape \(4, 4\); "
                                        r"expected \(4, 2\)"),
    ("m", edit_entry("fc.weight", m=8), r"tensor 'fc.weight': values have shape"),
    ("m too large", edit_entry("fc.weight", m=512, n=2),
     r"tensor 'fc.weight': n:m = 2:512; expected"),
    ("shape", edit_entry("fc.weight", shape=[4, 12]), r"values have shape \(4, 4\); expected \(4, 6\)"),
    ("axis", edit_entry("fc.weight", axis=2), r"tensor 'fc.weight': axis 2 is out of range"),
    ("dtype", edit_entry("fc.weight", dtype="int32"),
     r"'fc.weight.values' is stored as float32; expected int32 for field 'dtype'"),
    ("unknown dtype", edit_entry("fc.weight", dtype="complex64"),
     r"field 'dtype' is 'complex64'; expected one of"),
    ("sha256", edit_entry("fc.weight", sha256="0" * 64), r"field 'sha256' does not match"),
    ("n type", edit_entry("fc.weight", n="2"), r"field 'n' is '2'; expected an integer"),
    ("bool axis", edit_entry("fc.weight", axis=True), r"field 'axis' is True; expected an integer"),
    ("shape type", edit_entry("fc.weight", shape="4,8"), r"field 'shape' is '4,8'; expected a list"),
    ("missing field", edit_entry("fc.weight", axis=_DELETE), r"missing fields \['axis'\]"),
    ("extra field", edit_entry("fc.weight", note="x"), r"unexpected fields \['note'\]"),
    ("version", lambda md, t: md.update({sio.VERSION_KEY: "4"}), r"'spikenm.version' is '4'"),
    ("format", lambda md, t: md.update({sio.FORMAT_KEY: "other"}), r"'spikenm.format' is 'other'"),
    ("json", lambda md, t: md.update({sio.TENSORS_KEY: "{"}), r"'spikenm.tensors' is not valid JSON"),
    ("json kind", lambda md, t: md.update({sio.TENSORS_KEY: "[]"}), r"holds a list; expected"),
    ("no tensors key", lambda md, t: md.pop(sio.TENSORS_KEY), r"'spikenm.tensors' is missing"),
    ("index range", lambda md, t: t["fc.weight.indices"].__setitem__((0, 0), 9),
     r"tensor 'fc.weight': indices hold 9 .*expected values in \[0, 4\)"),
    ("index order", lambda md, t: t["fc.weight.indices"].__setitem__((0, slice(0, 2)), [3, 1]),
     r"tensor 'fc.weight': indices of flat block 0 are \[3, 1\]; expected strictly increasing"),
    ("index dtype", lambda md, t: t.update({"fc.weight.indices":
                                            t["fc.weight.indices"].astype(np.int16)}),
     r"tensor 'fc.weight': indices are int16; expected uint8"),
    ("values", lambda md, t: t["fc.weight.values"].__setitem__((0, 0), 123.0),
     r"tensor 'fc.weight'.*field 'sha256' does not match"),
    ("missing tensor", lambda md, t: t.pop("conv.weight.indices"),
     r"tensors \['conv.weight.indices'\] are described .* but missing"),
    ("extra tensor", lambda md, t: t.update({"bias": np.zeros(3, np.float32)}),
     r"tensors \['bias'\] are not described"),
]


@pytest.mark.parametrize("what, change, message", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_S3_7_tampered_file_names_the_field(saved: Path, what: str, change: Any, message: str) -> None:
    sio.load_packed_safetensors(saved)                       # valid before
    rewrite(saved, change)
    with pytest.raises(ValueError, match=message):
        sio.load_packed_safetensors(saved)


def test_S3_7_flipped_data_byte_fails_the_checksum(saved: Path) -> None:
    raw = bytearray(saved.read_bytes())
    raw[-1] ^= 0x01                                          # the last stored byte
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"field 'sha256' does not match"):
        sio.load_packed_safetensors(saved)


def test_S3_7_plain_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    stn.save_file({"w.values": np.zeros((2, 2), np.float32),
                   "w.indices": np.zeros((2, 2), np.uint8)}, str(path), metadata={"a": "b"})
    with pytest.raises(ValueError, match=r"safetensors file without spikenm metadata .*\['a'\]"):
        sio.load_packed_safetensors(path)
    stn.save_file({"w": np.zeros(2, np.float32)}, str(path))
    with pytest.raises(ValueError, match=r"without spikenm metadata"):
        sio.load_packed_safetensors(path)
    with pytest.raises(ValueError, match=r"without spikenm metadata"):
        sio.load_safetensors_metadata(path)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all" * 4, b"PK\x03\x04xx"])
def test_S3_7_not_a_safetensors_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"is not a readable .safetensors file"):
        sio.load_packed_safetensors(path)


def test_S3_7_truncated_file(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"is not a readable .safetensors file"):
        sio.load_packed_safetensors(saved)


def test_S3_7_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file at"):
        sio.load_packed_safetensors(tmp_path / "nope.safetensors")


# -- what save refuses -------------------------------------------------------------------

def test_S3_7_save_validates_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    good = api.pack(sparse((2, 8), 2, 4, np.float32, 1, 8), 2, 4)
    sio.save_packed_safetensors(path, {"w": good})
    before = path.read_bytes()
    bad_indices = good.indices.copy()
    bad_indices[0, 0] = 7
    bad = Packed(good.values, bad_indices, 2, 4, good.shape, 1)
    with pytest.raises(ValueError, match=r"packed tensor 'w': indices hold 7"):
        sio.save_packed_safetensors(path, {"w": bad})
    with pytest.raises(TypeError, match=r"'w' has values of dtype bool"):
        sio.save_packed_safetensors(path, {"w": api.pack(np.eye(4, dtype=bool), 1, 4)})
    with pytest.raises(ValueError, match=r"metadata key 'spikenm.format' is reserved"):
        sio.save_packed_safetensors(path, {"w": good}, {"spikenm.format": "x"})
    with pytest.raises(TypeError, match=r"metadata must map str to str"):
        sio.save_packed_safetensors(path, {"w": good}, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"'w' is a ndarray; expected a spikenm Packed"):
        sio.save_packed_safetensors(path, {"w": np.zeros(4)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"non-empty strings"):
        sio.save_packed_safetensors(path, {"": good})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]   # no temp files


def _model_file(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    packed = {"fc2.weight": api.pack(sparse((8, 16), 2, 4, np.float32, 1, 3), 2, 4, axis=1)}
    dense = {"fc1.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
             "fc1.bias": torch.tensor([0.5, -1.0, 2.0]),
             "bn0.running_var": np.array([1.0, 2.0], ml_dtypes.bfloat16),
             "step": np.array(7, np.int64)}
    path = tmp_path / "model.safetensors"
    sio.save_packed_safetensors(path, packed, {"run": "x"}, dense=dense)
    return path, packed, dense


def test_S3_7_dense_and_packed_layers_in_one_file(tmp_path: Path) -> None:
    """Version 3: dense tensors beside the packed ones, each with its checksum; the packed
    loader still returns the packed ones."""
    path, packed, dense = _model_file(tmp_path)
    got_packed, got_dense = sio.load_safetensors(path)
    assert list(got_packed) == ["fc2.weight"] and same_packed(got_packed["fc2.weight"],
                                                              packed["fc2.weight"])
    assert sorted(got_dense) == sorted(dense)
    for name, want in dense.items():
        want_np = want.numpy() if isinstance(want, torch.Tensor) else want
        assert got_dense[name].dtype == want_np.dtype and got_dense[name].shape == want_np.shape
        assert np.array_equal(bits(got_dense[name]), bits(want_np))
    assert list(sio.load_packed_safetensors(path)) == ["fc2.weight"]
    assert sio.load_safetensors_metadata(path) == {"run": "x"}
    with safe_open(str(path), framework="np") as f:
        assert f.metadata()[sio.VERSION_KEY] == "3"
        assert sorted(f.keys()) == sorted(["fc2.weight.values", "fc2.weight.indices", *dense])


def test_S3_7_dense_refusals(tmp_path: Path) -> None:
    p = {"fc.weight": api.pack(sparse((4, 8), 2, 4, np.float32, 1, 0), 2, 4, axis=1)}
    out = tmp_path / "x.safetensors"
    for dense, error, match in (
            ({"fc.weight": np.zeros(2, np.float32)}, ValueError, "clashes with a packed"),
            ({"fc.weight.values": np.zeros(2, np.float32)}, ValueError, "clashes"),
            ({"": np.zeros(2)}, ValueError, "non-empty strings"),
            ({"b": [1.0, 2.0]}, TypeError, "dense tensor 'b' is a list"),
            ({"b": np.zeros(2, np.complex64)}, TypeError, "has dtype complex64"),
            ([1], TypeError, "dense must be a dict")):
        with pytest.raises(error, match=match):
            sio.save_packed_safetensors(out, p, dense=dense)  # type: ignore[arg-type]
        assert not out.exists()


def test_S3_7_tampered_dense_tensor_is_named(tmp_path: Path) -> None:
    path, _, _ = _model_file(tmp_path)
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}

    def rewrite(md: dict[str, str], ts: dict[str, np.ndarray]) -> Path:
        md = dict(md)
        md.pop(sio.DIGEST_KEY)
        md[sio.DIGEST_KEY] = sio.metadata_digest(md)  # a consistent file-level digest
        target = tmp_path / "t.safetensors"
        stn.save_file(ts, str(target), metadata=md)
        return target

    flipped = dict(tensors, **{"fc1.bias": tensors["fc1.bias"] + 1})
    with pytest.raises(ValueError, match=r"dense tensor 'fc1.bias'.*'sha256' does not match"):
        sio.load_safetensors(rewrite(metadata, flipped))
    entries = json.loads(metadata[sio.DENSE_KEY])
    entries["step"]["shape"] = [1]
    with pytest.raises(ValueError, match=r"dense tensor 'step' is stored as int64 \[\]"):
        sio.load_safetensors(rewrite(dict(metadata, **{sio.DENSE_KEY: json.dumps(entries)}),
                                     tensors))
    no_dense = {k: v for k, v in metadata.items() if k != sio.DENSE_KEY}
    with pytest.raises(ValueError, match=r"'spikenm.dense' is missing"):
        sio.load_packed_safetensors(rewrite(no_dense, tensors))
    extra = dict(tensors, stray=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"tensors \['stray'\] are not described"):
        sio.load_safetensors(rewrite(metadata, extra))
