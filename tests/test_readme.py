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


def _data_parallel_commands() -> list[str]:
    """The ```bash blocks of the README's "Data-parallel training" section, one command
    each (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Data-parallel training", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [" ".join(b.replace("\\\n", " ").split()) for b in blocks]


def test_readme_data_parallel_commands_run(tmp_path: Path) -> None:
    """The torchrun (2 gloo processes, S5.14) and the 2-device JAX (S4.16) commands of the
    README run as written, each writing its run folder once."""
    import os
    import subprocess

    commands = _data_parallel_commands()
    assert len(commands) == 2 and "torchrun" in commands[0] and "--devices 2" in commands[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    for command in commands:
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        out = tmp_path / command.split("--out ", 1)[1].split()[0]
        assert sorted(p.name for p in out.iterdir()) == [
            "checkpoint.npz", "metrics.jsonl", "model.npz", "summary.json"]
