"""The MLflow UI in a real browser: a real `mlflow server` on 127.0.0.1 over the store of the
tiny sweep (tests/test_report.py's), headless Chromium on the runs page and on the parent and
child run pages: the verdicts are in the parent's description, the children are named by what
differs, an image artifact loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.tracking.ui import run_link, runs_link
from tests import servers
from tests.expected import speed_sentence
from tests.test_app import runs_of
from tests.test_report import sweep_parent, tiny_sweep

CHROMIUM = Path("/usr/bin/chromium")
SLOW = 180_000  # ms: the UI's first load on a busy 2-core machine


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(base URL, the sweep's store directory, a browser page) with a server over the store."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (CI installs it: apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    swept = tiny_sweep(tmp_path_factory)[0]
    store, artifacts = f"sqlite:///{swept}/mlflow.db", swept / "artifacts"
    with (
        servers.mlflow_server(store, artifacts, swept / "ui-server.log") as (base, _),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        yield base, swept, page
        browser.close()


def keep(page, swept: Path, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    shutil.copy(tmp_path / name, swept / name)  # beside the store, to look at after a run


def test_runs_page_opens_on_the_key_columns_grouped_by_implementation(ui, tmp_path):
    """The printed link, nothing configured: a group per implementation, its runs by name,
    the key final numbers as columns."""
    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(runs_link(parent.info.experiment_id, base))
    page.get_by_text("Group: numpy").first.wait_for(timeout=SLOW)
    assert page.get_by_text("Group: keras").count() >= 1
    page.get_by_text("numpy-s0", exact=True).first.wait_for(timeout=SLOW)
    headers = set(page.locator('[role="columnheader"]').all_inner_texts())
    assert {"final/test_accuracy", "final/steady_epoch_time_s", "seed"} <= headers, headers
    keep(page, swept, "ui_runs.png", tmp_path)


def sidebar_mode(page) -> str:
    """Which of MLflow's two modes the page is in, from the sidebar it draws."""
    page.get_by_text("Model training").first.wait_for(timeout=SLOW)
    return "genai" if page.get_by_text("Evaluation runs").count() else "model training"


def test_model_training_mode_holds_on_mlflows_own_links_once_chosen(ui, tmp_path):
    """docs/tracking-and-ui.md: MLflow 3.17 opens a link without `workflowType` (its own
    breadcrumbs, compare view, models) in GenAI mode until the browser has chosen Model
    training once; then every page stays there."""
    base, swept, page = ui
    parent = sweep_parent(swept)
    bare = run_link(parent.info.experiment_id, parent.info.run_id, base).split("?")[0]
    fresh = page.context.browser.new_page(viewport={"width": 1440, "height": 900})
    fresh.goto(bare)
    assert sidebar_mode(fresh) == "genai"  # MLflow's default: if this changes, so do the docs
    fresh.goto(bare)
    fresh.get_by_text("Model training").first.click()  # the one click the docs ask for
    fresh.wait_for_function("localStorage.getItem('mlflow.workflowType_v1') !== null")
    fresh.goto(bare)
    fresh.get_by_text("Description").first.wait_for(timeout=SLOW)
    assert sidebar_mode(fresh) == "model training"
    keep(fresh, swept, "ui_parent_bare_link.png", tmp_path)
    fresh.close()


def test_parent_run_page_shows_the_verdicts(ui, tmp_path):
    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(run_link(parent.info.experiment_id, parent.info.run_id, base))
    page.get_by_text("Verdicts").first.wait_for(timeout=SLOW)
    text = page.inner_text("body")
    assert f"Sweep {parent.data.tags['sweep_id']}" in text
    sentence = page.get_by_text(speed_sentence(parent.info.run_id, "numpy", "tf_tape")).first
    more = page.get_by_text("Show more").first  # the description's collapse
    if more.count():  # the verdict is shown above the fold of the collapsed description
        assert sentence.bounding_box()["y"] < more.bounding_box()["y"]
    assert sentence.is_visible()
    keep(page, swept, "ui_parent.png", tmp_path)


def test_child_run_page_has_its_description_its_model_and_an_image(ui, tmp_path):
    base, swept, page = ui
    child = next(r for r in runs_of(swept) if r.info.run_name == "numpy-s0")
    link = run_link(child.info.experiment_id, child.info.run_id, base)
    page.goto(link)
    page.get_by_text("test accuracy").first.wait_for(timeout=SLOW)
    page.get_by_text("Logged models (1)").first.wait_for(timeout=SLOW)  # the run's output
    assert page.get_by_text("numpy-s0", exact=True).count() >= 2  # the run and its model
    keep(page, swept, "ui_child.png", tmp_path)
    page.goto(link.replace("?", "/artifacts/figures/confusion_matrix.png?"))
    page.get_by_text("figures/confusion_matrix.png").first.wait_for(timeout=SLOW)
    page.wait_for_function(  # the preview: the artifact fetched into a blob, decoded
        "[...document.images].some(i => i.src.startsWith('blob:') && i.naturalWidth > 100)",
        timeout=SLOW,
    )
    keep(page, swept, "ui_child_figure.png", tmp_path)


def test_models_page_names_each_model_by_its_run(ui, tmp_path):
    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(
        f"{base}/#/experiments/{parent.info.experiment_id}/models?workflowType=machine_learning"
    )
    page.get_by_text("keras-s1", exact=True).first.wait_for(timeout=SLOW)
    assert page.get_by_text("numpy-s0", exact=True).count() >= 1
    assert page.get_by_text("model", exact=True).count() == 0  # no model named "model"
    keep(page, swept, "ui_models.png", tmp_path)


def test_chart_view_opens_on_the_epoch_curves_then_the_final_numbers(ui, tmp_path):
    """One section per metric prefix, in MLflow's order: the epoch curves first, the run's
    final numbers next, before the parent's one-bar verdict metrics."""
    import re

    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(runs_link(parent.info.experiment_id, base) + "&compareRunsMode=CHART")
    page.get_by_text("Add chart").first.wait_for(timeout=SLOW)  # a section's header
    headers = page.evaluate(  # each section's header reads "epoch(6)Add chart"
        "[...document.querySelectorAll('div')].map(d => d.textContent)"
        ".filter(t => /^[a-z]+\\(\\d+\\)Add chart$/.test(t))"
    )
    sections = list(dict.fromkeys(re.match(r"[a-z]+", h).group() for h in headers))
    assert sections[:2] == ["epoch", "final"], sections
    keep(page, swept, "ui_charts.png", tmp_path)
