"""Every example in the public docstrings runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

MODULES = ["spikenm.api", "spikenm.layout", "spikenm.atomic", "spikenm.validation", "spikenm.progress",
           "spikenm.reference.spmm_2of4", "spikenm.reference.spmm_kernels",
           "spikenm.backends.torch.packed_modules", "spikenm.bench.scaling",
           "spikenm.energy", "spikenm.snn.graph", "spikenm.train.config"]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
