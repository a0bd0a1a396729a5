"""Folder segmentation on a dask LocalCluster: same predictions as in-process, worker deaths, reruns."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from mcp_core.cluster import ClusterConfig, load_config, open_client
from mcp_core.distributed import record_path, segment_on_client
from mcp_core.errors import ParameterError
from mcp_core.labels import load_labels
from mcp_core.model import build_model
from mcp_core.params import SegmentParams
from mcp_core.segment import segment
from mcp_core.synthetic import make_sample

NAMES = ["unassigned", "round", "elongated"]
PARAMS = SegmentParams(bsize=128, flow_threshold=0.0, niter=50)
N_IMAGES = 12


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny 3-class model whose readout calls every pixel foreground (masks come from its flows)."""
    model = build_model("tiny", NAMES, device="cpu", seed=7, bsize=128)
    with torch.no_grad():
        model.net.out.bias[-model.net.ps ** 2:] += 3.0
    return model.save(tmp_path_factory.mktemp("model") / "tiny3.pth")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(N_IMAGES):
        np.save(folder / f"img{i:02d}.npy", make_sample(i, shape=(128, 128))[0])
    return folder


@pytest.fixture(scope="module")
def reference(model_file, images):
    """In-process predictions of every image."""
    files = sorted(images.glob("*.npy"))
    results = segment(str(model_file), [np.load(f) for f in files], PARAMS)
    return {f.stem: r.masks for f, r in zip(files, results)}


@pytest.fixture
def client(dask_client):
    return dask_client


def _predictions(folder) -> dict[str, np.ndarray]:
    return {p.name[: -len("_pred.npy")]: load_labels(p).masks for p in sorted(folder.glob("*_pred.npy"))}


def test_two_workers_give_the_in_process_predictions_and_load_the_model_once(client, model_file, images, reference,
                                                                              tmp_path):
    (images.parent / "broken").mkdir(exist_ok=True)
    broken = images.parent / "broken" / "broken.tif"
    broken.write_bytes(b"II*\x00junk")
    events = []
    out = segment_on_client(client, model_file, [images, broken], PARAMS, folder=tmp_path,
                            progress=lambda kind, data: events.append((kind, data)))
    assert len(out["done"]) == N_IMAGES and not out["skipped"] and not out["cancelled"]
    assert [f["image"] for f in out["failed"]] == [str(broken)] and "broken.tif" in out["failed"][0]["error"]
    preds = _predictions(tmp_path)
    assert sorted(preds) == sorted(reference)
    for name, masks in reference.items():
        np.testing.assert_array_equal(preds[name], masks, err_msg=name)
    assert len({r["pid"] for r in out["done"]}) == 2  # both workers took part...
    assert max(r["loads"] for r in out["done"]) == 1  # ...and each loaded the model once
    assert sum(k == "artifact" for k, _ in events) == N_IMAGES and events[-1][1]["fraction"] == 1.0
    assert any(k == "log" and "broken.tif" in d["message"] for k, d in events)
    record = json.loads(record_path(tmp_path / "img00_pred.npy").read_text())
    assert record["frame"] == "" and record["model"] == str(model_file) and len(record["model_sha256"]) == 64


def test_rerun_skips_complete_frames_and_redoes_changed_ones(client, model_file, images, tmp_path):
    first = segment_on_client(client, model_file, [images], PARAMS, folder=tmp_path)
    assert len(first["done"]) == N_IMAGES
    again = segment_on_client(client, model_file, [images], PARAMS, folder=tmp_path)
    assert again["done"] == [] and len(again["skipped"]) == N_IMAGES and again["failed"] == []
    # A batch size does not change predictions; a threshold does; so does a rewritten image or a lost record.
    bigger = SegmentParams(**{**PARAMS.__dict__, "batch_size": 32})
    assert segment_on_client(client, model_file, [images], bigger, folder=tmp_path)["done"] == []
    os.utime(images / "img03.npy", ns=(1, 1))
    record_path(tmp_path / "img05_pred.npy").unlink()
    redo = segment_on_client(client, model_file, [images], PARAMS, folder=tmp_path)
    assert sorted(r["image"].rsplit("/", 1)[1] for r in redo["done"]) == ["img03.npy", "img05.npy"]
    other = SegmentParams(**{**PARAMS.__dict__, "cellprob_threshold": 1.0})
    assert len(segment_on_client(client, model_file, [images], other, folder=tmp_path)["done"]) == N_IMAGES


