"""The real app in headless Chromium: draw, delete, lasso, assign, undo, navigate; a screenshot per page."""

from __future__ import annotations

import math

import numpy as np

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels

from .browser import until, wait

CTRL, SHIFT = 2, 8


def mouse(driver, kind: str, xy, button: str = "left", modifiers: int = 0) -> None:
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", {
        "type": kind, "x": float(xy[0]), "y": float(xy[1]), "button": button, "modifiers": modifiers,
        "buttons": {"left": 1, "right": 2, "none": 0}[button] if kind != "mouseReleased" else 0, "clickCount": 1})


def screen_xy(driver, x: float, y: float):
    return driver.execute_script(f"return window.mcpCanvas.toScreen({x}, {y})")


def click(driver, x, y, modifiers=0):
    p = screen_xy(driver, x, y)
    mouse(driver, "mouseMoved", p, "none", modifiers)
    mouse(driver, "mousePressed", p, "left", modifiers)
    mouse(driver, "mouseReleased", p, "left", modifiers)


def draw_contour(driver, cx, cy, r, n=24):
    """Right-click, trace a circle without holding a button, come back to the start."""
    start = screen_xy(driver, cx + r, cy)
    mouse(driver, "mouseMoved", start, "none")
    mouse(driver, "mousePressed", start, "right")
    mouse(driver, "mouseReleased", start, "right")
    for k in range(1, n + 1):
        a = 2 * math.pi * k / n
        mouse(driver, "mouseMoved", screen_xy(driver, cx + r * math.cos(a), cy + r * math.sin(a)), "none")


def drag(driver, points, button="left"):
    pts = [screen_xy(driver, x, y) for x, y in points]
    mouse(driver, "mouseMoved", pts[0], "none")
    mouse(driver, "mousePressed", pts[0], button)
    for p in pts[1:]:
        mouse(driver, "mouseMoved", p, button)
    mouse(driver, "mouseReleased", pts[-1], button)


def key(driver, k: str, ctrl=False, shift=False):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    chain = ActionChains(driver)
    mods = ([Keys.CONTROL] if ctrl else []) + ([Keys.SHIFT] if shift else [])
    for m in mods:
        chain.key_down(m)
    chain.send_keys(getattr(Keys, k) if len(k) > 1 else k)
    for m in reversed(mods):
        chain.key_up(m)
    chain.perform()


def navigate(driver, k: str, title: str) -> None:
    """Press an arrow key and wait until the canvas shows the new item (title and label buffer)."""
    loaded = driver.execute_script("return window.mcpLoadedAt")
    key(driver, k)
    wait(driver, f"document.body.innerText.includes({title!r}) && window.mcpLoadedAt !== {loaded!r}")


def pick_tool(driver, label: str, tool: str) -> None:
    """Click a toolbar tool and wait until the canvas has it (the choice makes a round trip to the server)."""
    driver.find_element("xpath", f"//*[normalize-space(text())={label!r}]").click()
    wait(driver, f"window.mcpCanvas.tool === {tool!r}")


def open_page(driver, url):
    driver.get(url)
    wait(driver, "window.mcpCanvas && window.mcpLoadedAt")


def seg_of(demo, name):
    return label_path(demo / name)


