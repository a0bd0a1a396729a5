"""What an edit sends to the browser: a deletion names the cleared ids instead of sending the box's pixels."""

from __future__ import annotations

import numpy as np

from mcp_app.editor import Editor
from mcp_app.project import Item, Project
from mcp_core.synthetic import write_demo_project


def redraw(before: np.ndarray, patch) -> np.ndarray:
    """The browser's label buffer after *patch*, as label_canvas.js applies a ``cleared`` patch."""
    after = before.copy()
    box = after[patch.y:patch.y + patch.h, patch.x:patch.x + patch.w]
    box[np.isin(box, patch.cleared)] = 0
    return after


def test_a_deletion_sends_the_cleared_ids_and_the_browser_gets_the_same_labels(tmp_path):
    write_demo_project(tmp_path, n_images=1, n_labelled=1, shape=(96, 96))
    ed = Editor(Project.open(tmp_path))
    ed.open(Item(tmp_path / "demo_01.tif"))
    shown = ed.labels.masks.astype(np.uint32)
    ids = [int(i) for i in ed.labels.ids[:3]]
    patch = ed.delete(ids)
    assert patch.data == "" and patch.run_ids is None and patch.cleared == ids and patch.classes is not None
    np.testing.assert_array_equal(redraw(shown, patch), ed.labels.masks)
    lasso = ed.lasso([(0, 0), (95, 0), (95, 95), (0, 95)])  # everything left, by the lasso
    assert lasso.data == "" and sorted(lasso.cleared) == sorted(int(i) for i in np.unique(shown)[1:] if i not in ids)
    assert not ed.labels.masks.any()
    undo = ed.undo()  # an undo brings pixels back: they are sent
    assert undo.cleared is None and np.isin(undo.ids(), lasso.cleared).any()


def test_the_page_clears_a_deleted_mask_as_the_file_does(browser, app, demo):
    from mcp_core.filenames import label_path
    from mcp_core.labels import load_labels

    from .browser import until, wait
    from .test_browser import CTRL, click

    browser.get(app.url + "/trainer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    path = label_path(demo / "demo_01.tif")
    before = load_labels(path).masks
    gone = int(before[48, 48]) or int(np.unique(before)[1])
    y, x = np.argwhere(before == gone).mean(axis=0)
    click(browser, x, y, CTRL)
    until(lambda: not (load_labels(path).masks == gone).any(), what="the deletion saved")
    wait(browser, f"!window.mcpCanvas.labels.includes({gone})")
    shown = np.array(browser.execute_script("return Array.from(window.mcpCanvas.labels)")).reshape(before.shape)
    np.testing.assert_array_equal(shown, load_labels(path).masks)


def test_the_page_holds_the_saved_labels_after_a_contour_and_its_undo(browser, app, demo):
    """A new mask's box and an undo's box go to the page as runs of ids along the rows (canvas._wire)."""
    from mcp_core.filenames import label_path
    from mcp_core.labels import load_labels

    from .browser import until, wait
    from .test_browser import draw_contour, key

    browser.get(app.url + "/trainer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    path = label_path(demo / "demo_01.tif")
    count = load_labels(path).count
    shown = "Array.from(window.mcpCanvas.labels)"
    draw_contour(browser, 48, 48, 30)  # around masks: the new one takes the free pixels between them
    until(lambda: load_labels(path).count == count + 1, what="the new mask saved")
    saved = load_labels(path).masks
    new = int(saved.max())
    wait(browser, f"window.mcpCanvas.labels.includes({new})")
    np.testing.assert_array_equal(np.array(browser.execute_script(f"return {shown}")).reshape(saved.shape), saved)
    key(browser, "z", ctrl=True)
    until(lambda: load_labels(path).count == count, what="the undo saved")
    saved = load_labels(path).masks
    wait(browser, f"!window.mcpCanvas.labels.includes({new})")
    np.testing.assert_array_equal(np.array(browser.execute_script(f"return {shown}")).reshape(saved.shape), saved)
