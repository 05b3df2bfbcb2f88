"""A job's settings, checked before anything runs: a bad value names its key and what is allowed.

The schema is derived, not listed twice: the model, optimizer and dataset groups are typed by
their dataclasses' annotations (ModelSpec, OptimizerSpec, DataSettings), the top level, `train`
and `tracking` by the keys and default types of conf/config.yaml, an implementation's options
by its own config file in conf/implementation/. So an unknown key, a value of the wrong type
(`model.hidden=[512.0]`, `dataset.download=no`) or out of range (NaN, a seed beyond 2^32-1) is
refused in one line before any run starts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from bench.data import DataError, dataset_info
from bench.job.redact import redact
from implementations.spec import ModelSpec, OptimizerSpec, SpecError, check_batch_size

DEVICES = ("cpu", "gpu")
CONF = Path(__file__).resolve().parents[2] / "conf"  # Hydra's config directory
GROUPS = ("implementation", "model", "optimizer", "dataset", "device")
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")  # it names runs, files and folders
MAX_SEED = 2**32 - 1  # NumPy's and the frameworks' seeds are 32-bit
MAX_LAYER = 65536  # a hidden layer wider than this is a typo (1e12), not a benchmark
IMPLEMENTATION_KEYS = ("name", "module", "options", "extra")


class ConfigError(ValueError):
    """A config value that cannot run; one line, with any credentials in it masked."""

    def __init__(self, message: str):
        super().__init__(redact(message))


@dataclass(frozen=True)
class DataSettings:
    name: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    val_size: int = 5000
    split_seed: int = 0
    n_train: int | None = None


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a job's run is recorded (conf/config.yaml's `tracking` group)."""

    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the local SQLite store
    artifact_root: str = "results/mlartifacts"
    experiment: str = "mnist-bench"
    skip_completed: bool | None = None  # None: on in a sweep, off for a single run
    log_model: bool = True
    busy_timeout_s: float = 120.0
    system_metrics: bool = False  # MLflow's system metrics (CPU, memory, GPU) beside the run

    def skips_completed(self, multirun: bool) -> bool:
        """Whether a config with a FINISHED run is skipped: null means on in a sweep (-m)."""
        return multirun if self.skip_completed is None else self.skip_completed


