"""The real app in Chromium: seeing masks and classes (colours, opacity, outlines, counts, contrast, readout)
and the Analyzer's results panel (column chooser, plots in class colours, tooltips)."""

from __future__ import annotations

import colorsys
import re

import numpy as np
from scipy import ndimage

from mcp_core.filenames import label_path
from mcp_core.io import read_frame
from mcp_core.labels import load_labels, save_labels

from .browser import wait
from .test_browser import mouse
from .test_browser_jobs import click_text
from .test_browser_layout import LOADED, marked


def interior_pixel(labels) -> tuple[int, int, int]:
    """(x, y, id) of a mask pixel whose 4 neighbours belong to the same mask (drawn as fill, not edge)."""
    m = labels.masks
    same = np.ones(m.shape, bool)
    for axis in (0, 1):
        for shift in (1, -1):
            same &= np.roll(m, shift, axis) == m
    inside = ndimage.binary_erosion(same & (m > 0), iterations=2)
    y, x = np.argwhere(inside)[len(np.argwhere(inside)) // 2]
    return int(x), int(y), int(m[y, x])


def hue_distance(hex_color: str, hue_degrees: float) -> float:
    r, g, b = (int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, _, s = colorsys.rgb_to_hls(r, g, b)
    d = abs(h * 360 - hue_degrees) % 360
    return min(d, 360 - d) if s > 0.2 else 180.0


def test_masks_stand_out_and_their_display_is_adjustable(browser, app, demo):
    browser.set_window_size(1600, 1000)
    browser.get(app.url + "/trainer")
    wait(browser, LOADED)
    truth = load_labels(label_path(demo / "demo_01.tif"))
    image = read_frame(demo / "demo_01.tif")

    # class colours stay clear of the channels' red, green and blue
    for color in truth.class_colors[1:]:
        assert min(hue_distance(color, h) for h in (0, 120, 240)) >= 30, color
    palette = browser.execute_script("return window.mcpCanvas.palette")
    assert [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in palette[1:]] == [c.lower() for c in truth.class_colors[1:]]

    # the class list counts the masks of each class, and the swatch opens a colour picker
    counts = np.bincount(truth.classes[truth.ids], minlength=len(truth.class_names))
    for cid in (1, 2):
        wait(browser, f"document.querySelector('[data-mcp=\"count-{cid}\"]').innerText.trim() === '{counts[cid]}'")
    marked(browser, "swatch-1").click()
    wait(browser, "!!document.querySelector('.q-color-picker')")
    browser.find_element("tag name", "body").send_keys("\ue00c")  # Escape closes it

    # fill or outline, and the overlay's opacity
    x, y, mask_id = interior_pixel(truth)
    alpha = f"window.mcpCanvas.ovData.data[({y} * window.mcpCanvas.W + {x}) * 4 + 3]"
    assert browser.execute_script(f"return {alpha}") > 0
    marked(browser, "display").click()
    click_text(browser, "Outline")
    wait(browser, f"window.mcpCanvas.outline === true && {alpha} === 0")
    slider = marked(browser, "opacity")
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(slider, -slider.size["width"] // 2 + 10, 0).click().perform()
    wait(browser, "window.mcpCanvas.opacity < 0.1")

    # contrast limits typed as numbers are applied by the browser to the raw channel (no image refetch)
    i = y * image.shape[1] + x
    value = float(image[y, x, 0])
    low = browser.execute_script("return window.mcpCanvas.display.low[0]")
    high = (value + low) / 2 + 1
    box = marked(browser, "high-0")  # Quasar puts the attribute on the <input> itself
    box.send_keys("\ue009a")  # Ctrl+A
    box.send_keys(f"{high}\ue004")  # then Tab
    expected = int(np.clip(round((value - low) * 255 / (high - low)), 0, 255))
    pixel = f"window.mcpCanvas.imgData.data[{i} * 4]"
    wait(browser, f"Math.abs({pixel} - {expected}) <= 1 && window.mcpCanvas.display.high[0] === {high}")
    marked(browser, "auto-contrast").click()
    wait(browser, f"window.mcpCanvas.display.high[0] !== {high}")
    fetched = "performance.getEntriesByType('resource').filter((e) => e.name.includes('pixels.bin')).length"
    assert browser.execute_script(f"return {fetched}") == 1

    # what is under the cursor: position, each channel's value, mask id and class
    browser.find_element("tag name", "body").send_keys("\ue00c")
    xy = browser.execute_script(f"return window.mcpCanvas.toScreen({x + 0.5}, {y + 0.5})")
    mouse(browser, "mouseMoved", xy, "none")
    values = "  ".join(f"ch{c} {int(image[y, x, c])}" for c in range(image.shape[2]))
    name = truth.class_names[truth.classes[mask_id]]
    readout = f"x {x}  y {y}  {values}  mask {mask_id}  {name}"
    wait(browser, f"document.querySelector('.mcp-readout').textContent === {readout!r}")
    header = browser.find_element("css selector", ".q-header").rect
    mouse(browser, "mouseMoved", (header["x"] + 5, header["y"] + 5), "none")  # off the canvas: nothing to read
    wait(browser, "document.querySelector('.mcp-readout').textContent === ''")


def test_analyzer_results_have_their_own_panel(browser, app, demo):
    truth = load_labels(label_path(demo / "demo_01.tif"))
    save_labels(label_path(demo / "demo_01.tif", kind="pred"), truth, image_path=demo / "demo_01.tif")
    browser.set_window_size(1600, 1000)
    browser.get(app.url + "/analyzer")
    wait(browser, LOADED)
    assert "Diameter (0 = the model's own)" in browser.find_element("tag name", "body").text
    marked(browser, "measure-image").click()
    wait(browser, f"document.body.innerText.includes('{truth.count} objects in 1 image(s)')")

    panel = marked(browser, "bottom-panel")
    assert panel.find_elements("css selector", ".q-table") and panel.find_elements("css selector", "[data-mcp=scatter]")
    drawer = browser.find_element("css selector", ".q-drawer--right")
    assert not drawer.find_elements("css selector", ".q-table")

    # the panel's height is dragged at the bar above it
    pane = "document.querySelector('[data-mcp=\"splitter\"] > .q-splitter__after').getBoundingClientRect().height"
    height = browser.execute_script(f"return {pane}")
    from selenium.webdriver.common.action_chains import ActionChains

    bar = browser.find_element("css selector", "[data-mcp=splitter] > .q-splitter__separator")
    ActionChains(browser).drag_and_drop_by_offset(bar, 0, -150).perform()
    wait(browser, f"{pane} > {height + 100}")

    # the column chooser offers every column; picking one shows it
    headers = "[...document.querySelectorAll('[data-mcp=\"bottom-panel\"] .q-table th')]"
    headers += ".map((t) => t.innerText.replace('arrow_upward', '').trim())"  # without the sort icon's name
    shown = browser.execute_script(f"return {headers}")
    marked(browser, "columns").click()
    options = wait(browser, "[...document.querySelectorAll('.q-menu .q-item')].map((o) => o.innerText.trim())")
    hidden = [o for o in options if o not in shown]
    assert len(options) > len(shown) and hidden
    click_text(browser, hidden[-1])
    wait(browser, f"{headers}.includes({hidden[-1]!r})")
    browser.find_element("tag name", "body").send_keys("\ue00c")

    # plots in the canvas's class colours; a point's tooltip names image, frame and mask with rounded values
    chart = ("getElement(document.querySelector('[data-mcp=\"scatter\"]').id.slice(1)).chart")
    series = wait(browser, f"{chart}.getOption().series.map((s) => [s.name, s.color])")
    colors = dict(zip(truth.class_names, truth.class_colors))
    assert series and all(color == colors[name] for name, color in series)
    browser.execute_script(f"{chart}.dispatchAction({{type: 'showTip', seriesIndex: 0, dataIndex: 0}})")
    tip = wait(browser, "[...document.querySelectorAll('[data-mcp=\"scatter\"] div')].map((d) => d.innerText)"
                        ".find((t) => t.includes('mask '))")
    assert "demo_01.tif · single frame · mask " in tip
    values = [line.rsplit(": ", 1)[1] for line in tip.split("mask ", 1)[1].splitlines()[1:]]
    assert len(values) == 2, tip
    assert all(re.fullmatch(r"-?\d+(\.\d+)?(e[-+]\d+)?", v) for v in values)
    assert all(len(v.split("e")[0].replace("-", "").replace(".", "").lstrip("0")) <= 4 for v in values)


def test_a_folder_measurement_says_once_what_it_skipped(browser, app, demo):
    truth = load_labels(label_path(demo / "demo_01.tif"))
    save_labels(label_path(demo / "demo_01.tif", kind="pred"), truth, image_path=demo / "demo_01.tif")
    browser.get(app.url + "/analyzer")
    wait(browser, LOADED)
    marked(browser, "measure-folder").click()
    wait(browser, f"document.body.innerText.includes('{truth.count} objects in 1 image(s)')")
    toasts = wait(browser, "[...document.querySelectorAll('.q-notification')].map((n) => n.innerText)"
                           ".filter((t) => t.toLowerCase().includes('skipped'))")
    assert len(toasts) == 1 and "2 skipped" in toasts[0]
    assert "demo_02.tif" in toasts[0] and "demo_03.tif" in toasts[0]
