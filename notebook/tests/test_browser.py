"""What JupyterLab shows of a `#pragma` cell, in a real browser: a live
panel in its own cell that a reload does not freeze, an ending with
buttons for what is left, the status table and the chart. Debian's
headless Chromium, driven by Selenium (the harness is browser.py);
screenshots in target/browser-artifacts/<test>/; skipped without Chromium
and chromedriver, except under CI."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from browser import (
    ARTIFACTS,
    Lab,
    Page,
    artifacts_for,
    chromium,
    jupyterlab,
    require_chromium,
    wait_until,
    write_notebook,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Iterator[Lab]:
    """One JupyterLab for the module's tests, its log in
    target/browser-artifacts/<module>/."""
    require_chromium()
    logs = artifacts_for(request.module.__name__)
    with jupyterlab(tmp_path_factory.mktemp("jupyterlab"), log=logs / "jupyterlab.log") as server:
        yield server


@pytest.fixture(scope="module")
def driver(lab, tmp_path_factory, request):
    """One browser for the module's tests, its driver's log next to
    JupyterLab's."""
    log = ARTIFACTS / request.module.__name__ / "chromedriver.log"
    with chromium(tmp_path_factory.mktemp("chromium"), log=log) as browser:
        yield browser


@pytest.fixture
def page(lab, driver, request) -> Iterator[Page]:
    """The test's page, its screenshots and the browser console's messages
    in target/browser-artifacts/<test>/, a last screenshot taken however
    the test ends; its kernels shut down after it."""
    the_page = Page(driver, lab, artifacts_for(request.node.name))
    try:
        yield the_page
    finally:
        the_page.screenshot("end")
        the_page.keep_console()
        the_page.close()


def click_when_settled(page: Page, index: int, label: str, shows: str) -> str:
    """Clicks the button `label` in cell `index`, again if the panel does
    not come to show `shows` (the ending's final rewrite re-renders the
    panel, and a click on the view it replaces is lost; applying twice
    is applying once); what the panel shows then."""
    for attempt in range(3):
        page.click_button_in_cell(index, label)
        try:
            return page.wait_for_progress(index, shows, timeout=10)
        except TimeoutError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def unanswered_widget_messages(lab: Lab) -> list[str]:
    """The kernel's complaints, in JupyterLab's log, of widget messages it
    sent to a subshell that is gone (the page's, after a reload)."""
    return [line for line in lab.log.read_text().splitlines() if "Unknown subshell_id" in line]


def dirty(page: Page) -> bool:
    """Whether JupyterLab counts the notebook as changed since its save."""
    return bool(page.js("return panel.context.model.dirty;"))


def test_a_repeat_cell_lives_through_a_reload_and_its_conflict_is_settled_by_a_button(page, lab):
    write_notebook(
        lab.root / "repeat.ipynb",
        [
            "%load_ext pragma_notebook",
            "x = 0\nnotes = 0",
            "#pragma repeat --iterations 8 --checkpoint-period 4 --max-by x\n"
            "import time\ntime.sleep(0.6)\nx = x + 1\nnotes = 1",
            "notes = 2",
            "%pragma wait",
            "print(x, notes)",
            "%pragma status",
            "%pragma report",
        ],
    )
    page.open("repeat.ipynb")
    page.run_cell_at(0)
    page.run_cell_at(1)
    page.run_cell_at(2)
    page.screenshot("submitted")
    # A live panel: the cell's label, a bar, the counts; a repeat's
    # progress moves per iteration, not only at its checkpoints (4, 8).
    between = page.wait_for_progress(2, r"\b[1-3]/8 iterations done")
    assert "In[3]" in between and "[progress " in between, between
    assert "running" in between, between
    page.screenshot("progress between checkpoints")
    page.run_cell_at(3)  # the notebook changes `notes` meanwhile

    # Saved, the notebook stays saved while the operation runs: progress
    # updates the widget's model in the kernel, not the cell's outputs.
    page.save()
    time.sleep(2)
    assert not dirty(page), "progress marked the notebook changed"
    # Reloaded mid-run, the page shows the live state again, and it goes
    # on moving (a saved snapshot would stay where it was).
    shown_at_reload = page.progress_text(2)
    page.reload()
    page.screenshot("reloaded")
    after = page.wait_for_progress(2, r"\b[5-8]/8 iterations done", unlike=shown_at_reload)
    assert "In[3]" in after, after
    page.screenshot("live after the reload")

    # The ending: the outcome as a table; in the panel what was applied
    # and, for the conflict, both values and a button each way.
    page.run_cell_at(4, timeout=120)
    outcome = page.wait_for_text(4, "left to settle")
    assert "applied" in outcome and "notes" in outcome, outcome
    ended = page.wait_for_progress(2, r"succeeded")
    assert "8/8 iterations done" in ended and "best 8 (iteration 7)" in ended, ended
    assert "applied: time, x" in ended, ended
    assert "notes, changed here meanwhile (background 1, here 2)" in ended, ended
    assert "%pragma apply op-" in ended and "--take-background notes" in ended, ended
    page.screenshot("ended with a conflict")
    settled = click_when_settled(page, 2, "take background", r"applied: time, x, notes")
    assert "take background" not in settled, settled
    assert not unanswered_widget_messages(lab), unanswered_widget_messages(lab)
    page.screenshot("conflict settled")
    page.run_cell_at(5)
    assert page.wait_for_text(5, "8 1", timeout=10).strip() == "8 1", page.cell_output_text(5)

    # `%pragma status`: a table of the kernel's operations.
    page.run_cell_at(6)
    table = page.wait_for_text(6, "succeeded")
    assert "cell" in table and "operation" in table and "In[3]" in table, table
    assert page.js(
        "return !!panel.content.widgets[6].node.querySelector('.jp-OutputArea-output table');"
    ), "the status is not an HTML table"
    page.screenshot("status table")
    # `%pragma report`: the chart.
    page.run_cell_at(7)
    wait_until(
        "the chart in the report's cell",
        lambda: page.js(
            "return panel.content.widgets[7].node.querySelector("
            "'.jp-OutputArea-output img, .jp-OutputArea-output svg');"
        ),
        30,
    )
    page.screenshot("report")


def test_a_cancel_says_what_it_kept_and_a_button_applies_it(page, lab):
    write_notebook(
        lab.root / "cancel.ipynb",
        [
            "%load_ext pragma_notebook",
            "x = 0",
            "#pragma repeat --iterations 60 --checkpoint-period 2 --max-by x\n"
            "import time\ntime.sleep(0.3)\nx = x + 1",
            "import time\ntime.sleep(2)\n%pragma cancel",
            "print(x > 0)",
        ],
    )
    page.open("cancel.ipynb")
    for index in range(3):
        page.run_cell_at(index)
    page.run_cell_at(3, timeout=60)
    said = page.wait_for_text(3, "cancelled")
    assert "is kept, not applied" in said and "%pragma apply op-" in said, said
    cancelled = page.wait_for_progress(2, r"cancelled")
    assert "kept: its best so far" in cancelled, cancelled
    page.screenshot("cancelled")
    click_when_settled(page, 2, "apply the best so far", r"applied: x")
    assert not unanswered_widget_messages(lab), unanswered_widget_messages(lab)
    page.screenshot("best applied")
    page.run_cell_at(4)
    assert page.wait_for_text(4, "True", timeout=10).strip() == "True"


def test_the_page_reads_a_widget_s_progress_and_clicks_its_button(page, lab):
    """The harness itself, on ipywidgets like those a progress display is
    made of: their text and bar read, a button clicked."""
    write_notebook(lab.root / "widgets.ipynb", ["import ipywidgets as widgets\nclicks = []"])
    page.open("widgets.ipynb")
    page.run_cell_at(0)
    shown = page.run_cell(
        "bar = widgets.IntProgress(value=3, max=8, description='op-1')\n"
        "button = widgets.Button(description='apply the best so far', tooltip='apply op-1')\n"
        "def clicked(_):\n"
        "    clicks.append(1)\n"
        "    bar.value = 8\n"
        "button.on_click(clicked)\n"
        "widgets.VBox([widgets.HBox([bar, widgets.HTML('running · 3/8 done')]), button])"
    )
    text = page.wait_for_progress(shown, r"\[progress ")
    page.screenshot("widgets")
    assert "op-1" in text and "3/8 done" in text and "[progress 37.5%]" in text, text
    page.click_button_in_cell(shown, "apply the best so far")
    assert "[progress 100%]" in page.wait_for_progress(shown, r"\[progress 100%\]"), text
    page.screenshot("clicked")
    count = page.run_cell("print(len(clicks))")
    assert page.wait_for_text(count, "1", timeout=10).strip() == "1"
