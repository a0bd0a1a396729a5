"""Edits the page draws itself before the server answers: what it draws equals what the server makes of the edit,
the server's patch wins where they differ, and an edit the server refuses or fails on leaves the page as the server."""

from __future__ import annotations

import numpy as np

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels

from .browser import until, wait
from .test_browser import CTRL, SHIFT, click, draw_contour, drag, mouse, open_page, pick_tool, screen_xy

#: The canvas keeps the server's patches instead of applying them (``RELEASE`` applies them, in order).
HOLD = """const c = window.mcpCanvas; window.mcpHeld = []; c.heldApply = c.applyPatch;
c.applyPatch = (p) => { window.mcpHeld.push(p); return true; };"""
RELEASE = """const c = window.mcpCanvas; c.applyPatch = c.heldApply;
for (const p of window.mcpHeld.splice(0)) c.applyPatch(p);"""


def page_state(browser) -> tuple[np.ndarray, np.ndarray]:
    """The page's label ids (96x96) and class table."""
    ids, classes = browser.execute_script(
        "const c = window.mcpCanvas; return [Array.from(c.labels), Array.from(c.classes)]")
    return np.array(ids).reshape(96, 96), np.array(classes)


def assert_page_is(browser, path) -> None:
    """The page's labels and class table are the saved ones, and its overlay is what they paint."""
    ids, classes = page_state(browser)
    saved = load_labels(path)
    np.testing.assert_array_equal(ids, saved.masks)
    np.testing.assert_array_equal(classes, saved.classes)
    assert browser.execute_script("""
        const c = window.mcpCanvas, before = Uint32Array.from(new Uint32Array(c.ovData.data.buffer));
        c.renderBox(0, 0, c.W, c.H);
        const after = new Uint32Array(c.ovData.data.buffer);
        return before.every((v, i) => v === after[i]);""")


def held_edit(browser, path, make, saved) -> None:
    """Make an edit while the server's patch is held: once the patch is there, the page (its own drawing) must already
    equal the labels saved in *path* (*saved*: a condition on them that tells the edit is saved); then the patch is
    released."""
    corrected = browser.execute_script("return window.mcpCorrected")
    browser.execute_script(HOLD)
    make()
    wait(browser, "window.mcpHeld.length === 1")
    until(lambda: saved(load_labels(path)), what="the edit saved")
    assert_page_is(browser, path)
    browser.execute_script(RELEASE)
    assert browser.execute_script("return window.mcpCorrected") == corrected  # the patch changed nothing
    assert browser.execute_script("return window.mcpCanvas.unconfirmed.length") == 0


def contour_by_clicks(browser, points) -> None:
    """A contour through *points* (image pixels), begun and closed by right-clicks."""
    for k, (x, y) in enumerate(points):
        xy = screen_xy(browser, x, y)
        mouse(browser, "mouseMoved", xy, "none")
        if k in (0, len(points) - 1):
            mouse(browser, "mousePressed", xy, "right")
            mouse(browser, "mouseReleased", xy, "right")


def test_the_page_draws_each_edit_as_the_server_makes_it(browser, app, demo):
    open_page(browser, app.url + "/trainer")
    path = label_path(demo / "demo_01.tif")
    count = load_labels(path).count
    # a contour around masks: the new one takes the free pixels between them; another over the image's edges
    held_edit(browser, path, lambda: draw_contour(browser, 47.3, 48.6, 29.7), lambda s: s.count == count + 1)
    held_edit(browser, path, lambda: draw_contour(browser, 10, 85, 12, n=11), lambda s: s.count == count + 2)
    masks = load_labels(path).masks
    gone = int(masks[masks > 0][len(masks[masks > 0]) // 3])
    y, x = np.argwhere(masks == gone).mean(axis=0)
    held_edit(browser, path, lambda: click(browser, x, y, CTRL), lambda s: gone not in s.ids)
    saved = load_labels(path)
    other = int(next(i for i in saved.ids if saved.classes[i] == 2))
    y, x = np.argwhere(saved.masks == other).mean(axis=0)
    held_edit(browser, path, lambda: click(browser, x, y, SHIFT), lambda s: s.classes[other] == 1)
    pick_tool(browser, "Lasso delete", "lasso")
    count = load_labels(path).count
    held_edit(browser, path, lambda: drag(browser, [(3.2, 2.7), (61.4, 5.1), (40.3, 70.8), (2.5, 50)]),
              lambda s: s.count < count)


def test_patches_of_earlier_edits_redo_the_later_ones_and_a_differing_patch_wins(browser, app, demo):
    open_page(browser, app.url + "/trainer")
    path = label_path(demo / "demo_01.tif")
    before = load_labels(path)
    browser.execute_script(HOLD)
    draw_contour(browser, 48, 48, 30)  # two edits before either patch: the first patch comes with the second drawn
    gone = int(before.ids[0])
    y, x = np.argwhere(before.masks == gone).mean(axis=0)
    click(browser, x, y, CTRL)
    wait(browser, "window.mcpHeld.length === 2")
    until(lambda: load_labels(path).count == before.count and gone not in load_labels(path).ids, what="both saved")
    browser.execute_script(RELEASE)
    assert_page_is(browser, path)
    # the page got a new mask wrong (a pixel of it left free): the server's patch puts it right
    browser.execute_script(HOLD)
    draw_contour(browser, 20, 80, 8)
    wait(browser, "window.mcpHeld.length === 1")
    until(lambda: load_labels(path).count == before.count + 1, what="the contour saved")
    corrected = browser.execute_script("""
        const c = window.mcpCanvas, i = c.labels.indexOf(c.classes.length - 1);
        c.labels[i] = 0;
        return window.mcpCorrected;""")
    browser.execute_script(RELEASE)
    assert browser.execute_script("return window.mcpCorrected") == corrected + 1
    assert_page_is(browser, path)


def test_a_refused_edit_is_taken_back_and_a_failed_one_fetches_the_labels_again(browser, app, demo):
    open_page(browser, app.url + "/trainer")
    path = label_path(demo / "demo_01.tif")
    saved = load_labels(path)
    some = int(np.bincount(saved.masks.ravel())[1:].argmax() + 1)  # the largest mask
    # the page deletes a mask but the server is asked to delete none: it refuses, the page takes the deletion back
    browser.execute_script("const c = window.mcpCanvas; "
                           f"c.optimistic('delete', {{ ids: [0] }}, () => c.deleteIds([{some}]))")
    wait(browser, "window.mcpCanvas.unconfirmed.length === 0")
    assert_page_is(browser, path)
    # a contour inside one mask has no free pixel: nothing drawn, nothing made
    y, x = np.argwhere(saved.masks == some).mean(axis=0)
    contour_by_clicks(browser, [(x - 1.6, y - 1.4), (x + 1.5, y - 1.7), (x + 1.2, y + 1.3), (x - 1.5, y + 1.6)])
    wait(browser, "window.mcpCanvas.unconfirmed.length === 0")
    assert_page_is(browser, path)
    # a class the server does not have: the edit fails there, the page fetches the labels and classes again
    browser.execute_script(f"const c = window.mcpCanvas; c.optimistic('assign', {{ ids: [{some}], class_id: 99 }}, "
                           f"() => c.assignIds([{some}], 99))")
    wait(browser, "window.mcpCanvas.unconfirmed.length === 0 && !window.mcpCanvas.resyncing && "
                  f"window.mcpCanvas.classes[{some}] !== 99")
    assert_page_is(browser, path)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, errors
