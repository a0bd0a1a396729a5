"""The real app in Chromium: what a folder segmentation and a promotion say and do when they end."""

from __future__ import annotations

import numpy as np

from mcp_core.filenames import label_path
from mcp_core.labels import load_labels
from mcp_core.labels.files import save_labels

from waiting import poll

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


def test_canvas_takes_keys_on_click_only_and_never_from_an_input(browser, app):
    from selenium.webdriver.common.action_chains import ActionChains

    from .test_browser import key, open_page

    open_page(browser, app.url + "/trainer")
    brush = browser.execute_script("return window.mcpCanvas.brush")
    field = browser.find_element("xpath", "//input[@aria-label='New class']")
    field.click()
    field.send_keys("fra")
    canvas = browser.find_element("css selector", ".mcp-canvas")
    ActionChains(browser).move_to_element(canvas).move_by_offset(20, 20).perform()  # hovering takes no focus
    field.send_keys("g.,f")  # canvas shortcuts: brush +/-, fit
    key(browser, "ARROW_RIGHT")  # the page's shortcut: next image
    assert browser.execute_script("return document.activeElement") == field
    assert field.get_attribute("value") == "frag.,f"
    assert browser.execute_script("return window.mcpCanvas.brush") == brush
    assert "demo_01.tif (1/3)" in browser.find_element("tag name", "body").text
    ActionChains(browser).move_to_element(canvas).click().perform()  # a click gives the canvas the keys
    assert browser.execute_script("return document.activeElement.classList.contains('mcp-canvas')")
    key(browser, ".")
    wait(browser, f"window.mcpCanvas.brush > {brush}")


def test_colour_mode_toggle_redraws_at_once(browser, app, demo):
    from .test_browser import open_page, screen_xy

    open_page(browser, app.url + "/trainer")
    from scipy import ndimage

    masks = load_labels(label_path(demo / "demo_01.tif")).masks
    y, x = np.unravel_index(ndimage.distance_transform_edt(masks == masks.max()).argmax(), masks.shape)  # inside
    sx, sy = screen_xy(browser, x + 0.5, y + 0.5)
    shown = ("var v = window.mcpCanvas.$refs.view, r = v.getBoundingClientRect();"
             f"return Array.from(v.getContext('2d').getImageData({sx} - r.left, {sy} - r.top, 1, 1).data)")
    before, scale = browser.execute_script(shown), browser.execute_script("return window.mcpCanvas.scale")
    by_instance = "//*[normalize-space(text())='By instance']"
    if not any(t.is_displayed() for t in browser.find_elements("xpath", by_instance)):  # in the Display menu
        browser.find_element("xpath", "//button[.//i[normalize-space(text())='tune']]").click()
    poll(lambda: [t for t in browser.find_elements("xpath", by_instance) if t.is_displayed()],
         "the By instance toggle")[0].click()
    wait(browser, "window.mcpCanvas.colorMode === 'instance'")
    poll(lambda: browser.execute_script(shown) != before, "the canvas to show the instance colours")
    assert browser.execute_script("return window.mcpCanvas.scale") == scale  # no zoom was needed


def test_first_save_does_not_move_the_canvas(browser, app, demo):
    from .test_browser import draw_contour, open_page

    open_page(browser, app.url + "/trainer")
    top = "return document.querySelector('.mcp-canvas').getBoundingClientRect().top"
    before = browser.execute_script(top)
    draw_contour(browser, 80, 15, 8)
    seg = label_path(demo / "demo_01.tif")
    count = load_labels(seg).count
    until(lambda: load_labels(seg).count == count + 1)
    wait(browser, "document.body.innerText.includes('Saved demo_01_seg.npy')")
    assert browser.execute_script(top) == before


ROW = "./ancestor::div[contains(@class, 'nicegui-row')][1]"  # a class's row in the class list


def _class_field(browser, name: str):
    return browser.execute_script(f"return [...document.querySelectorAll('input')].find(i => i.value === {name!r})")


def _project_classes(demo) -> list[str]:
    import json

    path = demo / "multicellpose.json"  # written at the first class change
    return [c["name"] for c in json.loads(path.read_text())["classes"]] if path.exists() else []


