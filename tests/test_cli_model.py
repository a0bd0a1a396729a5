"""``multicellpose train`` and ``multicellpose segment``, run as a user would on a cluster node."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mcp_core.labels import load_labels_for
from mcp_core.model import MultiClassModel
from mcp_core.synthetic import write_demo_project
from waiting import patience


def run_cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    assert exe, "the multicellpose console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    if home:
        env["MULTICELLPOSE_HOME"] = str(home)
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=patience(900))


def test_train_then_segment_headless(tmp_path):
    data = write_demo_project(tmp_path / "data", n_images=4, n_labelled=4, shape=(128, 128))
    out = run_cli("train", "--train-dir", str(data), "--test-ratio", "0.25", "--base-model", "tiny", "--model-name", "hpc",
                  "--epochs", "3", "--batch-size", "4", "--bsize", "128", "--learning-rate", "0.003",
                  "--weight-decay", "0.01", "--use-lora", "--lora-blocks", "2", "--save-path", str(tmp_path / "models"),
                  "--seed", "1", "--train-debug", "--train-debug-steps", "1")
    assert out.returncode == 0, out.stderr
    model = tmp_path / "models" / "hpc.pth"
    assert f"Model saved to {model}" in out.stdout and "AP@0.5" in out.stdout and "round" in out.stdout
    assert "epoch" in out.stderr  # the tqdm bar
    side = json.loads(model.with_suffix(".json").read_text())
    assert side["training"]["finetune"] == "lora" and side["training"]["finetune_blocks"] == 2 and side["epochs_done"] == 3
    assert side["training"]["train_debug_steps"] == 1 and side["architecture"]["bsize"] == 128

    out = run_cli("segment", "--model", str(model), "--input", str(data / "demo_01.tif"), str(data / "demo_02.tif"),
                  "--output", str(tmp_path / "preds"), "--flow-threshold", "0.5", "--save-flows")
    assert out.returncode == 0, out.stderr
    assert "Wrote 2 prediction file(s)" in out.stdout
    assert sorted(p.name for p in (tmp_path / "preds").iterdir()) == ["demo_01_pred.npy", "demo_02_pred.npy"]

    # A model by name from $MULTICELLPOSE_HOME/models, predictions beside the images.
    (tmp_path / "home" / "models").mkdir(parents=True)
    shutil.copy(model, tmp_path / "home" / "models" / "hpc.pth")
    shutil.copy(model.with_suffix(".json"), tmp_path / "home" / "models" / "hpc.json")
    out = run_cli("segment", "--model", "hpc", "--input", str(data), "--quiet", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    assert load_labels_for(data / "demo_03.tif", kind="pred").class_names == ["unassigned", "round", "elongated"]


@pytest.mark.parametrize("args,message", [
    (["train", "--train-dir", "X", "--use-lora", "--unfreeze-blocks", "2"], "not allowed with argument"),
    (["train", "--train-dir", "X", "--test-dir", "T", "--test-ratio", "0.2"], "not allowed with argument"),
    (["train", "--train-dir", "X", "--lora-blocks", "2"], "error: --lora-blocks needs --use-lora."),
    (["train", "--train-dir", "X", "--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
    (["train", "--train-dir", "/nonexistent"], "error: --train-dir /nonexistent is not a folder."),
    (["segment", "--model", "nope", "--input", "."], "error: There is no model named 'nope'"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    out = run_cli(*args, home=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_sigterm_stops_training_and_keeps_the_weights(tmp_path):
    data = write_demo_project(tmp_path / "data", n_images=2, n_labelled=2, shape=(128, 128))
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.Popen([exe, "train", "--train-dir", str(data), "--base-model", "tiny", "--bsize", "128",
                             "--epochs", "100000", "--model-name", "stopped", "--save-path", str(tmp_path), "--test-ratio", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    started = threading.Event()

    def watch() -> None:  # log messages come on standard error, between progress-bar updates
        for line in proc.stderr:
            if "Training tiny" in line:
                started.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        assert started.wait(patience(300)), "training did not start"
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        proc.wait(timeout=patience(120))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    assert proc.returncode == 130 and "Cancelled; checkpoint saved to" in out
    side = json.loads((tmp_path / "stopped.json").read_text())
    assert side["state"] == "cancelled"
    assert MultiClassModel.load(tmp_path / "stopped.pth", device="cpu").bsize == 128
