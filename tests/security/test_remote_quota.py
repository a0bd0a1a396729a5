"""A user's quota holds on disk, and bad input gets INVALID_ARGUMENT naming its field (real server, in process).

Every byte the server keeps for a user counts as the blocks it takes (folders, manifests, partial
uploads included), a stream cannot shrink what it holds, the number of files is capped, and a
job is refused while its outputs would not fit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import grpc
import pytest

from mcp_remote.config import RemoteConfig
from mcp_remote.proto import multicellpose_pb2 as pb
from mcp_remote.proto import multicellpose_pb2_grpc as pbg
from mcp_remote.server import start_server

MiB = 1 << 20
CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("quota")
    cfg = RemoteConfig(server_storage_root=str(root / "storage"), quota_bytes=4 * MiB, max_upload_bytes=12 * MiB,
                       max_files=40, job_min_bytes=3 * MiB)
    running = start_server(cfg, bind="127.0.0.1:0")
    running.channel = grpc.insecure_channel(running.address)
    yield running
    running.channel.close()
    running.stop()


@pytest.fixture
def alice(server):
    """A fresh user's metadata (each test starts with an empty storage)."""
    user = f"u{os.urandom(4).hex()}"
    return (("authorization", f"Bearer {server.site.tokens.mint(user, via='test')[0]}"),), user


def on_disk(*paths: Path) -> int:
    """Allocated bytes under *paths*, each inode once (what ``du`` says)."""
    seen, total = set(), 0
    for top in paths:
        for p in [top, *top.rglob("*")]:
            st = p.lstat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def upload(channel, meta, data: bytes) -> pb.UploadStatus:
    sha = hashlib.sha256(data).hexdigest()
    chunks = [pb.UploadChunk(sha256=sha, size=len(data), offset=0)]
    chunks += [pb.UploadChunk(offset=o, data=data[o:o + MiB]) for o in range(0, len(data), MiB)]
    return pbg.TransferStub(channel).Upload(iter(chunks), metadata=meta)


