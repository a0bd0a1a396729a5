"""The real app in Chromium: open data as people expect (server-side folder browser, single images, dropped files)."""

from __future__ import annotations

import base64
import shutil

from mcp_core.atomic import is_temporary
from mcp_core.synthetic import write_demo_project

from .browser import wait
from .test_browser_jobs import click_text
from .test_browser_layout import LOADED, marked


def test_browse_the_server_for_a_folder_or_one_image(browser, app, tmp_path):
    other = tmp_path / "elsewhere" / "experiment"
    write_demo_project(other, n_images=2, n_labelled=0, shape=(64, 64))
    (other / "notes.txt").write_text("not an image")
    browser.get(app.url + "/")
    marked(browser, "browse").click()
    dialog = "(document.querySelector('[data-mcp=\"file-browser\"]')?.innerText || '')"
    wait(browser, f"{dialog}.includes('demo_01.tif')")
    path = marked(browser, "browse-path")

    path.send_keys("\ue009a")
    path.send_keys(str(tmp_path / "no such folder") + "\ue007")
    wait(browser, "(document.querySelector('[data-mcp=\"browse-error\"]')?.innerText || '').includes('does not exist')")

    path.send_keys("\ue009a")
    path.send_keys(str(tmp_path / "elsewhere") + "\ue007")
    wait(browser, f"{dialog}.includes('experiment') && {dialog}.includes('1 folder(s), 0 image(s)')")
    click_text(browser, "experiment")  # into the sub-folder
    wait(browser, f"{dialog}.includes('2 image(s), 1 other file(s) not shown')")
    marked(browser, "open-this-folder").click()
    wait(browser, f"document.body.innerText.includes({str(other)!r})")

    marked(browser, "browse").click()
    wait(browser, f"{dialog}.includes('demo_02.tif')")
    click_text(browser, "demo_02.tif")  # a single image: its folder opens, and the image itself
    wait(browser, "location.pathname === '/trainer'")
    wait(browser, LOADED)
    wait(browser, "document.querySelector('.q-header').innerText.includes('demo_02.tif (2/2)')")


def test_dropped_images_are_copied_into_the_project(browser, app, demo, tmp_path):
    source = tmp_path / "source"
    write_demo_project(source, n_images=1, n_labelled=0, shape=(64, 64))
    image = (source / "demo_01.tif").read_bytes()
    browser.get(app.url + "/trainer")
    wait(browser, LOADED)
    files = {"dropped.tif": image, "notes.txt": b"hello", "broken.tif": b"not a tiff at all"}
    browser.execute_script("""
        const dt = new DataTransfer();
        for (const [name, b64] of Object.entries(arguments[0])) {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          dt.items.add(new File([bytes], name));
        }
        document.querySelector('.q-page').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    """, {name: base64.b64encode(data).decode() for name, data in files.items()})
    toast = "[...document.querySelectorAll('.q-notification')].map((n) => n.innerText).join(' ')"
    wait(browser, f"{toast}.includes('2 file(s) not added')")
    text = browser.execute_script(f"return {toast}")
    assert "notes.txt is not an image this app can read" in text, text
    assert "broken.tif cannot be read as an image" in text, text
    wait(browser, "document.querySelector('.q-drawer--left').innerText.includes('dropped.tif')")
    assert (demo / "dropped.tif").read_bytes() == image
    assert not (demo / "notes.txt").exists() and not (demo / "broken.tif").exists()
    assert not [p for p in demo.iterdir() if is_temporary(p)]  # no temporary file left
    shutil.rmtree(source)
