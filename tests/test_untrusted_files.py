"""Files are untrusted (SPEC S3.11, S5.12, S5.13): checksums, size limits before allocating,
bounded decompression, dataset value ranges, and only documented exception types."""

from __future__ import annotations

import gzip
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikenm import api
from spikenm.container import INFLATE_RATIO_ENV, NpzFile, loader_boundary
from spikenm.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from spikenm.train.config import DataConfig
from spikenm.train.data import load_dataset, read_dataset_npz
from spikenm.train.local_files import load_cifar, load_idx_dataset

MiB = 2**20


def _checkpoint(path: Path) -> dict[str, np.ndarray]:
    arrays = {"params/w": np.arange(12, dtype=np.float64).reshape(3, 4),
              "buffers/b": np.ones(5, np.float32)}
    save_checkpoint(path, arrays, {"step": 3, "config": {"run": {"seed": 0}}})
    return arrays


def _peak(fn) -> tuple[int, BaseException | None]:
    """Peak traced allocation (bytes) of ``fn()`` and the exception it raised."""
    tracemalloc.start()
    error = None
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


# -- 1. checksums ----------------------------------------------------------------------------

def test_S5_12_checkpoint_round_trip_and_header_shape_flip(tmp_path: Path) -> None:
    """S5.12: a shape changed in an array's .npy header (same byte count, so it used to
    load as a (4, 3) array) is refused naming the file and the entry."""
    path = tmp_path / "checkpoint.npz"
    arrays = _checkpoint(path)
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 3 and meta["version"] == 2 and "arrays" not in meta
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype
               for k in arrays)
    data = path.read_bytes()
    assert data.count(b"'shape': (3, 4)") == 1
    path.write_bytes(data.replace(b"'shape': (3, 4)", b"'shape': (4, 3)"))
    with pytest.raises(ValueError, match=r"checkpoint\.npz.*(CRC|'params/w')"):
        load_checkpoint(path)


def test_S5_12_every_single_bit_flip_of_the_data_is_refused(tmp_path: Path) -> None:
    """S5.12: a re-zipped file (valid CRCs) with one changed value fails the checksum."""
    path = tmp_path / "c.npz"
    _checkpoint(path)
    with np.load(path, allow_pickle=False) as z:
        entries = {k: z[k] for k in z.files}
    entries["params/w"] = entries["params/w"].copy()
    entries["params/w"].view(np.uint64)[1, 2] ^= 1
    np.savez(path, **entries)
    with pytest.raises(ValueError, match=r"c\.npz.*checksum '__sha256__' does not match"):
        load_checkpoint(path)


def test_S5_12_model_file_and_old_version(tmp_path: Path) -> None:
    """S5.12: `load_model` reads a model file and refuses a training checkpoint; a version 1
    checkpoint (no checksum) is refused with an error naming version 1."""
    save_checkpoint(tmp_path / "model.npz", {"layer0.weight": np.ones((2, 2))},
                    {"kind": "model", "graph": {}})
    arrays, meta = load_model(tmp_path / "model.npz")
    assert meta["kind"] == "model" and arrays["layer0.weight"].shape == (2, 2)
    _checkpoint(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="expected a model file"):
        load_model(tmp_path / "c.npz")
    np.savez(tmp_path / "v1.npz", __meta__=np.array(
        '{"format": "spikenm.train.checkpoint", "version": 1, "step": 0}'))
    with pytest.raises(ValueError, match=r"v1\.npz.*version 1 .*no checksum"):
        load_checkpoint(tmp_path / "v1.npz")
    with pytest.raises(ValueError, match="reserved keys"):
        save_checkpoint(tmp_path / "x.npz", {}, {"arrays": 1})


# -- 2. size limits and bounded decompression -------------------------------------------------

def _npz_with_member(path: Path, name: str, header_shape: str, payload: bytes, *,
                     replace: bool = False) -> None:
    """Write (or, with ``replace``, swap into the archive at ``path``) the member ``name``:
    a float32 .npy header declaring ``header_shape`` followed by ``payload``."""
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': " + header_shape + ", }")
    header = header.ljust(118) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + payload
    others = {}
    if replace:
        with zipfile.ZipFile(path) as zf:
            others = {n: zf.read(n) for n in zf.namelist() if n != name}
    with zipfile.ZipFile(path, "w") as zf:
        for other, data in others.items():
            zf.writestr(other, data)
        zf.writestr(name, npy)


