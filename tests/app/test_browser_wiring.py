"""The real app in Chromium: what a folder segmentation and a promotion say and do when they end."""

from __future__ import annotations

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels
from mcp_core.labels.files import save_labels

from .browser import App, until, wait
from .test_browser_jobs import click_text


def test_promote_says_what_it_did(browser, app, demo):
    truth = load_labels(label_path(demo / "demo_01.tif"))
    save_labels(label_path(demo / "demo_02.tif", kind="pred"), truth, image_path=demo / "demo_02.tif")
    browser.get(app.url + "/analyzer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    click_text(browser, "Promote to labels")
    wait(browser, "document.body.innerText.includes('Promoted 1 prediction(s) to labels')")
    assert load_labels(label_path(demo / "demo_02.tif")).count == truth.count


def test_folder_segmentation_end_is_shown_and_reloads_the_open_image(browser, demo, tmp_path):
    from mcp_core.model import build_model

    home = tmp_path / "home"
    build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=0, bsize=128).save(
        home / "models" / "demo_tiny.pth")
    server = App(demo, home)
    try:
        server.login(browser)
        browser.get(server.url + "/analyzer")
        wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
        wait(browser, "document.body.innerText.includes('demo_tiny (user)')")
        loaded = browser.execute_script("return window.mcpLoadedAt")
        click_text(browser, "Whole folder")
        wait(browser, "document.body.innerText.includes('Segmentation finished: 3 prediction file(s) written')")
        wait(browser, f"window.mcpLoadedAt !== {loaded!r}")  # the open image came back from disk
        buttons = browser.find_elements("xpath", "//button[.//*[normalize-space(text())='Cancel']]")
        assert buttons and all(not b.is_enabled() or b.get_attribute("disabled") for b in buttons)
        assert "ETA" not in browser.find_element("tag name", "body").text
    finally:
        server.stop()
    until(lambda: label_path(demo / "demo_01.tif", kind="pred").exists())
