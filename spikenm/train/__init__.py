"""The spikenm trainer: spiking networks (`spikenm.snn` graphs) with learnable N:M
sparsity (`spikenm.methods`) on any model backend of `spikenm.registry`.

The loop (`loop`, `step`) is written once; only the network's forward/backward pass is
per backend (`spikenm.snn.ModelBackend`).  SPEC.md sections S4-S6 state the network, the
training-time use of the sampler and the compared methods.  Names are loaded on first
use, so importing this package reads no data and imports no framework.

Example
-------
>>> from spikenm.train import load_config, train
>>> cfg = load_config(None, ["optim.epochs=1", "run.quiet=true", "model.hidden=32,32"])
>>> result = train(cfg)                                  # doctest: +SKIP
>>> result.summary["test_acc"]                           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "config_from_dict", "load_config",
           "train"]

_HOME = {"ConfigError": "config", "TrainConfig": "config", "config_from_dict": "config",
         "load_config": "config", "TrainResult": "loop", "train": "loop"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
