"""The on-disk packed container (SPEC S3.5)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest
import torch

from spikenm import api
from spikenm.packed import Packed


def spec_checksum(fields: dict[str, np.ndarray]) -> str:
    """SHA-256 of the canonical header and the array bytes, written from SPEC S3.5."""
    header = {
        "format": str(fields["format"]), "version": int(fields["version"]),
        "n": int(fields["n"]), "m": int(fields["m"]),
        "shape": [int(s) for s in np.ravel(fields["shape"])], "axis": int(fields["axis"]),
        "dtype": str(fields["dtype"]),
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(
        text + fields["values"].astype(fields["values"].dtype.newbyteorder("<")).tobytes()
        + fields["indices"].tobytes()
    ).hexdigest()


def npy_bytes(a: np.ndarray) -> bytes:
    """The bytes of a plain ``.npy`` file holding ``a``."""
    buffer = io.BytesIO()
    np.save(buffer, a)
    return buffer.getvalue()


def read_fields(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_fields(path: Path, fields: dict[str, Any], *, rehash: bool = True) -> None:
    """Write a container by hand, re-signing it unless ``rehash`` is False."""
    fields = dict(fields)
    header = ("format", "version", "n", "m", "shape", "axis", "dtype", "values", "indices")
    if rehash and all(k in fields for k in header):
        fields["sha256"] = np.array(spec_checksum(fields))
    np.savez(path, **fields)


def sample(dtype: type = np.float32) -> np.ndarray:
    """A (3, 8, 2) 2:4 array with blocks along axis 1."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((3, 2, 2, 4)) * 5).astype(dtype)
    w[..., [0, 2]] = 0
    w[0, 0, 0] = 0  # an empty block: padding
    return np.moveaxis(w.reshape(3, 2, 8), 2, 1)


def assert_same(p: Packed, q: Packed) -> None:
    assert (q.n, q.m, q.shape, q.axis) == (p.n, p.m, p.shape, p.axis)
    assert q.values.dtype == p.values.dtype and q.values.shape == p.values.shape
    assert q.values.tobytes() == np.ascontiguousarray(p.values).tobytes()
    assert q.indices.dtype == np.uint8 and np.array_equal(q.indices, p.indices)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Packed]:
    p = api.pack(sample(), 2, 4, axis=1)
    path = tmp_path / "w.npz"
    api.save_packed(path, p)
    return path, p


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float16, np.int8, ml_dtypes.bfloat16, np.float64],
)
def test_S3_5_round_trip(tmp_path: Path, dtype: type) -> None:
    """S3.5: load_packed(save_packed(p)) == p bit for bit, as NumPy arrays."""
    p = api.pack(sample(dtype), 2, 4, axis=1)
    api.save_packed(tmp_path / "w.npz", p)
    assert_same(p, api.load_packed(str(tmp_path / "w.npz")))


def test_S3_5_torch_bfloat16_round_trip(tmp_path: Path) -> None:
    """S3.5: a torch bfloat16 Packed is stored as uint16 bits with dtype 'bfloat16' and
    loads as ml_dtypes.bfloat16 NumPy values with the same bits."""
    values = torch.randn(4, 6).to(torch.bfloat16)
    indices = torch.tensor([[0, 2, 1, 3, 0, 1]] * 4, dtype=torch.uint8)
    p = Packed(values, indices, 2, 4, (4, 12), 1)
    api.save_packed(tmp_path / "bf.npz", p)
    raw = read_fields(tmp_path / "bf.npz")
    assert str(raw["dtype"]) == "bfloat16" and raw["values"].dtype == np.uint16
    q = api.load_packed(tmp_path / "bf.npz")
    assert q.values.dtype == np.dtype(ml_dtypes.bfloat16)
    torch_bits = values.view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(q.values.view(np.uint16), torch_bits)
    assert np.array_equal(q.indices, indices.numpy())


def test_S3_5_fields_and_checksum_definition(saved: tuple[Path, Packed]) -> None:
    """S3.5: the file holds exactly the listed fields, no pickle, and sha256 is the
    digest of the canonical header plus the raw bytes."""
    path, p = saved
    fields = read_fields(path)
    assert sorted(fields) == sorted(
        ["format", "version", "n", "m", "shape", "axis", "dtype", "values", "indices", "sha256"]
    )
    assert str(fields["format"]) == "spikenm.packed" and int(fields["version"]) == 1
    assert fields["shape"].tolist() == [3, 8, 2] and int(fields["axis"]) == 1
    assert str(fields["sha256"]) == spec_checksum(fields)


