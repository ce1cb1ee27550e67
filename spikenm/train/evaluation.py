"""Final weights, test evaluation in eval mode and the per-layer N:M report (SPEC S5.8,
S5.11, S6.8)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from spikenm import api
from spikenm.seeds import EVAL_STEP_BASE

from .encoding import encode
from .setup import Setup
from .state import TrainState

__all__ = ["final_params", "evaluate", "layer_report"]

Array = Any


def final_params(setup: Setup, state: TrainState) -> tuple[dict[str, Array], dict[int, Array]]:
    """The parameters with ``W * mask`` for every masked layer, using the masks the
    method ends with (S5.8; during a search phase: those it would end with now, S5.11),
    and those masks."""
    weights = {k: state.params[f"layer{k}.weight"] for k in setup.layers}
    final = setup.method.final_masks(setup.method_setup, state.method, weights)
    params = dict(state.params)
    for k, mask in final.items():
        params[f"layer{k}.weight"] = params[f"layer{k}.weight"] * mask
    return params, final


def evaluate(setup: Setup, params: Mapping[str, Array], buffers: Mapping[str, Array]
             ) -> dict[str, Any]:
    """Test loss, accuracy and firing rates of ``params`` in eval mode (running batch-norm
    statistics; S5.11, S4.9, S4.13)."""
    cfg, model, data = setup.cfg, setup.model, setup.data
    loss = 0.0
    correct = count = 0
    spikes: np.ndarray | None = None
    sizes: np.ndarray | None = None
    bs = cfg.run.eval_batch_size
    for i, start in enumerate(range(0, data.x_test.shape[0], bs)):
        sl = slice(start, start + bs)
        x = encode(data.x_test[sl], data.pixel_max, cfg.run.dtype, cfg.data.encoding,
                   setup.lif.time_steps, cfg.run.seed, EVAL_STEP_BASE - i)
        r = model.evaluate(setup.graph, params, buffers, model.from_numpy(x),
                           model.from_numpy(data.y_test[sl]), setup.lif)
        loss += r.loss_sum
        correct += r.correct
        count += r.count
        s, c = np.array(r.spike_sums), np.array(r.spike_counts, dtype=np.float64)
        spikes = s if spikes is None else spikes + s
        sizes = c if sizes is None else sizes + c
    rates = [] if spikes is None or sizes is None else (spikes / np.maximum(sizes, 1)).tolist()
    return {"test_loss": loss / max(count, 1), "test_acc": correct / max(count, 1),
            "test_count": count, "firing_rates": rates}


def layer_report(setup: Setup, params: Mapping[str, Array], final: Mapping[int, Array]
                 ) -> list[dict[str, Any]]:
    """One row per weighted layer: shape, and for a masked layer the ``check_nm`` of its
    final weight (block layout) and its packed size.

    Raises
    ------
    ValueError
        When a masked layer's final weight breaks the pattern (`spikenm.api.check_nm`).
    """
    n, m = setup.cfg.sparsity.nm
    rows = []
    for k in range(len(setup.graph.layers)):
        node = setup.graph.layer_node(k)
        w = setup.model.to_numpy(params[f"layer{k}.weight"])
        row: dict[str, Any] = {"layer": k, "op": node.op, "shape": list(w.shape),
                               "masked": k in final}
        if k in final:
            block = np.ascontiguousarray(api.to_block_layout(w))
            mask = setup.model.to_numpy(final[k])
            api.check_nm(block, n, m, name=f"layer {k} weight")
            packed = api.pack(block, n, m,
                              mask=np.ascontiguousarray(api.to_block_layout(mask)))
            row.update(pattern=f"{n}:{m}", check="ok (check_nm passed, packed)",
                       kept_fraction=float(mask.mean()),
                       packed_bytes=int(packed.values.nbytes + packed.indices.nbytes),
                       dense_bytes=int(w.nbytes))
        else:
            row.update(pattern="dense", check="dense")
        rows.append(row)
    return rows
