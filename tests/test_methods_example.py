"""A third-party method in a few lines, loaded by import path (SPEC S6.0).

``MagnitudeOnce`` prunes every masked layer to ``n:m`` by weight magnitude at step 0 and
fine-tunes with that mask fixed: the whole method is the class below, and
``spikenm train --method test_methods_example:METHOD`` trains with it (with this folder
on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from spikenm import api
from spikenm.methods import MethodDefaults, MethodState, StepMasks, load_method
from spikenm.methods.blocks import magnitude_mask
from spikenm.snn import init_params
from spikenm.train.config import ModelConfig
from spikenm.train.setup import build_network

HERE = Path(__file__).resolve().parent


class MagnitudeOnce(MethodDefaults):
    """Prune to n:m by |W| at step 0, then train with that mask fixed (the README's)."""

    name = "magnitude-once"

    def init(self, setup, weights):
        return MethodState({f"fixed/{k}": magnitude_mask(weights[k], setup.n, setup.m)
                            for k in setup.layers})

    def masks(self, setup, state, weights, step):
        return state, StepMasks("fixed", state.group("fixed/"))

    def final_masks(self, setup, state, weights):
        return state.group("fixed/")


METHOD = MagnitudeOnce()


def test_the_example_loads_by_import_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    method = load_method("test_methods_example:METHOD")
    assert method.name == "magnitude-once"


def test_the_example_trains_from_the_command_line(tmp_path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    done = subprocess.run(
        [sys.executable, "-m", "spikenm.cli", "train", "--method", "test_methods_example:METHOD",
         "--data", "digits", "--hidden", "32,32", "--epochs", "1", "--quiet", "--out",
         str(out), "--set", "run.eval_every=0"],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "magnitude-once" and summary["pattern"] == "2:4"
    assert [r["masked"] for r in summary["layers"]] == [False, True, False]
    with np.load(out / "model.npz", allow_pickle=False) as z:
        w, mask = z["layer1.weight"], z["layer1.mask"]
    graph = build_network(ModelConfig(hidden=(32, 32)), (1, 8, 8), 10)
    w0 = init_params(graph, 0, 2.0, "float32")["layer1.weight"]
    assert np.array_equal(mask, magnitude_mask(w0, 2, 4))  # chosen once, at step 0
    assert (w[mask == 0] == 0).all()
    api.check_nm(w, 2, 4)
