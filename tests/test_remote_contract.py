"""One Backend contract, four ways: LocalBackend, RemoteBackend direct, and RemoteBackend through a
real asyncssh SSH server (password login and key login). Segmentation must agree exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mcp_core.backend import Backend, LocalBackend
from mcp_core.errors import JobError, ModelError
from mcp_core.labels.files import load_labels
from mcp_core.params import SegmentParams, TrainParams
from mcp_core.synthetic import make_sample, write_demo_project
from waiting import poll

CLASSES = ["unassigned", "round", "elongated"]
# An untrained tiny model finds objects once the flow-error check is off; enough to compare backends.
PARAMS = SegmentParams(model="tinym", bsize=256, flow_threshold=0.0, min_size=0, return_flows=True)
TRAIN = TrainParams(base_model="tiny", bsize=128, batch_size=2, epochs=1, train_debug_steps=1, test_ratio=0.0,
                    rescale=False, class_names=CLASSES, model_name="trained", min_train_masks=0)
FINAL = ("done", "failed", "cancelled", "interrupted")
KINDS = ["local", "direct", "ssh-password", "ssh-key"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from mcp_core.model import build_model

    path = tmp_path_factory.mktemp("model") / "tinym.pth"
    build_model("tiny", class_names=CLASSES, device="cpu", seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [make_sample(3, shape=(128, 128))[0], make_sample(4, shape=(96, 160))[0]]


@pytest.fixture(scope="module")
def reference(tiny_model, images, tmp_path_factory):
    """Results of a LocalBackend of its own: what every backend must return."""
    backend = LocalBackend(tmp_path_factory.mktemp("reference"))
    backend.add_model(tiny_model)
    results = backend.segment(images, PARAMS)
    assert all(r.masks.max() > 0 for r in results)
    return results


@pytest.fixture(scope="module", params=KINDS)
def backend(request, tmp_path_factory, tiny_model):
    """A backend of each kind with the tiny model added (so also a test of add_model)."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    closers = []
    if kind == "local":
        b = LocalBackend(root / "home")
    else:
        import asyncssh

        from mcp_remote.auth import request_token
        from mcp_remote.client import RemoteBackend
        from mcp_remote.config import RemoteConfig
        from mcp_remote.server import start_server
        from mcp_remote.testing import LocalSSHServer
        from mcp_remote.tunnel import HostKeyUnknown, connect, trust_host_key

        cfg = RemoteConfig(server_storage_root=str(root / "server"))
        server = start_server(cfg, bind="127.0.0.1:0")
        closers.append(server.stop)
        if kind == "direct":
            b = RemoteBackend(server.address, request_token(cfg.token_socket())["token"])
        else:
            key = asyncssh.generate_private_key("ssh-ed25519")
            key.write_private_key(str(root / "id_ed25519"))
            sshd = LocalSSHServer({"alice": "correct horse"}, {"alice": [key]}, cfg.token_socket())
            closers.append(sshd.close)
            login = {"password": "correct horse"} if kind == "ssh-password" else {"key": root / "id_ed25519"}
            where = {"port": sshd.port, "known_hosts": root / "known_hosts", "ssh_config": [],
                     "config": RemoteConfig(ssh_remote_port=int(server.address.rsplit(":", 1)[1]))}
            with pytest.raises(HostKeyUnknown) as unknown:  # first contact: the user is shown the fingerprint
                connect("127.0.0.1", "alice", **login, **where)
            assert unknown.value.host_key.fingerprint == sshd.host_key.get_fingerprint("sha256")
            trust_host_key(unknown.value.host_key)
            b = connect("127.0.0.1", "alice", **login, **where)
            assert b.tunnel.cipher().startswith("aes128-gcm")
    reports: list[tuple[int, int]] = []
    added = b.add_model(tiny_model, progress=lambda done, total: reports.append((done, total)))
    size = tiny_model.stat().st_size
    assert reports and reports[-1][0] == reports[-1][1] >= size  # the whole model moved (with its sidecar, remote)
    yield b
    b.close()
    for close in reversed(closers):
        close()
    assert added.name == "tinym"


def _wait(backend, job_id: str):
    return poll(lambda: (info := backend.job(job_id)).state in FINAL and info, f"job {job_id} to finish",
                timeout=300, interval=0.2, last=lambda: backend.job(job_id))


def test_backend_protocol_info_and_models(backend):
    assert isinstance(backend, Backend)
    info = backend.info()
    assert info.kind == backend.kind and info.versions["cellpose"] and info.device
    models = {m.name: m for m in backend.list_models()}
    assert models["tinym"].scope == "user" and models["tinym"].class_names == CLASSES
    assert models["tinym"].architecture == "tiny" and models["tinym"].available
    assert models["cpsam"].scope == "builtin"


def test_where_compute_runs_is_declared_and_a_local_backend_travels_to_a_worker(backend, images, reference):
    assert backend.computes_here == (backend.kind == "local")
    if backend.computes_here:  # the app segments in a worker process, with the backend pickled
        import pickle

        twin = pickle.loads(pickle.dumps(backend))
        assert (twin.home, twin.models_dir) == (backend.home, backend.models_dir)
        np.testing.assert_array_equal(twin.segment(images[:1], PARAMS)[0].masks, reference[0].masks)