def test_S3_11_declared_shape_beyond_the_file_is_refused_before_allocating(tmp_path) -> None:
    """S3.11: a small container whose values header declares 1 GiB is refused from the
    header, without allocating it."""
    path = tmp_path / "w.npz"
    api.save_packed(path, api.pack(np.array([[0.0, 5.0, 0.0, 7.0]], np.float32), 2, 4))
    _npz_with_member(path, "values.npy", "(268435456,)", b"\0" * 1000, replace=True)
    peak, error = _peak(lambda: api.load_packed(path))
    assert isinstance(error, ValueError) and "w.npz" in str(error), error
    assert "declares" in str(error) and peak < 8 * MiB, (peak, error)


def test_S3_11_decompression_is_bounded_and_the_limit_can_be_raised(tmp_path, monkeypatch
                                                                   ) -> None:
    """S3.11: a deflated entry declaring 96 MiB from ~100 KB is refused from the zip
    directory (no inflating); SPIKENM_MAX_INFLATE_RATIO raises the limit."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x_train.npy", "w", force_zip64=True) as fh:
            header = "{'descr': '|u1', 'fortran_order': False, 'shape': (100663296,), }"
            header = header.ljust(118) + "\n"
            fh.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
            chunk = bytes(MiB)
            for _ in range(96):
                fh.write(chunk)
    assert path.stat().st_size < MiB
    peak, error = _peak(lambda: read_dataset_npz(path, "digits"))
    assert isinstance(error, ValueError) and "bomb.npz" in str(error)
    assert INFLATE_RATIO_ENV in str(error) and peak < 8 * MiB, (peak, error)
    monkeypatch.setenv(INFLATE_RATIO_ENV, "100000")
    with NpzFile(path, "a dataset .npz", "dataset entry") as z:
        assert z.header("x_train") == (np.dtype(np.uint8), (100663296,))
    monkeypatch.setenv(INFLATE_RATIO_ENV, "-3")
    with pytest.raises(ValueError, match="expected a positive integer"):
        NpzFile(path, "a dataset .npz", "dataset entry")


def _mnist(root: Path, images: bytes | None = None, labels: bytes | None = None,
           compress: bool = False) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    def idx(a: np.ndarray) -> bytes:
        return bytes([0, 0, 8, a.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                   for s in a.shape) + a.tobytes()

    files = {"train-images-idx3-ubyte": images or idx(np.zeros((3, 28, 28), np.uint8)),
             "train-labels-idx1-ubyte": labels or idx(np.array([1, 2, 3], np.uint8)),
             "t10k-images-idx3-ubyte": idx(np.zeros((2, 28, 28), np.uint8)),
             "t10k-labels-idx1-ubyte": idx(np.array([0, 9], np.uint8))}
    for name, data in files.items():
        if compress and name.startswith("train-images"):
            (raw / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (raw / name).write_bytes(data)
    return raw


def test_S3_11_gzipped_idx_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    """S3.11: a ~100 KB .gz of a genuine 96 MiB IDX file (all zeros) is refused from its
    header without inflating it (peak memory a few MiB, not 2 GiB)."""
    n = 96 * MiB // 784
    data = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in (n, 28, 28))
    raw = _mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").unlink()
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(data)
        for _ in range(96):
            fh.write(bytes(MiB))
    peak, error = _peak(lambda: load_idx_dataset(tmp_path, "mnist", "train"))
    assert isinstance(error, ValueError) and "train-images-idx3-ubyte.gz" in str(error)
    assert INFLATE_RATIO_ENV in str(error) and peak < 8 * MiB, (peak, error)


# -- 3. dataset values -----------------------------------------------------------------------

def _cifar(root: Path, test_batch: dict) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 9]}
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(pickle.dumps(good, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(test_batch, protocol=2))


@pytest.mark.parametrize("batch, message", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, -1]},
     r"test_batch: label 1 is -1; expected a class in \[0, 10\)"),
    ({b"data": np.full((2, 3072), 300, np.int64), b"labels": [3, 1]},
     r"test_batch: pixel 0 \(flat index\) is 300; expected an integer in \[0, 255\]"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [3, 1]}, "pixels are float32"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [3, 1]}, r"expected \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, 1]}, "other than integers"),
])
def test_S5_13_cifar_values_are_range_checked(tmp_path: Path, batch: dict, message: str) -> None:
    """S3.11: a CIFAR label of -1 (which trained as class 9), pixels of 300 (which wrapped to
    44), float pixels and a wrong row length are refused naming the file and the value."""
    _cifar(tmp_path, batch)
    with pytest.raises(ValueError, match=message):
        load_cifar(tmp_path, "cifar10", "test")


def test_S5_13_idx_labels_and_shapes_are_checked(tmp_path: Path) -> None:
    """S3.11: an IDX label of 200 (NaN loss on jax) and 27x28 images are refused."""
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 200, 3])
    _mnist(tmp_path, labels=labels)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 1 is 200; expected "
                                         r"a class in \[0, 10\)"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    images = bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 27, 0, 0, 0, 28]) + bytes(3 * 27 * 28)
    _mnist(tmp_path / "b", images=images, compress=True)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: images have shape "
                                         r"\(3, 27, 28\); expected \(N, 28, 28\)"):
        load_idx_dataset(tmp_path / "b", "mnist", "train")


def test_S5_13_dataset_npz_values_are_checked(tmp_path: Path) -> None:
    """S3.11: a shipped-layout .npz with a label of 10 or a pixel above pixel_max is
    refused naming the entry and the value."""
    x = np.zeros((3, 1, 8, 8), np.uint8)
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x_train=x, y_train=np.array([0, 10, 1]), x_test=x,
                        y_test=np.array([0, 1, 2]), pixel_max=np.array(16.0))
    with pytest.raises(ValueError, match=r"d\.npz.*y_train\[1\] is 10"):
        read_dataset_npz(path, "digits")
    x2 = x.copy()
    x2[1, 0, 2, 3] = 17
    np.savez_compressed(path, x_train=x, y_train=np.array([0, 1, 1]), x_test=x2,
                        y_test=np.array([0, 1, 2]), pixel_max=np.array(16.0))
    with pytest.raises(ValueError, match=r"x_test pixel 83 \(flat index\) is 17; expected "
                                         r"values in \[0, 16\]"):
        read_dataset_npz(path, "digits")


# -- 4. only documented exception types ------------------------------------------------------

def _patched_member(path: Path, change) -> None:
    """Rewrite the first member's central-directory record with ``change(bytearray, at)``."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    change(data, at)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change, message", [
    (lambda d, at: d.__setitem__(slice(at + 10, at + 12), (14).to_bytes(2, "little")),
     "compression method 14"),                      # was LZMAError
    (lambda d, at: d.__setitem__(slice(at + 10, at + 12), (99).to_bytes(2, "little")),
     "compression method 99"),                      # was NotImplementedError
    (lambda d, at: d.__setitem__(at + 8, d[at + 8] | 1), "encrypted"),  # was RuntimeError
])
def test_S3_11_zip_oddities_are_value_errors(tmp_path: Path, change, message: str) -> None:
    """S3.11: compression methods other than stored/deflate and encrypted entries are a
    ValueError naming the file (they escaped as LZMAError, NotImplementedError,
    RuntimeError)."""
    path = tmp_path / "c.npz"
    _checkpoint(path)
    _patched_member(path, change)
    with pytest.raises(ValueError, match=r"c\.npz.*" + message):
        load_checkpoint(path)


