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


def test_runs_page_lists_the_sweep_and_its_children(ui, tmp_path):
    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(runs_link(parent.info.experiment_id, base))
    page.get_by_text(parent.info.run_name).first.wait_for(timeout=SLOW)
    page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # expand
    page.get_by_text("numpy-s0", exact=True).first.wait_for(timeout=SLOW)
    assert page.get_by_text("keras-s1", exact=True).count() >= 1
    assert page.get_by_text("mnist 2000/5000/10000").count() >= 1  # the dataset column
    keep(page, swept, "ui_runs.png", tmp_path)


def test_parent_run_page_shows_the_verdicts(ui, tmp_path):
    base, swept, page = ui
    parent = sweep_parent(swept)
    page.goto(run_link(parent.info.experiment_id, parent.info.run_id, base))
    page.get_by_text("Verdicts").first.wait_for(timeout=SLOW)
    text = page.inner_text("body")
    assert f"Sweep {parent.data.tags['sweep_id']}" in text
    assert speed_sentence(parent.info.run_id, "numpy", "tf_tape") in text
    keep(page, swept, "ui_parent.png", tmp_path)


def test_child_run_page_has_its_description_and_an_image(ui, tmp_path):
    base, swept, page = ui
    child = next(r for r in runs_of(swept) if r.info.run_name == "numpy-s0")
    link = run_link(child.info.experiment_id, child.info.run_id, base)
    page.goto(link)
    page.get_by_text("test accuracy").first.wait_for(timeout=SLOW)
    keep(page, swept, "ui_child.png", tmp_path)
    page.goto(link.replace("?", "/artifacts/figures/confusion_matrix.png?"))
    page.get_by_text("figures/confusion_matrix.png").first.wait_for(timeout=SLOW)
    page.wait_for_function(  # the preview: the artifact fetched into a blob, decoded
        "[...document.images].some(i => i.src.startsWith('blob:') && i.naturalWidth > 100)",
        timeout=SLOW,
    )
    keep(page, swept, "ui_child_figure.png", tmp_path)
