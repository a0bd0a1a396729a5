"""Cost of the annotation history per save: a 2048x2048 label set with ~3000 objects, then 10 small edits.

Prints the time of ``mcp_core.history.record`` for the first (whole) version and the median of the
edit saves, and the stored blob sizes (the masks themselves are 8 MiB).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/history_bench.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mcp_core import history
from mcp_core.labels import LabelSet


def main() -> None:
    masks = np.zeros((2048, 2048), np.uint16)
    k = 0
    for y in range(0, 2048 - 30, 37):
        for x in range(0, 2048 - 30, 37):
            k += 1
            masks[y:y + 30, x:x + 30] = k
    ls = LabelSet(masks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big_seg.npy"
        t = time.perf_counter()
        history.record(path, ls)
        t_key = time.perf_counter() - t
        times = []
        for i in range(10):
            ls.add_polygon([[5 + i * 3, 2040], [5 + i * 3, 2046], [7 + i * 3, 2046]])
            t = time.perf_counter()
            history.record(path, ls)
            times.append(time.perf_counter() - t)
        sizes = sorted(p.stat().st_size for p in (history.store_of(path) / "objects").glob("*/*"))
    print(f"{k} objects, 2048x2048 uint16: first version {t_key * 1000:.0f} ms, edit saves median "
          f"{np.median(times) * 1000:.0f} ms; blobs: whole {max(sizes)} B, deltas median {int(np.median(sizes[:-1]))} B "
          f"(masks {masks.nbytes} B)")


if __name__ == "__main__":
    main()