@pytest.mark.parametrize("shape", ["(((((((((((((", "(1, 2" + ", 3" * 5000 + ")", "{'a': 1}"])
def test_S3_11_malformed_npy_headers_are_value_errors(tmp_path: Path, shape: str) -> None:
    """S3.11: headers that made the parser raise TokenError, RecursionError or others are a
    ValueError naming the file and the entry."""
    path = tmp_path / "w.npz"
    _npz_with_member(path, "values.npy", shape, b"")
    with pytest.raises(ValueError, match=r"w\.npz.*'values'"):
        api.load_packed(path)


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_S3_11_cifar_pickles_cannot_run_code(tmp_path: Path) -> None:
    """S3.11: a CIFAR batch that calls a function while unpickling is refused before the
    call (the file it would create does not appear)."""
    target = tmp_path / "pwned"
    _cifar(tmp_path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2],
                      b"x": _Touch(target)})
    with pytest.raises(ValueError, match=r"test_batch.*refers to .*dicts, lists, bytes"):
        load_cifar(tmp_path, "cifar10", "test")
    assert not target.exists()


def test_S3_11_huge_pickle_lengths_are_value_errors(tmp_path: Path) -> None:
    """S3.11: a pickle declaring a 2**60-byte string (a MemoryError before) or a memo index
    far beyond the file is a ValueError naming the file, allocating nothing."""
    folder = tmp_path / "cifar-10-batches-py"
    _cifar(tmp_path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
    (folder / "test_batch").write_bytes(b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"x")
    peak, error = _peak(lambda: load_cifar(tmp_path, "cifar10", "test"))
    assert isinstance(error, ValueError) and "test_batch" in str(error), error
    assert peak < 8 * MiB
    # a memo index of 10**9 made the unpickler allocate an 8 GB memo table
    (folder / "test_batch").write_bytes(b"\x80\x02}r" + (10**9).to_bytes(4, "little") + b".")
    with pytest.raises(ValueError, match=r"test_batch.*memo index 1000000000"):
        load_cifar(tmp_path, "cifar10", "test")


def test_S3_11_loader_boundary_translates_other_exceptions() -> None:
    """S3.11: MemoryError/RecursionError become ValueError naming the file; the OS's
    FileNotFoundError/PermissionError/IsADirectoryError and ValueErrors pass."""
    for exc in (MemoryError("big"), RecursionError("deep"), OSError(5, "EIO"),
                AttributeError("x")):
        with pytest.raises(ValueError, match=r"^'f\.npz' is not a readable thing \("
                                             + type(exc).__name__):
            with loader_boundary("'f.npz'", "thing"):
                raise exc
    for exc in (FileNotFoundError("no"), PermissionError("no"), IsADirectoryError("no")):
        with pytest.raises(type(exc)):
            with loader_boundary("'f.npz'", "thing"):
                raise exc
    with pytest.raises(ValueError, match=r"^'f\.npz': bad value$"):
        with loader_boundary("'f.npz'", "thing"):
            raise ValueError("bad value")


def test_S3_11_os_errors_pass_through(tmp_path: Path) -> None:
    """S3.11: a missing file and a directory give the OS's exceptions."""
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        load_checkpoint(tmp_path)
    with pytest.raises(IsADirectoryError):
        api.load_packed(tmp_path)
    with pytest.raises(FileNotFoundError):
        api.load_packed(tmp_path / "missing.npz")


# -- 5. the error catalogue's cases ----------------------------------------------------------

def _cases():
    from error_cases_files import CASES
    return CASES


@pytest.mark.parametrize("case", _cases(), ids=[f"{c[0]}: {c[1]}" for c in _cases()])
def test_S3_11_error_catalogue_cases(case) -> None:
    """S3.11: every catalogued bad file gives its documented exception and message."""
    _, _, call, exc_type, message = case
    with pytest.raises(exc_type, match=message) as info:
        call()
    assert type(info.value) is exc_type


def test_S3_11_members_larger_than_the_file_are_refused(tmp_path: Path) -> None:
    """S3.11: zip directory records whose members add up to more than the file (entries
    overlapping to multiply one stored block) are refused before any member is read."""
    path = tmp_path / "o.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("a.npy", "b.npy", "c.npy"):
            zf.writestr(name, bytes(10_000))
    data = bytearray(path.read_bytes())
    at = 0
    for _ in range(2):                                   # records of a.npy and b.npy
        at = data.index(b"PK\x01\x02", at + 1)
        data[at + 20:at + 28] = (20_000).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"o\.npz.*holds? 50000 bytes in a \d+-byte file"):
        NpzFile(path, "an npz", "entry")


