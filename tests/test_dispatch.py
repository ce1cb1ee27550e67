"""Backend choice from the caller's array types (SPEC: the reference is the NumPy backend;
S0.5: arrays from different frameworks, or non-arrays, are a TypeError)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from spikenm import api
from spikenm.dispatch import backend_for, backend_named, framework_of
from spikenm.protocol import missing_members


def test_S0_numpy_arrays_go_to_the_reference() -> None:
    reference = importlib.import_module("spikenm.reference")
    be = backend_for(logits=np.zeros((2, 4)), noise=np.zeros((2, 4)))
    assert be is reference.BACKEND and be.name == "numpy"
    assert backend_named("numpy") is reference.BACKEND
    assert missing_members(reference) == []
    for out in (
        api.topn_mask(np.zeros(4), 2, 4), api.relaxed_topn(np.zeros(4), 2, 4, temperature=1.0),
        api.block_probs(np.zeros(4), 4), api.eid_loss(np.zeros(4), np.full(4, 0.25), 4),
    ):
        assert type(out) is np.ndarray


def test_S0_numpy_arrays_and_scalars_are_numpy() -> None:
    assert framework_of(np.zeros((2, 3), dtype=np.float32)) == "numpy"
    assert framework_of(np.float64(1.0)) == "numpy"


def test_S0_importing_and_using_api_on_numpy_imports_no_other_framework() -> None:
    """`import spikenm.api` and a NumPy call leave torch, JAX and array-API libs unimported."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import spikenm.api as api
        before = sorted(m for m in ("torch", "jax", "jaxlib", "array_api_strict",
                                    "array_api_compat") if m in sys.modules)
        x = np.zeros((2, 8))
        api.sample_mask(x, 2, 4, noise=api.gumbel_like(x, 0))
        api.eid_loss(x, np.full((2, 8), 0.25), 4)
        after = sorted(m for m in ("torch", "jax", "jaxlib", "array_api_strict",
                                   "array_api_compat") if m in sys.modules)
        print(before, after)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []", result.stdout


def test_S0_framework_of_torch_tensor() -> None:
    import torch
    assert framework_of(torch.zeros(3)) == "torch"
    assert framework_of(torch.zeros((), dtype=torch.int64)) == "torch"
    assert framework_of(torch.nn.Parameter(torch.zeros(2))) == "torch"


def test_S0_framework_of_jax_array() -> None:
    import jax.numpy as jnp
    assert framework_of(jnp.zeros(3)) == "jax"


def test_S0_framework_of_array_api_strict_array() -> None:
    import array_api_strict as xp
    assert framework_of(xp.zeros(3)) == "array_api"


def test_S0_5_mixed_frameworks_are_a_type_error_naming_the_arguments() -> None:
    import torch
    with pytest.raises(TypeError, match=r"cannot be mixed \(w: numpy, mask: torch\)"):
        backend_for(w=np.zeros(4), mask=torch.zeros(4))
    import array_api_strict as xp
    with pytest.raises(TypeError, match=r"cannot be mixed \(a: torch, b: array_api\)"):
        backend_for(a=torch.zeros(4), b=xp.zeros(4))


def test_S0_5_non_arrays_and_missing_arrays() -> None:
    with pytest.raises(TypeError, match=r"weights must be an array .*got builtins\.list"):
        framework_of([1.0, 2.0], "weights")
    with pytest.raises(TypeError, match=r"x must be an array .*got builtins\.float"):
        backend_for(x=1.0)
    with pytest.raises(TypeError, match=r"no array argument given"):
        backend_for(mask=None)
    # None means "not given" and is ignored next to real arrays
    assert backend_for(w=np.zeros(4), mask=None).name == "numpy"
