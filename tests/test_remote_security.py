"""What a MultiCellPose server refuses, with which status, and that a refusal writes nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcp_core.errors import ParameterError
from mcp_remote.auth import request_token
from mcp_remote.channel import open_channel
from mcp_remote.config import RemoteConfig, is_loopback
from mcp_remote.proto import multicellpose_pb2 as pb
from mcp_remote.proto import multicellpose_pb2_grpc as pbg
from mcp_remote.server import start_server
from waiting import poll

MiB = 1 << 20
CODE = grpc.StatusCode


class _Poison:
    """Unpickling this makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    cfg = RemoteConfig(server_storage_root=str(root / "storage"), quota_bytes=20 * MiB, max_upload_bytes=12 * MiB,
                       job_min_bytes=MiB,
                       server_admins=["admin"], model_root=str(root / "shared_models"))
    running = start_server(cfg, bind="127.0.0.1:0")
    running.root = root
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server):
    ch = open_channel(server.address)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def tokens(server):
    return {u: server.site.tokens.mint(u, via="test")[0] for u in ("alice", "bob", "admin")}


def auth(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def status_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    return err.value.code()


def upload(channel, token: str, data: bytes, sha: str | None = None) -> pb.UploadStatus:
    sha = sha or hashlib.sha256(data).hexdigest()
    chunks = [pb.UploadChunk(sha256=sha, size=len(data), offset=0)]
    chunks += [pb.UploadChunk(offset=o, data=data[o:o + 4 * MiB]) for o in range(0, len(data), 4 * MiB)]
    return pbg.TransferStub(channel).Upload(iter(chunks), metadata=auth(token))


def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_every_call_but_health_needs_a_valid_token(channel, tokens):
    calls = [(pbg.AuthStub(channel).WhoAmI, pb.Empty()), (pbg.ServerStub(channel).Info, pb.Empty()),
             (pbg.ModelsStub(channel).List, pb.Empty()), (pbg.StorageStub(channel).Usage, pb.Empty()),
             (pbg.JobsStub(channel).List, pb.Empty()), (pbg.DatasetsStub(channel).List, pb.Empty()),
             (pbg.TransferStub(channel).Status, pb.BlobRef(sha256="0" * 64, size=1)),
             (pbg.SegmentationStub(channel).Segment, pb.SegmentRequest())]
    for call, request in calls:
        assert status_of(call, request) == CODE.UNAUTHENTICATED
        assert status_of(call, request, metadata=auth("not-a-token")) == CODE.UNAUTHENTICATED
        assert status_of(call, request, metadata=(("authorization", tokens["alice"]),)) == CODE.UNAUTHENTICATED
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="multicellpose.v1.Jobs"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    me = pbg.AuthStub(channel).WhoAmI(pb.Empty(), metadata=auth(tokens["alice"]))
    assert (me.user, me.admin) == ("alice", False)


def test_tokens_from_peer_credentials_and_stored_hashed(server, channel):
    reply = request_token(server.site.config.token_socket())
    me = pbg.AuthStub(channel).WhoAmI(pb.Empty(), metadata=auth(reply["token"]))
    assert me.user == reply["user"] == pwd.getpwuid(os.getuid()).pw_name
    stored = {p.name: p.read_text() for p in (server.site.root / "auth" / "tokens").iterdir()}
    assert f"{hashlib.sha256(reply['token'].encode()).hexdigest()}.json" in stored
    assert not any(reply["token"] in text for text in stored.values())
    pbg.AuthStub(channel).Logout(pb.Empty(), metadata=auth(reply["token"]))
    assert status_of(pbg.AuthStub(channel).WhoAmI, pb.Empty(), metadata=auth(reply["token"])) == CODE.UNAUTHENTICATED


def test_password_login_is_throttled(server, channel):
    server.site.passwords.set("carol", "a long password")
    login = pbg.AuthStub(channel).Login
    token = login(pb.LoginRequest(user="carol", password="a long password")).token
    assert pbg.AuthStub(channel).WhoAmI(pb.Empty(), metadata=auth(token)).user == "carol"
    assert status_of(login, pb.LoginRequest(user="nobody", password="x")) == CODE.UNAUTHENTICATED
    for _ in range(5):
        assert status_of(login, pb.LoginRequest(user="carol", password="wrong")) == CODE.UNAUTHENTICATED
    assert status_of(login, pb.LoginRequest(user="carol", password="a long password")) == CODE.RESOURCE_EXHAUSTED


def test_another_users_files_datasets_and_jobs_are_not_found(server, channel, tokens):
    image = npy_bytes(np.zeros((32, 32), np.uint16))
    sha = upload(channel, tokens["bob"], image).sha256
    transfer, datasets, jobs = pbg.TransferStub(channel), pbg.DatasetsStub(channel), pbg.JobsStub(channel)
    assert status_of(transfer.Download, pb.DownloadRequest(sha256=sha), metadata=auth(tokens["alice"])) == CODE.NOT_FOUND
    mine = transfer.Status(pb.BlobRef(sha256=sha, size=len(image)), metadata=auth(tokens["alice"]))
    assert (mine.received, mine.complete) == (0, False)  # bob's file does not exist for alice
    request = pb.CreateDatasetRequest(name="bob's", files=[pb.DatasetFile(name="a.npy", sha256=sha)])
    assert status_of(datasets.Create, request, metadata=auth(tokens["alice"])) == CODE.NOT_FOUND
    dataset = datasets.Create(request, metadata=auth(tokens["bob"]))
    job = jobs.SubmitTraining(pb.TrainRequest(dataset_id=dataset.dataset_id, params_json=json.dumps({"base_model": "tiny"})),
                              metadata=auth(tokens["bob"]))
    try:
        alice = auth(tokens["alice"])
        assert status_of(jobs.Get, pb.JobRef(job_id=job.job_id), metadata=alice) == CODE.NOT_FOUND
        assert status_of(jobs.Events, pb.EventsRequest(job_id=job.job_id), metadata=alice) == CODE.NOT_FOUND
        assert status_of(jobs.Watch, pb.EventsRequest(job_id=job.job_id), metadata=alice) == CODE.NOT_FOUND
        assert status_of(jobs.Cancel, pb.JobRef(job_id=job.job_id), metadata=alice) == CODE.NOT_FOUND
        assert status_of(jobs.Predictions, pb.PredictionRequest(job_id=job.job_id), metadata=alice) == CODE.NOT_FOUND
        assert status_of(jobs.SubmitBatch, pb.BatchRequest(dataset_id=dataset.dataset_id, params_json="{}"),
                         metadata=alice) == CODE.NOT_FOUND
        assert status_of(datasets.Delete, pb.DatasetRef(dataset_id=dataset.dataset_id), metadata=alice) == CODE.NOT_FOUND
        assert job.job_id not in [j.job_id for j in jobs.List(pb.Empty(), metadata=alice).jobs]
    finally:  # the worker fails (no labels); wait so no process outlives the test
        state = poll(lambda: (st := jobs.Get(pb.JobRef(job_id=job.job_id), metadata=auth(tokens["bob"])).state) in (
            "done", "failed", "cancelled") and st, f"bob's job {job.job_id} to end", interval=0.2)
    assert state == "failed"
    bob = auth(tokens["bob"])
    texts = [jobs.Get(pb.JobRef(job_id=job.job_id), metadata=bob).error]
    texts += [e.data_json for e in jobs.Events(pb.EventsRequest(job_id=job.job_id), metadata=bob).events]
    assert texts[0] and not any(str(server.root) in t or "/users/" in t for t in texts)  # no server path


@pytest.mark.parametrize("name", ["../evil.npy", "/etc/passwd.npy", "a/b.npy", ".hidden.npy", "..", "x\\y.npy",
                                  "ok.npy\x00.tif", "evil.sh"])
def test_client_names_never_become_paths(server, channel, tokens, name):
    sha = upload(channel, tokens["alice"], npy_bytes(np.ones((8, 8), np.uint8))).sha256
    before = files_under(server.root)
    request = pb.CreateDatasetRequest(name="../../x", files=[pb.DatasetFile(name=name, sha256=sha)])
    assert status_of(pbg.DatasetsStub(channel).Create, request, metadata=auth(tokens["alice"])) == CODE.INVALID_ARGUMENT
    assert files_under(server.root) == before


def test_malformed_ids_are_refused(channel, tokens):
    alice = auth(tokens["alice"])
    transfer = pbg.TransferStub(channel)
    for sha in ("../../auth/tokens.json", "/etc/passwd", "A" * 64, "0" * 63):
        assert status_of(transfer.Status, pb.BlobRef(sha256=sha, size=1), metadata=alice) == CODE.INVALID_ARGUMENT
        assert status_of(transfer.Download, pb.DownloadRequest(sha256=sha), metadata=alice) == CODE.INVALID_ARGUMENT
    for job_id in ("../jobs", "/etc/passwd", "train-../../x"):
        assert status_of(pbg.JobsStub(channel).Get, pb.JobRef(job_id=job_id), metadata=alice) == CODE.NOT_FOUND
    request = pb.TrainRequest(dataset_id="../../auth", params_json="{}")
    assert status_of(pbg.JobsStub(channel).SubmitTraining, request, metadata=alice) == CODE.NOT_FOUND


def test_a_pickled_npy_is_refused_and_discarded(server, channel, tokens, tmp_path):
    marker = tmp_path / "pwned"
    data = npy_bytes(np.array([_Poison(marker)], dtype=object), allow_pickle=True)
    sha = upload(channel, tokens["alice"], data).sha256
    blobs = server.site.storage("alice").blobs
    assert (blobs / sha).exists()
    request = pb.CreateDatasetRequest(name="poison", files=[pb.DatasetFile(name="img.npy", sha256=sha)])
    assert status_of(pbg.DatasetsStub(channel).Create, request, metadata=auth(tokens["alice"])) == CODE.INVALID_ARGUMENT
    assert not marker.exists() and not (blobs / sha).exists()
    assert list(server.site.storage("alice").datasets.iterdir()) == []


def test_a_pickled_model_is_refused(server, channel, tokens, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"encoder.weight": _Poison(marker)}, buf)
    sha = upload(channel, tokens["alice"], buf.getvalue()).sha256
    models = server.site.storage("alice").home / "models"
    request = pb.RegisterModelRequest(name="evil", weights=pb.BlobRef(sha256=sha, size=len(buf.getvalue())))
    assert status_of(pbg.ModelsStub(channel).Register, request, metadata=auth(tokens["alice"])) == CODE.INVALID_ARGUMENT
    assert not marker.exists()
    assert not models.exists() or not any(models.iterdir())


