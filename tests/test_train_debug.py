"""``multicellpose train --train-debug`` prints each batch's time, loss and memory, as the original did."""

from __future__ import annotations

import re

import torch

from mcp_core.synthetic import write_demo_project
from mcp_core.train_debug import batch_line
from test_cli_model import run_cli

LINE = re.compile(r"epoch 1 batch (\d)/2: (\d+\.\d{3}) s, loss (\d+\.\d{4}), RSS (\d+) MiB$", re.M)


def test_train_debug_prints_timing_and_memory_per_batch(tmp_path):
    data = write_demo_project(tmp_path / "data", n_images=2, n_labelled=2, shape=(96, 96))
    out = run_cli("train", "--train-dir", str(data), "--test-ratio", "0", "--base-model", "tiny", "--model-name", "dbg",
                  "--epochs", "1", "--batch-size", "2", "--bsize", "64", "--nimg-per-epoch", "8", "--save-path",
                  str(tmp_path / "models"), "--train-debug", "--train-debug-steps", "2", "--min-train-masks", "0",
                  "--device", "cpu")
    assert out.returncode == 0, out.stderr
    lines = LINE.findall(out.stderr)
    assert [int(b) for b, *_ in lines] == [1, 2], out.stderr  # one line per batch, 2 steps in the one epoch
    for _, seconds, loss, rss in lines:
        assert float(seconds) > 0 and float(loss) > 0 and int(rss) > 50  # a torch process holds far more than 50 MiB
    assert "CUDA" not in out.stderr


def test_on_cuda_the_line_adds_allocated_and_peak_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 3 << 20)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 5 << 20)
    line = batch_line(2, 3, 4, 0.25, 1.5, torch.device("cuda"))
    assert re.fullmatch(r"epoch 2 batch 3/4: 0\.250 s, loss 1\.5000, RSS \d+ MiB, CUDA allocated 3 MiB, peak 5 MiB", line)
