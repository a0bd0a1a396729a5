"""Real nuclei: train the offline base with the default settings on the 5 HepG2 training images, score the other 20.

Prints AP@0.5 (cellpose's ``metrics.average_precision``, mean over images) of the trained model next to a classical
baseline on the same images: Otsu threshold of the smoothed nuclear channel, distance transform, one marker per
distance peak, watershed (scikit-image / scipy). Also prints the training time, which the issue wants at most 10
minutes on 2 idle CPU cores, and the load average, since a busy machine inflates it.

    .venv/bin/python benchmarks/hepg2_bench.py [--fixtures ../shared/fixtures/nuclei_hepg2] [--base unet|tiny|cpsam]
        [--epochs N] [--out DIR]

The split is the dataset authors' (training images 01, 03, 07, 15, 23); images are RGB JPEGs of a Hoechst stain,
so the blue channel (2) is fed to the model and to the baseline.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from cellpose import metrics
from scipy import ndimage
from skimage import feature, filters, segmentation

from mcp_core.catalog import OFFLINE_BASE
from mcp_core.io import list_images, open_image
from mcp_core.labels import load_labels_for
from mcp_core.model import MultiClassModel
from mcp_core.params import SegmentParams, TrainParams, resolve_train_params
from mcp_core.segment import segment
from mcp_core.train import train

TRAIN_IDS = ("01", "03", "07", "15", "23")
NUCLEAR_CHANNEL = 2


def otsu_watershed(image: np.ndarray, diameter: float) -> np.ndarray:
    """Classical nuclei segmentation: Otsu on the smoothed channel, distance-transform peaks as watershed markers."""
    smooth = filters.gaussian(image.astype(np.float32), sigma=2)
    fg = ndimage.binary_fill_holes(smooth > filters.threshold_otsu(smooth))
    dist = ndimage.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=max(int(diameter / 4), 3), labels=ndimage.label(fg)[0],
                                   exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    masks = segmentation.watershed(-dist, markers, mask=fg)
    sizes = np.bincount(masks.ravel())
    small = sizes < (diameter / 4) ** 2
    small[0] = False
    masks[small[masks]] = 0
    return masks


def split_folders(fixtures: Path, root: Path) -> tuple[Path, Path]:
    """``train/`` and ``test/`` folders of links to the fixture images and their masks (the authors' split)."""
    for name in ("train", "test"):
        (root / name).mkdir()
    for img in sorted(fixtures.glob("*.jpg")):
        side = "train" if img.stem in TRAIN_IDS else "test"
        for src in (img, fixtures / f"{img.stem}_masks.tif"):
            os.symlink(src.resolve(), root / side / src.name)
    return root / "train", root / "test"


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", default=str(here.parent.parent / "shared" / "fixtures" / "nuclei_hepg2"))
    ap.add_argument("--base", default=OFFLINE_BASE, help="base model (default: the offline base; cpsam when its weights exist)")
    ap.add_argument("--epochs", type=int, help="default: the base model's")
    ap.add_argument("--out", help="keep the model here (default: a temporary folder)")
    args = ap.parse_args()
    fixtures = Path(args.fixtures)
    if not fixtures.is_dir():
        raise SystemExit(f"No fixtures at {fixtures}.")
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, test_dir = split_folders(fixtures, Path(tmp))
        truth = [load_labels_for(p).masks for p in list_images(test_dir)]
        diameter = float(np.mean([np.sqrt((m > 0).sum() / max(m.max(), 1) / np.pi) * 2
                                  for m in (load_labels_for(p).masks for p in list_images(train_dir))]))
        images = []
        for p in list_images(test_dir):
            with open_image(p) as src:
                images.append(src.read()[..., NUCLEAR_CHANNEL])
        t0 = time.time()
        baseline = [otsu_watershed(img, diameter) for img in images]
        t_base = time.time() - t0

        params = TrainParams(base_model=args.base, model_name="hepg2", epochs=args.epochs, test_ratio=0.0,
                             channels=[NUCLEAR_CHANNEL], save_path=args.out or str(Path(tmp) / "models"))
        used = resolve_train_params(params)
        t0, c0 = time.time(), time.process_time()

        def show(kind: str, data: dict) -> None:
            if kind == "loss" and (data["epoch"] % 25 == 0 or data["epoch"] == 1):
                print(f"  epoch {data['epoch']:4d} loss {data['train_loss']:.3f}  {time.time() - t0:5.0f} s", flush=True)

        result = train(train_dir, params, progress=show)
        t_train, c_train = time.time() - t0, time.process_time() - c0
        model = MultiClassModel.load(result.model_path, device="cpu")
        t0 = time.time()
        found = segment(model, images, SegmentParams(channels=[0]))  # tile size: the model's own
        t_seg = time.time() - t0
    ap_model, tp, fp, fn = metrics.average_precision(truth, [r.masks for r in found], threshold=[0.5])
    ap_base, tpb, fpb, fnb = metrics.average_precision(truth, baseline, threshold=[0.5])
    print(f"HepG2 nuclei, authors' split: {result.n_train} training images, {len(truth)} test images")
    print(f"base {args.base}: {used.epochs} epochs x {used.nimg_per_epoch} crops of {used.bsize} px, "
          f"lr {used.learning_rate:g}, wd {used.weight_decay:g}, batch {used.batch_size}")
    print(f"{'method':28s} {'AP@0.5':>7s} {'tp':>5s} {'fp':>5s} {'fn':>5s}")
    print(f"{'Otsu + distance watershed':28s} {ap_base[:, 0].mean():7.3f} {tpb.sum():5.0f} {fpb.sum():5.0f} "
          f"{fnb.sum():5.0f}   ({t_base:.0f} s)")
    print(f"{'trained ' + args.base:28s} {ap_model[:, 0].mean():7.3f} {tp.sum():5.0f} {fp.sum():5.0f} {fn.sum():5.0f}   "
          f"(segmenting {t_seg:.0f} s)")
    print(f"training (flows, steps, saving): {t_train:.0f} s wall = {t_train / 60:.1f} min, {c_train:.0f} s CPU; "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