def test_a_worker_killed_mid_run_loses_nothing(client, model_file, images, reference, tmp_path):
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_once(kind: str, data: dict) -> None:
        if kind == "artifact" and not killed:
            victim = next(p for p in pids if p != os.getpid())
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    out = segment_on_client(client, model_file, [images], PARAMS, folder=tmp_path, progress=kill_once)
    assert killed and not out["failed"] and len(out["done"]) == N_IMAGES
    preds = _predictions(tmp_path)
    for name, masks in reference.items():
        np.testing.assert_array_equal(preds[name], masks, err_msg=name)
    client.wait_for_workers(2, timeout=300)  # the nanny restarts the killed worker for the next test


def test_cluster_specs_and_config(tmp_path):
    with pytest.raises(ParameterError, match="Unknown cluster 'mars'"):
        with open_client("mars"):
            pass
    with pytest.raises(ParameterError, match="positive number"):
        with open_client("local:0"):
            pass
    with pytest.raises(ParameterError, match="No cluster config"):
        load_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cluster": {"cores": 0, "gpus": 2}}))
    with pytest.raises(ParameterError, match="cores.*gpus|gpus.*cores"):
        load_config(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"cluster": {"queue": "gpu", "memory": "16GB", "jobs": 3}}))
    assert load_config(good) == ClusterConfig(queue="gpu", memory="16GB", jobs=3)


def test_cli_segment_on_a_scheduler_address_then_rerun(client, model_file, images, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    args = [exe, "segment", "--model", str(model_file), "--input", str(images), "--output", str(tmp_path / "out"),
            "--flow-threshold", "0", "--niter", "50", "--cluster", client.scheduler.address]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    assert f"Done {N_IMAGES}, skipped 0 (already segmented), failed 0 frame(s)" in first.stdout
    assert len(list((tmp_path / "out").glob("*_pred.npy"))) == N_IMAGES
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert f"Done 0, skipped {N_IMAGES} (already segmented)" in again.stdout
    assert "Skipping 12 frame(s) already segmented" in again.stderr


def test_cluster_modules_import_dask_zarr_and_submitit_only_when_used():
    import subprocess
    import sys

    code = ("import sys, mcp_core.io, mcp_core.distributed, mcp_core.blockwise, mcp_core.cluster, mcp_core.slurm, "
            "mcp_core.jobs, mcp_core.cli_model\n"
            "print(','.join(sorted(m for m in ('dask', 'distributed', 'dask_jobqueue', 'zarr', 'ome_zarr', 'submitit', "
            "'torch') if m in sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


def test_backend_batch_jobs_run_on_a_configured_cluster(client, model_file, images, reference, tmp_path):
    """What a server with ``cluster`` in its config does with the batch jobs it is sent."""
    import shutil

    from mcp_core.backend import LocalBackend

    folder = tmp_path / "images"
    shutil.copytree(images, folder)
    backend = LocalBackend(tmp_path / "home", cluster=client.scheduler.address)
    name = backend.add_model(model_file).name
    paths = sorted(folder.glob("*.npy"))
    info = backend.submit_batch(paths, SegmentParams(**{**PARAMS.__dict__, "model": name}))
    final = backend.job_store.wait(info.job_id, timeout=600)
    assert final.state == "done", final.error
    assert sorted(final.result["written"]) == sorted(str(p.with_name(p.stem + "_pred.npy")) for p in paths)
    assert [e.kind for e in backend.events(info.job_id)].count("artifact") == N_IMAGES
    np.testing.assert_array_equal(load_labels(folder / "img04_pred.npy").masks, reference["img04"])
