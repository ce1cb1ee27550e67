"""Trainer configuration, schedules and derived seeds (SPEC S5.2, S5.6)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import pytest

from spikenm.train.config import (
    ConfigError, TrainConfig, config_from_dict, config_to_dict, load_config, parse_overrides,
)
from spikenm.schedules import schedule_value, warmup_factor
from spikenm.seeds import epoch_order, seed_of


def test_defaults_are_valid_and_round_trip() -> None:
    cfg = TrainConfig()
    assert cfg.sparsity.nm == (2, 4)
    assert cfg.lif.beta == 0.5 and cfg.lif.theta == 1.0 and cfg.lif.alpha == 2.0
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_toml_file_then_flags_override(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[sparsity]\nmethod = "srste"\npattern = "1:4"\n'
                    '[optim]\nepochs = 7\nlr = 0.01\n[model]\nhidden = [64, 32]\n')
    cfg = load_config(path)
    assert (cfg.sparsity.method, cfg.sparsity.nm, cfg.optim.epochs) == ("srste", (1, 4), 7)
    assert cfg.model.hidden == (64, 32)
    cfg = load_config(path, ["optim.epochs=3", "sparsity.pattern=2:8", "eid.enabled=false"])
    assert (cfg.optim.epochs, cfg.sparsity.nm, cfg.eid.enabled) == (3, (2, 8), False)
    assert cfg.optim.lr == 0.01  # untouched file value stays


def test_json_file(tmp_path) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"lif": {"time_steps": 6, "reset": "soft"}}))
    cfg = load_config(path)
    assert cfg.lif.time_steps == 6 and cfg.lif.reset == "soft"


@pytest.mark.parametrize("override, needle", [
    (["optim.foo=1"], "unknown key optim.foo"),
    (["nosuch.key=1"], "unknown section [nosuch]"),
    (["sparsity.pattern=5:4"], "sparsity.pattern='5:4'"),
    (["sparsity.pattern=2-4"], "'n:m'"),
    (["sparsity.method=magic"], "sparsity.method='magic'"),
    (["lif.beta=1.5"], "lif.beta=1.5"),
    (["optim.epochs=0"], "optim.epochs=0"),
    (["optim.epochs=two"], "expected an integer"),
    (["optim.lr=nan"], "finite"),
    (["run.backend=cuda"], "run.backend='cuda'"),
    (["run.device= "], "run.device"),
    (["model.arch=vgg16"], "model.arch='vgg16'"),
    (["model.width_multiplier=0"], "model.width_multiplier=0.0"),
    (["model.width_multiplier=inf"], "finite"),
    (["sparsity.method=not a path:x"], "import path"),
    (["lif.time_steps=0"], "lif.time_steps=0"),
    (["eid.enabled=maybe"], "true or false"),
    (["model.hidden=a,b"], "expected an integer"),
    (["badformat"], "section.key=value"),
])
def test_bad_values_are_named(override, needle) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, override)
    assert needle in str(info.value)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nepochs = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    other = tmp_path / "x.yaml"
    other.write_text("a: 1")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_config(other)
    typed = tmp_path / "typed.toml"
    typed.write_text('[optim]\nepochs = "3"\n')
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_config(typed)


def test_parse_overrides_nests() -> None:
    assert parse_overrides(["a.b=1", "a.c=x=y"]) == {"a": {"b": "1", "c": "x=y"}}


def test_schedules_S5_6() -> None:
    assert schedule_value("constant", 3.0, 9.0, 5, 10) == 3.0
    assert schedule_value("linear", 1.0, 3.0, 0, 5) == 1.0
    assert schedule_value("linear", 1.0, 3.0, 4, 5) == 3.0
    assert schedule_value("linear", 1.0, 3.0, 99, 5) == 3.0  # clipped after the phase
    assert math.isclose(schedule_value("cosine", 2.0, 0.0, 2, 5), 1.0)
    assert math.isclose(schedule_value("exp", 1.0, 0.01, 2, 5), 0.1)
    assert schedule_value("exp", 4.0, 0.05, 0, 1) == 4.0  # one-step phase: start value
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_value("step", 1.0, 2.0, 0, 3)
    with pytest.raises(ValueError, match="exp schedule"):
        schedule_value("exp", 0.0, 1.0, 0, 3)
    assert [warmup_factor(s, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_seeds_S5_2_are_pure_functions() -> None:
    a = seed_of(3, 0, 10, 1)
    assert a == seed_of(3, 0, 10, 1)
    assert len({seed_of(3, s, 10, 1) for s in range(5)}) == 5
    assert 0 <= a < 2**32
    assert (epoch_order(0, 2, 50) == epoch_order(0, 2, 50)).all()
    assert not (epoch_order(0, 2, 50) == epoch_order(0, 3, 50)).all()
    with pytest.raises(ValueError, match="step must be >= 0"):
        seed_of(0, 0, -1, 0)


def test_epoch_order_S5_10_is_the_written_permutation() -> None:
    """S5.10: epoch e visits default_rng(seed_of(seed, 1, e, 0)).permutation(N_train)."""
    expected = np.random.default_rng(
        np.random.SeedSequence([5, 1, 7, 0]).generate_state(1, dtype=np.uint32)[0]
    ).permutation(123)
    assert (epoch_order(5, 7, 123) == expected).all()
    assert sorted(epoch_order(5, 7, 123).tolist()) == list(range(123))


def test_new_keys_and_import_paths() -> None:
    cfg = load_config(None, ["model.arch=resnet19", "model.width_multiplier=0.125",
                             "run.device=cuda:1", "sparsity.method=mypkg.mymod:METHOD",
                             "run.backend=mypkg.backend:factory"])
    assert (cfg.model.arch, cfg.model.width_multiplier) == ("resnet19", 0.125)
    assert (cfg.run.device, cfg.run.backend) == ("cuda:1", "mypkg.backend:factory")
    assert cfg.sparsity.method == "mypkg.mymod:METHOD"
    assert TrainConfig().run.device == "cpu" and TrainConfig().model.width_multiplier == 1.0


def test_the_lif_section_is_the_core_neuron() -> None:
    """One definition of the neuron: the [lif] section is `spikenm.snn.LIFParams`."""
    from spikenm.snn import LIFParams
    from spikenm.train.config import LIFConfig

    cfg = load_config(None, ["lif.beta=0.9", "lif.reset=soft"])
    assert isinstance(cfg.lif, LIFParams) and issubclass(LIFConfig, LIFParams)
    assert cfg.lif.params() == LIFParams(beta=0.9, reset="soft")
    assert type(cfg.lif.params()) is LIFParams
    with pytest.raises(ConfigError, match="lif.alpha"):
        LIFConfig(alpha=-1.0)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "spikenm" / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_build_their_network(path, tmp_path) -> None:
    """Every shipped configuration loads and builds its network and masked layers (the
    local datasets from a tiny folder in their real format; on the CPU reference)."""
    import pickle

    from spikenm.train.setup import build_setup

    cfg = load_config(path)
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    if cfg.data.name.startswith("cifar"):
        folder, names, key = (("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
                               + ["test_batch"], b"labels") if cfg.data.name == "cifar10" else
                              ("cifar-100-python", ["train", "test"], b"fine_labels"))
        (root / folder).mkdir(parents=True)
        for name in names:
            batch = {b"data": rng.integers(0, 256, (130, 3072)).astype(np.uint8),
                     key: list(rng.integers(0, 10, 130))}
            (root / folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    elif cfg.data.name in ("mnist", "fashion_mnist"):
        raw = root / ("MNIST" if cfg.data.name == "mnist" else "FashionMNIST") / "raw"
        raw.mkdir(parents=True)
        for stem, shape in (("train-images-idx3-ubyte", (130, 28, 28)),
                            ("train-labels-idx1-ubyte", (130,)),
                            ("t10k-images-idx3-ubyte", (10, 28, 28)),
                            ("t10k-labels-idx1-ubyte", (10,))):
            a = rng.integers(0, 10, shape).astype(np.uint8)
            header = bytes([0, 0, 8, a.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                         for s in a.shape)
            (raw / stem).write_bytes(header + a.tobytes())
    local = load_config(path, [f"data.root={root}", "run.backend=numpy", "run.device=cpu"])
    setup = build_setup(local)
    assert setup.graph.num_classes == setup.data.num_classes
    if local.sparsity.method != "dense":
        assert setup.layers and 0 not in setup.layers
    if "cifar" in path.stem:
        assert cfg.run.device == "cuda" and cfg.model.arch in ("vgg11", "resnet19")
        assert cfg.model.arch in path.stem and cfg.data.name in path.stem


def test_shipped_configs_by_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``--config mnist5k_conv`` (or ``mnist5k_conv.toml``) finds the shipped file from any
    folder; a local file of that name wins; an unknown name lists the shipped ones."""
    from spikenm.train.config import CONFIGS_DIR, bundled_configs, resolve_config

    monkeypatch.chdir(tmp_path)
    names = bundled_configs()
    assert "mnist5k_conv" in names and "cifar10_resnet19" in names
    for name in ("mnist5k_conv", "mnist5k_conv.toml"):
        assert resolve_config(name) == CONFIGS_DIR / "mnist5k_conv.toml"
        assert load_config(name).model.arch == "conv"
    (tmp_path / "mnist5k_conv.toml").write_text('[model]\narch = "mlp"\n')
    assert load_config("mnist5k_conv.toml").model.arch == "mlp"
    with pytest.raises(ConfigError, match=r"not a shipped configuration; those are .*mnist5k_conv"):
        load_config("no_such_config")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("sub/mnist5k_conv.toml")
