"""Remote backend figures on this machine (loopback): upload speed direct and through an SSH tunnel,
and the segmentation round trip of a 2048x2048 image on the server versus locally.

    python benchmarks/remote_bench.py [--mib 256] [--repeats 3] [--upload-only]

The server and the SSH servers run here too, each in a process of its own (``remote_node.py``), as
sshd and the server would on the remote node, so the figures measure the protocol and tunnel
overheads, not a network. Two SSH servers are timed: asyncssh's, a stand-in in Python, and
OpenSSH's sshd (what a real node runs) when it is installed. Through each, the product's tunnel
(``Tunnel``, forwarder ``auto``: OpenSSH's ssh client where it is installed, as here with a key
login) is timed next to the same tunnel forced onto asyncssh's forwarder; each row names the
forwarder it used. The same rounds time the bare asyncssh port forward of each (same cipher) into a
sink that discards the bytes: the most any tunnel made with asyncssh could carry here; and, where
OpenSSH's ssh client is installed, an upload through a plain ``ssh -N -L`` started by the bench
(no ``Tunnel``), for reference. Each route's CPU seconds per GiB are given per process (client:
this one; server; SSH server with its children; the client's ssh processes), and for the client's
SSH tunnel threads (asyncssh's event loop) alone.
The model is the small random ``tiny`` architecture (no weights are downloaded): its forward pass
over 2048x2048 tiles is real work, its masks are few unless ``--many-masks``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from remote_node import find_sshd  # noqa: E402


@dataclasses.dataclass
class Round:
    """One timed transfer: MB/s, CPU seconds per GiB of each process, and of the client's SSH threads."""

    rate: float
    cpu: dict[str, float]
    ssh_threads: float


#: The CPU column of the client's OpenSSH ssh processes (the tunnels' forwarders and the reference's).
SSH_CLIENTS = "client's ssh"


class Meter:
    """Wall time and CPU seconds of the bench's processes over a timed transfer."""

    def __init__(self, nodes: dict[str, int]) -> None:
        self.procs = {"client": psutil.Process(), **{name: psutil.Process(pid) for name, pid in nodes.items()}}

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            family = [proc] if name == "client" else [proc, *proc.children(recursive=True)]
            out[name] = sum(_cpu_seconds(p) for p in family)
        out[SSH_CLIENTS] = sum(_cpu_seconds(p) for p in _ssh_clients())
        return out

    def time(self, send: Callable[[], None], mib: int) -> Round:
        """Run *send*, which carries *mib* MiB."""
        before, ssh_before, start = self._cpu(), _ssh_thread_seconds(), time.perf_counter()
        send()
        wall, after, ssh_after = time.perf_counter() - start, self._cpu(), _ssh_thread_seconds()
        return Round(mib * 1.048576 / wall, {name: (after[name] - before[name]) * 1024 / mib for name in after},
                     (ssh_after - ssh_before) * 1024 / mib)


