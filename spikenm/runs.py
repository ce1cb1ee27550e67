"""A finished training run as an object: `load_run` reads a run folder (``spikenm train
--out DIR``), `Run.predict` classifies new inputs with the trained network, `Run.energy`
gives its operation counts (SPEC S7).

The network is evaluated by the NumPy reference (`spikenm.reference.snn`, eval mode:
batch norm with the running statistics, S4.13), whatever backend trained it; the
weights in ``model.npz`` are the final ones (``W * mask``, S5.8), so the masked layers are
exactly N:M.

Example
-------
``run = load_run("runs/digits"); run.predict(x)`` with ``x`` of shape ``(B, *input_shape)``
scaled to ``[0, 1]`` as the trainer scales pixels (S4.7: divide by the dataset's pixel
maximum, 255 for MNIST and CIFAR, 16 for the digits) and float32 (or the run's dtype).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .energy import EnergyConstants, EnergyReport, energy_report
from .snn.graph import Graph, graph_from_record
from .snn.neuron import LIFParams
from .train.config import TrainConfig

__all__ = ["Run", "load_run"]


@dataclass(frozen=True)
class Run:
    """A run folder's final network and its summary."""

    folder: Path
    config: TrainConfig
    graph: Graph
    lif: LIFParams
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    masks: dict[int, np.ndarray]
    summary: dict[str, Any]

    def _input(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        dtype = np.dtype(self.config.run.dtype)
        shape = self.graph.input_shape
        if arr.dtype.kind not in "fiub" or arr.ndim != len(shape) + 1 \
                or tuple(arr.shape[1:]) != shape:
            raise ValueError(f"x must be a real array of shape (batch, {', '.join(map(str, shape))}),"
                             f" got {arr.dtype} of shape {arr.shape}")
        arr = arr.astype(dtype, copy=False)
        if not np.all(np.isfinite(arr)) or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
            raise ValueError("x must hold finite values in [0, 1] (pixels divided by the "
                             "dataset's pixel maximum, S4.7)")
        if self.config.data.encoding == "poisson":
            from .train.encoding import poisson_spikes

            return poisson_spikes(arr, self.lif.time_steps, self.config.run.seed, 0)
        return arr

    def logits(self, x: Any) -> np.ndarray:
        """Eval-mode logits ``(B, classes)`` of ``x`` ``(B, *input_shape)`` in ``[0, 1]``
        (Poisson-encoded runs draw their input spikes with the run's seed, stream 0)."""
        from .reference.snn import logits

        return logits(self.graph, self.params, self.buffers, self._input(x), self.lif)

    def predict(self, x: Any) -> np.ndarray:
        """Predicted class indices ``(B,)`` (int64): the argmax of `logits`."""
        return np.argmax(self.logits(x), axis=-1).astype(np.int64)

    def export_safetensors(self, path: str | Path) -> dict[str, list[str]]:
        """Write the whole trained network to one ``.safetensors`` file (SPEC S3.7): every
        masked layer's weight packed ``n:m`` along its input axis (``axis=1``, with the
        final mask, S5.8), every other parameter and the batch-norm statistics dense;
        the file's metadata records the run's pattern and configuration.  Returns
        ``{"packed": names, "dense": names}``.

        Raises
        ------
        ValueError
            A masked weight that breaks its pattern (it never does for a finished run).
        """
        from .api import pack
        from .safetensors_io import save_packed_safetensors
        from .train.config import config_to_dict

        n, m = self.config.sparsity.nm
        packed = {f"layer{k}.weight": pack(self.params[f"layer{k}.weight"], n, m,
                                           mask=mask, axis=1)
                  for k, mask in sorted(self.masks.items())}
        dense = {key: value for key, value in {**self.params, **self.buffers}.items()
                 if key not in packed}
        save_packed_safetensors(path, packed, {
            "run.pattern": f"{n}:{m}" if packed else "dense",
            "run.config": json.dumps(config_to_dict(self.config), sort_keys=True)},
            dense=dense)
        return {"packed": sorted(packed), "dense": sorted(dense)}

    def energy(self, constants: EnergyConstants | None = None) -> EnergyReport:
        """Operation counts and energy of this run (`spikenm.energy.energy_report`, S7):
        the test firing rates of ``summary.json``, ``n/m`` for the masked layers."""
        try:
            rates, layers, pattern = (self.summary["firing_rates"], self.summary["layers"],
                                      self.summary["pattern"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{str(self.folder / 'summary.json')!r} is not a training "
                             f"summary: missing {exc}") from None
        densities = {}
        if pattern != "dense":
            n, m = self.config.sparsity.nm
            densities = {int(row["layer"]): n / m for row in layers if row.get("masked")}
        return energy_report(self.graph, rates, self.lif.time_steps, densities, constants)


def load_run(folder: str | Path) -> Run:
    """The finished run in ``folder`` (``model.npz`` and ``summary.json``).

    Raises
    ------
    FileNotFoundError
        A folder without ``model.npz`` or ``summary.json`` (the run did not finish).
    ValueError
        A file that is not what it should be (checksums and fields as
        `spikenm.train.checkpoint.load_model` checks them), named.
    """
    from .train.checkpoint import load_model
    from .train.config import ConfigError, config_from_dict

    root = Path(folder)
    for name in ("model.npz", "summary.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{str(root / name)!r} not found: {str(root)!r} is not a "
                                    f"finished training run (expected model.npz and "
                                    f"summary.json)")
    arrays, meta = load_model(root / "model.npz")
    try:
        summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError(f"the top level is a JSON {type(summary).__name__}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(root / 'summary.json')!r} is not a training summary: "
                         f"{exc}") from None
    try:
        graph = graph_from_record(meta["graph"])
        config = config_from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ValueError(f"{str(root)!r} does not describe a run's network: {exc}") from None
    masks = {int(k[len("layer"):-len(".mask")]): v for k, v in arrays.items()
             if k.endswith(".mask")}
    params = {k: v for k, v in arrays.items() if k in graph.param_shapes()}
    buffers = {k: v for k, v in arrays.items() if k in graph.buffer_shapes()}
    missing = sorted(set(graph.param_shapes()) - set(params))
    if missing:
        raise ValueError(f"{str(root / 'model.npz')!r} lacks parameters {missing}")
    return Run(root, config, graph, config.lif.params(), params, buffers, masks, summary)
