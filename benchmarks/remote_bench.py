"""Remote backend figures on this machine (loopback): upload speed direct and through an SSH tunnel,
and the segmentation round trip of a 2048x2048 image on the server versus locally.

    python benchmarks/remote_bench.py [--mib 256] [--repeats 3] [--upload-only]

The server, the SSH server (asyncssh, in-process) and the client all run here, so the figures
measure the protocol and tunnel overheads, not a network. The model is the small random ``tiny``
architecture (no weights are downloaded): its forward pass over 2048x2048 tiles is real work, its
masks are few unless ``--many-masks``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def upload_rate(backend, folder: Path, mib: int) -> float:
    """MB/s of one upload of a fresh random file (content-addressed: never the same twice)."""
    path = folder / f"blob-{id(backend)}.bin"
    path.write_bytes(os.urandom(mib << 20))
    start = time.perf_counter()
    backend.upload(path)
    rate = mib * 1.048576 / (time.perf_counter() - start)
    path.unlink()
    backend.clear_training_files()
    return rate


def upload_rates(backends: dict, folder: Path, mib: int, repeats: int) -> dict[str, list[float]]:
    """MB/s per backend over *repeats* rounds; uploads alternate so a busy machine slows all alike."""
    rates: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, backend in backends.items():
            rates[name].append(upload_rate(backend, folder, mib))
    return rates


def segment_times(backends: dict, image: np.ndarray, params, repeats: int) -> dict[str, float]:
    """Median seconds per backend; runs are interleaved so a busy machine slows all alike."""
    for b in backends.values():
        b.segment([image], params)  # warm-up: model load
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, b in backends.items():
            start = time.perf_counter()
            b.segment([image], params)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="size of each uploaded file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cellprob", type=float, default=0.0,
                        help="cell probability threshold; a high one (6) leaves little but the forward pass to time")
    parser.add_argument("--upload-only", action="store_true", help="time the uploads only")
    parser.add_argument("--many-masks", action="store_true",
                        help="turn the flow-error check off so the random model yields ~30000 masks (minutes on a CPU)")
    args = parser.parse_args()

    import asyncssh

    from mcp_core.backend import LocalBackend
    from mcp_core.model import build_model
    from mcp_core.params import SegmentParams
    from mcp_core.synthetic import make_sample
    from mcp_remote.auth import request_token
    from mcp_remote.client import RemoteBackend
    from mcp_remote.config import RemoteConfig
    from mcp_remote.server import start_server
    from mcp_remote.testing import LocalSSHServer
    from mcp_remote.tunnel import connect

    with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp:
        root = Path(tmp)
        cfg = RemoteConfig(server_storage_root=str(root / "storage"), quota_bytes=64 << 30)
        server = start_server(cfg, bind="127.0.0.1:0")
        key = asyncssh.generate_private_key("ssh-ed25519")
        sshd = LocalSSHServer({}, {"bench": [key]}, cfg.token_socket())
        key.write_private_key(str(root / "id"))
        (root / "known_hosts").write_text(sshd.known_hosts_line())
        direct = RemoteBackend(server.address, request_token(cfg.token_socket())["token"])
        tunnelled = connect("127.0.0.1", "bench", key=root / "id", port=sshd.port, known_hosts=root / "known_hosts",
                            ssh_config=[], config=RemoteConfig(ssh_remote_port=int(server.address.rsplit(":", 1)[1])))
        try:
            print(f"upload of {args.mib} MiB files, {args.repeats} alternating rounds (sha256 on both sides included):")
            rates = upload_rates({"direct": direct, "tunnel": tunnelled}, root, args.mib, args.repeats)
            ratios = [t / d for d, t in zip(rates["direct"], rates["tunnel"])]
            print(f"  direct gRPC            {max(rates['direct']):7.0f} MB/s best  "
                  f"({' '.join(f'{r:.0f}' for r in rates['direct'])})")
            print(f"  through SSH tunnel     {max(rates['tunnel']):7.0f} MB/s best  "
                  f"({' '.join(f'{r:.0f}' for r in rates['tunnel'])}; {tunnelled.tunnel.cipher()})")
            print(f"  ratio tunnel/direct    {statistics.median(ratios):7.2f} median of the rounds "
                  f"({' '.join(f'{r:.2f}' for r in ratios)}), best/best {max(rates['tunnel']) / max(rates['direct']):.2f}"
                  f"   (target >= 0.7)")
            if args.upload_only:
                return

            model = root / "tiny.pth"
            build_model("tiny", class_names=["unassigned", "a", "b"], device="cpu", seed=3).save(model)
            local = LocalBackend(root / "local")
            for b in (local, direct, tunnelled):
                b.add_model(model)
            image = make_sample(5, shape=(2048, 2048))[0]
            params = SegmentParams(model="tiny", bsize=256, flow_threshold=0.0 if args.many_masks else 0.4,
                                   cellprob_threshold=args.cellprob)
            n = int(local.segment([image], params)[0].masks.max())
            print(f"segmentation of one {image.shape} {image.dtype} image ({n} masks, cellprob_threshold "
                  f"{args.cellprob}), median of {args.repeats}:")
            t = segment_times({"local": local, "direct": direct, "tunnel": tunnelled}, image, params, args.repeats)
            print(f"  local                  {t['local']:7.2f} s")
            print(f"  remote direct          {t['direct']:7.2f} s   ratio {t['direct'] / t['local']:.3f}")
            print(f"  remote through tunnel  {t['tunnel']:7.2f} s   ratio {t['tunnel'] / t['local']:.3f}")
        finally:
            direct.close()
            tunnelled.close()
            sshd.close()
            server.stop()


if __name__ == "__main__":
    main()