@dataclass(frozen=True)
class Job:
    """A job's checked settings: what the harness trains and the run writer records."""

    implementation: str
    module: str
    options: dict
    model: ModelSpec
    optimizer: OptimizerSpec
    data: DataSettings
    seed: int
    epochs: int
    batch_size: int
    lockstep: bool
    target_accuracy: float
    threads: int | None
    device: str
    preset: str
    shuffle: bool = True  # train.shuffle: false keeps the training set's order every epoch
    variant: str = (
        "default"  # train.variant: default, auto or a variant's name (bench.job.variants)
    )
    diverge_factor: float | None = 100.0
    tracking: TrackingSettings = TrackingSettings(enabled=False)
    config: dict = field(default_factory=dict)  # the resolved config: the run's params

    @property
    def run_name(self) -> str:
        return f"{self.preset}-{self.implementation}-s{self.seed}"

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def job_config(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def config_hash(config: dict) -> str:
    """Stable identity of what a run computes: the resolved config without tracking settings,
    without what a sweeper optimizes or how a sweep settles its verdicts (`sweep`), without
    where the data is read from (the dataset digest tag says what it was), and without the
    divergence threshold (it judges, computes nothing)."""
    body = {k: v for k, v in config.items() if k not in ("tracking", "optimized_metric", "sweep")}
    if "dataset" in body:
        body["dataset"] = {
            k: v for k, v in body["dataset"].items() if k not in ("data_dir", "download")
        }
    if "train" in body:
        body["train"] = {k: v for k, v in body["train"].items() if k != "diverge_factor"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


# --- types


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    if origin in (tuple, list):
        return f"a list of {_describe(args[0])}s".replace("an ", "").replace("a integer", "integer")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this checker does not know: the dataclass checks it


def _check_value(key: str, value, hint) -> None:
    """The value has the annotated type, and a number is finite."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list of sizes, e.g. [512]")
        for item in value:
            _check_value(key, item, args[0])
        return
    if not _fits(value, hint):
        raise ConfigError(f"{key}={value!r} must be {_describe(hint)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number")


def _typed(cls, group: str, node) -> dict:
    """The group's values, each checked against the dataclass field's annotation."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(values, dict):
        raise ConfigError(f"{group}={values!r} must be a config group, not a value")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {group}.{unknown[0]}; allowed: {', '.join(allowed)}")
    for key, value in values.items():
        _check_value(f"{group}.{key}", value, hints[key])
    return values


def _build(cls, group: str, node) -> object:
    return cls(**_typed(cls, group, node))


def _like(key: str, value, default) -> None:
    """A key typed by its default in the config file; null values and null defaults are left
    to the key's own check (null means "all cores", "NaN only", ...)."""
    if default is None or value is None:
        return
    _check_value(key, value, type(default))


def _int(key: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}={value!r} must be an integer <= {maximum}")
    return value


# --- the config files as schema


@cache
def primary_defaults() -> dict:
    """conf/config.yaml without its defaults list and Hydra's node: the allowed top-level,
    train and tracking keys, typed by their defaults."""
    body = yaml.safe_load((CONF / "config.yaml").read_text())
    return {k: v for k, v in body.items() if k not in ("defaults", "hydra")}


@cache
def option_defaults(implementation: str) -> dict | None:
    """An implementation's registered config file (conf/implementation/), or None."""
    path = CONF / "implementation" / f"{implementation}.yaml"
    if not path.exists():
        return None
    return yaml.safe_load(path.read_text()) or {}


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_keys(where: str, node, allowed) -> None:
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{where}={node!r} must be a config group, not a value")
    unknown = sorted(set(node) - set(allowed))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown key {name}; allowed: {', '.join(sorted(allowed))}")


def _check_section(section: str, node) -> None:
    """A section of conf/config.yaml: its keys, each typed by its default."""
    defaults = primary_defaults()[section]
    _check_keys(section, node, defaults)
    for key, default in defaults.items():
        _like(f"{section}.{key}", node[key], default)


def check_preset(preset) -> None:
    """A preset names runs, files and folders: a plain name, never a path."""
    if not isinstance(preset, str) or not SAFE_NAME.fullmatch(preset):
        raise ConfigError(
            f"preset={preset!r} is not a name; allowed: up to 100 letters, digits, '.', "
            "'_', '-' (not first: '.', '-')"
        )


def check_sweep(sweep: DictConfig) -> None:
    """The `sweep` section: the sequential rule's seeds and the speed margin."""
    _check_section("sweep", sweep)
    if not isinstance(sweep.until_decided, bool):
        raise ConfigError(f"sweep.until_decided={sweep.until_decided!r} must be true or false")
    _int("sweep.max_seeds", sweep.max_seeds, 2, 1000)
    _int("sweep.seed_batch", sweep.seed_batch, 1, 1000)
    if sweep.first_seeds is not None:
        _int("sweep.first_seeds", sweep.first_seeds, 1, sweep.max_seeds)
    margin = sweep.speed_margin
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 1:
        raise ConfigError(f"sweep.speed_margin={margin!r} must be a fraction in (0, 1), e.g. 0.1")


def check_top_level(cfg: DictConfig) -> None:
    """The top-level keys, the `train` and `sweep` sections, the preset and optimized_metric."""
    defaults = primary_defaults()
    _check_keys("", cfg, [*defaults, *GROUPS, "hydra"])
    _check_section("train", cfg.train)
    check_sweep(cfg.sweep)
    check_preset(cfg.preset)
    metric = cfg.get("optimized_metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(f"optimized_metric={metric!r} must be a metric name or null")


def tracking_settings(tracking: DictConfig) -> TrackingSettings:
    """The `tracking` group, checked: the one place its values are validated."""
    _check_section("tracking", tracking)
    if not isinstance(tracking.enabled, bool):
        raise ConfigError(f"tracking.enabled={tracking.enabled!r} must be true or false")
    if tracking.uri is not None and (not isinstance(tracking.uri, str) or not tracking.uri):
        raise ConfigError(f"tracking.uri={tracking.uri!r} must be a store URI or null")
    name = tracking.experiment
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"tracking.experiment={name!r} must be a non-empty name")
    if not name.isprintable() or len(name) > 200:  # it is printed in commands to paste
        raise ConfigError(f"tracking.experiment={name!r} must be one line of up to 200 "
                          "printable characters")  # fmt: skip
    if not isinstance(tracking.artifact_root, str) or not tracking.artifact_root:
        raise ConfigError(f"tracking.artifact_root={tracking.artifact_root!r} must be a path")
    for key in ("uri", "artifact_root"):  # no shell here expands "~": it would name ./~
        if re.search(r"(?:^|/)~", str(tracking[key] or "").split("://", 1)[-1]):
            raise ConfigError(f"tracking.{key}={tracking[key]!r}: '~' is not expanded; write "
                              "the path out (e.g. $HOME/...)")  # fmt: skip
    skip = tracking.get("skip_completed")
    if skip is not None and not isinstance(skip, bool):
        raise ConfigError(f"tracking.skip_completed={skip!r} must be true, false or null")
    busy = tracking.get("busy_timeout_s", TrackingSettings.busy_timeout_s)
    if isinstance(busy, bool) or not isinstance(busy, (int, float)) or not 0 <= busy <= 86400:
        raise ConfigError(f"tracking.busy_timeout_s={busy!r} must be seconds in [0, 86400]")
    log_model = tracking.get("log_model", True)
    system_metrics = tracking.get("system_metrics", False)
    for key, value in (("log_model", log_model), ("system_metrics", system_metrics)):
        if not isinstance(value, bool):
            raise ConfigError(f"tracking.{key}={value!r} must be true or false")
    return TrackingSettings(
        enabled=tracking.enabled,
        uri=tracking.uri,
        artifact_root=tracking.artifact_root,
        experiment=name,
        skip_completed=skip,
        log_model=log_model,
        busy_timeout_s=float(busy),
        system_metrics=system_metrics,
    )


def check_implementation(node: DictConfig) -> tuple[str, str, dict]:
    """name registered (a file in conf/implementation/), its own module, known options."""
    _check_keys("implementation", node, IMPLEMENTATION_KEYS)
    name = node.get("name")
    registered = option_defaults(name) if isinstance(name, str) else None
    if registered is None:
        known = sorted(p.stem for p in (CONF / "implementation").glob("*.yaml"))
        raise ConfigError(f"implementation={name!r} is not registered; allowed: {', '.join(known)}")
    if node.get("module") != registered.get("module"):
        raise ConfigError(
            f"implementation.module={node.get('module')!r} is not implementation {name}'s "
            f"module; allowed: {registered.get('module')!r} (register a new one with a file "
            "in conf/implementation/)"
        )
    options = node.get("options") or {}
    if not isinstance(options, DictConfig) and options != {}:
        raise ConfigError(f"implementation.options={options!r} must be a config group")
    allowed = registered.get("options") or {}
    if options:
        _check_keys("implementation.options", options, allowed)
    values = OmegaConf.to_container(options, resolve=True) if options else {}
    for key, value in values.items():
        default = allowed[key]
        if not (isinstance(default, str) and default.startswith("${")):
            _like(f"implementation.options.{key}", value, default)
    return name, node.module, values


def check_threads(threads) -> int | None:
    """train.threads: null (all cores) or 1..the cores this process may use."""
    if threads is None:
        return None
    _int("train.threads", threads, 1)
    cores = usable_cores()
    if threads > cores:
        raise ConfigError(
            f"train.threads={threads} is more than the {cores} cores this process may use; "
            f"allowed: 1..{cores} or null (all of them)"
        )
    return threads


def compose_config(overrides: list[str]) -> DictConfig:
    """The config Hydra composes for these overrides, outside a Hydra app (the speed
    benchmark and the tests build their jobs this way)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def job_from_config(cfg: DictConfig) -> Job:
    """Every check that needs no data and no framework, so a bad sweep fails in seconds."""
    try:
        check_top_level(cfg)
        tracking = tracking_settings(cfg.tracking)
        train = cfg.train
        threads = check_threads(train.threads)
        target = train.target_accuracy
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise ConfigError(f"train.target_accuracy={target!r} must be in (0, 1]")
        for key in ("lockstep", "shuffle"):
            if not isinstance(train[key], bool):
                raise ConfigError(f"train.{key}={train[key]!r} must be true or false")
        if not isinstance(train.variant, str) or not SAFE_NAME.fullmatch(train.variant):
            raise ConfigError(f"train.variant={train.variant!r} must be default, auto or the "
                              "name of one of the implementation's variants")  # fmt: skip
        factor = train.get("diverge_factor")
        if factor is not None and (
            isinstance(factor, bool)
            or not isinstance(factor, (int, float))
            or not 1 < factor < math.inf
        ):
            raise ConfigError(
                f"train.diverge_factor={factor!r} must be a number > 1, or null (NaN/inf only)"
            )
        _check_keys("device", cfg.device, ["name"])
        if cfg.device.name not in DEVICES:
            raise ConfigError(f"device={cfg.device.name!r} is not supported; allowed: cpu, gpu")
        name, module, options = check_implementation(cfg.implementation)
        data = _build(DataSettings, "dataset", cfg.dataset)
        dataset_info(data.name)
        _int("dataset.val_size", data.val_size, 0)
        _int("dataset.split_seed", data.split_seed, 0, MAX_SEED)
        if data.n_train is not None:
            _int("dataset.n_train", data.n_train, 1)
        model = _typed(ModelSpec, "model", cfg.model)
        for size in model.get("hidden") or ():
            if size > MAX_LAYER:
                raise ConfigError(f"model.hidden={size} is too wide; allowed: 1..{MAX_LAYER}")
        return Job(
            implementation=name,
            module=module,
            options=options,
            model=ModelSpec(**model),
            optimizer=_build(OptimizerSpec, "optimizer", cfg.optimizer),
            data=data,
            seed=_int("seed", cfg.seed, 0, MAX_SEED),
            epochs=_int("train.epochs", train.epochs, 1),
            batch_size=check_batch_size(train.batch_size),
            lockstep=train.lockstep,
            target_accuracy=float(target),
            threads=threads,
            device=cfg.device.name,
            preset=str(cfg.preset),
            shuffle=train.shuffle,
            variant=train.variant,
            diverge_factor=None if factor is None else float(factor),
            tracking=tracking,
            config=job_config(cfg),
        )
    except (SpecError, DataError) as e:
        raise ConfigError(str(e)) from None
    except TypeError as e:  # a value of the wrong type reached a dataclass check
        raise ConfigError(f"bad config value: {e}") from None
