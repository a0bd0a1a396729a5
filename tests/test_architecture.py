"""The dependency rule: mcp_core imports no UI or network stack; the app imports no torch or cellpose."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of *package* imports (anywhere in the file)."""
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(
    "package,forbidden",
    [("mcp_core", {"nicegui", "grpc", "asyncssh", "mcp_app", "mcp_remote"}),
     ("mcp_app", {"torch", "cellpose", "torchvision"}),
     ("mcp_remote", {"nicegui", "mcp_app"})],
)
def test_no_forbidden_imports_in_source(package, forbidden):
    bad = {f: sorted(names & forbidden) for f, names in imported_modules(package).items() if names & forbidden}
    assert not bad, f"forbidden imports: {bad}"


def test_importing_mcp_core_loads_no_ui_network_or_torch():
    code = (
        "import sys, mcp_core, mcp_core.io, mcp_core.labels, mcp_core.backend, mcp_core.params, mcp_core.synthetic\n"
        "print(','.join(sorted(m for m in ('nicegui', 'grpc', 'asyncssh', 'torch', 'cellpose') if m in sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


def test_the_app_and_the_remote_client_load_no_torch_or_cellpose():
    """Transitively: every module of mcp_app, and the remote client a laptop uses to reach a GPU server."""
    code = (
        "import sys, pkgutil, importlib, mcp_app\n"
        "for m in pkgutil.walk_packages(mcp_app.__path__, 'mcp_app.'):\n"
        "    importlib.import_module(m.name)\n"
        "import mcp_remote.client, mcp_remote.tunnel\n"
        "print(','.join(sorted(m for m in ('torch', 'cellpose', 'torchvision') if m in sys.modules)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""
