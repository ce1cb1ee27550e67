"""Error-catalogue cases of the file loaders (SPEC S3.11): each loader x each kind of bad file.

``CASES`` is a list of `error_catalogue.Case` ``(function, kind, call, exception type,
message regex)``; ``call()`` writes its bad file into a fresh temporary folder, calls the
loader and removes the folder.  `tests/test_untrusted_files.py` runs every case too.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from error_catalogue import Case

from spikenm import api
from spikenm.safetensors_io import load_packed_safetensors, save_packed_safetensors
from spikenm.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from spikenm.train.data import read_dataset_npz
from spikenm.train.local_files import load_cifar, load_idx_dataset


def _in_tmp(body: Callable[[Path], Any]) -> Callable[[], Any]:
    def call() -> Any:
        folder = Path(tempfile.mkdtemp(prefix="spikenm-errors-"))
        try:
            return body(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return call


def _packed() -> Any:
    return api.pack(np.array([[0.0, 5.0, 0.0, 7.0]], np.float32), 2, 4)


def _nir_file(folder: Path, change: str = "") -> Path:
    """A NIR file of a small 2:4 MLP (S4.12); ``change``: ``"no reset"`` drops the
    metadata a foreign exporter does not write, ``"spiking readout"`` adds a LIF after
    the readout as snnTorch's models have."""
    import nir

    from spikenm.nir_io import to_nir, write_nir
    from spikenm.snn.graph import Graph, Node
    from spikenm.snn.neuron import LIFParams

    graph = Graph((4,), (Node("linear", (-1,), 4, 4), Node("lif", (0,)),
                         Node("linear", (1,), 4, 2)))
    exported = to_nir(graph, {k: np.ones(s) for k, s in graph.param_shapes().items()},
                      LIFParams())
    if change == "no reset":
        exported.metadata = {"spikenm.dt": 1e-4, "spikenm.time_steps": 4}
    elif change == "spiking readout":
        lif = exported.nodes["lif0"]
        exported.nodes["lif1"] = nir.LIF(**{k: getattr(lif, k)[:2] for k in (
            "tau", "r", "v_leak", "v_threshold", "v_reset")})
        exported.edges = exported.edges[:-1] + [("layer1", "lif1"), ("lif1", "output")]
    write_nir(folder / "net.nir", exported)
    return folder / "net.nir"


def _read_nir(path: Path) -> Any:
    from spikenm.nir_io import read_nir

    return read_nir(path, 2, 4)


def _flip(path: Path, needle: bytes, offset: int = 0) -> Path:
    data = bytearray(path.read_bytes())
    data[data.index(needle) + offset] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def _checkpoint(folder: Path) -> Path:
    save_checkpoint(folder / "checkpoint.npz", {"w": np.arange(6.0).reshape(2, 3)},
                    {"step": 1})
    return folder / "checkpoint.npz"


def _central_method(path: Path, method: int) -> Path:
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 10:at + 12] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def _container(folder: Path) -> Path:
    api.save_packed(folder / "w.npz", _packed())
    return folder / "w.npz"


def _safetensors(folder: Path) -> Path:
    save_packed_safetensors(folder / "w.safetensors", {"w": _packed()}, {"run": "x"})
    return folder / "w.safetensors"


def _idx(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                               for s in a.shape) + a.tobytes()


