"""The one backend registry (`spikenm.registry`): built-in names and aliases, third-party
backends registered by import path for `spikenm.api` dispatch, the conformance suite and
the trainer's model backends, and the errors of bad registrations."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest

from spikenm import api, registry
from spikenm.conformance.runner import RunConfig, run_suite
from spikenm.conformance.selection import BackendSelectionError, load_backend
from spikenm.dispatch import backend_for, framework_of

FAKE_ARRAYS = '''
import numpy as np


class FakeArray:
    """An array type of a framework spikenm does not know: a box around an ndarray
    that also claims the array API (so, unregistered, it goes to the array-API backend)."""

    def __init__(self, a):
        self.a = np.asarray(a)

    @property
    def shape(self):
        return self.a.shape

    def __array_namespace__(self, api_version=None):
        raise RuntimeError("the array-API backend must not be asked about a FakeArray")
'''

FAKE_BACKEND = '''
"""A third-party backend for FakeArray: every protocol function of the reference,
unboxing its arguments and boxing its results."""
import functools

import numpy as np

import spikenm.reference as ref
from fakearrays import FakeArray

name = "fake"
differentiable = True


def owns(x):
    return isinstance(x, FakeArray)


def _unbox(v):
    return v.a if isinstance(v, FakeArray) else v


def _box(v):
    if isinstance(v, tuple):
        return tuple(_box(e) for e in v)
    return FakeArray(v) if isinstance(v, np.ndarray) else v


def _wrap(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _box(fn(*map(_unbox, args), **{k: _unbox(v) for k, v in kwargs.items()}))
    return call


for _name in ("dtype_name", "moveaxis", "all_finite", "gumbel_like", "topn_mask",
              "relaxed_topn", "sample_mask", "block_probs", "eligibility_credit",
              "eid_targets", "credit_scores", "eid_loss", "block_nnz", "pack", "unpack", "spmm",
              "sample_mask_vjp", "relaxed_topn_vjp", "eid_loss_vjp"):
    globals()[_name] = _wrap(getattr(ref, _name))


def to_numpy(x):
    return np.array(x.a)


def from_numpy(a, like=None):
    return FakeArray(np.array(a))
'''

FAKE_MODELS = '''
from types import SimpleNamespace

CREATED = []


def factory(device="cpu"):
    if device != "cpu":
        raise ValueError(f"device {device!r} is not available; this backend has ['cpu']")
    backend = SimpleNamespace(name="fake-model", device=device, from_numpy=None,
                              to_numpy=None, forward_backward=None, evaluate=None)
    CREATED.append(backend)
    return backend


def incomplete(device="cpu"):
    return SimpleNamespace(name="half", device=device)
'''


@pytest.fixture()
def third_party(tmp_path: Path) -> Iterator[Path]:
    """Modules of a third party on ``sys.path``; registrations and imports undone after."""
    (tmp_path / "fakearrays.py").write_text(FAKE_ARRAYS)
    (tmp_path / "fake_backend.py").write_text(FAKE_BACKEND)
    (tmp_path / "fake_models.py").write_text(FAKE_MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("fake", "fakemodel", "fake2"):
            if registry.info(name) is not None and name not in registry.BUILTIN:
                registry.unregister(name)
        for module in ("fakearrays", "fake_backend", "fake_models"):
            sys.modules.pop(module, None)


def test_builtin_names_aliases_and_modules() -> None:
    assert registry.names()[:6] == ("numpy", "reference", "torch", "jax", "array_api",
                                    "array_api_strict")
    assert registry.info("reference") is registry.BUILTIN["numpy"]
    assert registry.info("array_api_strict").name == "array_api"
    assert registry.info("tensorflow") is None
    import spikenm.reference as reference

    assert registry.array_backend("numpy") is reference.BACKEND
    assert registry.array_backend("reference") is reference.BACKEND
    assert load_backend("array_api_strict") is registry.array_backend("array_api")
    assert registry.model_backend_names() == ("numpy", "torch", "jax")
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow'; expected one of"):
        registry.array_backend("tensorflow")
    with pytest.raises(ValueError, match=r"unknown model backend 'tensorflow'"):
        registry.model_backend("tensorflow")


def test_third_party_array_backend_dispatches_after_registration(third_party: Path) -> None:
    import fakearrays

    x = fakearrays.FakeArray(np.array([0.0, 3.0, 1.0, 2.0, 5.0, 4.0, 0.0, 0.0]))
    with pytest.raises(RuntimeError, match="must not be asked"):
        api.topn_mask(x, 2, 4)                     # unregistered: the array-API fallback
    registry.register("fake", array_module="fake_backend", framework="fakearrays")
    assert "fake_backend" not in sys.modules       # nothing imported at registration
    assert framework_of(np.zeros(2)) == "numpy"    # a built-in type is not even asked
    assert "fake_backend" not in sys.modules
    assert framework_of(x) == "fake" and "fake_backend" in sys.modules
    mask = api.topn_mask(x, 2, 4)
    assert isinstance(mask, fakearrays.FakeArray)
    assert mask.a.tolist() == [0, 1, 0, 1, 1, 1, 0, 0]
    with pytest.raises(TypeError, match=r"cannot be mixed \(w: fake, mask: numpy\)"):
        backend_for(w=x, mask=np.zeros(8))


def test_third_party_backend_runs_the_conformance_suite_by_name(third_party: Path) -> None:
    registry.register("fake", array_module="fake_backend", framework="fakearrays")
    result = run_suite("fake", RunConfig(profile="ci", max_examples=3, clauses=("S1.2", "S3.4")))
    assert result.subject.dispatches, "spikenm.api must dispatch the registered type"
    assert {r.id: r.status for r in result.results} == {
        "S1.2": "pass", "S1.4:api": "pass", "S3.4:api": "pass"}


def test_third_party_model_backend_by_name_and_by_import_path(third_party: Path) -> None:
    registry.register("fakemodel", model_module="fake_models:factory")
    assert "fake_models" not in sys.modules
    assert registry.model_backend_names()[-1] == "fakemodel"
    backend = registry.model_backend("fakemodel", "cpu")
    import fake_models

    assert fake_models.CREATED == [backend] and backend.device == "cpu"
    assert registry.model_backend("fake_models:factory").name == "fake-model"
    with pytest.raises(ValueError, match=r"device 'gpu:3' is not available"):
        registry.model_backend("fakemodel", "gpu:3")
    with pytest.raises(ValueError, match=r"model backend 'fake_models:incomplete' lacks "
                                         r"from_numpy, to_numpy, forward_backward, evaluate"):
        registry.model_backend("fake_models:incomplete")
    with pytest.raises(ValueError, match=r"backend 'fakemodel' has no array backend"):
        registry.array_backend("fakemodel")
    with pytest.raises(BackendSelectionError, match=r"has no array backend"):
        load_backend("fakemodel")


def test_registration_errors(third_party: Path) -> None:
    with pytest.raises(ValueError, match=r"backend name 'torch' is a built-in backend"):
        registry.register("torch", array_module="fake_backend")
    with pytest.raises(ValueError, match=r"'reference' is a built-in backend"):
        registry.register("reference", array_module="fake_backend")
    with pytest.raises(ValueError, match=r"backend name 'my.mod' is invalid"):
        registry.register("my.mod", array_module="fake_backend")
    with pytest.raises(ValueError, match=r"give array_module, model_module or both"):
        registry.register("fake")
    with pytest.raises(ValueError, match=r"array_module='not a module' is not an import path"):
        registry.register("fake", array_module="not a module")
    with pytest.raises(ValueError, match=r"framework='a.b' is invalid"):
        registry.register("fake", array_module="fake_backend", framework="a.b")
    registry.register("fake", array_module="fake_backend", framework="fakearrays")
    with pytest.raises(ValueError, match=r"'fake' is registered already; pass replace=True"):
        registry.register("fake", array_module="fake_backend")
    registry.register("fake", array_module="fake_backend:NOPE", framework="fakearrays",
                      replace=True)
    with pytest.raises(ValueError, match=r"backend 'fake_backend:NOPE': module 'fake_backend' "
                                         r"has no attribute 'NOPE'"):
        registry.array_backend("fake")
    import fakearrays

    with pytest.raises(ImportError, match=r"has no attribute 'NOPE'"):
        framework_of(fakearrays.FakeArray(np.zeros(4)))   # its framework is loaded: loud
    with pytest.raises(ValueError, match=r"'numpy' is a built-in backend; it cannot be removed"):
        registry.unregister("numpy")
    registry.unregister("fake")
    with pytest.raises(ValueError, match=r"no backend 'fake' was registered"):
        registry.unregister("fake")


def test_registry_docstring_example() -> None:
    import doctest

    result = doctest.testmod(registry)
    assert result.attempted > 0 and result.failed == 0


def test_unused_namespace_types_are_refused() -> None:
    ns: Any = SimpleNamespace(shape=(2,))
    with pytest.raises(TypeError, match=r"x must be an array .*types\.SimpleNamespace"):
        framework_of(ns, "x")
