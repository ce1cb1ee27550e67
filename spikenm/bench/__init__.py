"""``python -m spikenm.bench [--quick] [--json out.json]``: the project's benchmark command.

Each topic module (``spmm``, ``pack``, ``sampler``, ...) exposes
``tables(quick: bool) -> list[Table]``; the command pins threads, measures the machine's
limits once (`spikenm.bench.timing.machine_limits`) and prints every table as markdown.
Rules (`spikenm.bench.timing`): contenders interleaved in one process, min and median,
only ratios measured in the same run, threads stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Table", "TOPICS"]

TOPICS = ("spmm", "pack", "sampler", "step", "scaling")
"""The topic modules, in the order the command prints them."""


@dataclass(frozen=True)
class Table:
    """One printed table: a title, column names, rows of cells (already formatted), and
    notes (what was compared, the goal, what limits it)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = field(default=())

    def markdown(self) -> str:
        """The table as markdown, title as a heading, notes as a list below it."""
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "| " + " | ".join("---" for _ in self.columns) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)