def _mnist(folder: Path, images: bytes | None = None, labels: bytes | None = None,
           gz: bool = False) -> Path:
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": images or _idx(np.zeros((2, 28, 28), np.uint8)),
             "train-labels-idx1-ubyte": labels or _idx(np.array([1, 2], np.uint8)),
             "t10k-images-idx3-ubyte": _idx(np.zeros((1, 28, 28), np.uint8)),
             "t10k-labels-idx1-ubyte": _idx(np.array([0], np.uint8))}
    for name, data in files.items():
        if gz and name.startswith("train-images"):
            (raw / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (raw / name).write_bytes(data)
    return folder


def _cifar(folder: Path, test_batch: Any, raw: bytes | None = None) -> Path:
    c10 = folder / "cifar-10-batches-py"
    c10.mkdir()
    good = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (c10 / name).write_bytes(pickle.dumps(good, protocol=2))
    (c10 / "test_batch").write_bytes(raw if raw is not None else
                                     pickle.dumps(test_batch, protocol=2))
    return folder


def _dataset(folder: Path, **change: Any) -> Path:
    x = np.zeros((2, 1, 8, 8), np.uint8)
    entries = dict(x_train=x, y_train=np.array([0, 1]), x_test=x, y_test=np.array([1, 2]),
                   pixel_max=np.array(16.0))
    entries.update(change)
    np.savez_compressed(folder / "d.npz", **entries)
    return folder / "d.npz"


CASES: list[Case] = [
    # checkpoints and model files
    Case("train.checkpoint.load_checkpoint", "missing file",
     _in_tmp(lambda d: load_checkpoint(d / "none.npz")), FileNotFoundError, "no checkpoint at"),
    Case("train.checkpoint.load_checkpoint", "a directory",
     _in_tmp(lambda d: load_checkpoint(d)), IsADirectoryError, "Is a directory"),
    Case("train.checkpoint.load_checkpoint", "not a zip file",
     _in_tmp(lambda d: (d / "c.npz").write_bytes(b"hello") and load_checkpoint(d / "c.npz")),
     ValueError, r"c\.npz' is not a readable checkpoint: expected an \.npz"),
    Case("train.checkpoint.load_checkpoint", "truncated",
     _in_tmp(lambda d: load_checkpoint(_truncate(_checkpoint(d)))),
     ValueError, r"checkpoint\.npz.*truncated or corrupt"),
    Case("train.checkpoint.load_checkpoint", "bit flip in an array header's shape",
     _in_tmp(lambda d: load_checkpoint(_flip(_checkpoint(d), b"'shape': (2, 3)", 10))),
     ValueError, r"checkpoint\.npz.*(CRC|'w')"),
    Case("train.checkpoint.load_checkpoint", "unsupported zip compression (LZMA)",
     _in_tmp(lambda d: load_checkpoint(_central_method(_checkpoint(d), 14))),
     ValueError, r"checkpoint\.npz.*compression method 14"),
    Case("train.checkpoint.load_checkpoint", "version 1 (no checksum)",
     _in_tmp(lambda d: np.savez(d / "c.npz", __meta__=np.array(
         '{"format": "spikenm.train.checkpoint", "version": 1}')) or load_checkpoint(d / "c.npz")),
     ValueError, r"c\.npz.*version 1 .*no checksum"),
    Case("train.checkpoint.load_checkpoint", "a plain npz without metadata",
     _in_tmp(lambda d: np.savez(d / "c.npz", w=np.ones(2)) or load_checkpoint(d / "c.npz")),
     ValueError, r"c\.npz' is not a spikenm checkpoint \(no __meta__ entry\)"),
    Case("train.checkpoint.load_model", "a training checkpoint instead of a model file",
     _in_tmp(lambda d: load_model(_checkpoint(d))), ValueError, "expected a model file"),
    # packed container
    Case("api.load_packed", "not a zip file",
     _in_tmp(lambda d: (d / "w.npz").write_bytes(b"\x93NUMPY") and api.load_packed(d / "w.npz")),
     ValueError, r"w\.npz' is not a spikenm packed container"),
    Case("api.load_packed", "truncated",
     _in_tmp(lambda d: api.load_packed(_truncate(_container(d)))),
     ValueError, r"w\.npz.*truncated or corrupt"),
    Case("api.load_packed", "bit flip in the values",
     _in_tmp(lambda d: api.load_packed(_flip(_container(d), b"'<f4'", 2))),
     ValueError, r"w\.npz.*(CRC|sha256|values)"),
    Case("api.load_packed", "encrypted zip entry",
     _in_tmp(lambda d: api.load_packed(_flip(_container(d), b"PK\x01\x02", 8))),
     ValueError, r"w\.npz.*encrypted"),
    # safetensors
    Case("safetensors_io.load_packed_safetensors", "not a safetensors file",
     _in_tmp(lambda d: (d / "w.safetensors").write_bytes(b"\xff" * 16)
             and load_packed_safetensors(d / "w.safetensors")),
     ValueError, r"w\.safetensors' is not a readable \.safetensors file"),
    Case("safetensors_io.load_packed_safetensors", "truncated",
     _in_tmp(lambda d: load_packed_safetensors(_truncate(_safetensors(d), 0.9))),
     ValueError, r"w\.safetensors"),
    Case("safetensors_io.load_packed_safetensors", "caller metadata changed",
     _in_tmp(lambda d: load_packed_safetensors(_flip(_safetensors(d), b'"run":"x"', 7))),
     ValueError, r"w\.safetensors.*(spikenm\.sha256|not a readable)"),
    # NIR (S4.12)
    Case("nir_io.read_nir", "not an HDF5 file",
     _in_tmp(lambda d: (d / "net.nir").write_bytes(b"not hdf5 at all")
             and _read_nir(d / "net.nir")),
     ValueError, r"net\.nir' is not a readable NIR graph file"),
    Case("nir_io.read_nir", "a foreign graph that does not state its reset",
     _in_tmp(lambda d: _read_nir(_nir_file(d, "no reset"))),
     ValueError, r"net\.nir.*does not state its neurons' reset .*pass reset='hard'"),
    Case("nir_io.read_nir", "a spiking readout (a LIF after the last layer)",
     _in_tmp(lambda d: _read_nir(_nir_file(d, "spiking readout"))),
     ValueError, r"net\.nir.*reads the spiking node 'lif1' \(LIF\).*"
                 r"drop_spiking_readout=True"),
    # IDX
    Case("train.local_files.load_idx_dataset", "label out of range",
     _in_tmp(lambda d: load_idx_dataset(_mnist(d, labels=_idx(np.array([1, 200], np.uint8))),
                                        "mnist", "train")),
     ValueError, r"train-labels-idx1-ubyte: label 1 is 200; expected a class in \[0, 10\)"),
    Case("train.local_files.load_idx_dataset", "images not 28x28",
     _in_tmp(lambda d: load_idx_dataset(_mnist(d, images=_idx(np.zeros((2, 28, 27), np.uint8))),
                                        "mnist", "train")),
     ValueError, r"images have shape \(2, 28, 27\); expected \(N, 28, 28\)"),
    Case("train.local_files.load_idx_dataset", "header declares more data than the file holds",
     _in_tmp(lambda d: load_idx_dataset(_mnist(d, images=_idx(np.zeros((2, 28, 28), np.uint8))[:50]),
                                        "mnist", "train")),
     ValueError, r"train-images-idx3-ubyte.*(data bytes|declares)"),
    Case("train.local_files.load_idx_dataset", "corrupt gzip",
     _in_tmp(lambda d: (lambda root: _flip(root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz",
                                           b"\x1f\x8b", 30) and
                        load_idx_dataset(root, "mnist", "train"))(_mnist(d, gz=True))),
     ValueError, r"train-images-idx3-ubyte\.gz"),
    Case("train.local_files.load_idx_dataset", "not an IDX file",
     _in_tmp(lambda d: load_idx_dataset(_mnist(d, images=b"\x01\x02\x03\x04"), "mnist", "train")),
     ValueError, r"train-images-idx3-ubyte is not an IDX file"),
    # CIFAR
    Case("train.local_files.load_cifar", "label -1",
     _in_tmp(lambda d: load_cifar(_cifar(d, {b"data": np.zeros((1, 3072), np.uint8),
                                             b"labels": [-1]}), "cifar10", "test")),
     ValueError, r"test_batch: label 0 is -1; expected a class in \[0, 10\)"),
    Case("train.local_files.load_cifar", "pixel 300",
     _in_tmp(lambda d: load_cifar(_cifar(d, {b"data": np.full((1, 3072), 300),
                                             b"labels": [1]}), "cifar10", "test")),
     ValueError, r"test_batch: pixel 0 \(flat index\) is 300"),
    Case("train.local_files.load_cifar", "a pickle that calls a function",
     _in_tmp(lambda d: load_cifar(_cifar(d, None, raw=b"\x80\x02cos\nsystem\nq\x00."),
                                  "cifar10", "test")),
     ValueError, r"test_batch.*refers to os\.system"),
    Case("train.local_files.load_cifar", "truncated pickle",
     _in_tmp(lambda d: load_cifar(_cifar(d, None, raw=pickle.dumps(
         {b"data": np.zeros((1, 3072), np.uint8), b"labels": [1]}, protocol=2)[:100]),
         "cifar10", "test")),
     ValueError, r"test_batch is not a readable CIFAR python batch"),
    Case("train.local_files.load_cifar", "not a dict",
     _in_tmp(lambda d: load_cifar(_cifar(d, [1, 2, 3]), "cifar10", "test")),
     ValueError, r"test_batch is not a CIFAR python batch"),
    # dataset npz
    Case("train.data.read_dataset_npz", "label out of range",
     _in_tmp(lambda d: read_dataset_npz(_dataset(d, y_test=np.array([1, 10])), "digits")),
     ValueError, r"d\.npz.*y_test\[1\] is 10"),
    Case("train.data.read_dataset_npz", "pixels of the wrong dtype",
     _in_tmp(lambda d: read_dataset_npz(_dataset(d, x_train=np.zeros((2, 1, 8, 8), np.int16)),
                                        "digits")),
     ValueError, r"d\.npz.*x_train is int16"),
    Case("train.data.read_dataset_npz", "missing entry",
     _in_tmp(lambda d: np.savez(d / "d.npz", x_train=np.zeros(1)) or
             read_dataset_npz(d / "d.npz", "digits")),
     ValueError, r"d\.npz' lacks the entries"),
    Case("train.data.read_dataset_npz", "object array",
     _in_tmp(lambda d: read_dataset_npz(_dataset(d, y_train=np.array([1, None], object)),
                                        "digits")),
     ValueError, r"d\.npz.*'y_train' cannot be read with allow_pickle=False"),
]
