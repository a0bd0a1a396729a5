"""Throughput of ``mcp_core.segment.segment`` against a per-image loop of upstream ``CellposeModel.eval``.

Both run the same network with the same weights, threads and warm-up on the same synthetic images:
ours streams the tiles of all images through the network (on the CPU one tile per pass), finishes
each image (dynamics, flow-error QC with numpy, per-mask class vote and confidence scores) in a
worker thread while the network goes on, and upstream runs image by image; the masks of both
must be equal (printed).
Also prints training throughput (samples/s). On the CPU the net is the ``tiny`` architecture,
trained here first so that the masks (and so the dynamics' work) are realistic; with CUDA the
ViT-L (``cpsam`` architecture, random weights: the network's speed does not depend on them,
though the dynamics' does) is measured as well.

    .venv/bin/python benchmarks/segment_bench.py [--images 16] [--size 512] [--epochs 150] [--rounds 2]
        [--keep-tiny FILE | --tiny FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mcp_core.model import MultiClassModel, build_model, upstream_model
from mcp_core.params import SegmentParams, TrainParams
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample, write_demo_project
from mcp_core.train import train


def train_rate(folder: Path, params: TrainParams) -> tuple[str, float]:
    """Train; returns the model path and samples/s over the epochs after the first (warm-up) one."""
    marks: list[float] = []
    result = train(folder, params, progress=lambda kind, d: marks.append(time.perf_counter())
                   if kind == "progress" and d.get("stage") == "training" else None)
    per_epoch = result.n_train  # no replay
    rate = per_epoch * (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 else float("nan")
    return result.model_path, rate


def compare(path: str, images: list[np.ndarray], device: str, batch_size: int, rounds: int) -> None:
    """images/s of our segment() vs upstream eval() in a loop, same file, same parameters."""
    ours = MultiClassModel.load(path, device=device)
    theirs = upstream_model(path, device=device)
    params = SegmentParams(bsize=ours.bsize, batch_size=batch_size)
    # Warm-up (allocations, kernels) on one image each.
    segment(ours, images[:1], params)
    theirs.eval(images[0], channel_axis=-1, batch_size=batch_size, bsize=ours.bsize)

    # Rounds alternate ours and upstream's, so a machine whose load changes slows both alike.
    t_ours, t_up, ratios = 0.0, 0.0, []
    cpu_ours, cpu_up = 0.0, 0.0  # CPU seconds of this process: less swayed than wall time by others' load
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        results = segment(ours, images, params)
        a, ca = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        upstream = [theirs.eval(img, channel_axis=-1, batch_size=batch_size, bsize=ours.bsize)[0] for img in images]
        b, cb = time.perf_counter() - t, time.process_time() - c
        t_ours, t_up = t_ours + a, t_up + b
        cpu_ours, cpu_up = cpu_ours + ca, cpu_up + cb
        ratios.append(b / a)
    n_ours = np.mean([r.masks.max() for r in results])
    n_up = np.mean([m.max() for m in upstream])
    n = len(images) * rounds
    print(f"  segment():              {n / t_ours:7.2f} images/s  ({t_ours:6.2f} s, {n_ours:.0f} masks/image, "
          f"{ours.n_classes} class channels + per-mask vote and confidence)")
    print(f"  upstream eval() loop:   {n / t_up:7.2f} images/s  ({t_up:6.2f} s, {n_up:.0f} masks/image)")
    print(f"  ratio segment/upstream: {t_up / t_ours:7.2f}x   (rounds: {' '.join(f'{r:.2f}' for r in ratios)}; "
          f"batch_size {batch_size}, {ours.bsize}-pixel tiles)")
    print(f"  CPU seconds:            {cpu_ours:7.1f} ours, {cpu_up:.1f} upstream ({cpu_up / cpu_ours:.2f}x)")
    same = sum(np.array_equal(r.masks, m) for r, m in zip(results, upstream))
    print(f"  masks equal upstream's: {same}/{len(images)} images{'' if same == len(images) else '  <- DIFFERENT'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=150, help="training epochs of the tiny model")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and upstream's over the images")
    ap.add_argument("--vitl", action="store_true", help="measure ViT-L even without CUDA (slow on a CPU)")
    ap.add_argument("--tiny", type=Path, help="a tiny 256-pixel-tile model made by an earlier run (--keep-tiny): no training")
    ap.add_argument("--keep-tiny", type=Path, help="save the tiny model trained here to this file, for --tiny")
    args = ap.parse_args()

    images = [make_sample(500 + i, shape=(args.size, args.size))[0] for i in range(args.images)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"{args.images} synthetic {args.size}x{args.size} 2-channel images")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_demo_project(tmp / "data", n_images=16, n_labelled=16)
        common = {"class_names": ["unassigned", "round", "elongated"], "batch_size": 8, "learning_rate": 3e-3,
                  "weight_decay": 0.01, "rescale": False, "test_ratio": 0.0, "scale_range": 0.25,
                  "save_path": str(tmp / "models")}
        print("\ntiny (CPU):")
        if args.tiny:
            path = args.tiny
            print(f"  model {path} (trained by an earlier run)")
        else:
            # Learn at 128-pixel crops (fast), then move the weights to cellpose's 256-pixel tiles, the only
            # size upstream eval() accepts for this network class.
            path, rate = train_rate(data, TrainParams(base_model="tiny", model_name="tiny", bsize=128,
                                                      epochs=args.epochs, device="cpu", **common))
            print(f"  training:               {rate:7.2f} samples/s  (128-pixel crops, batch 8, {args.epochs} epochs)")
            _, rate = train_rate(data, TrainParams(base_model="tiny", model_name="tiny256", bsize=256, epochs=4,
                                                   device="cpu", **common))
            print(f"  training:               {rate:7.2f} samples/s  (256-pixel crops, batch 8)")
            path = build_model(path, common["class_names"], device="cpu", bsize=256).save(
                args.keep_tiny or tmp / "tiny_256.pth")
        compare(str(path), images, "cpu", args.batch_size, args.rounds)

        if torch.cuda.is_available() or args.vitl:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            print(f"\nViT-L, cpsam architecture, random weights ({device}):")
            base = build_model("cpsam", common["class_names"], pretrained=False, device="cpu")
            base_path = base.save(tmp / "vitl_base.pth")
            del base
            path, rate = train_rate(data, TrainParams(base_model=str(base_path), model_name="vitl", bsize=256,
                                                      epochs=3, device=device, **{**common, "learning_rate": 1e-5}))
            print(f"  training:               {rate:7.2f} samples/s  (256-pixel crops, batch 8)")
            compare(path, images, device, max(args.batch_size, 32 if device == "cuda" else args.batch_size), args.rounds)


if __name__ == "__main__":
    main()
