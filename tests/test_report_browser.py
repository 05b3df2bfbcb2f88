"""The HTML report in a real browser (headless Chromium through Playwright), built from the
real tiny sweep of tests/test_report.py: what a reader sees, not what the markup claims."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.commands.report import main as report_main
from tests.expected import speed_sentence
from tests.test_app import runs_of
from tests.test_report import sweep_parent, tiny_sweep

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def page_of(tmp_path_factory):
    """A function: report.html opened at a viewport size; the report built once."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (CI installs it: apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    swept = tiny_sweep(tmp_path_factory)[0]
    parent = sweep_parent(swept)
    uri = f"sqlite:///{swept}/mlflow.db"
    sweep_id = parent.data.tags["sweep_id"]
    out = tmp_path_factory.mktemp("browser")
    args = ["--tracking-uri", uri, "--sweep-id", sweep_id, "--name", "b", "--out", str(out)]
    assert report_main(args) == 0
    html = out / "b" / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])

        def open_page(width: int, height: int = 900):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            return page

        open_page.parent = parent
        open_page.commit = next(
            r.data.tags["git_commit"] for r in runs_of(swept) if "git_commit" in r.data.tags
        )
        open_page.out = out
        yield open_page
        browser.close()


def test_every_image_loads(page_of):
    page = page_of(1440)
    widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) >= 4 and all(w > 0 for w in widths), widths


def test_no_horizontal_page_overflow_at_1000px(page_of):
    page = page_of(1000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1000
    # every table scrolls inside its own box, never the page
    unwrapped = page.evaluate(
        "[...document.querySelectorAll('table')].filter("
        "t => getComputedStyle(t.parentElement).overflowX !== 'auto').length"
    )
    assert unwrapped == 0


def test_first_screen_has_the_header_and_the_verdict(page_of, tmp_path):
    page = page_of(1440, 900)
    box = page.locator(".verdict").first.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, box
    first_line = page.locator(".verdict li").first.inner_text()
    assert first_line == speed_sentence(page_of.parent.info.run_id, "numpy", "tf_tape")
    header = page.locator("header").inner_text()
    tags = page_of.parent.data.tags
    assert tags["sweep_id"] in header and page_of.commit[:12] in header
    assert "mnist-bench -m implementation=numpy,tf_tape,keras seed=0,1" in header
    page.screenshot(path=str(tmp_path / "first_screen.png"))
    keep = page_of.out / "first_screen.png"
    shutil.copy(tmp_path / "first_screen.png", keep)
    assert keep.stat().st_size > 0


@pytest.mark.parametrize("width", [1000, 560])
def test_commands_wrap_only_at_spaces(page_of, width):
    page = page_of(width)
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    # a token broken across lines has more than one line box
    broken = page.evaluate(
        "[...document.querySelectorAll('pre.cmd span')]"
        ".filter(s => s.getClientRects().length > 1).map(s => s.textContent)"
    )
    wrapped = page.evaluate(
        "[...document.querySelectorAll('pre.cmd')].filter(p => p.clientHeight > 40).length"
    )
    assert broken == []  # a command that wraps does so at its spaces only
    assert wrapped > 0 or width > 600  # at a phone's width the long ones do wrap
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_appendix_is_collapsed(page_of):
    page = page_of(1440)
    details = page.locator("#appendix details")
    assert details.count() == 4  # no config ran twice: no determinism section
    assert all(not details.nth(i).get_attribute("open") for i in range(details.count()))
    assert not page.locator("#appendix details table").first.is_visible()


def test_a_phone_shows_the_verdict_and_each_rows_speed_without_scrolling(page_of, tmp_path):
    """At 420 px the verdict box fits the width, and the key table's first columns (the
    implementation, its speed and steady epoch) are in view; a table that scrolls says so."""
    page = page_of(420, 800)
    box = page.locator(".verdict").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 420, box
    assert page.locator(".verdict li").first.is_visible()
    key = page.locator("table", has=page.locator("th", has_text="steady epoch")).first
    key.scroll_into_view_if_needed()
    headers = key.locator("th").all_inner_texts()
    assert headers[:3] == ["implementation", "speed", "steady epoch [95% CI]"], headers
    for cell in key.locator("tbody tr").first.locator("td").all()[:3]:
        right = cell.bounding_box()
        assert right["x"] >= 0 and right["x"] + right["width"] <= 420, right
    hint = page.evaluate("getComputedStyle(document.querySelector('.scroll'), '::before').content")
    assert "scroll sideways" in hint
    assert page.evaluate("document.documentElement.scrollWidth") <= 420
    page.screenshot(path=str(tmp_path / "phone.png"))
    shutil.copy(tmp_path / "phone.png", page_of.out / "phone.png")


def test_a_wide_screen_shows_the_whole_first_row_and_no_scroll_hint(page_of):
    """At 1440 px the verdict's first sentence and the key table's first row are in view
    without scrolling, and the narrow screens' "scroll sideways" hint is not shown."""
    page = page_of(1440, 900)
    assert page.locator(".verdict li").first.is_visible()
    key = page.locator("table", has=page.locator("th", has_text="steady epoch")).first
    key.scroll_into_view_if_needed()
    for cell in key.locator("tbody tr").first.locator("td").all():
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1440, box
    hint = key.evaluate("t => getComputedStyle(t.parentElement, '::before').content")
    assert hint in ("none", "normal"), hint  # it fits: no hint
