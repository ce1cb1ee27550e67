"""Progress with rate and time left, for the trainer, ``reproduce`` and the PyTorch module
path.

On a terminal a `tqdm` bar shows the units done, the rate and the estimated time left,
and the lines a caller prints go above it (``tqdm.write``); elsewhere (a file, a pipe, a
notebook's captured output) there is no bar and every printed line gets the same figures
as a suffix, ``[12.3 step/s, 1m05s left]``, so logs stay plain text.  The rate is
measured over this process's units only (a resumed run does not count the steps of the
earlier session).

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> with Progress(4, out, "train", "step") as bar:
...     for _ in range(2):
...         bar.update()
...     bar.write("half way")
>>> out.getvalue().startswith("half way  [")
True
"""

from __future__ import annotations

import time
from typing import Any, TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``"45s"``, ``"3m07s"`` or ``"2h05m"``.

    Examples
    --------
    >>> format_seconds(45.2), format_seconds(187), format_seconds(7500)
    ('45s', '3m07s', '2h05m')
    """
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """``total`` units of work, ``initial`` of them already done (a resumed run).

    Parameters
    ----------
    total : int
    stream : text stream or None
        Where lines (and on a terminal the bar) go; None: nothing is shown.
    desc, unit : str
        Bar label and unit name (``"step"``, ``"run"``).
    initial : int
    bar : bool or None
        Force the bar on or off; default: on exactly when ``stream`` is a terminal.
    """

    def __init__(self, total: int, stream: TextIO | None, desc: str, unit: str,
                 initial: int = 0, bar: bool | None = None) -> None:
        if total < 0 or initial < 0 or initial > total:
            raise ValueError(f"progress of {initial} out of {total} {unit}s is invalid; "
                             f"expected 0 <= initial <= total")
        self.total, self.done, self.unit, self.stream = total, initial, unit, stream
        self._start_done, self._t0 = initial, time.perf_counter()
        use_bar = (stream is not None and _is_terminal(stream)) if bar is None else bar
        self._bar: Any = None
        if use_bar and stream is not None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                             file=stream, dynamic_ncols=True, leave=True)

    @property
    def has_bar(self) -> bool:
        """Whether a bar is shown."""
        return self._bar is not None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done = min(self.total, self.done + n)
        if self._bar is not None:
            self._bar.update(n)

    def rate(self) -> float | None:
        """Units per second in this process (None before the first)."""
        elapsed = time.perf_counter() - self._t0
        count = self.done - self._start_done
        return count / elapsed if count > 0 and elapsed > 0 else None

    def suffix(self) -> str:
        """``"[rate unit/s, time left]"`` (``"[... left]"`` unknown before the first unit)."""
        rate = self.rate()
        if rate is None:
            return "[rate unknown]"
        left = (self.total - self.done) / rate
        return f"[{rate:.3g} {self.unit}/s, {format_seconds(left)} left]"

    def write(self, line: str) -> None:
        """Print ``line``: above the bar on a terminal, else with `suffix` appended."""
        if self.stream is None:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(f"{line}  {self.suffix()}\n")
            self.stream.flush()

    def close(self) -> None:
        """Finish the bar (nothing to do without one)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
