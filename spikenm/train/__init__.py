"""The spikenm trainer: spiking networks with learnable N:M sparsity on three backends.

The training logic (`loop`, `methods`, `optim`, `schedules`) is written once and works on
NumPy, PyTorch and JAX arrays; only the network's forward/backward pass is per backend
(`model_backend.ModelBackend`; the NumPy/Numba reference is `spikenm.reference.snn`).
SPEC.md sections S4-S6 state the network, the training-time use of the sampler and the
compared methods.

Example
-------
>>> from spikenm.train import load_config, train
>>> cfg = load_config(None, ["optim.epochs=1", "run.quiet=true", "model.hidden=32,32"])
>>> result = train(cfg)                                  # doctest: +SKIP
>>> result.summary["test_acc"]                           # doctest: +SKIP
"""

from __future__ import annotations

from .config import ConfigError, TrainConfig, config_from_dict, load_config
from .loop import TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "config_from_dict", "load_config",
           "train"]