def test_oversize_and_over_quota_uploads_write_nothing(server, channel, tokens):
    alice = auth(tokens["alice"])
    transfer, storage = pbg.TransferStub(channel), pbg.StorageStub(channel)
    store = server.site.storage("alice")
    big = pb.BlobRef(sha256="1" * 64, size=13 * MiB)
    assert status_of(transfer.Status, big, metadata=alice) == CODE.INVALID_ARGUMENT
    first = pb.UploadChunk(sha256="1" * 64, size=13 * MiB, offset=0)
    assert status_of(transfer.Upload, iter([first, pb.UploadChunk(offset=0, data=b"x" * MiB)]),
                     metadata=alice) == CODE.INVALID_ARGUMENT
    assert not (store.partial / ("1" * 64)).exists()

    pbg.StorageStub(channel).ClearTrainingFiles(pb.Empty(), metadata=alice)
    ten = os.urandom(10 * MiB)
    assert upload(channel, tokens["alice"], ten).complete
    used = storage.Usage(pb.Empty(), metadata=alice)
    assert 10 * MiB <= used.bytes_used < 10 * MiB + 64 * 1024 and used.quota_bytes == 20 * MiB  # + folders
    eleven = os.urandom(11 * MiB)
    with pytest.raises(grpc.RpcError) as err:
        upload(channel, tokens["alice"], eleven)
    assert err.value.code() == CODE.RESOURCE_EXHAUSTED and "quota" in err.value.details()
    assert not (store.partial / hashlib.sha256(eleven).hexdigest()).exists()
    assert storage.Usage(pb.Empty(), metadata=alice).bytes_used == used.bytes_used
    assert storage.ClearTrainingFiles(pb.Empty(), metadata=alice).bytes_used < 64 * 1024


