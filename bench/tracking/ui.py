"""What the MLflow UI shows before anyone opens a report: the experiment's kind and
description, run names that say what differs between siblings, the tags a reviewer groups by
first, the same param keys on every run, the dataset input with its splits, and the direct
link to the runs page (`make ui` prints it: python -m bench.commands.ui).

bench.tracking.view writes a finished job's description, figures and tables; bench.sweep.summary
the sweep parent's summary."""

from __future__ import annotations

import functools
import hashlib
import json

from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset

from bench.data.catalog import dataset_info
from bench.job.settings import DataSettings
from bench.tracking.store import retrying
from bench.tracking.sweep_env import SweepEnv

UI = "http://127.0.0.1:5000"  # the `make ui` address
EXPERIMENT_KIND = "custom_model_development"  # else MLflow 3 opens on its GenAI overview
PRESET_KEYS = ("experiment", "preset")  # overrides that choose the preset
NAMED_ANYWAY = ("implementation", "seed")  # always in a sweep job's name
RUN_COLOUR = "mlflow.runColor"  # the tag MLflow's UI draws a run in

EXPERIMENT_NOTE = """\
**mnist-bench** trains the same MNIST MLP in several implementations (numpy, tf_tape, keras,
jax): same initial weights, same batch order, same hyperparameters. It compares their speed
(steady epoch time, time to target accuracy) and whether they agree (test accuracy,
predictions).

- Each sweep (`mnist-bench -m ...`) is one **parent run** `sweep-<preset>-<id>`: its
  description holds the verdicts (which implementation is faster, whether the accuracies are
  equivalent, with 95% intervals over seeds), its artifacts the whole report
  (`report/report.html`) and its metrics `verdict/...` the speed ratios with their bounds.
- Each job is a child run named `<implementation>-s<seed>` (plus what else differs between
  siblings): its description says implementation, seed, test accuracy and steady epoch time;
  `final/...` metrics hold the key numbers, `figures/` the learning curves, confusion matrix and
  misclassified digits, and the model is logged with the run.
- **Group by `implementation`** (the first tag) in the runs table or the charts to compare
  implementations; `seed` and `preset` are tags too.
"""


# --- the experiment


KEY_VIEW = "key-numbers"  # the saved view the printed runs links open
KEY_COLUMNS = ("final/test_accuracy", "final/steady_epoch_time_s", "final/time_to_target_s",
               "final/first_epoch_time_s")  # fmt: skip


def key_view() -> str:
    """The runs page as a reviewer wants it first, as one of MLflow's saved views (the
    experiment tag `mlflow.sharedViewState.<id>` its "Views" menu writes; a view carries
    columns and grouping, not row expansion): the jobs grouped by implementation, newest
    first, with the key final numbers as columns. MLflow averages a group's values (it
    offers min, average and max, no median): the report's medians and intervals are in the
    sweep's parent run."""
    state = {
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "searchFilter": "",
        "selectedColumns": [f"metrics.`{k}`" for k in KEY_COLUMNS] + ["tags.`seed`"],
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": "implementation"}],
        },
    }
    stamp = 1_796_000_000_000  # fixed: the tag is rewritten only when the view changes
    view = {"name": "key numbers", "createdAt": stamp, "updatedAt": stamp, "state": state}
    return json.dumps({**view, "state": json.dumps(state)})


def describe_experiment(experiment_id: str) -> None:
    """The experiment's kind, its description (one someone wrote by hand is kept) and the
    runs page's key view. MLflow 3.17's UI reads the kind for nothing: its GenAI or
    Model-training mode comes from the link's `workflowType` or the browser's last choice
    (docs/tracking-and-ui.md)."""
    client = MlflowClient()
    tags = retrying(client.get_experiment, experiment_id, what="read").tags
    wanted = {
        "mlflow.experimentKind": EXPERIMENT_KIND,
        f"mlflow.sharedViewState.{KEY_VIEW}": key_view(),
    }
    if not tags.get("mlflow.note.content"):
        wanted["mlflow.note.content"] = EXPERIMENT_NOTE
    for key, value in wanted.items():
        if tags.get(key) == value:
            continue
        try:
            retrying(client.set_experiment_tag, experiment_id, key, value, what="experiment")
        except Exception as e:  # jobs side by side: another one wrote the tag first
            if "unique constraint" not in str(e).lower():
                raise


def ui_of(uri: str) -> str:
    """Where a store's runs are seen: a tracking server serves its own UI (its address,
    without credentials); any other store through `mlflow ui` (`make ui`) at UI."""
    from urllib.parse import urlparse

    url = urlparse(uri)
    if url.scheme in ("http", "https"):
        return (
            f"{url.scheme}://{url.hostname}"
            + (f":{url.port}" if url.port else "")
            + url.path.rstrip("/")
        )
    return UI


def runs_link(experiment_id: str, ui: str = UI) -> str:
    """The runs page in its key view (the experiment's root would open MLflow 3's GenAI
    overview, and drop the view)."""
    return (
        f"{ui}/#/experiments/{experiment_id}/runs?viewStateShareKey={KEY_VIEW}"
        "&workflowType=machine_learning"
    )


