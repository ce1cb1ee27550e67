"""Operation counts and energy estimates (spikenm/energy.py, SPEC S7)."""

from __future__ import annotations

import json
import math

import pytest

from spikenm.energy import PRESETS, EnergyConstants, energy_report, layer_macs, spike_sources
from spikenm.runs import load_run
from spikenm.snn.archs import conv_net, resnet19
from spikenm.snn.graph import Graph, Node
from run_helpers import digits_config
from spikenm.train.loop import train


def _mlp() -> Graph:
    return Graph((8,), (Node("linear", (-1,), 8, 16), Node("lif", (0,)),
                        Node("linear", (1,), 16, 12), Node("lif", (2,)),
                        Node("linear", (3,), 12, 4)))


def test_S7_1_S7_2_counts_by_hand_on_an_mlp() -> None:
    rep = energy_report(_mlp(), [0.5, 0.1], 4, densities={1: 0.5})
    assert [r.macs_dense for r in rep.layers] == [128, 192, 48]
    assert [r.macs_nm for r in rep.layers] == [128, 96, 48]
    assert [r.input_rate for r in rep.layers] == [None, 0.5, 0.1]
    # direct input: T * MACs at MAC cost; spike-fed: rate * T * MACs_nm at AC cost
    assert [r.sops for r in rep.layers] == pytest.approx([4 * 128, 0.5 * 4 * 96, 0.1 * 4 * 48])
    assert [r.energy_pj for r in rep.layers] == pytest.approx(
        [4.6 * 512, 0.9 * 192, 0.9 * 19.2])
    t = rep.totals
    assert t["energy_pj"] == pytest.approx(sum(r.energy_pj for r in rep.layers))
    assert t["energy_dense_snn_pj"] == pytest.approx(4.6 * 512 + 0.9 * 0.5 * 4 * 192
                                                     + 0.9 * 0.1 * 4 * 48)
    assert t["energy_dense_ann_pj"] == pytest.approx(4.6 * (128 + 192 + 48))
    doc = rep.to_dict()
    assert set(doc["layers"][0]) >= {"layer", "macs_dense", "macs_nm", "sops", "energy_pj"}
    assert json.loads(json.dumps(doc))["totals"]["sops"] == pytest.approx(t["sops"])
    assert "| layer1 | linear | lif0 (0.500) |" in rep.markdown()


def test_S7_conv_pool_and_residual_sources() -> None:
    g = conv_net((1, 8, 8), 10, channels=(4, 8), pools=(2, 1), hidden=(16,))
    macs = layer_macs(g)
    assert macs[0] == 4 * 8 * 8 * 1 * 9         # conv 1->4 on 8x8, 3x3
    assert macs[1] == 8 * 4 * 4 * 4 * 9         # after the 2x2 pool
    assert spike_sources(g)[:3] == [None, (0,), (1,)]
    r = resnet19((1, 8, 8), 10, width=0.125)
    sources = spike_sources(r)
    assert sources[0] is None and all(s is not None for s in sources[1:])
    rates = [0.1] * len(r.neurons)
    rep = energy_report(r, rates, 2)
    assert all(row.input_rate == pytest.approx(0.1 * len(s))
               for row, s in zip(rep.layers[1:], sources[1:]))
    # an add of spikes and a real-valued branch, and a layer behind batch norm, are MACs
    mixed = Graph((4,), (Node("linear", (-1,), 4, 4), Node("lif", (0,)), Node("bn", (0,)),
                         Node("add", (1, 2)), Node("linear", (3,), 4, 4),
                         Node("linear", (2,), 4, 3)))
    assert spike_sources(mixed) == [None, None, None]


def test_S7_presets_and_refusals() -> None:
    assert PRESETS["45nm-fp32"] == EnergyConstants()
    cheap = energy_report(_mlp(), [0.5, 0.1], 4, constants=PRESETS["45nm-int8"])
    assert cheap.layers[0].energy_pj == pytest.approx(0.23 * 512)
    with pytest.raises(ValueError, match="mac_pj=-1"):
        EnergyConstants(mac_pj=-1)
    with pytest.raises(ValueError, match="1 firing rates given; the graph has 2 lif"):
        energy_report(_mlp(), [0.5], 4)
    with pytest.raises(ValueError, match="firing rate 1.5 is outside"):
        energy_report(_mlp(), [1.5, 0.1], 4)
    with pytest.raises(ValueError, match="density given for layer 7"):
        energy_report(_mlp(), [0.5, 0.1], 4, densities={7: 0.5})
    with pytest.raises(ValueError, match="density 2 of layer 1"):
        energy_report(_mlp(), [0.5, 0.1], 4, densities={1: 2})
    with pytest.raises(ValueError, match="time_steps=0"):
        energy_report(_mlp(), [0.5, 0.1], 0)
    with pytest.raises(TypeError, match="EnergyConstants"):
        energy_report(_mlp(), [0.5, 0.1], 4, constants={"mac_pj": 1})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("energy") / "run"
    cfg = digits_config(out, epochs=1)
    return out, cfg, train(cfg, stream=None)