def test_corrupted_upload_is_discarded(server, channel, tokens):
    data = os.urandom(MiB)
    with pytest.raises(grpc.RpcError) as err:
        upload(channel, tokens["alice"], data, sha="2" * 64)
    assert err.value.code() == CODE.DATA_LOSS
    store = server.site.storage("alice")
    assert not (store.partial / ("2" * 64)).exists() and not (store.blobs / ("2" * 64)).exists()


def test_only_admins_write_shared_models(server, channel, tokens, tmp_path):
    from mcp_core.model import build_model

    path = tmp_path / "shared_tiny.pth"
    build_model("tiny", class_names=["unassigned", "a"], device="cpu").save(path)
    data = path.read_bytes()
    for user in ("alice", "admin"):
        upload(channel, tokens[user], data)
    sha = hashlib.sha256(data).hexdigest()
    request = pb.RegisterModelRequest(name="shared_tiny", scope="shared", weights=pb.BlobRef(sha256=sha, size=len(data)))
    models = pbg.ModelsStub(channel)
    assert status_of(models.Register, request, metadata=auth(tokens["alice"])) == CODE.PERMISSION_DENIED
    assert not (server.root / "shared_models").exists() or not any((server.root / "shared_models").iterdir())
    assert models.Register(request, metadata=auth(tokens["admin"])).scope == "shared"
    seen = {m.name: m.scope for m in models.List(pb.Empty(), metadata=auth(tokens["alice"])).models}
    assert seen["shared_tiny"] == "shared"
    assert status_of(models.Delete, pb.ModelRef(name="shared_tiny", scope="shared"),
                     metadata=auth(tokens["alice"])) == CODE.PERMISSION_DENIED
    for user in ("alice", "admin"):
        pbg.StorageStub(channel).ClearTrainingFiles(pb.Empty(), metadata=auth(tokens[user]))


