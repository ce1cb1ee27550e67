"""The trainer's explicit state and its exact conversion to/from checkpoint arrays.

Everything a step depends on is in `TrainState` (parameters, optimizer moments, mask
logits, fixed masks, running credits, the previous masks for the flip rate, counters);
random draws depend only on ``(seed, stream, step, index)``.  Restoring a state from its
arrays therefore continues a run bit-identically on the same backend (SPEC S5.12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .methods import MaskState
from .model_backend import LayerParams
from spikenm.optim import OptState

Array = Any


@dataclass(frozen=True)
class TrainState:
    """State after ``step`` completed optimizer updates."""

    step: int
    params: list[LayerParams]
    weight_opt: OptState
    masks: MaskState
    flip_changed: float = 0.0
    flip_total: int = 0


def _put_opt(out: dict[str, np.ndarray], prefix: str, opt: OptState | None,
             to_np: Callable[[Array], np.ndarray]) -> dict[str, Any]:
    if opt is None:
        return {}
    for i, slots in enumerate(opt.slots):
        for j, arr in enumerate(slots):
            out[f"{prefix}/{i}/{j}"] = to_np(arr)
    return {"kind": opt.kind, "count": opt.count, "slots": [len(s) for s in opt.slots]}


def _get_opt(arrays: dict[str, np.ndarray], prefix: str, meta: dict[str, Any],
             from_np: Callable[[np.ndarray], Array]) -> OptState | None:
    if not meta:
        return None
    slots = tuple(tuple(from_np(arrays[f"{prefix}/{i}/{j}"]) for j in range(n))
                  for i, n in enumerate(meta["slots"]))
    return OptState(meta["kind"], int(meta["count"]), slots)


def state_to_arrays(state: TrainState, to_np: Callable[[Array], np.ndarray]
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Flat ``{key: ndarray}`` and JSON metadata for `save_checkpoint`."""
    out: dict[str, np.ndarray] = {}
    for i, p in enumerate(state.params):
        out[f"params/{i}/weight"] = to_np(p.weight)
        out[f"params/{i}/bias"] = to_np(p.bias)
    meta: dict[str, Any] = {
        "step": state.step, "layers": len(state.params),
        "flip_changed": state.flip_changed, "flip_total": state.flip_total,
        "weight_opt": _put_opt(out, "weight_opt", state.weight_opt, to_np),
        "logit_opt": _put_opt(out, "logit_opt", state.masks.logit_opt, to_np),
    }
    for group in ("logits", "fixed", "credits", "previous"):
        table = getattr(state.masks, group)
        meta[group] = sorted(int(k) for k in table)
        for k, v in table.items():
            out[f"{group}/{k}"] = to_np(v)
    return out, meta


def state_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                      from_np: Callable[[np.ndarray], Array]) -> TrainState:
    """Inverse of `state_to_arrays`.

    Raises
    ------
    ValueError
        When an entry named by the metadata is missing.
    """
    try:
        params = [LayerParams(from_np(arrays[f"params/{i}/weight"]),
                              from_np(arrays[f"params/{i}/bias"]))
                  for i in range(int(meta["layers"]))]
        tables = {group: {int(k): from_np(arrays[f"{group}/{k}"]) for k in meta[group]}
                  for group in ("logits", "fixed", "credits", "previous")}
        weight_opt = _get_opt(arrays, "weight_opt", meta["weight_opt"], from_np)
        logit_opt = _get_opt(arrays, "logit_opt", meta["logit_opt"], from_np)
    except KeyError as exc:
        raise ValueError(f"checkpoint is missing entry {exc.args[0]!r}") from None
    assert weight_opt is not None
    masks = MaskState(logits=tables["logits"], logit_opt=logit_opt, fixed=tables["fixed"],
                      credits=tables["credits"], previous=tables["previous"])
    return TrainState(int(meta["step"]), params, weight_opt, masks,
                      float(meta["flip_changed"]), int(meta["flip_total"]))
