"""Operation counts and energy estimates of a spiking network (SPEC S7).

Per weighted layer ``l`` of a `spikenm.snn.Graph`, per sample:

* ``macs_dense``: multiply-accumulates of one time step of the dense layer
  (``prod(output shape) * in_features`` for ``linear``, ``* in_features * k * k`` for
  ``conv``);
* ``macs_nm``: the same of the N:M layer, ``density * macs_dense`` with ``density = n/m``
  for a masked layer and 1 for a dense one;
* ``sops``: synaptic operations over the ``T`` time steps.  A layer fed by spikes
  performs one accumulate per kept synapse of every spike:
  ``sops = rate * T * macs_nm``, ``rate`` the measured firing rate of the spikes
  feeding it.  A layer fed by real values (the network input: direct encoding) performs
  a full multiply-accumulate per synapse and step: ``sops = T * macs_nm``, counted as
  MACs;
* ``energy_pj``: ``ac_pj * sops`` for a spike-fed layer, ``mac_pj * sops`` for a
  real-valued one.

The feeding spikes are found by walking back from the layer's input through ``flatten``,
``pool`` and ``add`` nodes to ``lif`` nodes: ``flatten`` keeps the rate, average pooling
is counted at the rate of its input (a pooled value is the fraction of spiking inputs in
the window), ``add`` sums the rates of its inputs (each spike of each branch is an
accumulate).  An input that reaches the network input or a non-spiking node is
real-valued.

Energy constants (`EnergyConstants`) are explicit and overridable; `PRESETS` holds the
45 nm figures of Horowitz (ISSCC 2014) that N:M and SNN papers use: 32-bit float MAC
4.6 pJ (multiply 3.7 + add 0.9) and accumulate 0.9 pJ, and the same table's 16-bit float,
32-bit and 8-bit integer operations.

Examples
--------
>>> from spikenm.snn.graph import Graph, Node
>>> g = Graph((8,), (Node("linear", (-1,), 8, 16), Node("lif", (0,)),
...                  Node("linear", (1,), 16, 4)))
>>> report = energy_report(g, firing_rates=[0.25], time_steps=4, densities={1: 0.5})
>>> [(r.layer, r.macs_dense, r.macs_nm, r.sops) for r in report.layers]
[(0, 128, 128.0, 512.0), (1, 64, 32.0, 32.0)]
>>> round(report.totals["energy_pj"], 1)    # 512 MACs at 4.6 pJ + 32 ACs at 0.9 pJ
2384.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .snn.graph import Graph, Node

__all__ = ["EnergyConstants", "PRESETS", "LayerEnergy", "EnergyReport", "layer_macs",
           "spike_sources", "energy_report"]


@dataclass(frozen=True)
class EnergyConstants:
    """Energy of one multiply-accumulate and of one accumulate, in picojoules."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    name: str = "45nm-fp32"

    def __post_init__(self) -> None:
        for key in ("mac_pj", "ac_pj"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key}={value!r} is invalid; expected a finite number >= 0 "
                                 f"(picojoules per operation)")


PRESETS: dict[str, EnergyConstants] = {
    "45nm-fp32": EnergyConstants(4.6, 0.9, "45nm-fp32"),
    "45nm-fp16": EnergyConstants(1.5, 0.4, "45nm-fp16"),
    "45nm-int32": EnergyConstants(3.2, 0.1, "45nm-int32"),
    "45nm-int8": EnergyConstants(0.23, 0.03, "45nm-int8"),
}
"""45 nm operation energies (Horowitz, ISSCC 2014): MAC = multiply + add, AC = add."""


@dataclass(frozen=True)
class LayerEnergy:
    """One weighted layer's counts (per sample; see the module docstring)."""

    layer: int
    name: str
    op: str
    macs_dense: int
    macs_nm: float
    density: float
    input: str
    input_rate: float | None
    sops: float
    energy_pj: float


