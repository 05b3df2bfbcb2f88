"""What the MLflow UI shows, read back from the store of a real tiny sweep (the one
tests/test_report.py runs): the parent run as the sweep's summary, child runs with their
description, figures, table and loadable model, names and tags a reviewer reads first, the same
param keys everywhere, the dataset input with its splits; and a CPU sweep without TensorFlow's
cuInit error line."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from bench.commands import ui as make_ui
from bench.commands.report import main as report_main
from bench.job.exact import exact_accuracies
from bench.job.settings import job_from_config
from bench.sweep.summary import verdict_metrics, within_limit
from bench.tracking.sweep_env import VARYING as SWEEP_VARYING_ENV
from bench.tracking.ui import (
    EXPERIMENT_KIND,
    ordered_tags,
    run_label,
    sweep_varying,
    uniform_params,
)
from tests.expected import speed_sentence
from tests.test_app import ENV, command, compose_cfg, runs_of
from tests.test_report import sweep_parent, tiny_sweep

# --- without a store


def grid(*jobs: str) -> list[dict]:
    return [{"overrides": job.split(), "config_hash": str(i)} for i, job in enumerate(jobs)]


def test_names_show_what_differs_between_siblings(monkeypatch):
    job = job_from_config(compose_cfg("+experiment=compare", "implementation=numpy", "seed=1"))
    assert run_label(job, []) == "compare-numpy-s1"  # alone: the preset too
    one_preset = grid("+experiment=compare implementation=numpy seed=0",
                      "+experiment=compare implementation=keras seed=0")  # fmt: skip
    monkeypatch.setenv(SWEEP_VARYING_ENV, json.dumps(sweep_varying(one_preset)))
    assert run_label(job, ["+experiment=compare", "implementation=numpy", "seed=1"]) == "numpy-s1"
    presets = grid("+experiment=compare implementation=numpy", "+experiment=relu_mcp")
    monkeypatch.setenv(SWEEP_VARYING_ENV, json.dumps(sweep_varying(presets)))
    assert run_label(job, ["+experiment=compare"]) == "compare-numpy-s1"
    rates = grid("implementation=numpy optimizer.lr=0.01", "implementation=numpy optimizer.lr=0.1")
    monkeypatch.setenv(SWEEP_VARYING_ENV, json.dumps(sweep_varying(rates)))
    assert run_label(job, ["implementation=numpy", "optimizer.lr=0.1"]) == "numpy-s1-lr=0.1"


def test_tags_a_reviewer_groups_by_come_first():
    job = job_from_config(compose_cfg("implementation=keras", "seed=2"))
    tags = ordered_tags(job, {"version.numpy": "2", "implementation": "keras", "device": "cpu"})
    assert list(tags)[:3] == ["implementation", "preset", "seed"]
    assert tags["seed"] == "2" and tags["device"] == "cpu"


def test_every_run_has_every_option_key():
    numpy = uniform_params({"implementation.options.device": "cpu"})
    tape = uniform_params({"implementation.options.eager": "false"})
    assert set(numpy) == set(tape)
    assert numpy["implementation.options.eager"] == "null"
    assert tape["implementation.options.device"] == "null"


def test_accuracies_are_exact_fractions_of_their_counts():
    m = exact_accuracies(
        {"test_accuracy": float(np.float32(0.9774)), "val_accuracy": float(np.float32(0.9))},
        test=10_000,
        val=5000,
    )
    assert repr(m["test_accuracy"]) == "0.9774" and repr(m["val_accuracy"]) == "0.9"


def test_verdict_metric_names_and_bounds():
    import pandas as pd

    v = pd.DataFrame(
        [
            dict(preset="p", setting="s1", a="numpy", b="keras", quantity="epoch_time",
                 estimate=1.5, ci_low=1.2, ci_high=1.9),
            dict(preset="p", setting="s1", a="numpy", b="keras", quantity="time_to_target",
                 estimate=np.inf, ci_low=np.nan, ci_high=np.nan),
            dict(preset="p", setting="s2", a="numpy", b="keras", quantity="epoch_time",
                 estimate=1.1, ci_low=0.9, ci_high=1.3),
        ]
    )  # fmt: skip
    assert verdict_metrics(v) == {  # two comparisons of one preset: named apart
        "verdict/setting1/numpy_vs_keras/epoch_time_ratio": 1.5,
        "verdict/setting1/numpy_vs_keras/epoch_time_ratio_ci_low": 1.2,
        "verdict/setting1/numpy_vs_keras/epoch_time_ratio_ci_high": 1.9,
        "verdict/setting2/numpy_vs_keras/epoch_time_ratio": 1.1,
        "verdict/setting2/numpy_vs_keras/epoch_time_ratio_ci_low": 0.9,
        "verdict/setting2/numpy_vs_keras/epoch_time_ratio_ci_high": 1.3,
    }
    one = v[v.setting == "s1"]
    assert "verdict/numpy_vs_keras/epoch_time_ratio" in verdict_metrics(one)


def test_verdict_metrics_keep_the_digits_their_interval_supports():
    import pandas as pd

    v = pd.DataFrame(
        [dict(preset="p", setting="s", a="numpy", b="keras", quantity="test_accuracy",
              estimate=-0.012000000000000899, ci_low=-0.04512, ci_high=0.02111)]
    )  # fmt: skip
    assert verdict_metrics(v) == {  # bounds rounded outward
        "verdict/numpy_vs_keras/accuracy_diff_pts": -0.012,
        "verdict/numpy_vs_keras/accuracy_diff_pts_ci_low": -0.046,
        "verdict/numpy_vs_keras/accuracy_diff_pts_ci_high": 0.022,
    }


def test_a_long_parent_description_is_cut_at_whole_lines_within_mlflows_limit():
    body = "\n".join(f"- verdict line {i}" for i in range(2000))
    text = within_limit(body, "Command: `mnist-bench -m ...`")
    assert len(text) <= 8000 and text.startswith("- verdict line 0\n")
    assert "cut at MLflow's 8,000-character limit" in text and text.endswith("...`\n")
    assert all(line.startswith("- verdict line") for line in text.split("\n\n")[0].split("\n"))


# --- the store of a real tiny sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return tiny_sweep(tmp_path_factory)


def children_of(swept_dir):
    """The tiny sweep's own runs (the report tests add others to the same store)."""
    parent = sweep_parent(swept_dir).info.run_id
    return [r for r in runs_of(swept_dir) if r.data.tags.get("mlflow.parentRunId") == parent]


