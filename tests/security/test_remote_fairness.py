"""One user cannot stall the others: stream limits, idle uploads cut off, queued-job caps and turns,
an atomic login throttle, bounded tokens, a reachable token socket beside private storage, and job
workers that stop when their server is killed (real servers; the last one in its own process)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcp_core.params import JobInfo, TrainParams
from mcp_core.synthetic import write_demo_project
from mcp_remote.auth import TokenStore, request_token
from mcp_remote.client import RemoteBackend
from mcp_remote.config import RemoteConfig
from mcp_remote.errors import QuotaExceeded
from mcp_remote.job_queue import JobQueue, Submission
from mcp_remote.proto import multicellpose_pb2 as pb
from mcp_remote.proto import multicellpose_pb2_grpc as pbg
from mcp_remote.server import start_server

CODE = grpc.StatusCode
MiB = 1 << 20


def until(what: str, predicate, timeout: float = 60.0):
    """Poll *predicate* until it is true; fail naming *what* was waited for."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def meta(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


@contextlib.contextmanager
def serving(tmp_path: Path, **settings):
    server = start_server(RemoteConfig(server_storage_root=str(tmp_path / "storage"), **settings), bind="127.0.0.1:0")
    channel = grpc.insecure_channel(server.address)
    try:
        yield server, channel
    finally:
        channel.close()
        server.stop()


def held_upload(release: threading.Event, sha: str, size: int, first: bytes = b"x"):
    """An upload stream that names its file, sends its *first* bytes, then sends nothing until *release*."""
    yield pb.UploadChunk(sha256=sha, size=size, offset=0, data=first)
    release.wait()


def test_idle_uploads_of_one_user_stall_no_one_else(tmp_path):
    with serving(tmp_path) as (server, channel):
        alice, bob = (server.site.tokens.mint(u, via="test")[0] for u in ("alice", "bob"))
        release = threading.Event()
        calls = [pbg.TransferStub(channel).Upload.future(held_upload(release, f"{i:064x}", 100), metadata=meta(alice))
                 for i in range(16)]
        try:
            until("alice's open uploads to be admitted or refused",
                  lambda: sum(c.done() for c in calls) == 16 - server.site.config.max_streams_per_user)
            refused = [c.exception() for c in calls if c.done()]
            assert [e.code() for e in refused] == [CODE.RESOURCE_EXHAUSTED] * 12
            assert "open" in refused[0].details()
            me = pbg.AuthStub(channel).WhoAmI(pb.Empty(), metadata=meta(bob), timeout=30)
            assert me.user == "bob"
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            release.set()
        until("alice's uploads to end", lambda: all(c.done() for c in calls))


def test_an_idle_upload_is_cut_off_and_frees_its_slot(tmp_path):
    with serving(tmp_path, upload_idle_s=0.5, max_streams_per_user=1) as (server, channel):
        token = server.site.tokens.mint("alice", via="test")[0]
        data = os.urandom(1000)
        sha = hashlib.sha256(data).hexdigest()
        release = threading.Event()
        try:
            idle = pbg.TransferStub(channel).Upload.future(held_upload(release, sha, len(data), data[:1]), metadata=meta(token))
            until("the idle upload to be cut off", idle.done)
            assert isinstance(idle.exception(), grpc.RpcError)
        finally:
            release.set()
        chunks = [pb.UploadChunk(sha256=sha, size=len(data), offset=0), pb.UploadChunk(offset=1, data=data[1:])]
        done = until("the slot to be free again", lambda: _try_upload(channel, token, chunks))
        assert done.complete  # resumed after the byte the idle stream had sent


def _try_upload(channel, token, chunks):
    try:
        return pbg.TransferStub(channel).Upload(iter(chunks), metadata=meta(token))
    except grpc.RpcError as err:
        if err.code() == CODE.RESOURCE_EXHAUSTED:
            return None
        raise