def refusal(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    return err.value


def usage(server, meta) -> pb.StorageUsage:
    return pbg.StorageStub(server.channel).Usage(pb.Empty(), metadata=meta)


def test_a_stream_cannot_shrink_what_it_holds(server, alice):
    meta, user = alice
    data = os.urandom(3 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    transfer = pbg.TransferStub(server.channel)
    half = [pb.UploadChunk(sha256=sha, size=len(data), offset=0), pb.UploadChunk(offset=0, data=data[:2 * MiB])]
    assert transfer.Upload(iter(half), metadata=meta).received == 2 * MiB
    for _ in range(5):  # re-declare the file as 1 byte: once allowed a negative hold, i.e. free quota
        shrink = [pb.UploadChunk(sha256=sha, size=1, offset=0), pb.UploadChunk(offset=2 * MiB, data=b"x")]
        err = refusal(transfer.Upload, iter(shrink), metadata=meta)
        assert err.code() in (CODE.FAILED_PRECONDITION, CODE.INVALID_ARGUMENT) and "size" in err.details()
    changed = [pb.UploadChunk(sha256=sha, size=len(data), offset=0), pb.UploadChunk(offset=2 * MiB, size=MiB,
                                                                                    data=b"y")]
    assert refusal(transfer.Upload, iter(changed), metadata=meta).code() == CODE.INVALID_ARGUMENT
    err = refusal(upload, server.channel, meta, os.urandom(3 * MiB))
    assert err.code() == CODE.RESOURCE_EXHAUSTED and "quota" in err.details()
    assert usage(server, meta).bytes_used <= 4 * MiB
    assert server.site.ledger.held(user) == (0, 0)


def test_every_block_the_server_writes_counts(server, alice):
    meta, user = alice
    shas = [upload(server.channel, meta, bytes([i])).sha256 for i in range(15)]
    folder = server.site.root / "users" / user
    used = usage(server, meta)
    assert used.bytes_used >= on_disk(folder) > 15 * 4096  # 15 one-byte files take 15 blocks, not 15 bytes
    assert used.files == 15
    files = [pb.DatasetFile(name=f"f{i}.png", sha256=s, origin="o" * 4000) for i, s in enumerate(shas)]
    pbg.DatasetsStub(server.channel).Create(pb.CreateDatasetRequest(name="notes", files=files), metadata=meta)
    manifest = next(folder.glob("datasets/ds-*/dataset.json"))
    assert manifest.stat().st_size > 60_000 and manifest.stat().st_mode & 0o777 == 0o600
    after = usage(server, meta)
    assert after.bytes_used >= on_disk(folder) >= used.bytes_used + manifest.stat().st_size
    assert after.files == 15 + 15 + 1  # the blobs, their names in the dataset, the manifest


def test_the_number_of_files_is_capped(server, alice):
    meta, _ = alice
    stored = 0
    for i in range(45):
        try:
            upload(server.channel, meta, b"file %d" % i)
        except grpc.RpcError as err:
            assert err.code() == CODE.RESOURCE_EXHAUSTED and "40 files" in err.details()
            break
        stored += 1
    assert stored == 40
    assert usage(server, meta).files == 40


def test_a_job_is_refused_while_its_outputs_would_not_fit(server, alice):
    meta, user = alice
    image = upload(server.channel, meta, os.urandom(MiB + 7))  # an .npy header is not needed to be refused
    dataset = pbg.DatasetsStub(server.channel).Create(pb.CreateDatasetRequest(
        name="d", files=[pb.DatasetFile(name="a.png", sha256=image.sha256)]), metadata=meta)
    jobs = pbg.JobsStub(server.channel)
    assert 4 * MiB - usage(server, meta).bytes_used < 3 * MiB  # less room than the 3 MiB floor a job needs
    train = pb.TrainRequest(dataset_id=dataset.dataset_id, params_json=json.dumps({"base_model": "tiny"}))
    err = refusal(jobs.SubmitTraining, train, metadata=meta)
    assert err.code() == CODE.RESOURCE_EXHAUSTED and "quota" in err.details()
    batch = pb.BatchRequest(dataset_id=dataset.dataset_id, params_json=json.dumps({"model": "tiny"}))
    assert refusal(jobs.SubmitBatch, batch, metadata=meta).code() in (CODE.RESOURCE_EXHAUSTED, CODE.NOT_FOUND)
    assert list(jobs.List(pb.Empty(), metadata=meta).jobs) == []
    assert server.site.ledger.held(user) == (0, 0)


LONG_NAME = "é" * 128 + "x"  # 257 bytes


@pytest.mark.parametrize("case", ["empty upload", "sha256 with a newline", "long dataset name", "long model name",
                                  "long model_name parameter", "shape overflow", "unknown parameter"])
def test_bad_input_is_invalid_argument_naming_the_field(server, alice, case):
    meta, user = alice
    ch = server.channel
    sha = upload(ch, meta, b"some bytes").sha256
    dataset = pbg.DatasetsStub(ch).Create(pb.CreateDatasetRequest(
        name="d", files=[pb.DatasetFile(name="a.png", sha256=sha)]), metadata=meta)
    before = sorted(p.name for p in (server.site.root / "users" / user).rglob("*"))
    call, field = {
        "empty upload": (lambda: pbg.TransferStub(ch).Upload(iter([pb.UploadChunk(
            sha256=hashlib.sha256(b"").hexdigest(), size=0)]), metadata=meta), "size"),
        "sha256 with a newline": (lambda: pbg.TransferStub(ch).Upload(iter([pb.UploadChunk(
            sha256=sha + "\n", size=10, offset=0), pb.UploadChunk(offset=0, data=b"some bytes")]), metadata=meta),
            "sha256"),
        "long dataset name": (lambda: pbg.DatasetsStub(ch).Create(pb.CreateDatasetRequest(
            name=LONG_NAME, files=[pb.DatasetFile(name="a.png", sha256=sha)]), metadata=meta), "name"),
        "long model name": (lambda: pbg.ModelsStub(ch).Register(pb.RegisterModelRequest(
            name=LONG_NAME, weights=pb.BlobRef(sha256=sha, size=10)), metadata=meta), "name"),
        "long model_name parameter": (lambda: pbg.JobsStub(ch).SubmitTraining(pb.TrainRequest(
            dataset_id=dataset.dataset_id, params_json=json.dumps({"model_name": LONG_NAME})), metadata=meta),
            "model_name"),
        "shape overflow": (lambda: pbg.SegmentationStub(ch).Segment(pb.SegmentRequest(
            images=[pb.NDArray(dtype="<u2", shape=[1 << 32, 1 << 32], data=b"")]), metadata=meta), "shape"),
        "unknown parameter": (lambda: pbg.SegmentationStub(ch).Segment(pb.SegmentRequest(
            images=[pb.NDArray(dtype="<u2", shape=[4, 4], data=bytes(32))],
            params_json=json.dumps({"flow_treshold": 0.4})), metadata=meta), "flow_treshold"),
    }[case]
    err = refusal(call)
    details = err.details()
    assert err.code() == CODE.INVALID_ARGUMENT, details
    assert field in details and "\n" not in details and details.endswith(".")
    assert str(server.site.root) not in details and "/users/" not in details
    assert sorted(p.name for p in (server.site.root / "users" / user).rglob("*")) == before  # nothing written
