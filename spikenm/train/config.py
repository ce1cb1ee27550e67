"""Trainer configuration: frozen dataclasses, loaded from TOML/JSON and overridden by flags.

A configuration file has one table per section (``[data]``, ``[model]``, ``[lif]``,
``[sparsity]``, ``[sampler]``, ``[eid]``, ``[baselines]``, ``[optim]``, ``[run]``); every
key is a field of the section's dataclass below.  Unknown sections or keys, values of the
wrong type and values out of range raise `ConfigError` naming the key, the value and
what was expected.  Command-line overrides are ``section.key=value`` strings applied
after the file (flags win).

Example
-------
>>> cfg = load_config(None, ["sparsity.pattern=1:4", "optim.epochs=3"])
>>> cfg.sparsity.nm, cfg.optim.epochs
((1, 4), 3)
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from spikenm import eid_variants
from spikenm.methods import is_import_path, method_names
from spikenm.registry import model_backend_names
from spikenm.schedules import SCHEDULES
from spikenm.snn.archs import ARCHS
from spikenm.snn.neuron import LIFParams

METHODS = method_names()
"""Built-in methods (`spikenm.methods.BUILTIN`); ``sparsity.method`` may also be an import
path ``package.module:ATTRIBUTE``."""
DATASETS = ("digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100")


class ConfigError(ValueError):
    """A configuration key or value is unknown or invalid."""


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid; expected {expected}")


@dataclass(frozen=True)
class LIFConfig(LIFParams):
    """The ``[lif]`` section: the core `spikenm.snn.neuron.LIFParams` (SPEC S4.3-S4.5;
    ``beta``, ``theta``, ``alpha``, ``reset``, ``detach_reset``, ``time_steps``) whose
    invalid values raise `ConfigError`."""

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def params(self) -> LIFParams:
        """The same values as a plain `LIFParams` (what the model backends receive)."""
        return LIFParams(**{f.name: getattr(self, f.name) for f in fields(LIFParams)})


@dataclass(frozen=True)
class DataConfig:
    """Dataset and input encoding.

    ``name``: shipped ``digits`` / ``mnist5k``, or local ``mnist``, ``fashion_mnist``,
    ``cifar10``, ``cifar100`` read from ``root``.  ``encoding``: ``direct`` (the analog
    input at every step) or ``poisson`` (rate coding, ``P(spike) = pixel`` in ``[0, 1]``).
    ``train_limit``/``test_limit`` keep the first that many samples (0 = all).
    """

    name: str = "digits"
    root: str = ""
    encoding: Literal["direct", "poisson"] = "direct"
    train_limit: int = 0
    test_limit: int = 0

    def __post_init__(self) -> None:
        _require(self.name in DATASETS, "data.name", self.name, f"one of {DATASETS}")
        _require(self.train_limit >= 0, "data.train_limit", self.train_limit, ">= 0")
        _require(self.test_limit >= 0, "data.test_limit", self.test_limit, ">= 0")


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (SPEC S4.2, S4.15; `spikenm.snn.archs.build_graph`).

    ``arch``: ``mlp`` (Linear layers of widths ``hidden``, then the readout), ``conv``
    (for every entry of ``channels`` a ``kernel x kernel`` conv (padding ``kernel // 2``)
    + LIF + ``q x q`` average pooling with ``q = pools[i]`` (1: none; ``pools`` empty: 2
    after every conv), then the ``hidden`` Linear layers and the readout), ``vgg11``
    (VGG-11 with batch norm; ``hidden`` is its Linear head, set ``hidden = []`` for the
    usual CIFAR head) or ``resnet19`` (ResNet-19 with batch norm; ignores ``hidden``,
    ``channels``, ``kernel``, ``pools``).  ``width_multiplier`` scales every hidden width
    and channel count to ``max(1, round(c * width_multiplier))``.  Weights start as
    ``N(0, init_gain^2 / fan_in)``, biases at 0, batch norm at ``gamma = 1, beta = 0``.
    """

    arch: str = "mlp"
    hidden: tuple[int, ...] = (128, 128)
    channels: tuple[int, ...] = (16, 32)
    kernel: int = 3
    pools: tuple[int, ...] = ()
    width_multiplier: float = 1.0
    init_gain: float = 2.0

    def __post_init__(self) -> None:
        _require(self.arch in ARCHS, "model.arch", self.arch, f"one of {ARCHS}")
        _require(all(h >= 1 for h in self.hidden), "model.hidden", self.hidden,
                 "positive integers")
        _require(all(c >= 1 for c in self.channels) and len(self.channels) >= 1,
                 "model.channels", self.channels, "at least one positive integer")
        _require(self.kernel >= 1 and self.kernel % 2 == 1, "model.kernel", self.kernel,
                 "an odd integer >= 1")
        _require(self.width_multiplier > 0 and math.isfinite(self.width_multiplier),
                 "model.width_multiplier", self.width_multiplier, "a finite number > 0")
        _require(self.init_gain > 0, "model.init_gain", self.init_gain, "> 0")
        _require(not self.pools or (len(self.pools) == len(self.channels)
                                    and all(q >= 1 for q in self.pools)),
                 "model.pools", self.pools,
                 f"empty or one pooling size >= 1 per conv ({len(self.channels)} entries)")


