"""Progress with rate and time left (spikenm/progress.py) in the trainer and the module
path."""

from __future__ import annotations

import io
import re

import pytest
import torch
from torch import nn

from spikenm.backends.torch.nn import sparsify
from torch_helpers import module_path_steps
from spikenm.progress import Progress, format_seconds
from spikenm.train.config import load_config
from spikenm.train.loop import train


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_get_rate_and_time_left() -> None:
    out = io.StringIO()
    bar = Progress(10, out, "x", "step", initial=2)
    assert not bar.has_bar and bar.rate() is None and bar.suffix() == "[rate unknown]"
    for _ in range(3):
        bar.update()
    bar.write("line")
    text = out.getvalue()
    assert re.fullmatch(r"line  \[[0-9.e+]+ step/s, \d+(s|m\d\ds|h\d\dm) left\]\n", text), text
    assert bar.done == 5
    bar.update(100)
    assert bar.done == 10  # never past the total
    silent = Progress(3, None, "x", "step")
    silent.write("nothing")  # no stream: no output, no error
    with pytest.raises(ValueError, match="progress of 5 out of 3 steps"):
        Progress(3, out, "x", "step", initial=5)
    assert format_seconds(3725) == "1h02m"


def test_bar_on_a_terminal() -> None:
    term = _Terminal()
    with Progress(4, term, "train", "step") as bar:
        assert bar.has_bar
        bar.update(3)
        bar.write("above the bar")
    text = term.getvalue()
    assert "above the bar" in text and "3/4" in text and "train" in text
    assert not bar.has_bar  # closed


def test_trainer_lines_carry_the_rate() -> None:
    out = io.StringIO()
    cfg = load_config(None, ["data.name=digits", "model.hidden=32,32", "optim.batch_size=256",
                             "optim.epochs=1", "run.eval_every=0"])
    train(cfg, stream=out)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("step ")]
    assert lines and all(re.search(r"\[[0-9.e+]+ step/s, .* left\]$", ln) for ln in lines)


def test_module_path_progress(capsys) -> None:  # type: ignore[no-untyped-def]
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 2))
    handle = sparsify(model, 2, 4, total_steps=3, progress=True)
    x = torch.randn(4, 8)
    assert handle.progress == "step 0/3 [rate unknown]"
    module_path_steps(model, handle, x, 3)
    assert re.fullmatch(r"step 3/3 \[[0-9.e+]+ step/s, 0s left\]", handle.progress)
    assert "sparsify" in capsys.readouterr().err  # the bar went to stderr
    quiet = sparsify(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)), 2, 4,
                     total_steps=3, progress=False)
    assert not quiet._progress.has_bar  # noqa: SLF001
    with pytest.raises(TypeError, match="progress=1 is invalid"):
        sparsify(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)), 2, 4,
                 total_steps=3, progress=1)  # type: ignore[arg-type]
