"""A job's settings, checked before anything runs: a bad value names its key and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass, fields

from omegaconf import DictConfig, OmegaConf

from bench.data import DataError, dataset_info
from implementations.spec import ModelSpec, OptimizerSpec, SpecError, check_batch_size

DEVICES = ("cpu", "gpu")


class ConfigError(ValueError):
    """A config value that cannot run; one line."""


@dataclass(frozen=True)
class DataSettings:
    name: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    val_size: int = 5000
    split_seed: int = 0
    n_train: int | None = None


@dataclass(frozen=True)
class Job:
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

    @property
    def run_name(self) -> str:
        return f"{self.preset}-{self.implementation}-s{self.seed}"


def _build(cls, group: str, node) -> object:
    values = OmegaConf.to_container(node, resolve=True)
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {group}.{unknown[0]}; allowed: {', '.join(allowed)}")
    if group == "model" and not isinstance(values.get("hidden", []), list):
        raise ConfigError(f"model.hidden={values['hidden']!r} must be a list of sizes, e.g. [512]")
    return cls(**values)


def _int(key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


def job_from_config(cfg: DictConfig) -> Job:
    """Every check that needs no data and no framework, so a bad sweep fails in seconds."""
    try:
        train = cfg.train
        threads = train.threads
        if threads is not None:
            _int("train.threads", threads, 1)
        target = train.target_accuracy
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise ConfigError(f"train.target_accuracy={target!r} must be in (0, 1]")
        for key in ("lockstep", "shuffle"):
            if not isinstance(train[key], bool):
                raise ConfigError(f"train.{key}={train[key]!r} must be true or false")
        if cfg.device.name not in DEVICES:
            raise ConfigError(f"device={cfg.device.name!r} is not supported; allowed: cpu, gpu")
        data = _build(DataSettings, "dataset", cfg.dataset)
        dataset_info(data.name)
        _int("dataset.val_size", data.val_size, 0)
        if data.n_train is not None:
            _int("dataset.n_train", data.n_train, 1)
        return Job(
            implementation=cfg.implementation.name,
            module=cfg.implementation.module,
            options=OmegaConf.to_container(cfg.implementation.options, resolve=True),
            model=_build(ModelSpec, "model", cfg.model),
            optimizer=_build(OptimizerSpec, "optimizer", cfg.optimizer),
            data=data,
            seed=_int("seed", cfg.seed, 0),
            epochs=_int("train.epochs", train.epochs, 1),
            batch_size=check_batch_size(train.batch_size),
            lockstep=train.lockstep,
            target_accuracy=float(target),
            threads=threads,
            device=cfg.device.name,
            preset=str(cfg.preset),
            shuffle=train.shuffle,
        )
    except (SpecError, DataError) as e:
        raise ConfigError(str(e)) from None
    except TypeError as e:  # a value of the wrong type reached a dataclass check
        raise ConfigError(f"bad config value: {e}") from None