@dataclass(frozen=True)
class SparsityConfig:
    """Method and N:M pattern (SPEC S5, S6).

    ``method`` is a built-in method (`METHODS`) or an import path
    ``package.module:ATTRIBUTE`` of a third-party one (`spikenm.methods.load_method`).
    ``pattern`` is ``"n:m"``; ``dense_first``/``dense_last`` keep the first/last layer
    dense.  A masked layer whose input size is not a multiple of ``m`` is an error.
    ``search_fraction``: share of the steps during which spikenm/maskllm learn the mask;
    the rest fine-tunes the weights with the final mask fixed.
    """

    method: str = "spikenm"
    pattern: str = "2:4"
    dense_first: bool = True
    dense_last: bool = True
    search_fraction: float = 0.8

    def __post_init__(self) -> None:
        _require(isinstance(self.method, str)
                 and (self.method in METHODS or is_import_path(self.method)),
                 "sparsity.method", self.method,
                 f"one of {METHODS} or an import path package.module:ATTRIBUTE")
        _ = self.nm  # validates the pattern
        _require(0.0 < self.search_fraction <= 1.0, "sparsity.search_fraction",
                 self.search_fraction, "a number in (0, 1]")

    @property
    def nm(self) -> tuple[int, int]:
        """``(n, m)`` parsed from ``pattern``."""
        parts = str(self.pattern).split(":")
        ok = len(parts) == 2 and all(p.strip().isdigit() for p in parts)
        _require(ok, "sparsity.pattern", self.pattern, "'n:m' with integers, e.g. '2:4'")
        n, m = int(parts[0]), int(parts[1])
        _require(m >= 2 and 1 <= n <= m, "sparsity.pattern", self.pattern,
                 "m >= 2 and 1 <= n <= m")
        return n, m


@dataclass(frozen=True)
class SamplerConfig:
    """SpikeNM sampler schedules (SPEC S5.6): temperature ``tau`` and logit scale ``kappa``
    go from ``*_start`` to ``*_end`` over the search phase; logits are trained by Adam
    with learning rate ``logit_lr``.

    The gradient-estimator measurement of S5.9a (`spikenm.train.variance`) runs at the
    steps ``floor(f * S_search)`` for every fraction ``f`` of ``variance_points``
    (distinct numbers in ``[0, 1)``; default 0, 1/4, 1/2, 3/4 of the search phase) with
    ``variance_draws`` noise draws (0 turns it off, otherwise at least 2).  It changes
    nothing in the training trajectory."""

    temperature_start: float = 1.0
    temperature_end: float = 0.2
    temperature_schedule: str = "exp"
    scale_start: float = 1.0
    scale_end: float = 10.0
    scale_schedule: str = "linear"
    logit_lr: float = 0.05
    variance_points: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    variance_draws: int = 8

    def __post_init__(self) -> None:
        for key in ("temperature_start", "temperature_end", "scale_start", "scale_end",
                    "logit_lr"):
            v = getattr(self, key)
            _require(v > 0 and math.isfinite(v), f"sampler.{key}", v, "a finite number > 0")
        for key in ("temperature_schedule", "scale_schedule"):
            v = getattr(self, key)
            _require(v in SCHEDULES, f"sampler.{key}", v, f"one of {SCHEDULES}")
        points = self.variance_points
        _require(isinstance(points, (tuple, list)) and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f)
            and 0.0 <= f < 1.0 for f in points) and len(set(points)) == len(points),
            "sampler.variance_points", points,
            "distinct fractions of the search phase in [0, 1), e.g. [0, 0.25, 0.5, 0.75]")
        draws = self.variance_draws
        _require(isinstance(draws, int) and not isinstance(draws, bool)
                 and (draws == 0 or 2 <= draws < 65536), "sampler.variance_draws", draws,
                 "0 (off) or an integer in [2, 65535]")


