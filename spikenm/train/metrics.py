"""Metrics: JSON-lines log, plain-text progress lines and the end-of-run summary text.

The keys of train records and of the summary are listed in `spikenm.train.loop`; the
sampling-variance keys (S5.9a) in `spikenm.train.variance`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from ..atomic import atomic_path


@dataclass
class MetricsLog:
    """Appends one JSON object per line to ``path`` (nothing is written when None) and
    keeps the records of this process in ``records``."""

    path: Path | None
    records: list[dict[str, Any]] = field(default_factory=list)

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_after(self, step: int) -> None:
        """Keep only records of steps ``<= step`` (before resuming from a checkpoint taken
        at ``step``); the file is rewritten atomically and its records loaded."""
        if self.path is None or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if int(record.get("step", 0)) <= step and record.get("type") != "summary":
                kept.append(record)
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        self.records = kept


def progress_line(record: dict[str, Any], total_steps: int, epochs: int) -> str:
    """One plain-text progress line for a ``train`` or ``eval`` record."""
    if record["type"] == "eval":
        return (f"epoch {record['epoch']:>3}/{epochs}  test loss {record['test_loss']:.4f}  "
                f"test acc {record['test_acc']:.4f}")
    parts = [f"step {record['step']:>6}/{total_steps}", f"epoch {record['epoch']:>3}/{epochs}",
             f"loss {record['loss']:.4f}", f"acc {record['acc']:.4f}",
             f"phase {record['phase']}"]
    if record.get("flip_rate") is not None:
        parts.append(f"flip {record['flip_rate']:.4f}")
    if record.get("inclusion_variance") is not None:
        parts.append(f"incvar {record['inclusion_variance']:.4f} "
                     f"H {record['block_entropy']:.3f}")
    if record.get("argmax_flip_rate") is not None:
        parts.append(f"argflip {record['argmax_flip_rate']:.4f}")
    if record.get("grad_snr") is not None:
        parts.append(f"grad snr {record['grad_snr']:.3g}")
    if record.get("temperature"):
        parts.append(f"tau {record['temperature']:.3g} kappa {record['scale']:.3g}")
    parts.append(f"lr {record['lr']:.2e}")
    parts.append(f"{record['ms_per_step']:.1f} ms/step")
    return "  ".join(parts)


def summary_text(summary: dict[str, Any]) -> str:
    """Human-readable end summary."""
    lines = [
        f"method {summary['method']}  pattern {summary['pattern']}  backend "
        f"{summary['backend']} ({summary['device']})  arch {summary['arch']}  data "
        f"{summary['data']}  seed {summary['seed']}",
        f"test accuracy {summary['test_acc']:.4f}  (loss {summary['test_loss']:.4f}, "
        f"{summary['test_count']} samples)",
    ]
    for row in summary["layers"]:
        status = row["check"]
        lines.append(f"  layer {row['layer']} ({row['op']}) {row['shape']}: {row['pattern']} "
                     f"{status}"
                     + (f", kept {row['kept_fraction']:.3f}" if row["masked"] else ""))
    rates = ", ".join(f"{r:.3f}" for r in summary["firing_rates"])
    lines.append(f"firing rates (test) per LIF layer: {rates}")
    energy = summary.get("energy")
    if energy:
        lines.append(f"per sample (SPEC S7, 45 nm fp32): {energy['sops']:,.0f} synaptic ops, "
                     f"{energy['energy_pj'] / 1e3:.1f} nJ (same network dense "
                     f"{energy['energy_dense_snn_pj'] / 1e3:.1f} nJ); `spikenm report` per layer")
    if summary["flip_rate"] is not None:
        lines.append(f"mask flip rate (search phase mean): {summary['flip_rate']:.4f}")
    if summary.get("inclusion_variance") is not None:
        lines.append("sampling (search logging-step means; active / near-silent blocks): "
                     + "; ".join(_split_text(summary, key, label) for key, label in (
                         ("inclusion_variance", "inclusion variance"),
                         ("block_entropy", "block entropy"),
                         ("argmax_flip_rate", "argmax flip rate")))
                     + ("" if not summary.get("inclusion_samples") else
                        f" (inclusion from {summary['inclusion_samples']} draws)"))
    if summary.get("grad_variance") is not None:
        points = summary.get("sampling_variance", {}).get("grad_points", [])
        snr = summary.get("grad_snr")
        lines.append(f"logit gradient at {len(points)} points (steps "
                     f"{', '.join(str(p['step']) for p in points)}): variance "
                     f"{summary['grad_variance']:.3g}, SNR "
                     + ("n/a" if snr is None else f"{snr:.3g}"))
    lines.append(f"wall time {summary['seconds']:.1f} s ({summary['steps']} steps)")
    return "\n".join(lines)


def _split_text(summary: dict[str, Any], key: str, label: str) -> str:
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"
    return (f"{label} {num(summary.get(key))} ({num(summary.get(key + '_active'))} / "
            f"{num(summary.get(key + '_silent'))})")


def printer(stream: TextIO | None) -> Callable[[str], None]:
    """A print function writing to ``stream`` (flushed), or a no-op for None."""
    if stream is None:
        return lambda text: None

    def emit(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    return emit