def test_S3_11_read_nir_reads_a_file_and_refuses_corrupt_ones(tmp_path: Path) -> None:
    """S3.11: `read_nir` is `from_nir` of a NIR file; a truncated or non-HDF5 file is a
    ValueError naming it (h5py's OSError/KeyError/RuntimeError do not escape)."""
    import nir

    from spikenm.nir_io import read_nir, to_nir
    from spikenm.snn.graph import Graph, Node
    from spikenm.snn.neuron import LIFParams

    graph = Graph((4,), (Node("linear", (-1,), 4, 4), Node("lif", (0,)),
                         Node("linear", (1,), 4, 2)))
    params = {k: np.ones(s) for k, s in graph.param_shapes().items()}
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(graph, params, LIFParams()))
    graph2, params2, _ = read_nir(path, 2, 4)
    assert graph2 == graph and all(np.array_equal(params2[k], params[k]) for k in params)
    data = path.read_bytes()
    for bad in (data[: len(data) // 3], b"not hdf5 at all"):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=r"net\.nir' is not a readable NIR graph file"):
            read_nir(path, 2, 4)
    with pytest.raises(FileNotFoundError):
        read_nir(tmp_path / "none.nir", 2, 4)
    with pytest.raises(TypeError, match="n must be an integer"):
        read_nir(path, 2.0, 4)


def test_S5_12_a_loaded_checkpoint_saves_back_unchanged(tmp_path: Path) -> None:
    """S5.12: ``save_checkpoint(path, *load_checkpoint(path))`` writes the same metadata
    and checksum (only the zip timestamps differ); a foreign format or version in ``meta``
    is refused."""
    path = tmp_path / "c.npz"
    _checkpoint(path)

    def signature() -> tuple[str, str]:
        with np.load(path, allow_pickle=False) as z:
            return str(z["__meta__"]), str(z["__sha256__"])

    before = signature()
    save_checkpoint(path, *load_checkpoint(path))
    assert signature() == before
    for bad in ({"format": "other"}, {"version": 1}, {"arrays": {}}):
        with pytest.raises(ValueError, match="reserved keys"):
            save_checkpoint(path, {}, bad)