@dataclass(frozen=True)
class EIDConfig:
    """Eligibility-inspired distillation (SPEC S2, S5.7).

    ``weight`` is ``lambda_eid``, warmed up linearly from 0 over ``warmup_fraction`` of
    the search phase; ``momentum`` is the running-credit ``beta`` (S2.4); ``temperature``
    is ``tau_e`` (S2.5) at the start of the search phase, going to ``temperature_end``
    with ``temperature_schedule``; ``decay`` the trace decay (negative: use ``lif.beta``);
    ``variant`` the targets (S2.11: ``global``, ``block``, ``gated``, ``inclusion``) and
    ``credit`` the step's credit (``abs``, S2.3, or ``signed``, S2.9).
    """

    enabled: bool = True
    weight: float = 0.01
    warmup_fraction: float = 0.1
    momentum: float = 0.9
    temperature: float = 1.0
    temperature_end: float = 0.05
    temperature_schedule: str = "exp"
    decay: float = -1.0
    variant: str = "gated"
    credit: str = "abs"

    def __post_init__(self) -> None:
        _require(self.variant in eid_variants.VARIANTS, "eid.variant", self.variant,
                 f"one of {eid_variants.VARIANTS}")
        _require(self.credit in eid_variants.CREDITS, "eid.credit", self.credit,
                 f"one of {eid_variants.CREDITS}")
        _require(self.weight >= 0 and math.isfinite(self.weight), "eid.weight", self.weight,
                 "a finite number >= 0")
        _require(0.0 <= self.warmup_fraction <= 1.0, "eid.warmup_fraction",
                 self.warmup_fraction, "a number in [0, 1]")
        _require(0.0 <= self.momentum < 1.0, "eid.momentum", self.momentum, "in [0, 1)")
        _require(self.temperature > 0, "eid.temperature", self.temperature, "> 0")
        _require(self.temperature_end > 0, "eid.temperature_end", self.temperature_end, "> 0")
        _require(self.temperature_schedule in SCHEDULES, "eid.temperature_schedule",
                 self.temperature_schedule, f"one of {SCHEDULES}")
        _require(self.decay < 0 or self.decay <= 1.0, "eid.decay", self.decay,
                 "a number in [0, 1], or negative for lif.beta")


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the comparison methods (SPEC S6)."""

    srste_decay: float = 2e-4
    asp_dense_fraction: float = 0.5
    maskllm_temperature_start: float = 4.0
    maskllm_temperature_end: float = 0.05
    maskllm_scale_start: float = 100.0
    maskllm_scale_end: float = 500.0
    maskllm_logit_lr: float = 2e-4

    def __post_init__(self) -> None:
        _require(self.srste_decay >= 0, "baselines.srste_decay", self.srste_decay, ">= 0")
        _require(0.0 < self.asp_dense_fraction < 1.0, "baselines.asp_dense_fraction",
                 self.asp_dense_fraction, "a number in (0, 1)")
        for key in ("maskllm_temperature_start", "maskllm_temperature_end",
                    "maskllm_scale_start", "maskllm_scale_end", "maskllm_logit_lr"):
            v = getattr(self, key)
            _require(v > 0 and math.isfinite(v), f"baselines.{key}", v, "a finite number > 0")


@dataclass(frozen=True)
class OptimConfig:
    """Weight optimizer and budget.  ``lr_schedule``: ``cosine`` (to 0 over the run) or
    ``constant``.  ``epochs`` is the whole budget of every method."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    epochs: int = 30
    batch_size: int = 64

    def __post_init__(self) -> None:
        _require(self.lr > 0 and math.isfinite(self.lr), "optim.lr", self.lr, "> 0")
        _require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "in [0, 1)")
        _require(0.0 <= self.beta1 < 1.0, "optim.beta1", self.beta1, "in [0, 1)")
        _require(0.0 <= self.beta2 < 1.0, "optim.beta2", self.beta2, "in [0, 1)")
        _require(self.eps > 0, "optim.eps", self.eps, "> 0")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, ">= 0")
        _require(self.epochs >= 1, "optim.epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "optim.batch_size", self.batch_size, "an integer >= 1")


@dataclass(frozen=True)
class RunConfig:
    """Seed, backend, device, dtype and output.

    ``backend``: a model backend of `spikenm.registry` (``numpy``, ``torch``, ``jax``) or
    an import path ``package.module:FACTORY``; ``device``: where it runs (``cpu``,
    ``cuda``, ``cuda:1``, a JAX device such as ``gpu:0``; S4.16); ``devices``: how many
    devices of that platform the ``jax`` backend shards every batch over (1: one device,
    the default; ``K >= 2``: the first ``K``, with ``optim.batch_size`` a multiple of
    ``K``; 0: every device there; other backends take 1 only -- torch gets its workers
    from ``torchrun``).  ``out`` empty: no
    files are written.  ``checkpoint_every``: steps between checkpoints (0: at every
    epoch end); ``log_every``: steps between progress records; ``eval_every``: epochs
    between test evaluations (0: only at the end)."""

    seed: int = 0
    backend: str = "numpy"
    device: str = "cpu"
    devices: int = 1
    dtype: Literal["float32", "float64"] = "float32"
    out: str = ""
    checkpoint_every: int = 0
    log_every: int = 50
    eval_every: int = 1
    eval_batch_size: int = 500
    quiet: bool = False

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "run.seed", self.seed, "an integer >= 0")
        backends = model_backend_names()
        _require(self.backend in backends or is_import_path(self.backend), "run.backend",
                 self.backend, f"one of {backends} or an import path package.module:FACTORY")
        _require(bool(self.device.strip()), "run.device", self.device,
                 "a device name such as 'cpu' or 'cuda:0'")
        _require(self.devices >= 0, "run.devices", self.devices,
                 "1 (one device), an integer K >= 2 (the first K devices of run.device's "
                 "platform) or 0 (all of them)")
        _require(self.devices == 1 or self.backend == "jax", "run.devices", self.devices,
                 f"1 with run.backend={self.backend!r}: only the jax backend shards a batch "
                 f"over devices (torch runs one worker per process under torchrun)")
        _require(self.checkpoint_every >= 0, "run.checkpoint_every", self.checkpoint_every,
                 ">= 0")
        _require(self.log_every >= 1, "run.log_every", self.log_every, ">= 1")
        _require(self.eval_every >= 0, "run.eval_every", self.eval_every, ">= 0")
        _require(self.eval_batch_size >= 1, "run.eval_batch_size", self.eval_batch_size, ">= 1")


