"""plugins/SKILL.md: the template it points to passes the validator and its test template passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mcp_app.cli import main

REPO = Path(__file__).resolve().parents[1]
SKILL = (REPO / "plugins" / "SKILL.md").read_text("utf-8")


def test_the_template_the_skill_points_to_passes_validate(capsys, monkeypatch):
    assert "`multicellpose plugins validate my_package/my_plugin.py`" in SKILL  # the check the agent is told to run
    copied = re.search(r"`cp (\S+) ", SKILL).group(1)  # the template the agent is told to start from
    assert (REPO / copied).is_file()
    monkeypatch.chdir(REPO)
    assert main(["plugins", "validate", copied]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bright_fraction: OK") and "dry run on a frame without objects" in out


def test_the_skill_test_template_runs_and_passes(tmp_path):
    (code,) = re.findall(r"```python\n(\"\"\"bright_fraction.*?)```", SKILL, re.S)
    test_file = tmp_path / "test_from_skill.py"
    test_file.write_text(code, "utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    run = subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout
