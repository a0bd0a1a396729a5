"""Channel selection in Chromium: the Analyzer's segmentation form offers the open image's channels by name,
and the channels picked are what the segmentation job runs with."""

from __future__ import annotations

import json

from .browser import wait
from .test_browser_jobs import app_with_model, click_text  # noqa: F401 (app_with_model is a fixture)


# Click the Channels select once it is shown (the Advanced section unfolds first); true once clicked.
OPEN_CHANNELS = ("(() => { const label = Array.from(document.querySelectorAll('.q-field__label'))"
                 ".find(e => e.innerText.trim() === 'Channels'); const field = label && label.closest('.q-field');"
                 " if (!field || !field.offsetParent) return false;"
                 " field.querySelector('.q-field__control').click(); return true; })()")


def test_analyzer_segments_with_the_channels_picked(browser, app_with_model, tmp_path):
    browser.get(app_with_model.url + "/analyzer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    wait(browser, "document.body.innerText.includes('demo_tiny (user)')")
    click_text(browser, "Advanced")  # the segmentation form's advanced fields
    wait(browser, OPEN_CHANNELS)
    wait(browser, "document.querySelectorAll('.q-menu .q-item').length === 2")  # the demo images' 2 channels
    names = browser.execute_script("return Array.from(document.querySelectorAll('.q-menu .q-item'), e => e.innerText.trim())")
    assert names == ["channel 0", "channel 1"]
    browser.find_element("xpath", "//div[contains(@class, 'q-menu')]//*[normalize-space(text())='channel 1']").click()
    browser.find_element("tag name", "body").send_keys("\ue00c")  # Escape closes the list
    wait(browser, "!document.querySelector('.q-menu')")
    click_text(browser, "Whole folder")
    wait(browser, "document.body.innerText.includes('Segmentation finished')")
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "home" / "jobs").glob("*/job.json")]
    assert record["kind"] == "batch" and record["params"]["channels"] == [1]