class _Backend:
    """Stands in for a LocalBackend: its jobs run until :meth:`finish`."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.states: dict[str, str] = {}

    def start(self, name: str):
        def start(_backend):
            self.started.append(name)
            self.states[name] = "running"
            return JobInfo(job_id=name, kind="train", state="running")
        return start

    def job(self, local_id: str) -> JobInfo:
        return JobInfo(job_id=local_id, kind="train", state=self.states[local_id])

    def events(self, local_id: str, since: int = 0) -> list:
        return []

    def cancel(self, local_id: str) -> JobInfo:
        self.states[local_id] = "cancelled"
        return self.job(local_id)

    def finish(self, name: str) -> None:
        self.states[name] = "done"


def test_queued_jobs_are_capped_per_user_and_users_take_turns(tmp_path):
    backend = _Backend()
    ended = []
    queue = JobQueue(tmp_path / "jobs", lambda home, models: backend, poll_s=0.05, on_end=ended.append,
                     max_per_user=3)
    try:
        def submit(user: str, name: str) -> JobInfo:
            return queue.submit(Submission(user, "train", {}, str(tmp_path), None, backend.start(name)))

        for name in ("a1", "a2", "a3"):
            submit("alice", name)
        with pytest.raises(QuotaExceeded, match="3 jobs"):
            submit("alice", "a4")
        until("alice's first job to start", lambda: backend.started == ["a1"])
        for name in ("b1", "b2"):
            submit("bob", name)
        for running in ("a1", "b1", "a2", "b2", "a3"):  # turns, not the order of submission
            until(f"{running} to start", lambda r=running: backend.started[-1:] == [r])
            backend.finish(running)
        until("the last job to end", lambda: len(ended) == 5)
        assert backend.started == ["a1", "b1", "a2", "b2", "a3"]
        last = submit("alice", "a5")  # finished jobs no longer count against the cap
        queue.remove_finished("alice")  # what clearing training files does: a5 is not finished
        assert [j.job_id for j in queue.jobs("alice")] == [last.job_id]
        assert queue.folders("alice")[0] == tmp_path / "jobs" / last.job_id and len(queue.jobs("bob")) == 2
    finally:
        queue.close()


def test_concurrent_wrong_passwords_check_at_most_the_limit(tmp_path):
    with serving(tmp_path) as (server, channel):
        server.site.passwords.set("carol", "a long password")
        checked = []
        verify = server.site.passwords.verify
        server.site.passwords.verify = lambda user, password: checked.append(user) or verify(user, password)
        barrier = threading.Barrier(40)
        codes = []

        def attempt() -> None:
            barrier.wait()
            try:
                pbg.AuthStub(channel).Login(pb.LoginRequest(user="carol", password="wrong"), timeout=120)
            except grpc.RpcError as err:
                codes.append(err.code())

        threads = [threading.Thread(target=attempt) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        limit = server.site.throttle.max_failures
        assert len(checked) <= limit
        assert codes.count(CODE.UNAUTHENTICATED) == len(checked)
        assert codes.count(CODE.RESOURCE_EXHAUSTED) == 40 - len(checked)


def test_tokens_are_capped_pruned_and_kept_one_file_each(tmp_path):
    store = TokenStore(tmp_path / "tokens", lifetime_s=3600, max_per_user=3)
    tokens = [store.mint("alice", via="test")[0] for _ in range(3)]
    files = {p.name: p.stat().st_ino for p in (tmp_path / "tokens").iterdir()}
    newest = store.mint("alice", via="test")[0]
    store.mint("bob", via="test")
    with pytest.raises(Exception, match="not valid"):
        store.user(tokens[0])  # the oldest of alice's was revoked
    assert [store.user(t) for t in (*tokens[1:], newest)] == ["alice"] * 3
    now = {p.name: p.stat().st_ino for p in (tmp_path / "tokens").iterdir()}
    assert len(now) == 4 and all(now[name] == ino for name, ino in files.items() if name in now)  # untouched
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "tokens").iterdir())

    short = TokenStore(tmp_path / "short", lifetime_s=0.2)
    old = short.mint("alice", via="test")[0]
    until("the short token to expire", lambda: _expired(short, old))
    short.mint("bob", via="test")
    assert len(list((tmp_path / "short").iterdir())) == 1  # the expired one was deleted
    assert TokenStore(tmp_path / "tokens").user(newest) == "alice"  # read back by a restarted server


def _expired(store: TokenStore, token: str) -> bool:
    try:
        store.user(token)
    except Exception as exc:
        return "expired" in str(exc)
    return False


def test_the_token_socket_is_reachable_and_storage_private(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="mcp-sock-"))  # outside pytest's private temporary folder
    try:
        os.chmod(base, 0o755)
        server = start_server(RemoteConfig(server_storage_root=str(base / "storage")), bind="127.0.0.1:0")
        try:
            token = request_token(server.site.config.token_socket())["token"]
            with RemoteBackend(server.address, token) as backend:
                user = backend.whoami()[0]
            root = server.site.root
            mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
            assert mode(root) == 0o711 and mode(root / "run") == 0o755
            assert mode(server.site.config.token_socket()) == 0o666
            for name in ("auth", "users", "jobs", "shared", "auth/tokens"):
                assert mode(root / name) == 0o700, name
            assert all(mode(p) == 0o600 for p in (root / "auth" / "tokens").iterdir())
            store = server.site.storage(user)
            assert {mode(p) for p in (store.dir, store.blobs, store.partial, store.datasets, store.home)} == {0o700}
            if os.geteuid() == 0:  # as another OS user: the socket answers, the storage stays shut
                other, refused = _as_nobody(server.site.config.token_socket(), [root, root / "users", root / "auth"])
                assert other and other != user
                assert refused == 3
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(socket_path: Path, private: list[Path]) -> tuple[str, int]:
    """In a child running as uid 65534: the user the token socket names, and how many *private* folders refuse it."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe and never returns
        code = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            user = request_token(socket_path, timeout=20)["user"]
            refused = 0
            for folder in private:
                try:
                    os.listdir(folder)
                except PermissionError:
                    refused += 1
            os.write(write, json.dumps([user, refused]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        reply = fh.read()
    os.waitpid(child, 0)
    user, refused = json.loads(reply) if reply else ("", 0)
    return user, refused


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"


def test_a_killed_servers_worker_stops_and_usage_is_measured_again(tmp_path):
    """kill -9 of a server while a job trains and an upload is half sent."""
    config = tmp_path / "remote_config.json"
    config.write_text(json.dumps({"server_storage_root": str(tmp_path / "storage"),
                                  "server_bind": f"unix:{tmp_path / 'grpc.sock'}", "job_min_bytes": 0}))
    project = write_demo_project(tmp_path / "project", n_images=1, n_labelled=1, shape=(96, 96))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mcp_remote.cli", "--config", str(config), "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = None
    release = threading.Event()
    try:
        assert "MultiCellPose server on" in proc.stdout.readline()
        token = request_token(tmp_path / "storage" / "run" / "token.sock")["token"]
        backend = RemoteBackend(f"unix:{tmp_path / 'grpc.sock'}", token)
        params = TrainParams(base_model="tiny", bsize=64, batch_size=1, epochs=100000, test_ratio=0.0,
                             rescale=False, model_name="long", min_train_masks=0)
        job = backend.submit_training(project, params)
        until("the job to train", lambda: any(e.kind == "loss" for e in backend.events(job.job_id)), 180)
        backend.close()
        record = json.loads((tmp_path / "storage" / "jobs" / job.job_id / "record.json").read_text())
        local = tmp_path / "storage" / "users" / record["user"] / "home" / "jobs" / record["local_id"]
        pid = json.loads((local / "process.json").read_text())["pid"]
        data = os.urandom(3 * MiB)
        sha = hashlib.sha256(data).hexdigest()
        partial = tmp_path / "storage" / "users" / record["user"] / "partial" / sha
        channel = grpc.insecure_channel(f"unix:{tmp_path / 'grpc.sock'}")
        upload = pbg.TransferStub(channel).Upload.future(held_upload(release, sha, len(data), data[:MiB]),
                                                         metadata=meta(token))
        until("half the upload to be on disk", lambda: partial.is_file() and partial.stat().st_size == MiB)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        until("the orphaned worker to exit by itself", lambda: not _alive(pid), 60)
        until("the upload to end with the server", upload.done)
        assert isinstance(upload.exception(), grpc.RpcError)
        channel.close()
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        proc.stdout.close()
    cfg = RemoteConfig(server_storage_root=str(tmp_path / "storage"))
    server = start_server(cfg, bind="127.0.0.1:0", token_socket=False)
    try:
        backend = RemoteBackend(server.address, token)
        assert backend.job(job.job_id).state == "interrupted"
        folders = [tmp_path / "storage" / "users" / record["user"], tmp_path / "storage" / "jobs" / job.job_id]
        inodes = {(st.st_ino, st.st_blocks) for f in folders for st in map(os.lstat, [f, *f.rglob("*")])}
        on_disk = sum(blocks * 512 for _, blocks in inodes)
        assert partial.stat().st_size == MiB
        assert backend.usage().bytes_used >= on_disk > MiB
        backend.close()
    finally:
        server.stop()