def test_sweep_prints_the_summary_link(swept):
    out = swept[1].stdout
    assert "MLflow sweep summary: http://127.0.0.1:5000/#/experiments/" in out
    assert "runs?viewStateShareKey=key-numbers&workflowType=machine_learning" in out


def test_parent_run_is_the_sweeps_summary(swept):
    parent = sweep_parent(swept[0])
    assert parent.info.status == "FINISHED"
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Sweep {parent.data.tags['sweep_id']}**: numpy, tf_tape, keras")
    first_lines = note.split("\n")[2:5]  # what the run page shows before "Show more"
    assert first_lines[0] == "- " + speed_sentence(parent.info.run_id, "numpy", "tf_tape")
    assert "**Per implementation**" in note and "|" not in note  # MLflow renders no tables
    ratios = [k for k in parent.data.metrics if k.endswith("/epoch_time_ratio")]
    assert {"verdict/numpy_vs_tf_tape/epoch_time_ratio"} <= set(ratios)
    assert parent.data.params["sweep.implementations"] == "numpy,tf_tape,keras"
    assert parent.data.params["train.epochs"] == "2"
    files = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "report")}
    assert "report/report.html" in files and any(f.endswith(".png") for f in files)
    root = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"summary_table.json", "verdicts_table.json"} <= root


