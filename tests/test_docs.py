"""The README is a newcomer's first five minutes, the docs/ pages hold the rest, and every
command any of them shows is one a test runs: the cheap ones here, the others in the test of
the feature they show (found by the `documented(...)` calls in tests/)."""

from __future__ import annotations

import ast
import functools
import os
import re
import signal
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
import requests

from tests import servers
from tests.conftest import ROOT
from tests.docs import PAGES, commands, documented, run_documented
from tests.test_app import store_overrides

# commands no test runs, each with why
NOT_RUN_BY_A_TEST = {
    "make test": "CI's own command: .ci/run runs it on a fresh clone",
    "make test-fast": "the fast tier of `make test`, which CI runs whole",
}
TINY = ["seed=0", "dataset.n_train=500", "train.epochs=1", "tracking.log_model=false"]


def runs(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    found = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
    return [r for r in found if "sweep_parent" not in r.data.tags]


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


# --- the pages


def test_the_readme_is_a_first_five_minutes():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first = [c for c, pages in commands().items() if "README.md" in pages][:2]
    assert first == ["make demo", "make test"]  # set-up and the main job; set-up and the tests


def test_every_page_is_linked_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"the README does not link {page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def documented_in_tests() -> set[str]:
    """The commands tests run: the literal first argument of every documented(...) call."""
    found = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")).endswith("documented")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found


def test_every_documented_command_is_run_by_a_test():
    shown = set(commands())
    not_run = sorted(shown - documented_in_tests() - set(NOT_RUN_BY_A_TEST))
    assert not not_run, f"commands the docs show that no test runs: {not_run}"
    assert set(NOT_RUN_BY_A_TEST) <= shown  # no stale exemption


# --- the cheap commands, run as the docs show them


def test_print_the_config():
    proc = ok(run_documented("mnist-bench +experiment=compare --cfg job", cwd=ROOT))
    assert "preset: compare" in proc.stdout and "epochs: 5" in proc.stdout


def test_make_lint():
    ok(run_documented("make lint", cwd=ROOT))


def test_one_run_with_another_optimizer_and_model(tmp_path):
    ok(run_documented(
        "mnist-bench implementation=tf_tape optimizer=adam model.hidden=[256,128] dataset.n_train=5000",
        "train.epochs=1", *store_overrides(tmp_path), cwd=tmp_path,
    ))  # fmt: skip
    (run,) = runs(tmp_path)
    assert run.data.params["optimizer.name"] == "adam"
    assert run.data.params["model.hidden"] == "[256, 128]" and run.info.status == "FINISHED"


def test_a_tutorial_preset_in_three_implementations(tmp_path):
    ok(run_documented(
        "mnist-bench -m +experiment=keras_dense512 implementation=numpy,tf_tape,keras",
        *TINY, *store_overrides(tmp_path), cwd=tmp_path,
    ))  # fmt: skip
    assert sorted(r.data.tags["implementation"] for r in runs(tmp_path)) == [
        "keras", "numpy", "tf_tape"
    ]  # fmt: skip


@pytest.mark.slow
def test_four_implementations_three_seeds(tmp_path):
    tiny = [a for a in TINY if not a.startswith("seed=")]
    ok(run_documented(
        "mnist-bench -m implementation=numpy,tf_tape,keras,jax seed=0,1,2",
        *tiny, *store_overrides(tmp_path), cwd=tmp_path,
    ))  # fmt: skip
    assert len(runs(tmp_path)) == 12


@pytest.mark.slow
def test_make_demo_then_the_report_and_the_audit(tmp_path):
    """The README's main job (one seed, a small subset), then what it says to run next."""
    args = " ".join([*TINY, *store_overrides(tmp_path)])
    proc = ok(run_documented("make demo", f"ARGS={args}", cwd=ROOT))
    assert "Verdicts of sweep" in proc.stdout and "MLflow sweep summary:" in proc.stdout
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    report = ok(run_documented(".venv/bin/mnist-bench-report", cwd=tmp_path, env=env))
    sweep_id = runs(tmp_path)[0].data.tags["sweep_id"]
    assert (tmp_path / "results" / sweep_id / "report.html").exists(), report.stdout
    wrote = f"wrote {tmp_path / 'results' / sweep_id / 'report.html'}"
    assert wrote in ok(run_documented("mnist-bench-report", cwd=tmp_path, env=env)).stdout
    again = run_documented("mnist-bench-report --sweep-id 20261126-152900-f5b769", cwd=tmp_path,
                           env=env, replace={"20261126-152900-f5b769": sweep_id})  # fmt: skip
    assert wrote in ok(again).stdout
    ok(run_documented("mnist-bench-report --all --name everything", cwd=tmp_path, env=env))
    assert (tmp_path / "results" / "everything" / "report.md").exists()
    audit = ok(run_documented("mnist-bench-audit", cwd=tmp_path, env=env))
    assert "3 jobs: 3 FINISHED" in audit.stdout and "complete" in audit.stdout


@pytest.mark.slow
def test_make_reference_into_a_folder_of_its_own(tmp_path):
    args = [f"REF_DB={tmp_path}/ref.db", f"REF_OUT={tmp_path}/out",
            f"REF_ARGS={' '.join(TINY)} hydra.sweep.dir={tmp_path}/multirun"]  # fmt: skip
    ok(run_documented("make reference", *args, cwd=ROOT, timeout=1800))
    text = (tmp_path / "out" / "reference" / "report.md").read_text()
    for preset in ("compare", "keras_dense512", "tape_sigmoid", "relu_mcp", "simple_network"):
        assert f"**{preset}**" in text
    assert "Reproduction of published results" in text


def test_make_ui_prints_the_runs_page_and_serves_the_ui(tmp_path):
    port = servers.free_port()
    store_uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.MlflowClient(store_uri).create_experiment("mnist-bench")
    proc = subprocess.Popen(
        documented("make ui", f"UI_STORE={store_uri}", f"UI_PORT={port}"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"MLflow runs: http://127.0.0.1:{port}/#/experiments/"), first
        assert first.strip().endswith("&workflowType=machine_learning"), first
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("make ui did not serve the MLflow UI")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


# --- the data commands


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_data_commands(data_root, tmp_path):
    ok(run_documented("mnist-bench-data verify --data-dir ../shared/data/mnist", cwd=ROOT,
                      replace={"../shared/data": str(data_root)}))  # fmt: skip
    info = ok(run_documented("mnist-bench-data info", cwd=tmp_path))
    assert "train: images (60000, 28, 28) uint8" in info.stdout
    ok(run_documented("mnist-bench-data show --out samples.png", cwd=tmp_path))
    assert (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"
    handler = functools.partial(QuietHandler, directory=str(data_root / "fashion-mnist"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"MNIST_BENCH_MIRRORS": f"http://127.0.0.1:{server.server_address[1]}/",
               "MNIST_BENCH_CACHE_DIR": str(tmp_path / "cache"), "MNIST_BENCH_DATA_DIR": ""}  # fmt: skip
        fetched = ok(run_documented("mnist-bench-data fetch --dataset fashion_mnist",
                                    cwd=tmp_path, env=env))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert str(tmp_path / "cache" / "fashion-mnist") in fetched.stdout
    assert len(list((tmp_path / "cache" / "fashion-mnist").glob("*.gz"))) == 4