def test_S3_5_atomic_write_leaves_old_file_on_failure(
    saved: tuple[Path, Packed], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3.5: the container is written to a temporary file and moved into place: a
    failed save leaves the previous file intact and no temporary file behind."""
    path, p = saved
    before = path.read_bytes()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        api.save_packed(path, api.pack(np.ones((1, 4), np.float32), 4, 4))
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]


def test_S3_5_save_validates_packed(tmp_path: Path) -> None:
    """S3.5: save_packed refuses an invalid Packed (here a repeated index) and writes
    nothing."""
    p = Packed(np.ones((1, 2), np.float32), np.array([[1, 1]], np.uint8), 2, 4, (1, 4), 1)
    with pytest.raises(ValueError, match="strictly increasing"):
        api.save_packed(tmp_path / "bad.npz", p)
    assert os.listdir(tmp_path) == []


def _edit(field: str, value: Any) -> Callable[[dict], None]:
    def apply(fields: dict) -> None:
        fields[field] = value
    return apply


def _poke_index(fields: dict) -> None:
    fields["indices"] = fields["indices"].copy()
    fields["indices"][1, 1, 1] = 4  # m = 4


def _unsort_indices(fields: dict) -> None:
    fields["indices"] = fields["indices"].copy()
    fields["indices"][2, 0, :] = fields["indices"][2, 0, ::-1]


def _drop(field: str) -> Callable[[dict], None]:
    def apply(fields: dict) -> None:
        del fields[field]
    return apply


TAMPERED = {
    "index out of range": (_poke_index, r"indices hold 4 .*expected values in \[0, 4\)"),
    "indices not increasing": (_unsort_indices, "strictly increasing"),
    "wrong shape": (
        _edit("shape", np.array([3, 8, 3])),
        r"values have shape \(3, 2, 4\); expected \(3, 3, 4\)",
    ),
    "shape not fitting m": (_edit("shape", np.array([3, 6, 2])), "positive multiple of m=4"),
    "values reshaped": (
        lambda f: f.update(values=f["values"].reshape(2, 3, 4)), "values have shape",
    ),
    "wrong version": (_edit("version", np.array(2)), "'version' is 2; this spikenm reads version"),
    "wrong format": (_edit("format", np.array("other.thing")), "'format' is 'other.thing'"),
    "unknown dtype": (_edit("dtype", np.array("complex64")), "'dtype' is 'complex64'"),
    "dtype not matching values": (
        _edit("dtype", np.array("int8")), "'values' is stored as float32",
    ),
    "n > m": (_edit("n", np.array(5)), "n:m = 5:4"),
    "n not an integer": (_edit("n", np.array(2.0)), "'n' is float64"),
    "axis out of range": (_edit("axis", np.array(3)), "axis 3 is out of range"),
    "shape not 1-D": (_edit("shape", np.array([[3, 8, 2]])), "'shape' is int64 \\(1, 3\\)"),
    "indices not uint8": (
        lambda f: f.update(indices=f["indices"].astype(np.int16)), "expected uint8",
    ),
    "missing field": (_drop("axis"), r"missing fields \['axis'\]"),
    "extra field": (_edit("extra", np.array(1)), r"unexpected fields \['extra'\]"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_S3_5_tampered_fields_raise_naming_the_field(
    saved: tuple[Path, Packed], case: str,
) -> None:
    """S3.5: load_packed validates every field of a consistently re-signed file and
    raises ValueError naming the one that is wrong."""
    path, _ = saved
    edit, message = TAMPERED[case]
    fields = read_fields(path)
    edit(fields)
    write_fields(path, fields)
    with pytest.raises(ValueError, match=message):
        api.load_packed(path)


def test_S3_5_bad_checksum(saved: tuple[Path, Packed]) -> None:
    """S3.5: a changed value with a stale checksum raises, naming sha256."""
    path, _ = saved
    fields = read_fields(path)
    fields["values"] = fields["values"].copy()
    fields["values"].flat[3] += 1
    write_fields(path, fields, rehash=False)
    with pytest.raises(ValueError, match="'sha256' does not match"):
        api.load_packed(path)


def test_S3_5_checksum_covers_header(saved: tuple[Path, Packed]) -> None:
    """S3.5: the checksum covers the header: a different but valid axis/shape pair
    with the old digest is rejected."""
    path, _ = saved
    fields = read_fields(path)
    fields["shape"] = np.array([2, 8, 3])
    fields["values"] = fields["values"].reshape(2, 3, 4).copy()
    fields["indices"] = fields["indices"].reshape(2, 3, 4).copy()
    write_fields(path, fields, rehash=False)
    with pytest.raises(ValueError, match="'sha256'"):
        api.load_packed(path)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, -1])
def test_S3_5_truncated_file(saved: tuple[Path, Packed], cut: float) -> None:
    """S3.5: a truncated container raises ValueError saying it is truncated or corrupt
    (or, if the cut spares the zip directory, naming what no longer matches)."""
    path, _ = saved
    data = path.read_bytes()
    end = len(data) + cut if cut < 0 else int(len(data) * cut)
    path.write_bytes(data[:int(end)])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        api.load_packed(path)


def test_S3_5_corrupt_member_bytes(saved: tuple[Path, Packed]) -> None:
    """S3.5: flipped bytes inside the archive raise ValueError, never a crash or a
    silently different array."""
    path, _ = saved
    data = bytearray(path.read_bytes())
    start = data.index(b"values.npy") + 200  # inside the values member's data
    data[start:start + 4] = bytes(b ^ 0xFF for b in data[start:start + 4])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupt.*CRC"):
        api.load_packed(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(512)), "is not a spikenm"),
        (lambda p: p.write_bytes(b""), "is not a spikenm packed container"),
        (lambda p: p.write_bytes(npy_bytes(np.arange(5))), r"leading bytes b'\\x93NUM'"),
        (lambda p: np.savez(p, values=np.arange(3)), "missing fields"),
    ],
)
def test_S3_5_not_a_container(
    tmp_path: Path, content: Callable[[Path], None], message: str,
) -> None:
    """S3.5: random bytes, an empty file, a plain .npy and an unrelated npz raise
    ValueError."""
    path = tmp_path / "x.npz"
    content(path)
    with pytest.raises(ValueError, match=message):
        api.load_packed(path)


def test_S3_5_object_array_is_not_unpickled(saved: tuple[Path, Packed]) -> None:
    """S3.5: an npz whose field holds an object (pickled) array raises ValueError; it is
    never unpickled."""
    path, _ = saved
    fields = read_fields(path)
    fields["values"] = np.array([{"evil": 1}], dtype=object)
    np.savez(path, **fields)
    with pytest.raises(ValueError, match="'values' cannot be read with allow_pickle=False"):
        api.load_packed(path)
