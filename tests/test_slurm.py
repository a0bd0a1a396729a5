"""Slurm without a cluster: dask-jobqueue job scripts from the config, submitit jobs that write job events."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_core.backend import LocalBackend
from mcp_core.catalog import sidecar_path
from mcp_core.cluster import ClusterConfig, slurm_cluster
from mcp_core.errors import ParameterError
from mcp_core.jobs import EXECUTOR_FILE
from mcp_core.params import TrainParams
from mcp_core.slurm import executor_parameters, submit_job
from mcp_core.synthetic import write_demo_project
from waiting import patience, poll

TINY = {"base_model": "tiny", "bsize": 128, "batch_size": 4, "learning_rate": 3e-3, "weight_decay": 0.01,
        "rescale": False, "class_names": ["unassigned", "round", "elongated"]}
WAIT_S = patience(300)


def test_slurm_cluster_job_script_carries_the_configured_resources():
    config = ClusterConfig(queue="gpu", account="lab", cores=8, memory="48GB", gres="gpu:1", walltime="08:00:00",
                           job_extra=["--qos=high"], prologue=["module load cuda"], scheduler_host="127.0.0.1")
    with slurm_cluster(config) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=45G",
                 "#SBATCH -t 08:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --qos=high", "module load cuda"):
        assert line in script.splitlines(), (line, script)
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:" in script


def test_submitit_parameters_from_the_config():
    params = executor_parameters(ClusterConfig(queue="gpu", walltime="1-02:30:00", job_extra=["--qos=high"]), "mcp-train")
    assert params["timeout_min"] == 26 * 60 + 30 and params["mem_gb"] == 48 and params["slurm_gres"] == "gpu:1"
    assert params["slurm_partition"] == "gpu" and params["slurm_additional_parameters"] == {"qos": "high"}
    with pytest.raises(ParameterError, match="walltime '8h'"):
        executor_parameters(ClusterConfig(walltime="8h"), "x")
    with pytest.raises(ParameterError, match="--exclusive"):
        executor_parameters(ClusterConfig(job_extra=["--exclusive"]), "x")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return write_demo_project(tmp_path_factory.mktemp("slurm") / "project", n_images=4, n_labelled=4, shape=(128, 128))


def test_training_through_submitit_writes_job_events_and_cancels(project, tmp_path):
    backend = LocalBackend(tmp_path / "home")
    params = TrainParams(**TINY, epochs=2, test_ratio=0.25, model_name="sub", save_path=str(tmp_path / "m" / "sub.pth"))
    info, job_id = submit_job(backend.job_store, "train", dataclasses.asdict(params), {"dataset": str(project)},
                              cluster="local")
    assert json.loads((backend.jobs_dir / info.job_id / EXECUTOR_FILE).read_text())["job_id"] == job_id
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "done", final.error
    events = backend.events(info.job_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[0] == "state" and kinds.count("loss") == 2 and "artifact" in kinds and kinds[-1] == "done"
    assert Path(final.result["model_path"]) == tmp_path / "m" / "sub.pth"

    long = TrainParams(**TINY, epochs=100000, model_name="long", save_path=str(tmp_path / "m" / "long.pth"))
    info, _ = submit_job(backend.job_store, "train", dataclasses.asdict(long), {"dataset": str(project)}, cluster="local")
    poll(lambda: any(e.kind == "loss" for e in backend.events(info.job_id)), f"a loss event from {info.job_id}",
         timeout=WAIT_S, last=lambda: [e.kind for e in backend.events(info.job_id)])
    backend.cancel(info.job_id)
    final = backend.job_store.wait(info.job_id, timeout=WAIT_S)
    assert final.state == "cancelled" and backend.events(info.job_id)[-1].data["state"] == "cancelled"
    assert json.loads(sidecar_path(tmp_path / "m" / "long.pth").read_text())["state"] == "cancelled"


def test_cli_train_slurm_submits_and_the_job_is_followed_and_cancelled(project, tmp_path):
    """With stand-ins for sbatch, sacct, scancel and srun on PATH (no Slurm here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "slurm.log"
    for name, body in {"sbatch": 'echo "sbatch $@" >> {log}; echo "Submitted batch job 4242"',
                       "sacct": 'echo "JobID|State"; echo "4242|PENDING"',
                       "scancel": 'echo "scancel $@" >> {log}', "srun": "exit 1"}.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body.format(log=log) + "\n")
        (bin_dir / name).chmod(0o755)
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps({"cluster": {"queue": "gpu", "memory": "16GB", "walltime": "02:00:00"}}))
    home = tmp_path / "home"
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", MULTICELLPOSE_HOME=str(home))
    out = subprocess.run([exe, "train", "--train-dir", str(project), "--base-model", "tiny", "--model-name", "s",
                          "--save-path", str(tmp_path / "models"), "--slurm", "--slurm-config", str(config)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Submitted Slurm job 4242: job train-")
    [job_dir] = (home / "jobs").iterdir()
    script = next((job_dir / "submitit").glob("*submission.sh")).read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1", "#SBATCH --mem=16GB", "#SBATCH --time=120",
                 "#SBATCH --signal=USR2@120"):
        assert line in script.splitlines(), (line, script)
    os.environ["PATH"], saved = f"{bin_dir}:{os.environ['PATH']}", os.environ["PATH"]
    try:
        backend = LocalBackend(home)
        assert backend.job(job_dir.name).state == "queued"  # Slurm says PENDING
        backend.cancel(job_dir.name)
        assert "scancel 4242" in log.read_text()
    finally:
        os.environ["PATH"] = saved
