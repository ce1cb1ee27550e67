"""Atomic file replacement: a file is either the old one or the complete new one.

Every writer of spikenm (packed containers, safetensors files, checkpoints, metrics,
grid results) writes to a temporary file in the target's folder, flushes it to disk and
moves it over the target with ``os.replace``; on any error the temporary file is removed
and the target is left as it was (S5.12).

A process killed outright (SIGKILL, power loss) cannot remove its temporary file.  The
temporary name says whose it is: ``.{target}.spikenm-{pid}-{random}.tmp`` (``random``:
8 characters of `tempfile`), the target's name, a fixed mark and the id of the writing
process.  `remove_stale_temps` deletes exactly those of named targets in one folder whose
process no longer runs (S5.12b); every other file is left alone.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "temp_owner", "remove_stale_temps", "TEMP_MARK"]

TEMP_MARK = "spikenm"
"""The fixed part of every temporary name written by `atomic_path`."""

_TEMP = re.compile(r"^\.(?P<target>.+)\.(?:" + TEMP_MARK + r"-(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp$")
"""``.{target}.spikenm-{pid}-{random}.tmp``, and the form without ``spikenm-{pid}-`` that
earlier versions wrote (``.{target}.{random}.tmp``)."""


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The temporary file is ``.{name}.spikenm-{pid}-{random}.tmp`` next to ``path`` (see
    `temp_owner`).  The new file keeps the permission bits of the file it replaces (0o644
    for a new one).

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "w") as fh:
    ...         _ = fh.write("done")
    >>> open(target).read()
    'done'
    >>> os.listdir(os.path.dirname(target))
    ['out.txt']
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{str(target)!r} is a folder; expected the path of a file "
                                f"to write")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{TEMP_MARK}-{os.getpid()}-",
                               suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a rename to disk where the OS allows it (POSIX)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_owner(name: str) -> tuple[str, int | None] | None:
    """``(target name, writer's pid)`` when ``name`` is a temporary name of `atomic_path`
    (pid None for the older form ``.{target}.{random}.tmp``), else None.

    Examples
    --------
    >>> temp_owner(".checkpoint.npz.spikenm-4242-k3j_x9a0.tmp")
    ('checkpoint.npz', 4242)
    >>> temp_owner(".checkpoint.npz.k3j_x9a0.tmp")
    ('checkpoint.npz', None)
    >>> temp_owner("checkpoint.npz.tmp") is None
    True
    """
    match = _TEMP.match(name)
    if match is None:
        return None
    pid = match.group("pid")
    return match.group("target"), None if pid is None else int(pid)


def _process_runs(pid: int) -> bool:
    """Whether process ``pid`` exists (True when that cannot be told, so its file stays)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs, under another user
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str], targets: Iterable[str]) -> list[Path]:
    """Delete the temporary files `atomic_path` left in ``folder`` for ``targets`` (file
    names) when killed; returns the deleted paths (sorted).

    A file is deleted only when all of these hold (S5.12b): it is a regular file (not a
    link or a folder) directly in ``folder``; its name is a temporary name of
    `atomic_path` (`temp_owner`) for one of ``targets``; and its writer is gone: the pid
    in the name is not this process and no process with that pid exists (on systems
    where that cannot be checked, only the older pid-less form is deleted).  A missing
    ``folder`` deletes nothing.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in (".model.npz.spikenm-999999999-abcdefgh.tmp", "notes.tmp",
    ...              f".model.npz.spikenm-{os.getpid()}-abcdefgh.tmp"):
    ...     open(os.path.join(d, name), "w").close()
    >>> [p.name for p in remove_stale_temps(d, ["model.npz"])]
    ['.model.npz.spikenm-999999999-abcdefgh.tmp']
    >>> len(os.listdir(d))  # this process's own temporary and the foreign file stay
    2
    """
    root = Path(folder)
    wanted = set(targets)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        owner = temp_owner(entry.name)
        if owner is None or owner[0] not in wanted:
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        pid = owner[1]
        if pid is not None and _process_runs(pid):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # removed meanwhile
        removed.append(Path(entry.path))
    return sorted(removed)