def test_children_names_tags_params_and_description(swept):
    children = children_of(swept[0])
    assert sorted(r.info.run_name for r in children) == sorted(
        f"{i}-s{s}" for i in ("numpy", "tf_tape", "keras") for s in (0, 1)
    )
    from matplotlib.colors import to_hex

    from bench.figures import colour

    colours = {r.data.tags["implementation"]: r.data.tags["mlflow.runColor"] for r in children}
    assert colours == {i: to_hex(colour(i)) for i in ("numpy", "tf_tape", "keras")}
    assert len(set(colours.values())) == 3  # the report's colours, one per implementation
    keys = {frozenset(r.data.params) for r in children}
    assert len(keys) == 1, "every run logs the same param keys"
    for r in children:
        tags, metrics = r.data.tags, r.data.metrics
        user_tags = [k for k in tags if not k.startswith("mlflow.")]
        assert user_tags[:3] == ["implementation", "preset", "seed"]
        note = tags["mlflow.note.content"]
        assert tags["implementation"] in note and f"seed {tags['seed']}" in note
        assert "test accuracy" in note and "steady epoch" in note and "\n" not in note
        prefixes = {k.split("/")[0] for k in metrics}  # one prefixed name per metric
        assert prefixes == {"epoch", "final", "host", "job", "overhead"}, sorted(metrics)
        assert len(repr(metrics["final/test_accuracy"])) <= 6  # 0.8488, not 0.848800003528595
        assert {"final/steady_epoch_time_s", "overhead/figures_s", "overhead/model_s"} <= set(
            metrics
        )
        files = {a.path for a in MlflowClient().list_artifacts(r.info.run_id, "figures")}
        assert files == {
            "figures/learning_curves.png",
            "figures/confusion_matrix.png",
            "figures/misclassified.png",
        }
        table = MlflowClient().load_table(
            r.info.experiment_id, "tables/per_class_accuracy.json", run_ids=[r.info.run_id]
        )
        assert list(table.digit) == list(range(10)) and table.images.sum() == 10_000
        dataset = r.inputs.dataset_inputs[0]
        assert dataset.dataset.name == "mnist 2000/5000/10000"
        assert tags["dataset_digest"].startswith(dataset.dataset.digest)
        assert len(dataset.dataset.digest) == 8
        profile = json.loads(dataset.dataset.profile)
        assert profile["train_size"] == 2000 and profile["test_size"] == 10_000


def test_experiment_opens_on_the_runs_page(swept):
    mlflow.set_tracking_uri(f"sqlite:///{swept[0]}/mlflow.db")
    tags = mlflow.get_experiment_by_name("mnist-bench").tags
    assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND
    assert "Group by `implementation`" in tags["mlflow.note.content"]


def test_logged_model_predicts_the_runs_predictions(swept, mnist):
    from bench.data import prepare

    splits = prepare(mnist, 5000, 2000, 0)
    client = MlflowClient()
    flavors = {}
    for r in children_of(swept[0]):
        if r.data.params["seed"] != "0":
            continue
        model = mlflow.pyfunc.load_model(f"models:/{r.data.tags['model_id']}")
        assert mlflow.get_logged_model(r.data.tags["model_id"]).source_run_id == r.info.run_id
        logits = np.asarray(model.predict(splits.x_test))
        assert logits.shape == (10_000, 10)
        path = client.download_artifacts(r.info.run_id, "predictions.npz")
        with np.load(path) as p:
            differ = int((logits.argmax(axis=1) != p["predicted"]).sum())
        assert differ <= 2, (r.info.run_name, differ)  # float32 sums in another order
        flavors[r.data.tags["implementation"]] = set(model.metadata.flavors)
    assert "keras" in flavors["keras"] and flavors["numpy"] == {"python_function"}


def test_report_refreshes_the_parent(swept, tmp_path, capsys):
    parent = sweep_parent(swept[0])
    uri = f"sqlite:///{swept[0]}/mlflow.db"
    sweep_id = parent.data.tags["sweep_id"]
    args = ["--tracking-uri", uri, "--sweep-id", sweep_id, "--out", str(tmp_path)]
    assert report_main(args) == 0
    assert f"updated the summary of sweep {sweep_id}" in capsys.readouterr().out
    after = MlflowClient().get_run(parent.info.run_id)
    assert after.info.status == "FINISHED"
    assert "verdicts of 6 of 6 runs" in after.data.tags["mlflow.note.content"]


def test_a_failing_summary_costs_one_line(swept, monkeypatch, capsys):
    from bench.job.settings import TrackingSettings
    from bench.sweep import callback, summary

    def broken(*args, **kwargs):
        raise RuntimeError("store gone")

    monkeypatch.setattr(summary, "publish", broken)
    sweep_id = sweep_parent(swept[0]).data.tags["sweep_id"]
    callback.sweep_end(TrackingSettings(uri=f"sqlite:///{swept[0]}/mlflow.db"), sweep_id)
    out = capsys.readouterr().out
    assert f"Verdicts of sweep {sweep_id}" in out  # the terminal table is still printed
    assert f"(no MLflow summary for sweep {sweep_id}: RuntimeError: store gone)" in out