def test_class_rename_on_enter_reaches_files_and_project_chained_and_removal_undoes(browser, app, demo):
    from selenium.webdriver.common.keys import Keys

    from .test_browser import click, draw_contour, key, open_page

    open_page(browser, app.url + "/trainer")
    seg = label_path(demo / "demo_01.tif")
    truth = load_labels(seg)
    field = _class_field(browser, "round")
    for name in ("frag", "fragment", "debris"):  # Enter commits; the field keeps the focus for the next name
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(name, Keys.ENTER)
        until(lambda: _project_classes(demo) == [name, "elongated"])
        until(lambda: load_labels(seg).class_names == ["unassigned", name, "elongated"])
    count = load_labels(seg).count
    draw_contour(browser, 80, 15, 8)  # an edit in the open image: its save must keep the renamed list
    until(lambda: load_labels(seg).count == count + 1)
    assert load_labels(seg).class_names == ["unassigned", "debris", "elongated"]
    open_page(browser, app.url + "/trainer")  # a reload: the new name only, once
    names = browser.execute_script("return [...document.querySelectorAll('input')].map(i => i.value)")
    assert names.count("debris") == 1 and not {"round", "frag", "fragment"} & set(names)
    assert _project_classes(demo) == ["debris", "elongated"]
    # removing the class, then Ctrl+Z: the class and its masks' assignment come back
    row = _class_field(browser, "debris").find_element("xpath", ROW)
    row.find_element("xpath", ".//button[.//i[normalize-space(text())='delete']]").click()
    wait(browser, "document.body.innerText.includes('Remove class')")  # the confirmation (a round trip)
    click_text(browser, "Remove")
    until(lambda: _project_classes(demo) == ["elongated"])
    until(lambda: load_labels(seg).class_names == ["unassigned", "elongated"])
    click(browser, 1, 1)  # the canvas has the keys (an empty spot: selects nothing)
    key(browser, "z", ctrl=True)
    until(lambda: _project_classes(demo) == ["debris", "elongated"])
    until(lambda: load_labels(seg).class_names == ["unassigned", "debris", "elongated"])
    back = load_labels(seg)
    assert back.classes[: len(truth.classes)].tolist() == truth.classes.tolist()
    wait(browser, "[...document.querySelectorAll('input')].some(i => i.value === 'debris')")


SCATTER_POINT = """
for (const el of document.querySelectorAll('.nicegui-echart')) {
  const chart = getElement(el) && getElement(el).chart;
  const series = chart && chart.getOption().series;
  if (!series || !series.length || series[0].type !== 'scatter' || !series[0].data.length) continue;
  el.scrollIntoView({block: 'center'});
  const d = series[0].data[0], value = Array.isArray(d) ? d : d.value;
  const [px, py] = chart.convertToPixel({seriesIndex: 0}, value.slice(0, 2));
  const r = el.getBoundingClientRect();
  return [r.left + px, r.top + py];
}
return null;
"""


def test_analyzer_class_picker_per_class_summary_and_scatter_pick(browser, app, demo):
    from .test_browser import draw_contour, mouse, open_page

    open_page(browser, app.url + "/analyzer")
    # the class picked in the Analyzer's class list is the class of a mask drawn there
    row = _class_field(browser, "elongated").find_element("xpath", ROW)
    row.find_element("css selector", ".q-radio").click()
    pred = label_path(demo / "demo_01.tif", kind="pred")
    draw_contour(browser, 48, 48, 10)
    until(lambda: pred.exists() and load_labels(pred).count == 1)
    drawn = load_labels(pred)
    assert drawn.class_names[drawn.classes[1]] == "elongated"
    # "Per-class summary" over the folder's predictions (the one drawn): shown, and written into the project
    browser.execute_script("[...document.querySelectorAll('.q-checkbox')].find("
                           "c => c.innerText.includes('Per-class summary')).click()")
    browser.find_elements("xpath", "//*[normalize-space(text())='Whole folder']")[-1].click()
    wait(browser, "document.body.innerText.includes('objects in 1 image(s)')")
    until(lambda: (demo / "measurements" / "class_summary.csv").exists())
    wait(browser, "document.body.innerText.includes('class_summary')")
    # a click on a scatter point selects its object on the canvas
    xy = poll(lambda: browser.execute_script(SCATTER_POINT), "a scatter plot with points")
    mouse(browser, "mouseMoved", xy, "none")
    mouse(browser, "mousePressed", xy, "left")
    mouse(browser, "mouseReleased", xy, "left")
    picked = poll(lambda: browser.execute_script("return window.mcpCanvas.viewState().selection"),
                  "the picked object selected on the canvas")
    assert picked == [1]


def test_a_job_for_another_folder_stays_out_of_this_projects_trainer(browser, app, demo, tmp_path):
    from mcp_core.backend import LocalBackend
    from mcp_core.params import TrainParams
    from mcp_core.synthetic import write_demo_project

    from .test_browser import open_page

    other = tmp_path / "other"
    write_demo_project(other, n_images=2, n_labelled=2, shape=(96, 96))
    backend = LocalBackend(tmp_path / "home")  # the app's own job store
    job = backend.submit_training(other, TrainParams(model_name="elsewhere", base_model="tiny", epochs=500,
                                                     class_names=["unassigned", "round", "elongated"]))
    try:
        poll(lambda: backend.job(job.job_id).state == "running", "the other folder's training to run")
        open_page(browser, app.url + "/trainer")  # its jobs are re-attached before the image opens
        wait(browser, "document.body.innerText.includes('No jobs for this project yet.')")
        assert not browser.find_elements("xpath", "//button[.//*[normalize-space(text())='Cancel']]")
        assert "elsewhere" not in browser.find_element("tag name", "body").text
    finally:
        backend.cancel(job.job_id)
        backend.job_store.wait(job.job_id, timeout=120)
