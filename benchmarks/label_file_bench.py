"""Cost of safe label files on a 2048x2048 label image with 3000 masks (a ~25 MB ``_seg.npy``).

Prints, best of 5: a plain save, a save through the version check (hash before and after), the
version token alone, and reading with the restricted unpickler against ``np.load(allow_pickle=True)``.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/label_file_bench.py``
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcp_core.file_version import FileVersion, write_unless_changed
from mcp_core.labels import LabelSet, load_labels, save_labels


def best_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((2048, 2048), np.uint16)
    for i in range(1, 3001):
        y, x = rng.integers(0, 2030, 2)
        masks[y:y + 15, x:x + 15] = i
    labels = LabelSet(masks, None)
    with tempfile.TemporaryDirectory(prefix="label-file-bench-") as folder:
        report(Path(folder) / "a_seg.npy", labels)


def report(path: Path, labels: LabelSet) -> None:
    """Print the save and load timings of *labels* in a label file at *path*."""
    save_labels(path, labels)
    version = [FileVersion.of(path)]

    def guarded() -> None:
        version[0] = write_unless_changed(path, version[0], lambda: save_labels(path, labels))

    print(f"file {path.stat().st_size / 1e6:.1f} MB")
    print(f"save_labels                 {best_ms(lambda: save_labels(path, labels)):7.1f} ms")
    print(f"save with version check     {best_ms(guarded):7.1f} ms")
    print(f"FileVersion.of              {best_ms(lambda: FileVersion.of(path)):7.1f} ms")
    print(f"load_labels (restricted)    {best_ms(lambda: load_labels(path)):7.1f} ms")
    print(f"np.load(allow_pickle=True)  {best_ms(lambda: np.load(path, allow_pickle=True).item()):7.1f} ms")


if __name__ == "__main__":
    main()
