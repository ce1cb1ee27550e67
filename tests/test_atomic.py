"""Atomic replacement (S3.5, S5.12): a crash mid-write leaves the old file and no debris."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikenm.atomic import atomic_path


def test_S3_5_S5_12_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_S3_5_S5_12_successful_write_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        Path(tmp).write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