@dataclass(frozen=True)
class TrainConfig:
    """The whole configuration of one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lif: LIFConfig = field(default_factory=LIFConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eid: EIDConfig = field(default_factory=EIDConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory().__class__  # type: ignore[misc]
                             for f in fields(TrainConfig)}


# -- conversion ---------------------------------------------------------------------------

def _coerce(key: str, value: Any, hint: Any, text: bool) -> Any:
    """``value`` converted to the field type ``hint``; with ``text`` (values from flags)
    strings are parsed, otherwise (files) the value must already have the right type."""
    origin = get_origin(hint)
    if not text and isinstance(value, str) and hint is not str and origin is not Literal:
        raise ConfigError(f"{key}={value!r} is invalid; expected {_expected(hint)}, "
                          f"not a string")
    if origin is Literal:
        choices = get_args(hint)
        _require(value in choices, key, value, f"one of {choices}")
        return value
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        _require(isinstance(value, bool), key, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{key}={value!r} is invalid; expected an integer") from None
        _require(isinstance(value, int) and not isinstance(value, bool), key, value,
                 "an integer")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}={value!r} is invalid; expected a number") from None
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), key, value,
                 "a number")
        _require(math.isfinite(float(value)), key, value, "a finite number")
        return float(value)
    if hint is str:
        _require(isinstance(value, str), key, value, "a string")
        return value
    if origin is tuple:
        item = (get_args(hint) or (int,))[0]
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v != ""]
        _require(isinstance(value, (list, tuple)), key, value, _expected(hint))
        return tuple(_coerce(key, v, item, text) for v in value)
    raise ConfigError(f"{key}: unsupported field type {hint!r}")  # pragma: no cover


def _expected(hint: Any) -> str:
    if get_origin(hint) is tuple:
        item = (get_args(hint) or (int,))[0]
        return "a list of numbers" if item is float else "a list of integers"
    return {int: "an integer", float: "a number", bool: "true or false"}.get(
        hint, "a list of integers")


def _section_from_dict(name: str, cls: type, values: dict[str, Any], base: Any,
                       text: bool) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table of key = value, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"unknown key {name}.{key}; expected one of {sorted(known)}"
            )
        changes[key] = _coerce(f"{name}.{key}", value, hints[key], text)
    return replace(base, **changes)


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None,
                     text: bool = False, check: bool = True) -> TrainConfig:
    """A `TrainConfig` from nested ``{section: {key: value}}`` (TOML/JSON structure),
    starting from ``base`` (defaults when None).  ``text``: values are strings from flags
    (``parse_overrides``) and are parsed to the field types.  ``check``: end with the
    checks across sections (`check_devices`); `load_config` runs them once, after the
    flags."""
    cfg = base or TrainConfig()
    if not isinstance(values, dict):
        raise ConfigError(f"a configuration must be a table of sections, got {values!r}")
    for section, table in values.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section [{section}]; expected one of {sorted(SECTIONS)}"
            )
        current = getattr(cfg, section)
        cfg = replace(cfg, **{section: _section_from_dict(section, SECTIONS[section],
                                                          table, current, text)})
    if check:
        check_devices(cfg)
    return cfg


def check_devices(cfg: TrainConfig) -> None:
    """``optim.batch_size`` divides over ``run.devices = K >= 2`` (S4.16); checked once
    every section is read.

    Raises
    ------
    ConfigError
        The batch size is not a multiple of ``K`` (both named).

    Examples
    --------
    >>> check_devices(TrainConfig(run=RunConfig(backend="jax", devices=2)))
    """
    k, batch = cfg.run.devices, cfg.optim.batch_size
    _require(k < 2 or batch % k == 0, "optim.batch_size", batch,
             f"a multiple of run.devices={k}, so every device gets batch_size / {k} samples "
             f"(S4.16)")


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["section.key=value", ...]`` as a nested dict of strings."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} is invalid; expected section.key=value")
        path, value = item.split("=", 1)
        section, key = path.strip().split(".", 1)
        out.setdefault(section, {})[key] = value.strip()
    return out


CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
"""The configurations shipped with the package (``spikenm/configs/*.toml``)."""


def bundled_configs() -> tuple[str, ...]:
    """Names of the shipped configurations, usable as ``--config NAME``.

    Examples
    --------
    >>> "mnist5k_conv" in bundled_configs()
    True
    """
    return tuple(sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))


def resolve_config(path: str | Path) -> Path:
    """The file a ``--config`` value names: an existing path as given, else a shipped
    configuration by name (``mnist5k_conv`` or ``mnist5k_conv.toml``).

    Raises
    ------
    ConfigError
        Neither a file nor a shipped name (the names are listed).
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.parent == Path(".") and p.suffix in ("", ".toml"):
        shipped = CONFIGS_DIR / f"{p.stem}.toml"
        if shipped.is_file():
            return shipped
    raise ConfigError(f"configuration file {str(p)!r} does not exist, and it is not a "
                      f"shipped configuration; those are {', '.join(bundled_configs())}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict in a ``.toml`` or ``.json`` file, or in a shipped configuration
    named without a path (`resolve_config`).

    Raises
    ------
    ConfigError
        No such file or shipped name, a folder, another suffix, text that is not UTF-8,
        invalid TOML/JSON, or JSON whose top level is not an object; the file is named.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"configuration file {str(p)!r} is a folder; expected a .toml or "
                          f".json file")
    p = resolve_config(path)
    if p.suffix not in (".toml", ".json"):
        raise ConfigError(f"configuration file {str(p)!r} must end in .toml or .json")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if p.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{p}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level is a JSON {type(data).__name__}; expected an "
                          f"object of sections")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (flags win).
    An invalid value of the file is a `ConfigError` naming the file and the key."""
    cfg = TrainConfig()
    if path is not None:
        data = read_config_file(path)
        try:
            cfg = config_from_dict(data, cfg, check=False)
        except ConfigError as exc:
            raise ConfigError(f"{resolve_config(path)}: {exc}") from None
    if overrides:
        cfg = config_from_dict(parse_overrides(overrides), cfg, text=True, check=False)
    check_devices(cfg)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """Nested plain dict (tuples as lists), suitable for JSON and for `config_from_dict`."""
    out = dataclasses.asdict(cfg)
    return json.loads(json.dumps(out))


__all__ = [
    "BaselineConfig", "ConfigError", "DataConfig", "EIDConfig", "LIFConfig", "ModelConfig",
    "OptimConfig", "RunConfig", "SamplerConfig", "SparsityConfig", "TrainConfig",
    "METHODS", "DATASETS", "SCHEDULES", "config_from_dict", "config_to_dict",
    "load_config", "parse_overrides", "check_devices", "read_config_file", "resolve_config",
    "bundled_configs", "CONFIGS_DIR",
]
