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


# -- the registry's type tests: subclasses, laziness ---------------------------------------


def test_S0_subclasses_find_their_framework() -> None:
    """Each backend's own ``owns(x)`` is an isinstance test, so subclasses dispatch."""
    import jax
    import jax.numpy as jnp
    import torch

    class Tagged(torch.Tensor):
        pass

    tagged = torch.zeros(8).as_subclass(Tagged)
    assert type(tagged) is Tagged and type(tagged).__module__ == __name__
    assert framework_of(tagged) == "torch"
    out = api.topn_mask(tagged, 2, 4)
    assert isinstance(out, torch.Tensor) and out.sum().item() == 4.0

    class Sub(np.ndarray):
        pass

    assert framework_of(np.zeros(4).view(Sub)) == "numpy"
    seen: list[str] = []

    def traced(x: jax.Array) -> jax.Array:
        seen.append(framework_of(x))                  # a tracer, not a concrete array
        return api.topn_mask(x, 2, 4)

    mask = jax.jit(traced)(jnp.arange(8.0))
    assert seen == ["jax"] and mask.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]


def test_S0_5_masked_arrays_and_their_subclasses_are_refused() -> None:
    class MyMasked(np.ma.MaskedArray):
        pass

    for x in (np.ma.masked_array(np.zeros(4), mask=[0, 1, 0, 0]),
              np.ma.masked_array(np.zeros(4)).view(MyMasked)):
        with pytest.raises(TypeError, match=r"logits is a NumPy masked array.*logits\.filled"):
            backend_for(logits=x)


def _imported_after(code: str) -> list[str]:
    watch = ("torch", "jax", "jaxlib", "array_api_strict", "array_api_compat",
             "spikenm.backends.torch", "spikenm.backends.jax", "spikenm.backends.array_api")
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(sorted(m for m in {watch!r} if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_S0_dispatch_imports_only_the_frameworks_in_use() -> None:
    """A backend is asked about an array only when its framework is already imported."""
    assert _imported_after("import spikenm.registry, spikenm.dispatch") == []
    assert _imported_after("""
        import numpy as np
        from spikenm.dispatch import framework_of
        assert framework_of(np.zeros(2)) == "numpy"
        try:
            framework_of([1.0])
        except TypeError:
            pass
        """) == []
    with_torch = _imported_after("""
        import numpy as np, torch
        from spikenm import api
        api.topn_mask(np.zeros(4), 2, 4)            # torch is loaded but not asked
        import sys
        assert "spikenm.backends.torch" not in sys.modules
        api.topn_mask(torch.zeros(4), 2, 4)
        """)
    assert with_torch == ["spikenm.backends.torch", "torch"]
