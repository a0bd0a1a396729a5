"""UI latency in headless Chromium driving the real app on a 2048x2048 image with 3000 masks.

Prints, per action, the browser-side time from mouse-up (or key press) to the updated overlay,
median of several repeats: new contour, delete, class assignment, lasso, and next image, each
next to its target (issue 17, on a 2-core machine).

Run: ``.venv/bin/python benchmarks/ui_bench.py`` (needs Debian chromium + chromium-driver).
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.app.browser import App, make_driver, wait  # noqa: E402
from tests.app.test_browser import CTRL, SHIFT, click, draw_contour, drag  # noqa: E402

from mcp_core.filenames import label_path  # noqa: E402
from mcp_core.labels import LabelSet, save_labels  # noqa: E402

SIDE, N_MASKS, REPEAT = 2048, 3000, 5
TARGET_MS = {"contour": 20, "delete": 20, "assign": 20, "lasso": 60, "next image": 200}


def make_project(folder: Path) -> LabelSet:
    rng = np.random.default_rng(0)
    masks = np.zeros((SIDE, SIDE), np.uint16)
    yy, xx = np.mgrid[-12:13, -12:13]
    disc = yy ** 2 + xx ** 2 <= 12 ** 2
    step = 34
    centres = [(y, x) for y in range(260, SIDE - 20, step) for x in range(20, SIDE - 20, step)]
    rng.shuffle(centres)
    for k, (y, x) in enumerate(centres[:N_MASKS], start=1):
        sub = masks[y - 12:y + 13, x - 12:x + 13]
        sub[disc] = k
    classes = rng.integers(1, 3, size=N_MASKS + 1)
    labels = LabelSet(masks, classes, ["unassigned", "A", "B"])
    for i in range(2):
        img = rng.integers(0, 4000, size=(SIDE, SIDE, 2), dtype=np.uint16)
        img[masks > 0] += 3000
        tifffile.imwrite(folder / f"big_{i + 1}.tif", np.moveaxis(img, -1, 0), metadata={"axes": "CYX"})
        save_labels(label_path(folder / f"big_{i + 1}.tif"), labels, image_path=folder / f"big_{i + 1}.tif")
    return labels


def last_latency(driver, before: int, timeout: float = 10) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        lat = driver.execute_script("return window.mcpLatency")
        if len(lat) > before:
            return float(lat[-1])
        time.sleep(0.005)
    raise TimeoutError("no overlay update")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "proj").mkdir()
    labels = make_project(tmp / "proj")
    app = App(tmp / "proj", tmp / "home")
    driver = make_driver(tmp / "downloads")
    results: dict[str, list[float]] = {k: [] for k in ("contour", "delete", "assign", "lasso", "next image")}
    try:
        app.login(driver)
        driver.get(app.url + "/trainer")
        wait(driver, "window.mcpCanvas && window.mcpLoadedAt", timeout=60)
        centres = {i: np.argwhere(labels.masks == i).mean(axis=0) for i in range(1, 40)}
        for r in range(REPEAT):
            n = len(driver.execute_script("return window.mcpLatency"))
            draw_contour(driver, 130 + 220 * r, 125, 100, n=40)
            results["contour"].append(last_latency(driver, n))
            y, x = centres[2 * r + 1]
            n = len(driver.execute_script("return window.mcpLatency"))
            click(driver, x, y, CTRL)
            results["delete"].append(last_latency(driver, n))
            y, x = centres[2 * r + 2]
            n = len(driver.execute_script("return window.mcpLatency"))
            click(driver, x, y, SHIFT)
            results["assign"].append(last_latency(driver, n))
        driver.find_element("xpath", "//*[normalize-space(text())='Lasso delete']").click()
        for r in range(REPEAT):
            x0, y0 = 300 + 250 * r, 1200
            n = len(driver.execute_script("return window.mcpLatency"))
            drag(driver, [(x0 + 100 * math.cos(a), y0 + 100 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 30)])
            results["lasso"].append(last_latency(driver, n))
        for r in range(REPEAT):
            before = driver.execute_script("return window.mcpLoadedAt")
            t0 = driver.execute_script("return performance.now()")
            driver.find_element("css selector", "body").send_keys("\ue014" if r % 2 == 0 else "\ue012")
            loaded = wait(driver, f"window.mcpLoadedAt > {before} && window.mcpLoadedAt", timeout=30, poll=0.005)
            results["next image"].append(float(loaded) - float(t0))
    finally:
        driver.quit()
        app.stop()
    print(f"UI latency, {SIDE}x{SIDE} image with {labels.count} masks, median of {REPEAT} (min-max), ms:")
    for name, values in results.items():
        print(f"  {name:11s} {statistics.median(values):7.1f}   ({min(values):.1f}-{max(values):.1f})   "
              f"target <= {TARGET_MS[name]}")


if __name__ == "__main__":
    main()
