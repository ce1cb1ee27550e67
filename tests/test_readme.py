"""The README's set-up commands and CI stay in step (DEVELOPERS' rules for README and CI)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md must open with a ```bash block of set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < text.index("\n## "), "the set-up block must come first"
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("spikenm reproduce --quick")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _setup_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    # CI installs the CPU torch wheel first, then runs the rest of the README command.
    tail = test_command.split("&&", 1)[1].strip()
    assert "pip install --quiet torch==2.13.0" in ci or "pip install torch==2.13.0" in ci
    assert tail in ci, f"{tail!r} not found in .ci/run"


def test_readme_python_examples_run() -> None:
    """Every ```python block of the README runs as written (NumPy, torch and JAX)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own docs
