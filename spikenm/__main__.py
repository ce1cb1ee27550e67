"""``python -m spikenm``: the ``spikenm`` console script (`spikenm.cli.main`), also the
entry point of ``torchrun --nproc_per_node=K -m spikenm train ...`` (SPEC S5.14)."""

from __future__ import annotations

from spikenm.cli import main
from spikenm.train.distributed import shutdown

if __name__ == "__main__":
    try:
        status = main()
    finally:
        shutdown()
    raise SystemExit(status)
