"""IO figures: lazy frame access vs reading a whole file, and save_labels of a large label set.

Run: ``.venv/bin/python benchmarks/io_bench.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from mcp_core.io import open_image
from mcp_core.labels import LabelSet, save_labels


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        n, h, w = 1000, 256, 256
        data = np.random.default_rng(0).integers(0, 4096, size=(n, h, w), dtype=np.uint16)
        for label, kwargs in (("uncompressed", {}), ("zlib-compressed", {"compression": "zlib"})):
            path = Path(tmp) / f"movie_{label}.ome.tif"
            tifffile.imwrite(path, data, metadata={"axes": "TYX"}, **kwargs)
            size_mb = path.stat().st_size / 1e6

            def lazy() -> None:
                with open_image(path) as src:
                    src.read("T500")

            def whole() -> None:
                tifffile.imread(path)

            t_lazy, t_whole = best_of(lazy), best_of(whole)
            print(f"OME-TIFF, {label}, {n} frames of {h}x{w} uint16 ({size_mb:.0f} MB)")
            print(f"  open + read frame 500 : {t_lazy * 1e3:8.1f} ms")
            print(f"  read whole file       : {t_whole * 1e3:8.1f} ms   ({t_whole / t_lazy:.0f}x slower)")
        del data

        rng = np.random.default_rng(1)
        side, n_obj = 2048, 3000
        # Voronoi-like label image with 3000 objects.
        seeds = rng.integers(0, side, size=(n_obj, 2))
        from scipy import ndimage

        marker = np.zeros((side, side), np.uint16)
        marker[seeds[:, 0], seeds[:, 1]] = np.arange(1, n_obj + 1)
        _, (ri, ci) = ndimage.distance_transform_edt(marker == 0, return_indices=True)
        masks = marker[ri, ci]
        ls = LabelSet(masks, rng.integers(1, 3, size=n_obj + 1), ["unassigned", "A", "B"])
        out = Path(tmp) / "big_seg.npy"
        t_save = best_of(lambda: save_labels(out, ls, image_path=Path(tmp) / "big.tif"))
        print(f"save_labels {side}x{side}, {ls.count} objects: {t_save * 1e3:8.1f} ms ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
