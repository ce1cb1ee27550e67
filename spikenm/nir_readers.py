"""What the NIR importers of snnTorch and Norse rebuild exactly (SPEC S4.12a).

`spikenm.nir_io.to_nir` writes one NIR graph for every reader named in its ``readers``
argument and refuses, before writing anything, what a named reader would rebuild
differently from S4.  The rules below were read from the importers' source (snnTorch
1.0 ``snntorch.import_nir``, Norse 1.1 ``norse.torch.utils.import_nir``) and are checked
against them by ``tests/test_nir_importers.py``:

``"snntorch"`` (``snntorch.import_from_nir``)
    Fixes ``dt = 1e-4`` (``beta = 1 - 1e-4 / tau``) and divides the threshold by the input
    gain ``r dt / tau`` (printing a warning; the spikes are the same); builds every LIF
    with ``reset_mechanism="zero"``; builds an ``IF`` node as ``snn.Leaky(beta=0.9)``.
    So: ``dt`` must be ``1e-4``, the reset hard, ``beta < 1``.
``"norse"`` (``norse.torch.from_nir(graph, dt=1e-4)``)
    Ignores ``r`` (the input enters with gain ``dt / tau``, which the written ``r = 1``
    states), reads ``dt`` from its own argument (default ``1e-3``: pass the graph's
    ``dt``, kept in the metadata ``spikenm.dt``), applies ``reset_method`` to ``CubaLIF``
    nodes only (a ``LIF`` resets to ``v_reset``), and maps no ``AvgPool2d`` node; an
    ``IF`` node becomes ``IAFCell`` (``v += I``, exact for the written ``r = 1 / dt``,
    though Norse logs a warning that ``r`` is not 1).  So: the reset hard, no ``pool``.
``"spikenm"`` (`spikenm.nir_io.from_nir`)
    Reads everything `to_nir` writes; alone (``readers=("spikenm",)``) it also allows the
    soft reset, which NIR cannot state: it travels in the metadata ``spikenm.reset``, and
    any other reader would run those neurons with a hard reset.

Both importers map ``Flatten(start_dim=0)`` to ``torch.nn.Flatten(0, -1)``, which also
flattens a batch axis: a graph with a ``flatten`` node runs there one unbatched sample
``(C, H, W)`` at a time.  Both fire at ``v > v_threshold`` where S4.3 fires at
``H >= theta`` (the same spikes unless a membrane value lands exactly on the threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .snn.graph import Graph
from .snn.neuron import LIFParams

__all__ = ["READERS", "KNOWN_READERS", "SNNTORCH_DT", "check_readers", "readers_tuple"]

SNNTORCH_DT = 1e-4
"""The time step snnTorch's importer assumes (and its exporter writes)."""
READERS = ("snntorch", "norse")
"""`spikenm.nir_io.to_nir`'s default readers (spikenm's own `from_nir` reads every file)."""
KNOWN_READERS = ("snntorch", "norse", "spikenm")


def readers_tuple(readers: Any) -> tuple[str, ...]:
    """``readers`` checked: a non-empty sequence of names from `KNOWN_READERS`."""
    if isinstance(readers, str) or not isinstance(readers, Sequence):
        raise TypeError(f"readers must be a sequence of reader names from {KNOWN_READERS} "
                        f"(e.g. ('snntorch', 'norse')), got {readers!r}")
    out = tuple(readers)
    bad = [r for r in out if not isinstance(r, str) or r not in KNOWN_READERS]
    if bad or not out:
        raise ValueError(f"readers={readers!r}: expected one or more of {KNOWN_READERS}")
    return tuple(dict.fromkeys(out))


def check_readers(graph: Graph, lif: LIFParams, dt: float, readers: tuple[str, ...]) -> None:
    """Refuse, naming the reader, what a reader in ``readers`` cannot rebuild exactly.

    ``graph`` is the graph as written (batch norm already folded).

    Raises
    ------
    ValueError
        A soft reset for snnTorch or Norse, a ``dt`` other than ``1e-4`` or ``beta = 1``
        for snnTorch, a ``pool`` node for Norse.
    """
    foreign = [r for r in readers if r != "spikenm"]
    if lif.reset != "hard" and foreign:
        raise ValueError(
            f"lif.reset={lif.reset!r} (V = H - theta S, S4.3) cannot be written for "
            f"{', '.join(foreign)}: NIR's LIF resets to v_reset and has no reset-mode field; "
            f"snnTorch's import_from_nir builds every LIF with reset_mechanism='zero' and "
            f"Norse's from_nir applies reset_method to CubaLIF nodes only, so the file "
            f"would run with a hard reset. Train with reset='hard' for these importers, or "
            f"pass readers=('spikenm',) (spikenm export --nir-readers spikenm) to carry "
            f"the soft reset in metadata that only spikenm.nir_io.from_nir reads")
    if "snntorch" in readers:
        if not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-12):
            raise ValueError(
                f"dt={dt!r}: snnTorch's import_from_nir assumes dt = {SNNTORCH_DT} (beta = "
                f"1 - 1e-4 / tau) and would rebuild another leak; keep the default "
                f"dt={SNNTORCH_DT} or leave 'snntorch' out of readers")
        if lif.beta >= 1.0:
            raise ValueError(
                "lif.beta=1 (no leak) is written as a NIR IF node, which snnTorch's "
                "import_from_nir builds as snn.Leaky(beta=0.9); leave 'snntorch' out of "
                "readers (Norse and spikenm read IF nodes) or train with beta < 1")
    if "norse" in readers:
        count = sum(node.op == "pool" for node in graph.nodes)
        pools = [f"pool{j}" for j in range(count)]             # their NIR node names
        if pools:
            raise ValueError(
                f"the graph has pooling nodes ({', '.join(pools)}), written as NIR AvgPool2d, "
                f"which Norse's from_nir does not map (it maps SumPool2d only); leave "
                f"'norse' out of readers, e.g. readers=('snntorch',) (spikenm export "
                f"--nir-readers snntorch)")