def test_S7_report_of_a_training_run(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, cfg, result = trained
    run = load_run(out)
    rep = run.energy()
    summary = result.summary
    masked = [row["layer"] for row in summary["layers"] if row["masked"]]
    assert masked and all(rep.layers[k].density == 0.5 for k in masked)
    rates = summary["firing_rates"]
    for row in rep.layers[1:]:
        k = int(row.input[3:])
        assert row.sops == pytest.approx(rates[k] * 4 * row.macs_nm)
    assert rep.totals["energy_pj"] < rep.totals["energy_dense_snn_pj"]
    assert summary["energy"] == pytest.approx(rep.totals)  # the training summary has them
    assert json.loads((out / "summary.json").read_text())["energy"] == pytest.approx(rep.totals)
    png = rep.plot(tmp_path / "energy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        load_run(tmp_path)
    assert math.isfinite(rep.totals["sops"])
    # the trained network classifies the test set as the run's evaluation did
    from spikenm.train.setup import build_setup

    data = build_setup(cfg).data
    x = data.x_test.astype("float32") / float(data.pixel_max)
    acc = float((run.predict(x) == data.y_test).mean())
    assert acc == pytest.approx(summary["test_acc"], abs=1e-12)
    assert run.logits(x[:3]).shape == (3, 10)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 8, 8\)"):
        run.predict(x[:, 0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        run.predict(x * 255)


def test_S7_cli_report_table_json_png_and_errors(trained, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from spikenm.cli import main

    out, _, _ = trained
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| layer1 | linear | lif0 (" in text and (out / "energy.png").is_file()
    png = tmp_path / "e.png"
    assert main(["report", str(out), "--json", "--preset", "45nm-int8", "--ac-pj", "0.05",
                 "--png", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["constants"] == {"mac_pj": 0.23, "ac_pj": 0.05, "name": "custom"}
    assert [r["layer"] for r in doc["layers"]] == [0, 1, 2] and png.is_file()
    assert doc["totals"]["energy_pj"] == pytest.approx(
        sum(r["energy_pj"] for r in doc["layers"]))
    for argv, match in ((["report", str(tmp_path)], "not a finished training run"),
                        (["report", str(out), "--preset", "3nm"], "--preset '3nm' is unknown"),
                        (["report", str(out), "--mac-pj", "-1"], "mac_pj=-1.0 is invalid")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, err


def test_version_flag(capsys) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    from spikenm.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"spikenm {version('spikenm')}"


def test_export_safetensors_of_a_run(trained, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`spikenm export RUN --safetensors F`: masked layers packed with the final masks,
    everything else dense, bit for bit the run's model."""
    import numpy as np

    from spikenm import api
    from spikenm.cli import main
    from spikenm.safetensors_io import load_safetensors, load_safetensors_metadata

    out, _, _ = trained
    run = load_run(out)
    target = tmp_path / "model.safetensors"
    assert main(["export", str(out), "--safetensors", str(target)]) == 0
    assert "1 packed (layer1.weight)" in capsys.readouterr().out
    packed, dense = load_safetensors(target)
    assert list(packed) == ["layer1.weight"]
    w = api.unpack(packed["layer1.weight"])
    assert np.array_equal(w, run.params["layer1.weight"])
    api.check_nm(w, 2, 4)
    assert sorted(dense) == sorted(k for k in run.params if k != "layer1.weight")
    for k, v in dense.items():
        assert np.array_equal(v, run.params[k]) and v.dtype == run.params[k].dtype
    meta = load_safetensors_metadata(target)
    assert meta["run.pattern"] == "2:4" and json.loads(meta["run.config"])["lif"]["time_steps"] == 4
    assert main(["export", str(tmp_path), "--safetensors", str(target)]) == 2
    assert "not a finished training run" in capsys.readouterr().err
