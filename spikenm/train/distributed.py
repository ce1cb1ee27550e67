"""The trainer's view of a data-parallel run (SPEC S5.14): which process writes, and the
few agreements between processes that the loop needs.

A data-parallel run is ``K`` processes (``torchrun --nproc_per_node=K``) that each run
the whole loop on the same configuration and data; the model backend splits every
batch and reduces the results (`spikenm.backends.torch.snn_ddp`), so parameters and
method states are identical everywhere.  Only rank 0 writes (checkpoints,
``metrics.jsonl``, ``model.npz``, ``summary.json``, progress); a stop signal seen by any
process stops all of them at the same step.  Nothing here imports a framework: the rank
comes from an initialized ``torch.distributed`` (if torch is loaded) or from the
``RANK``/``WORLD_SIZE`` variables ``torchrun`` sets.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["world", "is_writer", "check_model", "any_worker", "barrier", "shutdown"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer; torchrun sets it to the "
                         f"process's rank / the number of processes") from None


def _torch_dist() -> Any:
    """``torch.distributed`` when torch is loaded and the group is initialized."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside a data-parallel run.

    Examples
    --------
    >>> world() if "WORLD_SIZE" not in os.environ else (0, 1)
    (0, 1)
    """
    dist = _torch_dist()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def is_writer() -> bool:
    """True for the process that writes the run's files and progress (rank 0)."""
    return world()[0] == 0


def check_model(model: Any) -> None:
    """Refuse a model backend that does not split the batch in a data-parallel run.

    Raises
    ------
    ValueError
        When the run has several processes and ``model`` is not a data-parallel backend
        over all of them (only ``run.backend = "torch"`` is).
    """
    size = world()[1]
    if size > 1 and int(getattr(model, "world_size", 1)) != size:
        raise ValueError(f"data-parallel training over {size} processes needs "
                         f"run.backend=torch (backend {getattr(model, 'name', model)!r} "
                         f"runs in one process); start one process, or use --backend torch")


def any_worker(model: Any, flag: bool) -> bool:
    """``flag`` of any process (True everywhere when one process has it)."""
    if int(getattr(model, "world_size", 1)) > 1:
        return bool(model.any_flag(flag))
    return flag


def barrier(model: Any) -> None:
    """Wait for every process of a data-parallel run (no-op otherwise)."""
    if int(getattr(model, "world_size", 1)) > 1:
        model.barrier()


def shutdown() -> None:
    """Destroy the default ``torch.distributed`` process group if one is initialized."""
    dist = _torch_dist()
    if dist is not None:
        dist.destroy_process_group()