@dataclass(frozen=True)
class EnergyReport:
    """Per-layer counts, totals and the constants and time steps they used."""

    layers: tuple[LayerEnergy, ...]
    time_steps: int
    constants: EnergyConstants
    totals: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        dense_snn = sum(self._dense_energy(r) for r in self.layers)
        macs_dense = float(sum(r.macs_dense for r in self.layers))
        object.__setattr__(self, "totals", {
            "macs_dense": macs_dense,
            "macs_nm": float(sum(r.macs_nm for r in self.layers)),
            "sops": float(sum(r.sops for r in self.layers)),
            "energy_pj": float(sum(r.energy_pj for r in self.layers)),
            "energy_dense_snn_pj": float(dense_snn),
            "energy_dense_ann_pj": float(self.constants.mac_pj * macs_dense),
        })

    def _dense_energy(self, row: LayerEnergy) -> float:
        """``energy_pj`` of ``row``'s layer with density 1 (same rates, S7.2)."""
        ops = self.time_steps * row.macs_dense * (1.0 if row.input_rate is None else row.input_rate)
        return _energy(row.input_rate, ops, self.constants)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``layers`` (each with ``layer``, ``macs_dense``, ``macs_nm``,
        ``sops``, ``energy_pj`` and the rest of `LayerEnergy`), ``totals``,
        ``time_steps`` and ``constants``."""
        return {"layers": [asdict(r) for r in self.layers], "totals": dict(self.totals),
                "time_steps": self.time_steps, "constants": asdict(self.constants)}

    def markdown(self) -> str:
        """A table per layer and the totals."""
        lines = ["| layer | op | input (rate) | MACs dense | MACs N:M | SOPs | energy (nJ) |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.layers:
            feed = "real-valued (MACs)" if r.input_rate is None else f"{r.input} ({r.input_rate:.3f})"
            lines.append(f"| {r.name} | {r.op} | {feed} | {r.macs_dense:,} | {r.macs_nm:,.0f} | "
                         f"{r.sops:,.0f} | {r.energy_pj / 1e3:.3f} |")
        t = self.totals
        lines.append(f"| total | | | {t['macs_dense']:,.0f} | {t['macs_nm']:,.0f} | "
                     f"{t['sops']:,.0f} | {t['energy_pj'] / 1e3:.3f} |")
        lines += ["", f"Per sample, T = {self.time_steps}, constants {self.constants.name} "
                      f"(MAC {self.constants.mac_pj} pJ, AC {self.constants.ac_pj} pJ). "
                      f"Same network dense (same rates): {t['energy_dense_snn_pj'] / 1e3:.3f} "
                      f"nJ; a dense ANN of the same shape (one pass of MACs): "
                      f"{t['energy_dense_ann_pj'] / 1e3:.3f} nJ."]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A PNG bar chart of energy per layer, N:M against the dense SNN; returns the path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r.name for r in self.layers]
        nm = [r.energy_pj / 1e3 for r in self.layers]
        dense = [self._dense_energy(r) / 1e3 for r in self.layers]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.2))
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], dense, 0.4, label="dense SNN")
        ax.bar([x + 0.2 for x in xs], nm, 0.4, label="N:M")
        ax.set_xticks(list(xs), names, rotation=45, ha="right")
        ax.set_ylabel("energy per sample (nJ)")
        ax.set_title(f"T = {self.time_steps}, {self.constants.name}")
        ax.legend()
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


def _energy(rate: float | None, ops: float, constants: EnergyConstants) -> float:
    return (constants.mac_pj if rate is None else constants.ac_pj) * ops


def layer_macs(graph: Graph) -> list[int]:
    """Dense multiply-accumulates of one time step per sample, per weighted layer."""
    out = []
    for k, index in enumerate(graph.layers):
        node = graph.nodes[index]
        per_output = node.in_features * (node.kernel ** 2 if node.op == "conv" else 1)
        out.append(int(math.prod(graph.shapes[index])) * per_output)
    return out


def spike_sources(graph: Graph) -> list[tuple[int, ...] | None]:
    """Per weighted layer, the ``lif`` ordinals whose spikes feed it (an ``add`` of two
    spiking branches lists both, a residual input counted twice lists it twice), or
    ``None`` when the input is real-valued (see the module docstring)."""
    lif_ordinal = {index: i for i, index in enumerate(graph.neurons)}

    def walk(index: int) -> tuple[int, ...] | None:
        if index < 0:
            return None
        node: Node = graph.nodes[index]
        if node.op == "lif":
            return (lif_ordinal[index],)
        if node.op in ("flatten", "pool"):
            return walk(node.inputs[0])
        if node.op == "add":
            parts = [walk(i) for i in node.inputs]
            if any(p is None for p in parts):
                return None
            return tuple(s for p in parts for s in p)  # type: ignore[union-attr]
        return None  # bn, linear, conv: real-valued

    return [walk(graph.nodes[index].inputs[0]) for index in graph.layers]


def energy_report(graph: Graph, firing_rates: Sequence[float], time_steps: int,
                  densities: Mapping[int, float] | None = None,
                  constants: EnergyConstants | None = None) -> EnergyReport:
    """Counts and energy of every weighted layer of ``graph`` (SPEC S7).

    Parameters
    ----------
    graph : Graph
    firing_rates : sequence of float
        Mean firing rate of each ``lif`` node, in node order (as the trainer's
        ``summary.json`` and evaluation report them), each in ``[0, 1]``.
    time_steps : int
        ``T``, at least 1.
    densities : mapping layer ordinal -> float, optional
        Kept fraction of each masked layer (``n / m``); layers not listed are dense.
    constants : EnergyConstants, optional
        Default ``PRESETS["45nm-fp32"]``.

    Raises
    ------
    ValueError
        A rate count that does not match the graph's ``lif`` nodes, a rate or density
        outside ``[0, 1]``, a density for a layer that does not exist, ``T < 1``.
    """
    constants = constants or PRESETS["45nm-fp32"]
    if not isinstance(constants, EnergyConstants):
        raise TypeError(f"constants must be an EnergyConstants, got {type(constants).__name__}")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"time_steps={time_steps!r} is invalid; expected an integer >= 1")
    rates = [float(r) for r in firing_rates]
    if len(rates) != len(graph.neurons):
        raise ValueError(f"{len(rates)} firing rates given; the graph has "
                         f"{len(graph.neurons)} lif nodes")
    bad = [r for r in rates if not 0.0 <= r <= 1.0]
    if bad:
        raise ValueError(f"firing rate {bad[0]!r} is outside [0, 1]")
    densities = dict(densities or {})
    for k, d in densities.items():
        if not (isinstance(k, int) and 0 <= k < len(graph.layers)):
            raise ValueError(f"density given for layer {k!r}; the graph has layers "
                             f"0..{len(graph.layers) - 1}")
        if not 0.0 <= float(d) <= 1.0:
            raise ValueError(f"density {d!r} of layer {k} is outside [0, 1]")
    rows = []
    for k, (macs, source) in enumerate(zip(layer_macs(graph), spike_sources(graph))):
        density = float(densities.get(k, 1.0))
        macs_nm = density * macs
        rate = None if source is None else float(sum(rates[i] for i in source))
        sops = time_steps * macs_nm * (1.0 if rate is None else rate)
        feed = "input" if source is None else "+".join(f"lif{i}" for i in source)
        rows.append(LayerEnergy(k, f"layer{k}", graph.layer_node(k).op, macs, macs_nm,
                                density, feed, rate, sops, _energy(rate, sops, constants)))
    return EnergyReport(tuple(rows), time_steps, constants)
