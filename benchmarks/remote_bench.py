"""Remote backend figures on this machine (loopback): upload speed direct and through an SSH tunnel,
and the segmentation round trip of a 2048x2048 image on the server versus locally.

    python benchmarks/remote_bench.py [--mib 256] [--repeats 3] [--upload-only]

The server and the SSH server (asyncssh) run here too, each in a process of its own
(``remote_node.py``), as sshd and the server would on the remote node, so the figures measure the
protocol and tunnel overheads, not a network. Next to our uploads, the same rounds time the bare
SSH port forward (asyncssh, same cipher, same SSH server) into a sink that discards the bytes: the
most any tunnel made with asyncssh could carry here. The model is the small random ``tiny``
architecture (no weights are downloaded): its forward pass over 2048x2048 tiles is real work, its
masks are few unless ``--many-masks``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def forward_rate(address: str, mib: int) -> float:
    """MB/s of *mib* MiB sent into a ``remote_node.py`` sink at *address* until the sink counts them all."""
    data = os.urandom(mib << 20)
    host, port = address.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 8 and (part := sock.recv(8 - len(reply))):
            reply += part
    rate = mib * 1.048576 / (time.perf_counter() - start)
    if int.from_bytes(reply, "big") != len(data):
        raise RuntimeError(f"the sink got {int.from_bytes(reply, 'big')} of {len(data)} bytes")
    return rate


def upload_rates(senders: dict, folder: Path, mib: int, repeats: int) -> dict[str, list[float]]:
    """MB/s per sender (a backend, or the address of a sink) over *repeats* rounds; they alternate so a
    busy machine slows all alike."""
    rates: dict[str, list[float]] = {name: [] for name in senders}
    for _ in range(repeats):
        for name, sender in senders.items():
            rate = forward_rate(sender, mib) if isinstance(sender, str) else upload_rate(sender, folder, mib)
            rates[name].append(rate)
    return rates


@contextlib.contextmanager
def remote_node(*args: str) -> Iterator[dict]:
    """A ``remote_node.py`` process, as the JSON line it printed; it ends when its stdin closes."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("remote_node.py")), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"remote_node.py {args[0]} did not start (exit status {proc.wait()})")
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rates(rates: list[float]) -> str:
    return f"{max(rates):7.0f} MB/s best  ({' '.join(f'{r:.0f}' for r in rates)})"


def _ratios(num: list[float], den: list[float]) -> str:
    ratios = [n / d for n, d in zip(num, den)]
    return (f"{statistics.median(ratios):7.2f} median of the rounds ({' '.join(f'{r:.2f}' for r in ratios)}), "
            f"best/best {max(num) / max(den):.2f}")


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
    from mcp_remote.tunnel import Tunnel, connect

    with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(root / "id"))
        key.write_public_key(str(root / "id.pub"))
        server = stack.enter_context(remote_node("server", str(root)))
        sshd = stack.enter_context(remote_node("sshd", server["token_socket"], str(root / "id.pub")))
        (root / "known_hosts").write_text(sshd["known_hosts"])
        grpc_port = int(server["grpc"].rsplit(":", 1)[1])
        direct = stack.enter_context(RemoteBackend(server["grpc"], request_token(server["token_socket"])["token"]))
        tunnelled = stack.enter_context(connect("127.0.0.1", "bench", key=root / "id", port=sshd["port"],
                                                known_hosts=root / "known_hosts", ssh_config=[],
                                                config=RemoteConfig(ssh_remote_port=grpc_port)))
        bare = Tunnel("127.0.0.1", "bench", port=sshd["port"], client_keys=[str(root / "id")],
                      known_hosts=root / "known_hosts", remote_port=server["sink"], ssh_config=[]).open()
        stack.callback(bare.close)
        print(f"upload of {args.mib} MiB files, {args.repeats} alternating rounds (sha256 on both sides included; "
              f"server and SSH server in processes of their own):")
        rates = upload_rates({"direct": direct, "bare": bare.address, "tunnel": tunnelled}, root, args.mib,
                             args.repeats)
        print(f"  direct gRPC            {_rates(rates['direct'])}")
        print(f"  bare SSH forward       {_rates(rates['bare'])}   (no gRPC, no sha256: into a sink)")
        print(f"  upload through tunnel  {_rates(rates['tunnel'])}   ({tunnelled.tunnel.cipher()})")
        print(f"  ratio tunnel/direct    {_ratios(rates['tunnel'], rates['direct'])}   (target >= 0.7)")
        print(f"  ratio tunnel/bare      {_ratios(rates['tunnel'], rates['bare'])}")
        print(f"  ratio bare/direct      {_ratios(rates['bare'], rates['direct'])}")
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


if __name__ == "__main__":
    main()
