"""The real app in Chromium running the tiny model, and starting then cancelling a training job."""

from __future__ import annotations

import pytest

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels

from .browser import App, wait


@pytest.fixture
def app_with_model(demo, tmp_path, browser):
    from mcp_core.model import build_model

    home = tmp_path / "home"
    # trained at 128-pixel tiles, not the default 256: no page may need the user to type the tile size
    build_model("tiny", ["unassigned", "round", "elongated"], device="cpu", seed=0, bsize=128).save(
        home / "models" / "demo_tiny.pth")
    server = App(demo, home)
    server.login(browser)
    yield server
    server.stop()


def click_text(driver, text: str) -> None:
    driver.find_element("xpath", f"//*[normalize-space(text())={text!r}]").click()


def test_run_model_then_train_and_cancel(browser, app_with_model, demo, tmp_path):
    browser.get(app_with_model.url + "/trainer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    wait(browser, "document.body.innerText.includes('demo_tiny (user)')")  # picked as the user's own model
    click_text(browser, "Replace")
    seg = label_path(demo / "demo_01.tif")
    hand = load_labels(seg)
    click_text(browser, "Run model on this image")
    # the untrained model finds nothing: the hand labels stay as they were (no empty replacement is saved)
    wait(browser, "document.body.innerText.includes('0 objects found by demo_tiny')")
    assert (load_labels(seg).masks == hand.masks).all()
    browser.save_screenshot(str(tmp_path / "trainer_model_run.png"))
    # the training dialog: tiny is the base when the CellposeSAM weights are absent
    click_text(browser, "Train… (Shift+T)")
    wait(browser, "document.body.innerText.toLowerCase().includes('start training')")
    browser.save_screenshot(str(tmp_path / "train_dialog.png"))
    click_text(browser, "Start training")
    wait(browser, "document.body.innerText.includes('Training ')")
    wait(browser, "document.body.innerText.includes('running')")
    wait(browser, "document.querySelector('.nicegui-log .q-scrollarea__content > *')")  # the job logs
    click_text(browser, "Cancel")
    wait(browser, "document.body.innerText.includes('cancelled')")
    # the cancelled run's checkpoint is picked at once, marked as such (no reload)
    wait(browser, "document.body.innerText.includes('(user) · cancelled')")
    browser.save_screenshot(str(tmp_path / "train_cancelled.png"))
    models = list((tmp_path / "home" / "models").glob("*.pth"))
    assert len(models) == 2  # the demo model and the cancelled run's checkpoint
    # the ended panel: Cancel off, no ETA; its log lines wrap inside the panel
    cancel = browser.find_element("xpath", "//button[.//*[normalize-space(text())='Cancel']]")
    assert not cancel.is_enabled() or cancel.get_attribute("disabled")
    assert "ETA" not in browser.find_element("tag name", "body").text
    assert browser.execute_script(
        "const line = document.querySelector('.nicegui-log .q-scrollarea__content > *');"
        "return getComputedStyle(line).whiteSpace") == "pre-wrap"
    # the project's job history: state and model, kept on leaving the page and over a restart of the app
    model = next(m.stem for m in models if m.stem != "demo_tiny")
    entry = f"cancelled · {model}"
    wait(browser, f"document.body.innerText.includes({entry!r})")
    browser.get(app_with_model.url + "/")
    browser.get(app_with_model.url + "/trainer")
    wait(browser, f"document.body.innerText.includes({entry!r})")
    wait(browser, "document.body.innerText.includes('Training ')")
    app_with_model.stop()
    again = App(demo, tmp_path / "home")
    try:
        again.login(browser)
        browser.get(again.url + "/trainer")
        wait(browser, f"document.body.innerText.includes({entry!r})")
        # the model picker tells the cancelled run apart
        wait(browser, f"document.body.innerText.includes('{model} (user) · cancelled')")
    finally:
        again.stop()


def test_analyzer_runs_a_128_pixel_model_with_no_field_touched(browser, app_with_model, demo):
    browser.get(app_with_model.url + "/analyzer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    wait(browser, "document.body.innerText.includes('demo_tiny (user)')")
    click_text(browser, "This image")
    wait(browser, "document.body.innerText.includes('objects found')")
    assert "Segmentation failed" not in browser.find_element("tag name", "body").text
    # the untrained model finds nothing, so no empty prediction file is written
    assert not label_path(demo / "demo_01.tif", kind="pred").exists()
