"""The real app in Chromium at small windows: one-row toolbar, refit on resize, drawer toggles, help, keys."""

from __future__ import annotations

import pytest

from .browser import App, wait
from .test_browser import key

LOADED = "window.mcpCanvas && window.mcpLoadedAt"
#: True when every toolbar child sits on one row and inside the toolbar (nothing wrapped, nothing cut off).
ONE_ROW = """(() => {
const bar = document.querySelector('[data-mcp="toolbar"]');
const box = bar.getBoundingClientRect();
const kids = [...bar.children].map((e) => e.getBoundingClientRect()).filter((r) => r.width > 0);
return kids.every((r) => Math.abs(r.top + r.height / 2 - (box.top + box.height / 2)) < 12 && r.right <= box.right + 1)
  && box.height < 60;
})()"""
#: True when the whole image is inside the canvas's box and touches two of its sides (fitted).
FITTED = """(() => {
const c = window.mcpCanvas, v = c.viewState(), r = c.$refs.wrap.getBoundingClientRect();
const w = v.W * v.scale, h = v.H * v.scale;
return v.tx >= -1 && v.ty >= -1 && v.tx + w <= r.width + 1 && v.ty + h <= r.height + 1
  && (Math.abs(w - r.width) < 2 || Math.abs(h - r.height) < 2);
})()"""


def marked(driver, mark: str):
    """The element a ``data-mcp`` attribute names."""
    return driver.find_element("css selector", f'[data-mcp="{mark}"]')


@pytest.mark.parametrize("page", ["trainer", "analyzer"])
def test_toolbar_stays_one_row_and_the_image_refits_on_resize(browser, app, page):
    browser.set_window_size(1600, 1000)
    browser.get(f"{app.url}/{page}")
    wait(browser, LOADED)
    wait(browser, FITTED)
    before = browser.execute_script("return window.mcpCanvas.viewState().scale")
    browser.set_window_size(1024, 700)
    wait(browser, f"window.mcpCanvas.viewState().scale < {before} - 0.01")
    wait(browser, FITTED)
    assert browser.execute_script("return " + ONE_ROW)


def test_drawers_come_back_at_800_px(browser, app):
    browser.set_window_size(800, 700)
    browser.get(f"{app.url}/trainer")
    wait(browser, LOADED)
    for side, toggle, text in (("right", "toggle-right", "Run model on this image"),
                               ("left", "toggle-left", "demo_02")):
        shown = (f"(() => {{ const r = document.querySelector('.q-drawer--{side}').getBoundingClientRect(); "
                 "return r.right > 50 && r.left < window.innerWidth - 50; })()")
        # at this width the drawers lie over the page; a click beside one hides it
        browser.execute_script("document.querySelectorAll('.q-drawer__backdrop').forEach((b) => b.click())")
        wait(browser, "!" + shown)
        marked(browser, toggle).click()
        wait(browser, shown)
        assert text in browser.find_element("css selector", f".q-drawer--{side}").text


def test_help_overlay_lists_every_gesture_and_shift_t_trains(browser, app):
    from mcp_app.workspace import GESTURES

    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(f"{app.url}/trainer")
    wait(browser, LOADED)
    train = browser.find_element("xpath", "//button[.//*[normalize-space(text())='Train… (Shift+T)']]")
    ActionChains(browser).move_to_element(train).perform()  # its tooltip names both keys
    wait(browser, "[...document.querySelectorAll('.q-tooltip')].some((t) => t.innerText.includes("
                  "'Shift+T (Ctrl+T in the desktop window)'))")
    ActionChains(browser).move_by_offset(-400, 0).perform()
    overlay = "document.querySelector('[data-mcp=\"help-overlay\"]')"
    key(browser, "?")
    wait(browser, f"{overlay} && {overlay}.innerText.includes('Shift+T (Ctrl+T in the desktop window)')")
    text = browser.execute_script(f"return {overlay}.innerText")
    assert all(action in text and how.split(" ")[0] in text for action, how in GESTURES)
    key(browser, "ESCAPE")
    wait(browser, f"!{overlay}")
    marked(browser, "help").click()
    wait(browser, f"!!{overlay}")
    key(browser, "ESCAPE")
    wait(browser, f"!{overlay}")
    key(browser, "T", shift=True)  # a browser keeps Ctrl+T for a new tab
    wait(browser, "document.body.innerText.includes(\"Train a model on this folder's labels\")")


def test_an_empty_folder_says_how_to_add_images(browser, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    server = App(folder, tmp_path / "home2")
    try:
        server.login(browser)
        browser.get(f"{server.url}/trainer")
        wait(browser, "document.body.innerText.includes('This folder has no images yet')")
        assert "drop them onto this page" in marked(browser, "empty-folder").text
    finally:
        server.stop()