def run_link(experiment_id: str, run_id: str, ui: str = UI) -> str:
    """A run's page in the model-training view (without the parameter it opens as GenAI)."""
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


# --- run names and tags


def _key(override: str) -> tuple[str, str]:
    """'+experiment=compare' -> ('experiment', 'compare')."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def sweep_varying(grid: list[dict] | None) -> dict:
    """From the grid a sweep will launch: whether its jobs span presets, and the other override
    keys whose values differ between jobs (besides implementation and seed)."""
    if not grid:
        return {"presets": False, "keys": []}
    values: dict[str, set] = {}
    for job in grid:
        for override in job["overrides"]:
            key, value = _key(override)
            values.setdefault(key, set()).add(value)
    for key in values:  # a key some jobs leave out differs too
        if any(key not in dict(map(_key, job["overrides"])) for job in grid):
            values[key].add(None)
    varying = [k for k, v in values.items() if len(v) > 1]
    return {
        "presets": any(k in PRESET_KEYS for k in varying),
        "keys": [k for k in varying if k not in PRESET_KEYS + NAMED_ANYWAY],
    }


def run_label(job, overrides: list[str]) -> str:
    """A run's name. In a sweep: what differs between siblings, implementation first
    (`numpy-s0`; `compare-numpy-s0` where the sweep spans presets; `numpy-s0-lr=0.01` where
    it also varies the learning rate). Alone: `<preset>-<implementation>-s<seed>`. The preset
    is always in a tag."""
    varying = SweepEnv.current().varying
    if varying is None:
        return job.run_name
    parts = [job.preset] if varying.get("presets") else []
    parts += [job.implementation, f"s{job.seed}"]
    given = dict(map(_key, overrides))
    parts += [f"{k.rsplit('.', 1)[-1]}={given[k]}" for k in varying.get("keys", []) if k in given]
    return "-".join(parts)


def ordered_tags(job, tags: dict[str, str]) -> dict[str, str]:
    """implementation, preset and seed first: MLflow's "Group by" lists tags in the order they
    were logged."""
    first = {"implementation": job.implementation, "preset": job.preset, "seed": str(job.seed)}
    return {**first, **{k: v for k, v in tags.items() if k not in first}}


# --- params


@functools.cache
def option_keys() -> tuple[str, ...]:
    """Every option any registered implementation takes (conf/implementation/*.yaml)."""
    import yaml

    from implementations import CONFIG_DIR

    keys = set()
    for path in CONFIG_DIR.glob("*.yaml"):
        keys |= set((yaml.safe_load(path.read_text()) or {}).get("options") or {})
    return tuple(sorted(keys))


def uniform_params(params: dict[str, str]) -> dict[str, str]:
    """The same param keys on every run: an option another implementation takes is logged as
    null, so parallel coordinates and the params columns never read 'unknown'."""
    missing = {f"implementation.options.{k}": "null" for k in option_keys()}
    return {**{k: v for k, v in missing.items() if k not in params}, **params}


# --- the dataset input


def split_sizes(n_train_pool: int, n_test: int, data) -> dict[str, int]:
    """train/validation/test sizes of a job's splits (bench.data.prepare's)."""
    train = data.n_train if data.n_train is not None else n_train_pool - data.val_size
    return {"train": train, "validation": data.val_size, "test": n_test}


class SplitDataset(MetaDataset):
    """A dataset input whose profile holds the splits, and whose schema the arrays."""

    def __init__(self, source, name: str, digest: str, profile: dict, schema=None):
        self._profile = profile
        super().__init__(source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def dataset_input(dataset, data: DataSettings) -> tuple[SplitDataset, dict[str, str]]:
    """The job's dataset as an MLflow input: named with its splits (MLflow keeps one input per
    name and digest), the data's short digest beside the name; and the input's tags."""
    from mlflow.types import Schema, TensorSpec

    sizes = split_sizes(len(dataset.y_train), len(dataset.y_test), data)
    split = "/".join(str(sizes[k]) for k in ("train", "validation", "test"))
    seed = f" split_seed={data.split_seed}" if data.split_seed else ""
    schema = Schema(
        [
            TensorSpec(dataset.x_test.dtype, (-1, *dataset.x_test.shape[1:]), "image"),
            TensorSpec(dataset.y_test.dtype, (-1,), "label"),
        ]
    )
    profile = {
        **{f"{k}_size": v for k, v in sizes.items()},
        "split_seed": data.split_seed,
        "classes": int(max(dataset.y_test.max(), dataset.y_train.max())) + 1,
        "image_shape": list(dataset.x_test.shape[1:]),
        "sha256": dataset.digest,
    }
    source = HTTPDatasetSource(url=dataset_info(dataset.name).mirrors[0])
    short = (dataset.digest or hashlib.sha256(dataset.name.encode()).hexdigest())[:8]
    ds = SplitDataset(source, f"{dataset.name} {split}{seed}", short, profile, schema)
    tags = {"splits": f"train={sizes['train']} validation={sizes['validation']} "
            f"test={sizes['test']}", "sha256": dataset.digest}  # fmt: skip
    return ds, tags
