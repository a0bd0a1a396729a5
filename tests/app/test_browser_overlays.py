"""Plugin overlays in headless Chromium: draw an object, measure this image, see the perimeter band, toggle it off."""

from __future__ import annotations

from .browser import wait
from .test_browser import draw_contour

# RGBA of the view canvas at image point (x, y)
PIXEL = ("const c = window.mcpCanvas; return Array.from(c.$refs.view.getContext('2d').getImageData("
         "Math.floor(c.tx + {x} * c.scale), Math.floor(c.ty + {y} * c.scale), 1, 1).data)")


def test_analyzer_draws_and_toggles_plugin_overlays(browser, app, tmp_path):
    browser.get(app.url + "/analyzer")
    wait(browser, "window.mcpCanvas && window.mcpLoadedAt")
    draw_contour(browser, 48, 48, 20)  # a disc of radius 20 in the 96x96 image: a new mask in the predictions
    wait(browser, "window.mcpCanvas.labels[48 * window.mcpCanvas.W + 48] > 0")
    browser.find_element("xpath", "//*[normalize-space(text())='Perimeter intensity']").click()
    buttons = browser.find_elements("xpath", "//*[normalize-space(text())='This image']")
    buttons[-1].click()  # the measurement one (the first runs the model)
    wait(browser, "window.mcpCanvas.pluginLayers.length > 0")
    assert browser.execute_script("return window.mcpCanvas.pluginLayers.map(l => l.kind)") == ["labels"]
    # the disc's right edge (its 1-pixel perimeter) is drawn over; its centre is not
    right = browser.execute_script("const c = window.mcpCanvas; let r = 0; "
                                   "for (let i = 0; i < c.W; i++) if (c.labels[48 * c.W + i] > 0) r = i; return r")
    edge, centre = {"x": right + 0.5, "y": 48.5}, {"x": 48.5, "y": 48.5}  # the disc's last pixel on row 48
    edge_on, centre_on = (browser.execute_script(PIXEL.format(**p)) for p in (edge, centre))
    browser.save_screenshot(str(tmp_path / "analyzer_overlay.png"))
    browser.find_element("xpath", "//*[normalize-space(text())='perimeter_intensity']").click()  # the toggle
    wait(browser, "window.mcpCanvas.pluginLayers.length === 0")
    edge_off, centre_off = (browser.execute_script(PIXEL.format(**p)) for p in (edge, centre))
    assert edge_on != edge_off and centre_on == centre_off