def test_make_ui_prints_the_runs_page(swept, capsys):
    assert make_ui.main(["--tracking-uri", f"sqlite:///{swept[0]}/mlflow.db"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MLflow runs: http://127.0.0.1:5000/#/experiments/")
    assert out.strip().endswith("/runs?viewStateShareKey=key-numbers&workflowType=machine_learning")


def test_cpu_sweep_prints_no_tensorflow_error(tmp_path):
    """TensorFlow's own log level, as a user's shell leaves it (the other tests set 3); jax
    first, whose import would otherwise set the level TensorFlow reads."""
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = ("-m", "implementation=jax,tf_tape,keras", "dataset.n_train=500", "train.epochs=1",
            "tracking.log_model=false")  # fmt: skip
    proc = subprocess.run(command(tmp_path, *args), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = [line for line in proc.stderr.splitlines() if "E0000" in line or "cuInit" in line]
    assert not bad, bad
    runs = [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]
    assert len(runs) == 3 and all("model_id" not in r.data.tags for r in runs)  # switched off


def counted(monkeypatch, module, name: str) -> list:
    """Calls of module.name from anywhere in the project: every module's reference to the
    function is replaced by one that counts."""
    import sys

    original, calls = getattr(module, name), []

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    for mod in list(sys.modules.values()):
        if (
            getattr(mod, "__name__", "").startswith("bench")
            and getattr(mod, name, None) is original
        ):
            monkeypatch.setattr(mod, name, counting)
    return calls


def test_a_sweep_end_and_a_report_compute_their_statistics_once(swept, monkeypatch, tmp_path):
    """The terminal table, the parent's summary and the report share one computation."""
    import bench.report.pages.assemble  # noqa: F401  every holder of a reference is loaded
    import bench.sweep.summary  # noqa: F401
    from bench.job.settings import TrackingSettings
    from bench.report.numbers import collect, rows, verdicts
    from bench.sweep import callback

    counts = {
        "select": counted(monkeypatch, collect, "select"),
        "histories": counted(monkeypatch, collect, "histories"),
        "per_run": counted(monkeypatch, rows, "per_run"),
        "verdicts": counted(monkeypatch, verdicts, "verdicts"),
    }
    uri = f"sqlite:///{swept[0]}/mlflow.db"
    sweep_id = sweep_parent(swept[0]).data.tags["sweep_id"]
    callback.sweep_end(TrackingSettings(uri=uri), sweep_id)
    assert {k: len(v) for k, v in counts.items()} == dict.fromkeys(counts, 1)
    args = ["--tracking-uri", uri, "--sweep-id", sweep_id, "--out", str(tmp_path)]
    assert report_main(args) == 0  # the report, and the parent's summary refreshed from it
    assert {k: len(v) for k, v in counts.items()} == dict.fromkeys(counts, 2)


def test_the_parents_tables_are_replaced_never_appended(swept, tmp_path):
    """Two reports of the sweep: its parent's MLflow tables hold one copy of their rows."""
    parent = sweep_parent(swept[0])
    uri = f"sqlite:///{swept[0]}/mlflow.db"
    args = ["--tracking-uri", uri, "--sweep-id", parent.data.tags["sweep_id"]]
    for name in ("once", "twice"):
        assert report_main([*args, "--out", str(tmp_path), "--name", name]) == 0
    client = MlflowClient()
    for table, rows in (("summary_table.json", 3), ("verdicts_table.json", 9)):
        path = client.download_artifacts(parent.info.run_id, table, str(tmp_path / table))
        assert len(json.loads(open(path).read())["data"]) == rows, table


def test_a_report_outside_make_finds_the_images_the_runs_used(swept, tmp_path):
    """Without MNIST_BENCH_DATA_DIR (as the README's command runs outside make) and with an
    empty cache: the images come from the folder the runs read, so no figure is dropped."""
    env = {k: v for k, v in ENV.items() if k != "MNIST_BENCH_DATA_DIR"}
    env["MNIST_BENCH_CACHE_DIR"] = str(tmp_path / "empty-cache")
    sweep_id = sweep_parent(swept[0]).data.tags["sweep_id"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{swept[0]}/mlflow.db", "--sweep-id", sweep_id, "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / sweep_id / "report.md").read_text()
    assert "no misclassified-image plots" not in md
    assert md.count("![misclassified_") == 3  # one per implementation


@pytest.mark.parametrize(
    ("run_name", "name"),
    [
        ("numpy-s0", "numpy-s0"),
        ("numpy-s0-lr=0.01", "numpy-s0-lr=0_01"),
        ("a/b:c%d'e\"f", "a_b_c_d_e_f"),
    ],
)
def test_a_model_is_named_by_its_run_in_characters_mlflow_takes(run_name, name):
    from mlflow.utils.validation import _validate_logged_model_name

    from bench.tracking.model import model_name

    assert model_name(run_name) == name
    _validate_logged_model_name(model_name(run_name))  # MLflow's own check passes