def test_arrays_must_be_plain(channel, tokens):
    segment = pbg.SegmentationStub(channel).Segment
    bad = [pb.NDArray(dtype="O", shape=[2], data=b"\0" * 16), pb.NDArray(dtype="<u2", shape=[4, 4], data=b"\0" * 8),
           pb.NDArray(dtype="not a dtype", shape=[1], data=b"\0")]
    for arr in bad:
        request = pb.SegmentRequest(images=[arr], params_json="{}")
        assert status_of(segment, request, metadata=auth(tokens["alice"])) == CODE.INVALID_ARGUMENT
    request = pb.SegmentRequest(images=[pb.NDArray(dtype="<u2", shape=[4, 4], data=b"\0" * 32)],
                                params_json=json.dumps({"flow_threshold": -1}))
    assert status_of(segment, request, metadata=auth(tokens["alice"])) == CODE.INVALID_ARGUMENT


def test_non_loopback_needs_tls(tmp_path):
    assert is_loopback("127.0.0.1:1") and is_loopback("[::1]:1") and is_loopback("localhost:1")
    assert is_loopback("unix:/tmp/x.sock") and not is_loopback("0.0.0.0:1") and not is_loopback("10.1.2.3:1")
    with pytest.raises(ParameterError, match="without TLS"):
        start_server(RemoteConfig(server_storage_root=str(tmp_path)), bind="0.0.0.0:0")
