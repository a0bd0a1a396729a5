"""The ``multicellpose`` console script's core subcommands, run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from waiting import patience


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    assert exe, "the multicellpose console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=patience(300))


def test_demo_formats_info(tmp_path):
    out = run_cli("demo", str(tmp_path / "proj"), "--images", "2", "--labelled", "1")
    assert out.returncode == 0, out.stderr
    made = sorted(p.name for p in (tmp_path / "proj").iterdir() if p.name != ".mcp_history")  # the label history
    assert made == ["demo_01.tif", "demo_01_seg.npy", "demo_02.tif"]
    out = run_cli("formats")
    assert out.returncode == 0 and "lif" in out.stdout and ".nd2" in out.stdout
    tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros((3, 2, 8, 8), np.uint8), metadata={"axes": "TCYX"})
    out = run_cli("info", str(tmp_path / "t.ome.tif"))
    assert out.returncode == 0 and "axes TYXC" in out.stdout and "3 frame(s)" in out.stdout


def test_bad_input_is_one_line_error(tmp_path):
    out = run_cli("info", str(tmp_path / "nope.tif"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {tmp_path / 'nope.tif'} does not exist."
