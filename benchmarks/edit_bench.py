"""Server side of a canvas edit: from the browser's finished action to the patch ready to send.

Times :class:`mcp_app.editor.Editor` contour, delete, class assignment and lasso (median of
repeats) on 2048x2048 with 3000 masks and 8192x8192 with 50,000 masks, next to issue 17's
targets for the whole mouse-up-to-overlay path (``benchmarks/ui_bench.py`` measures that in a
browser at 2048x2048). Also prints how long indexing the masks takes when an item opens.

Run: ``.venv/bin/python benchmarks/edit_bench.py``
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from mcp_app.editor import Editor
from mcp_core.labels import LabelSet

REPEAT = 7
TARGETS = {2048: {"contour": 20, "delete": 20, "assign": 20, "lasso": 60},
           8192: {"contour": 40, "delete": 40, "assign": 40, "lasso": 40}}


def discs(side: int, n: int, step: int = 34, radius: int = 12) -> np.ndarray:
    masks = np.zeros((side, side), np.uint16 if n < 65_535 else np.uint32)
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = yy ** 2 + xx ** 2 <= radius ** 2
    centres = [(y, x) for y in range(20, side - 20, step) for x in range(20, side - 20, step)][:n]
    for k, (y, x) in enumerate(centres, start=1):
        masks[y - radius:y + radius + 1, x - radius:x + radius + 1][disc] = k
    return masks


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def run(side: int, n: int) -> None:
    rng = np.random.default_rng(0)
    masks = discs(side, n)
    labels = LabelSet(masks, rng.integers(1, 3, size=n + 1), ["unassigned", "A", "B"])
    editor = Editor(project=None)  # type: ignore[arg-type]  # edits need only the labels
    editor.labels = labels
    index_ms = timed(labels.index_boxes)
    times: dict[str, list[float]] = {k: [] for k in TARGETS[side]}
    for r in range(REPEAT):
        x0, y0 = 200 + 300 * r, side // 2 + 6  # contours in the gaps between discs
        times["contour"].append(timed(lambda: editor.add_polygon(
            [(x0 + 60 * math.cos(a), y0 + 60 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40)], 1)))
        victim, other = int(masks[20, 20 + 34 * (2 * r + 1)]), int(masks[20, 20 + 34 * (2 * r + 2)])
        times["delete"].append(timed(lambda: editor.delete([victim])))
        times["assign"].append(timed(lambda: editor.assign([other], 2)))
        cx, cy = 300 + 260 * r, 300  # a lasso of radius 240 holds about 150-200 discs
        times["lasso"].append(timed(lambda: editor.lasso(
            [(cx + 240 * math.cos(a), cy + 240 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 30)])))
    print(f"{side}x{side}, {labels.count} masks (index built in {index_ms:.0f} ms at open), median of {REPEAT} ms:")
    for name, values in times.items():
        print(f"  {name:8s} {statistics.median(values):7.2f}   target <= {TARGETS[side][name]}")


def main() -> None:
    run(2048, 3000)
    run(8192, 50_000)


if __name__ == "__main__":
    main()
