"""Folder segmentation on dask workers against the in-process loop; peak worker memory, blockwise against whole.

1. images/s over the same folder: ``segment_files`` in this process, then ``segment_on_client`` on a
   LocalCluster of 1 and of 2 CPU workers (and, with GPUs, one worker per GPU). Model loading and
   worker start-up are left out (each cluster first segments one image).
2. Peak resident memory of a worker (Linux ``VmHWM``, reset once the model is loaded) segmenting one large image whole (one task) and
   blockwise (``segment_blockwise``), each on a fresh one-worker cluster after loading the model.

The network is the ``tiny`` architecture with its readout biased to foreground (untrained: the masks come
from its flows), so the figures measure the machinery, not a model's accuracy.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_bench.py [--images 24] [--size 256] [--big 2048] [--block 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from ome_zarr.writer import write_image

from mcp_core.blockwise import segment_blockwise
from mcp_core.cluster import local_cluster, visible_gpus
from mcp_core.distributed import model_digest, segment_on_client, worker_model
from mcp_core.model import build_model, open_model
from mcp_core.params import SegmentParams
from mcp_core.segment import segment_files
from mcp_core.synthetic import make_sample

NAMES = ["unassigned", "round", "elongated"]


def peak_rss_mb(reset: bool = False) -> float:
    """This process's peak resident memory in MB (Linux ``VmHWM``); *reset* starts a new peak (run on a worker)."""
    if reset:
        Path("/proc/self/clear_refs").write_text("5")
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def load_model(model: str, digest: str) -> None:
    """Load the model into a worker's cache (run on every worker before timing)."""
    worker_model(model, digest)


def worker_threads() -> int:
    """Torch CPU threads of a worker."""
    return torch.get_num_threads()


def rate_on_cluster(n_workers: int | None, gpus: list[str], model: Path, folder: Path, warm: Path,
                    params: SegmentParams, out: Path) -> tuple[float, int]:
    """images/s of segment_on_client on a fresh LocalCluster (start-up and model loading left out), torch threads."""
    from distributed import Client

    with local_cluster(n_workers, gpus=gpus) as cluster, Client(cluster) as client:
        client.wait_for_workers(len(cluster.workers), timeout=600)
        client.run(load_model, str(model), model_digest(model))  # every worker imports torch and loads the model
        segment_on_client(client, model, [warm], params, out / "warm")  # first-call costs
        t = time.perf_counter()
        result = segment_on_client(client, model, [folder], params, out)
        elapsed = time.perf_counter() - t
        threads = max(client.run(worker_threads).values())
    assert not result["failed"], result["failed"]
    return len(result["done"]) / elapsed, threads


def memory(model: Path, big: Path, big_zarr: Path, params: SegmentParams, block: int, tmp: Path) -> None:
    """Peak RSS of a fresh one-worker cluster's worker, whole image against blockwise."""
    from distributed import Client

    runs = {"whole image (one task)": lambda c: segment_on_client(c, model, [big], params, tmp / "whole"),
            f"blockwise, {block}-pixel blocks": lambda c: segment_blockwise(
                big_zarr, tmp / "labels.zarr", model=model, params=params, block=block, client=c)}
    for label, run in runs.items():
        with local_cluster(1, gpus=[]) as cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=600)
            client.run(load_model, str(model), model_digest(model))
            base = max(client.run(peak_rss_mb, True).values())
            t = time.perf_counter()
            run(client)
            elapsed = time.perf_counter() - t
            peak = max(client.run(peak_rss_mb).values())
        print(f"  {label:32s} peak worker RSS {peak:8.0f} MB (after loading the model: {base:6.0f} MB; "
              f"+{peak - base:6.0f} MB), {elapsed:6.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--big", type=int, default=2048, help="side of the large image for the memory comparison")
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--parts", default="rate,memory", help="what to measure: rate, memory or both (default)")
    args = ap.parse_args()
    torch.manual_seed(0)
    params = SegmentParams(bsize=128, flow_threshold=0.0, niter=50)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        net = build_model("tiny", NAMES, device="cpu", seed=7, bsize=128)
        with torch.no_grad():
            net.net.out.bias[-net.net.ps ** 2:] += 3.0
        model = net.save(tmp / "tiny.pth")
        folder, warm = tmp / "images", tmp / "warm"
        folder.mkdir()
        warm.mkdir()
        for i in range(args.images):
            np.save(folder / f"img{i:03d}.npy", make_sample(i, shape=(args.size, args.size))[0])
        np.save(warm / "warm.npy", make_sample(999, shape=(128, 128))[0])

        if "rate" in args.parts:
            rates(args, model, folder, warm, params, tmp)
        if "memory" in args.parts:
            big = make_sample(7, shape=(args.big, args.big))[0]
            np.save(tmp / "big.npy", big)
            write_image(np.moveaxis(big, -1, 0), zarr.open_group(str(tmp / "big.ome.zarr"), mode="w"), axes="cyx",
                        scale_factors=[], storage_options={"chunks": (big.shape[-1], args.block, args.block)})
            print(f"Peak worker memory, one {args.big}x{args.big} image ({big.nbytes / 1e6:.0f} MB of pixels):")
            memory(model, tmp / "big.npy", tmp / "big.ome.zarr", params, args.block, tmp)


def rates(args: argparse.Namespace, model: Path, folder: Path, warm: Path, params: SegmentParams, tmp: Path) -> None:
    """images/s: in-process loop, 1 and 2 CPU workers, one worker per GPU."""
    print(f"{args.images} images of {args.size}x{args.size}, tiny model, {params.bsize}-pixel tiles:")
    loaded = open_model(model, device="cpu")
    segment_files(loaded, [warm], params, folder=tmp / "warm_out")
    t = time.perf_counter()
    segment_files(loaded, [folder], params, folder=tmp / "loop")
    t_loop = time.perf_counter() - t
    print(f"  in-process loop:          {args.images / t_loop:7.2f} images/s  ({torch.get_num_threads()} torch thread(s))")
    for n in (1, 2):
        rate, threads = rate_on_cluster(n, [], model, folder, warm, params, tmp / f"cpu{n}")
        print(f"  LocalCluster {n} worker(s): {rate:7.2f} images/s  ({rate * t_loop / args.images:.2f}x the loop; "
              f"{threads} torch thread(s) per worker)")
    gpus = visible_gpus()
    if gpus:
        rate, _ = rate_on_cluster(None, gpus, model, folder, warm, params, tmp / "gpu")
        print(f"  one worker per GPU ({len(gpus)}): {rate:7.2f} images/s")


if __name__ == "__main__":
    main()
