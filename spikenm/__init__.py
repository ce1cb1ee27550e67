"""spikenm: learnable N:M weight sparsity for spiking neural networks (SpikeNM).

The public functions live in `spikenm.api`; the formulas are in ``SPEC.md`` shipped
with the package (``spikenm.spec_path()``).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def spec_path() -> Path:
    """Path of the installed ``SPEC.md``."""
    return Path(__file__).with_name("SPEC.md")