def _ssh_thread_seconds() -> float:
    """CPU seconds of this process's tunnel threads (asyncssh's event loops, ``mcp_remote.tunnel``)."""
    ids = {t.native_id for t in threading.enumerate() if t.name == "ssh-tunnel"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def _ssh_clients() -> list[psutil.Process]:
    """This process's OpenSSH ssh children."""
    out = []
    for child in psutil.Process().children():
        try:
            if child.name() == "ssh":
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def _cpu_seconds(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def upload_round(backend, folder: Path, mib: int, meter: Meter) -> Round:
    """One upload of a fresh random file (content-addressed: never the same twice)."""
    path = folder / f"blob-{id(backend)}.bin"
    path.write_bytes(os.urandom(mib << 20))
    result = meter.time(lambda: backend.upload(path), mib)
    path.unlink()
    backend.clear_training_files()
    return result


def forward_round(address: str, mib: int, meter: Meter) -> Round:
    """*mib* MiB sent into a ``remote_node.py`` sink at *address* until the sink counts them all."""
    data = os.urandom(mib << 20)
    host, port = address.rsplit(":", 1)
    reply = bytearray()

    def send() -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while len(reply) < 8 and (part := sock.recv(8 - len(reply))):
                reply.extend(part)

    result = meter.time(send, mib)
    if int.from_bytes(reply, "big") != len(data):
        raise RuntimeError(f"the sink got {int.from_bytes(reply, 'big')} of {len(data)} bytes")
    return result


def upload_rounds(senders: dict, folder: Path, mib: int, repeats: int, meter: Meter) -> dict[str, list[Round]]:
    """*repeats* rounds per sender (a backend, or the address of a sink); they alternate so a busy
    machine slows all alike, each round starting one sender later so none is always first or last."""
    rounds: dict[str, list[Round]] = {name: [] for name in senders}
    names = list(senders)
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            sender = senders[name]
            if isinstance(sender, str):
                rounds[name].append(forward_round(sender, mib, meter))
            else:
                rounds[name].append(upload_round(sender, folder, mib, meter))
    return rounds


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


#: The route of the reference: OpenSSH's ssh client forwarding through OpenSSH's sshd.
REFERENCE = "plain ssh -N -L via openssh sshd"
#: The SSH servers a tunnel is timed through, as ``remote_node.py`` roles.
SSH_SERVERS = {"asyncssh": "asyncssh stand-in SSH server", "openssh": "OpenSSH sshd"}


def ssh_servers(stack: contextlib.ExitStack, root: Path, token_socket: str) -> dict[str, dict]:
    """The SSH servers' ``remote_node.py`` processes: asyncssh's, and OpenSSH's sshd when it is installed."""
    nodes = {"asyncssh": stack.enter_context(remote_node("sshd", token_socket, str(root / "id.pub")))}
    if find_sshd():
        (root / "openssh").mkdir()
        nodes["openssh"] = stack.enter_context(remote_node("openssh", str(root / "id.pub"), str(root / "openssh")))
    return nodes


def open_tunnel(root: Path, node: dict, remote_port: int, forwarder: str = "auto"):
    """The product's tunnel through the SSH server of *node* (a ``remote_node.py`` reply) to a loopback
    port there, with *forwarder* (``auto``: OpenSSH's ssh client when it is installed)."""
    from mcp_remote.tunnel import Tunnel

    return Tunnel("127.0.0.1", node["user"], port=node["port"], client_keys=[str(root / "id")],
                  known_hosts=_known_hosts(root, node), remote_port=remote_port, ssh_config=[],
                  forwarder=forwarder).open()


@dataclasses.dataclass
class Routes:
    """The row names of one SSH server's routes: the product's tunnel, the same on asyncssh's forwarder
    (None when the product's is already that), and the bare asyncssh forward."""

    tunnel: str
    asyncssh_tunnel: str | None
    bare: str


def tunnel_routes(stack: contextlib.ExitStack, root: Path, name: str, node: dict, grpc_port: int, sink_port: int,
                  token: str, senders: dict) -> tuple[Routes, object]:
    """Add the routes through SSH server *name* to *senders*; return their names and the product's
    tunnelled backend."""
    from mcp_remote.client import RemoteBackend

    tunnel = open_tunnel(root, node, grpc_port)
    tunnelled = stack.enter_context(RemoteBackend(tunnel.address, token, tunnel=tunnel))
    routes = Routes(f"tunnel via {name} sshd, {tunnel.forwarded_by} fwd", None,
                    f"bare forward via {name} sshd, asyncssh fwd")
    if tunnel.fallback_reason:
        print(f"  (the tunnel via {name} is forwarded by asyncssh: {tunnel.fallback_reason})")
    bare = open_tunnel(root, node, sink_port, "asyncssh")
    stack.callback(bare.close)
    senders[routes.bare] = bare.address
    senders[routes.tunnel] = tunnelled
    if tunnel.forwarded_by != "asyncssh":
        routes.asyncssh_tunnel = f"tunnel via {name} sshd, asyncssh fwd"
        plain = open_tunnel(root, node, grpc_port, "asyncssh")
        senders[routes.asyncssh_tunnel] = stack.enter_context(RemoteBackend(plain.address, token, tunnel=plain))
    return routes, tunnelled


def _known_hosts(root: Path, node: dict) -> Path:
    path = root / f"known_hosts-{node['port']}"
    path.write_text(node["known_hosts"])
    return path


@contextlib.contextmanager
def openssh_forward(root: Path, node: dict, remote_port: int) -> Iterator[str]:
    """OpenSSH's ssh client forwarding a free loopback port through *node*'s SSH server to *remote_port*
    there, as its address: a plain ``ssh -N -L`` without ``Tunnel``, for reference."""
    from mcp_remote.tunnel import CIPHERS

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["ssh", "-N", "-F", "/dev/null", "-i", str(root / "id"), "-p", str(node["port"]),
                             "-o", f"UserKnownHostsFile={_known_hosts(root, node)}", "-o", "StrictHostKeyChecking=yes",
                             "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-c", CIPHERS[0],
                             "-L", f"127.0.0.1:{port}:127.0.0.1:{remote_port}", f"{node['user']}@127.0.0.1"],
                            stdin=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"ssh did not forward port {port} (exit status {proc.poll()})")


def _rates(rounds: list[Round]) -> str:
    rates = [r.rate for r in rounds]
    return f"{max(rates):5.0f} ({' '.join(f'{r:.0f}' for r in rates)})"


def _cpu(rounds: list[Round], processes: list[str]) -> str:
    """Median CPU s/GiB of the client's SSH threads, each process, and all, under titles as wide as the names."""
    medians = [statistics.median(r.ssh_threads for r in rounds)]
    medians += [statistics.median(r.cpu[p] for r in rounds) for p in processes]
    medians.append(statistics.median(sum(r.cpu.values()) for r in rounds))
    return "  ".join(f"{m:{max(len(p), 4)}.1f}" for p, m in zip(_columns(processes), medians))


def _columns(processes: list[str]) -> list[str]:
    return ["client's SSH thread", *processes, " all"]


def _ratios(num: list[Round], den: list[Round]) -> str:
    ratios = [n.rate / d.rate for n, d in zip(num, den)]
    best = max(n.rate for n in num) / max(d.rate for d in den)
    rounds = " ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.median(ratios):5.2f} median of the rounds ({rounds}), best/best {best:.2f}"


def print_uploads(rounds: dict[str, list[Round]], ssh_servers: dict[str, tuple[str, Routes]],
                  references: dict[str, str]) -> None:
    """Rates and CPU per route (its SSH server and forwarder in its name), then the ratios of each SSH server's
    routes (title, row names) to direct gRPC, and of the *references* routes (name -> title)."""
    processes = list(next(iter(rounds.values()))[0].cpu)
    print(f"  {'route':<44}{'MB/s: best (each round)':<38}CPU s/GiB: {'  '.join(_columns(processes))}")
    for name, rs in rounds.items():
        print(f"  {name:<44}{_rates(rs):<38}{'':11}{_cpu(rs, processes)}")
    direct = rounds["direct gRPC"]
    for title, routes in ssh_servers.values():
        tunnel, bare = rounds[routes.tunnel], rounds[routes.bare]
        print(f"  {title}:")
        print(f"    tunnel/direct           {_ratios(tunnel, direct)}   (target >= 0.7; {routes.tunnel})")
        if routes.asyncssh_tunnel:
            print(f"    asyncssh tunnel/direct  {_ratios(rounds[routes.asyncssh_tunnel], direct)}")
        print(f"    tunnel/bare             {_ratios(tunnel, bare)}")
        print(f"    bare/direct             {_ratios(bare, direct)}")
    for name, title in references.items():
        print(f"  {title}:")
        print(f"    tunnel/direct           {_ratios(rounds[name], direct)}")


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

    with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(root / "id"))
        (root / "id").chmod(0o600)  # or OpenSSH's ssh ignores it
        key.write_public_key(str(root / "id.pub"))
        server = stack.enter_context(remote_node("server", str(root)))
        nodes = ssh_servers(stack, root, server["token_socket"])
        token = request_token(server["token_socket"])["token"]
        grpc_port = int(server["grpc"].rsplit(":", 1)[1])
        direct = stack.enter_context(RemoteBackend(server["grpc"], token))
        senders, titles = {"direct gRPC": direct}, {}
        for name, node in nodes.items():
            routes, tunnelled = tunnel_routes(stack, root, name, node, grpc_port, server["sink"], token, senders)
            titles[name] = (f"{SSH_SERVERS[name]} ({tunnelled.tunnel.cipher()})", routes)
        pids = {"server": server["pid"], **{f"{name}-sshd": node["pid"] for name, node in nodes.items()}}
        references = {}
        if "openssh" in nodes and shutil.which("ssh"):
            address = stack.enter_context(openssh_forward(root, nodes["openssh"], grpc_port))
            senders[REFERENCE] = stack.enter_context(RemoteBackend(address, token))
            references[REFERENCE] = "a plain ssh -N -L started by the bench (no Tunnel), OpenSSH sshd (reference)"
        print(f"upload of {args.mib} MiB files, {args.repeats} alternating rounds (sha256 on both sides included; a "
              f"bare forward: no gRPC, no sha256, into a sink; server and SSH servers in processes of their own):")
        if "openssh" not in nodes:
            print("  (OpenSSH's sshd is not installed: apt-get install openssh-server to time it too)")
        meter = Meter(pids)
        print_uploads(upload_rounds(senders, root, args.mib, args.repeats, meter), titles, references)
        if args.upload_only:
            return

        model = root / "tiny.pth"
        build_model("tiny", class_names=["unassigned", "a", "b"], device="cpu", seed=3).save(model)
        local = LocalBackend(root / "local")
        for b in (local, direct, tunnelled):  # through the last SSH server: OpenSSH's when it is installed
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
