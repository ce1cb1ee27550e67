"""``spikenm export RUN_DIR --nir FILE`` (SPEC S4.12c): a trained 2:4 digits run written
as NIR from its run folder, read back by `spikenm.nir_io.read_nir`, and run by the real
snnTorch and Norse importers on the run's test set: the same spikes in every LIF layer
and the same predictions as the run."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
from norse.torch.module.lif_box import LIFBoxCell
from test_nir_importers import (import_norse, import_snntorch, reference, reset_snntorch,
                                run_module)

from spikenm import api
from spikenm.cli import main
from spikenm.nir_io import read_nir
from spikenm.runs import load_run
from run_helpers import digits_config
from spikenm.train.loop import train
from spikenm.train.setup import build_setup

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SAMPLES = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("nir") / "run"
    cfg = digits_config(out, epochs=3)
    train(cfg, stream=None)
    return out, cfg


def test_S4_12c_export_a_run_and_import_it_everywhere(trained, tmp_path, capsys  # type: ignore[no-untyped-def]
                                                      ) -> None:
    out, cfg = trained
    run = load_run(out)
    target = tmp_path / "net.nir"
    assert main(["export", str(out), "--nir", str(target)]) == 0
    line = capsys.readouterr().out
    assert "NIR graph of" in line and "for snntorch, norse (dt 0.0001, T 4, pattern 2:4)" in line
    graph = nir.read(target)
    assert graph.metadata["spikenm.masked"] == "1" and graph.metadata["spikenm.pattern"] == "2:4"
    assert graph.metadata["spikenm.encoding"] == "direct"
    # spikenm reads it back as the run's network, the 2:4 layer checked
    graph2, params2, lif2 = read_nir(target, 2, 4)
    assert graph2 == run.graph and lif2 == run.lif
    assert all(np.array_equal(params2[k], run.params[k]) for k in run.params)
    api.check_nm(api.to_block_layout(params2["layer1.weight"]), 2, 4)
    # the importers on the test set: direct encoding, the same image at every step
    data = build_setup(cfg).data
    x = (data.x_test[:SAMPLES].astype(np.float32) / float(data.pixel_max))
    y = data.y_test[:SAMPLES]
    steps = np.ascontiguousarray(np.broadcast_to(x, (run.lif.time_steps,) + x.shape))
    want, logits = reference(run.graph, run.params, run.buffers, steps, run.lif)
    assert np.array_equal(logits.argmax(1), run.predict(x))
    for build, neuron, reset in ((import_snntorch, snn.Leaky, reset_snntorch),
                                 (import_norse, LIFBoxCell, lambda m: None)):
        got, mean = run_module(build(graph), neuron, steps, batched=False, reset=reset)
        for name in want:
            assert np.array_equal(got[name], want[name]), (build.__name__, name)
        assert np.array_equal(mean.argmax(1), logits.argmax(1))
        assert np.max(np.abs(mean - logits)) < 1e-4
    assert float(np.mean(logits.argmax(1) == y)) > 0.5                   # it learned


def test_S4_12c_export_both_files_and_readers(trained, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out, _ = trained
    args = ["export", str(out), "--nir", str(tmp_path / "n.nir"), "--safetensors",
            str(tmp_path / "m.safetensors"), "--nir-readers", "spikenm"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "for spikenm (dt" in text and "1 packed (layer1.weight)" in text
    assert (tmp_path / "n.nir").is_file() and (tmp_path / "m.safetensors").is_file()
    assert main(["export", str(out)]) == 2
    assert "nothing to write: give --safetensors FILE, --nir FILE or both" in \
        capsys.readouterr().err