def test_segmentation_is_identical_on_every_backend(backend, images, reference):
    results = backend.segment(images, PARAMS)
    assert len(results) == len(reference) == 2
    for got, want in zip(results, reference, strict=True):
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_array_equal(got.classes, want.classes)
        np.testing.assert_array_equal(got.class_map, want.class_map)
        np.testing.assert_array_equal(got.flows, want.flows)
        np.testing.assert_array_equal(got.cellprob, want.cellprob)
        assert got.masks.dtype == want.masks.dtype and got.class_names == want.class_names == CLASSES
        assert got.diameter == want.diameter and got.class_colors == want.class_colors
        assert set(got.confidence) == set(want.confidence) >= {"confidence", "cellprob_mean", "flow_error",
                                                                "class_margin", "class_entropy"}
        for name, scores in want.confidence.items():  # per-object scores travel too (nan where no object)
            np.testing.assert_array_equal(got.confidence[name], scores)


def test_errors_are_the_same_classes(backend, images, tmp_path):
    with pytest.raises(ModelError, match="no model named 'nope'"):
        backend.segment(images[:1], SegmentParams(model="nope"))
    with pytest.raises(JobError):
        backend.job("train-20200101-000000-abcdef")
    with pytest.raises(ModelError, match="does not exist"):
        backend.add_model(tmp_path / "missing.pth")


# Jobs start a worker process each (~5 s on 2 cores): run on the local backend and the full SSH path;
# "direct" serves the same RPCs without the tunnel.
@pytest.mark.parametrize("backend", ["local", "ssh-key"], indirect=True)
def test_training_then_batch_segmentation_jobs(backend, tmp_path):
    project = write_demo_project(tmp_path / "project", n_images=2, n_labelled=2, shape=(128, 128))
    moved: list[tuple[int, int]] = []
    job = backend.submit_training(project, TRAIN, progress=lambda done, total: moved.append((done, total)))
    assert job.kind == "train" and job.state in ("queued", "running")
    final = _wait(backend, job.job_id)
    assert final.state == "done", final.error
    events = backend.events(job.job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and events[-1].kind == "done"
    assert {"loss", "progress"} <= {e.kind for e in events} and all(e.job_id == job.job_id for e in events)
    assert [e.seq for e in backend.events(job.job_id, since=2)] == [e.seq for e in events[2:]]
    assert job.job_id in [j.job_id for j in backend.jobs()]
    model = final.result["model"]
    assert next(m for m in backend.list_models() if m.name == model).class_names == CLASSES

    params = SegmentParams(model=model, bsize=128, flow_threshold=0.0, min_size=0)
    images = sorted(project.glob("demo_0*.tif"))
    batch = backend.submit_batch([str(p) for p in images], params)
    final = _wait(backend, batch.job_id)
    assert final.state == "done", final.error
    assert bool(moved) == (backend.kind == "remote")  # the labels went up (locally the job reads them in place)
    written = backend.fetch_predictions(batch.job_id)  # a remote server's come back pickle-free, written here
    assert sorted(p.name for p in written) == sorted(f"{p.stem}_pred.npy" for p in images)
    assert all(p.parent == project for p in written)
    copies = backend.fetch_predictions(batch.job_id, tmp_path / "elsewhere")
    assert sorted(p.name for p in copies) == sorted(p.name for p in written)
    assert all(p.parent == tmp_path / "elsewhere" and p.is_file() for p in copies)
    for image in images:
        pred = load_labels(image.with_name(f"{image.stem}_pred.npy"))
        from mcp_core.io import read_frame

        [direct] = backend.segment([read_frame(image)], params)
        np.testing.assert_array_equal(pred.masks, direct.masks)
        assert pred.class_names == CLASSES
        assert direct.confidence and set(pred.confidence) == set(direct.confidence)
        for name, scores in direct.confidence.items():  # the job's scores reach the written prediction
            np.testing.assert_array_equal(pred.confidence[name], scores.astype(np.float32))
    # round trip: the model trained there, downloaded here, segments here as it did there
    local = backend.download_model(model, tmp_path / "local_models")
    here = LocalBackend(tmp_path / "here", models_dir=tmp_path / "local_models")
    frame = read_frame(images[0])
    [there] = backend.segment([frame], params)
    [mine] = here.segment([frame], dataclasses.replace(params, model=local.stem))
    assert next(m for m in here.list_models() if m.name == local.stem).class_names == CLASSES
    np.testing.assert_array_equal(mine.masks, there.masks)
    np.testing.assert_array_equal(mine.classes, there.classes)


def test_download_model_to_a_local_folder_with_progress(backend, images, reference, tiny_model, tmp_path):
    moved: list[tuple[int, int]] = []
    local = backend.download_model("tinym", tmp_path / "models", progress=lambda done, total: moved.append((done, total)))
    assert local == tmp_path / "models" / "tinym.pth" and local.with_suffix(".json").is_file()
    assert local.read_bytes() == tiny_model.read_bytes()
    assert moved and moved[-1] == (tiny_model.stat().st_size,) * 2
    again = backend.download_model("tinym", tmp_path / "models")  # the name is taken: a free one
    assert again.name == "tinym_2.pth" and again.read_bytes() == local.read_bytes()
    here = LocalBackend(tmp_path / "here", models_dir=tmp_path / "models")  # used on this machine
    np.testing.assert_array_equal(here.segment(images[:1], PARAMS)[0].masks, reference[0].masks)
    with pytest.raises(ModelError, match="builtin"):
        backend.download_model("cpsam", tmp_path / "models")
    with pytest.raises(ModelError, match="no model named 'nope'"):
        backend.download_model("nope", tmp_path / "models")


def test_usage_and_clearing_training_files_keeps_models(backend, images, reference):
    before = backend.usage()
    assert before.bytes_used >= 0
    after = backend.clear_training_files()
    assert after.bytes_used <= before.bytes_used
    assert "tinym" in [m.name for m in backend.list_models()]
    np.testing.assert_array_equal(backend.segment(images[:1], PARAMS)[0].masks, reference[0].masks)
