"""A tiny shipped-data training run for tests that need a finished run folder."""

from __future__ import annotations

from pathlib import Path

from spikenm.train.config import TrainConfig, load_config


def digits_config(out: Path, epochs: int) -> TrainConfig:
    """SpikeNM 2:4 on the digits MLP 64-32-32-10 (batch 64, quiet, test set evaluated at
    the end only), writing to ``out``."""
    return load_config(None, ["data.name=digits", "model.hidden=32,32", "optim.batch_size=64",
                              f"optim.epochs={epochs}", "run.quiet=true", "run.eval_every=0",
                              f"run.out={out}"])