def test_trainer_draw_delete_lasso_assign_undo_navigate(browser, app, demo, tmp_path):
    open_page(browser, app.url + "/trainer")
    browser.save_screenshot(str(tmp_path / "trainer.png"))
    # 1. contour on demo_02 (unlabelled): navigate with the arrow key first
    navigate(browser, "ARROW_RIGHT", "demo_02.tif (2/3)")
    seg = seg_of(demo, "demo_02.tif")
    draw_contour(browser, 48, 48, 15)
    until(lambda: seg.exists() and load_labels(seg).count == 1)
    ls = load_labels(seg)
    area = (ls.masks == 1).sum()
    assert abs(area - math.pi * 15 ** 2) / (math.pi * 15 ** 2) < 0.15
    assert ls.classes.tolist() == [0, 1]  # the current class
    # 2. back to demo_01 (labelled): delete, assign, lasso, undo
    navigate(browser, "ARROW_LEFT", "demo_01.tif (1/3)")
    seg = seg_of(demo, "demo_01.tif")
    before = load_labels(seg)
    ys, xs = np.nonzero(before.masks)
    target = int(before.masks[ys[len(ys) // 2], xs[len(xs) // 2]])
    ty, tx = np.argwhere(before.masks == target).mean(axis=0)
    click(browser, tx, ty, CTRL)
    until(lambda: target not in load_labels(seg).ids)
    other = int(next(i for i in before.ids if i != target and before.classes[i] == 2))
    oy, ox = np.argwhere(before.masks == other).mean(axis=0)
    click(browser, ox, oy, SHIFT)  # assign the current class (1)
    until(lambda: load_labels(seg).classes[other] == 1)
    pick_tool(browser, "Lasso delete", "lasso")
    drag(browser, [(1, 1), (95, 1), (95, 95), (1, 95), (1, 2)])
    until(lambda: load_labels(seg).count == 0)
    for _ in range(3):
        key(browser, "z", ctrl=True)
    until(lambda: load_labels(seg).count == before.count)
    after = load_labels(seg)
    np.testing.assert_array_equal(after.masks, before.masks)
    np.testing.assert_array_equal(after.classes, before.classes)
    key(browser, "z", ctrl=True, shift=True)  # redo the deletion
    until(lambda: target not in load_labels(seg).ids)
    key(browser, "t", ctrl=True)  # Ctrl+T opens the training dialog
    wait(browser, "document.body.innerText.toLowerCase().includes('start training')")
    key(browser, "ESCAPE")
    latency = browser.execute_script("return window.mcpLatency")
    assert len(latency) >= 4
    browser.save_screenshot(str(tmp_path / "trainer_after.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, errors


def test_eraser_split_and_brush_keys(browser, app, demo):
    open_page(browser, app.url + "/trainer")
    seg = seg_of(demo, "demo_01.tif")
    before = load_labels(seg)
    target = int(np.bincount(before.masks.ravel())[1:].argmax() + 1)  # the largest mask
    ys, xs = np.nonzero(before.masks == target)
    cy, cx = ys.mean(), xs.mean()
    # split: a line across the mask through its centre, perpendicular to its long axis
    cov = np.cov(np.stack([xs - cx, ys - cy]))
    major = np.linalg.eigh(cov)[1][:, -1]
    normal = np.array([-major[1], major[0]])
    pick_tool(browser, "Split", "split")
    ends = [(cx + t * normal[0], cy + t * normal[1]) for t in (-20, 20)]
    drag(browser, [ends[0], ((ends[0][0] + ends[1][0]) / 2, (ends[0][1] + ends[1][1]) / 2), ends[1]])
    until(lambda: load_labels(seg).count == before.count + 1)
    # eraser: '.' grows the brush, then a stroke clears pixels
    pick_tool(browser, "Eraser", "eraser")
    size = browser.execute_script("return window.mcpCanvas.brush")
    browser.execute_script("window.mcpCanvas.$refs.wrap.focus()")
    key(browser, ".")
    wait(browser, f"window.mcpCanvas.brush > {size}")
    area = (load_labels(seg).masks > 0).sum()
    drag(browser, [(cx - 10, cy), (cx + 10, cy)])
    until(lambda: (load_labels(seg).masks > 0).sum() < area)


def test_every_page_renders(browser, app, tmp_path):
    for path, text in (("/", "Analyzer"), ("/trainer", "Classes"), ("/analyzer", "Promote to labels")):
        browser.get(app.url + path)
        wait(browser, f"document.body.innerText.includes({text!r})")
        if path != "/":
            wait(browser, "window.mcpLoadedAt")
        browser.save_screenshot(str(tmp_path / f"page{path.replace('/', '_') or '_home'}.png"))
        assert (tmp_path / f"page{path.replace('/', '_') or '_home'}.png").stat().st_size > 10_000


def test_analyzer_measure_plugin_and_download_csv(browser, app, demo, tmp_path):
    import pandas as pd

    browser.get(app.url + "/analyzer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    browser.find_element("xpath", "//*[normalize-space(text())='predictions (_pred.npy)']").click()
    browser.find_element("xpath", "//*[normalize-space(text())='labels (_seg.npy)']").click()
    buttons = browser.find_elements("xpath", "//*[normalize-space(text())='Whole folder']")
    buttons[-1].click()  # the measurement one (the first runs the model)
    wait(browser, "document.body.innerText.includes('objects in 1 image(s)')")
    browser.save_screenshot(str(tmp_path / "analyzer_measured.png"))
    browser.find_element("xpath", "//*[normalize-space(text())='CSV']").click()
    csv = until(lambda: next(iter((tmp_path / "downloads").glob("*.csv")), None))
    n_rows = until(lambda: _rows_when_complete(csv, pd))
    assert n_rows == load_labels(seg_of(demo, "demo_01.tif")).count


def _rows_when_complete(path, pd) -> int | None:
    try:
        return len(pd.read_csv(path))
    except Exception:  # still being written
        return None
