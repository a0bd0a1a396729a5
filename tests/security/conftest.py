"""Fixtures of the security battery: a small demo project (headless Chromium comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from mcp_core.synthetic import write_demo_project


@pytest.fixture
def project(tmp_path):
    """A 3-image demo project (one image labelled) in ``tmp_path/project``."""
    folder = tmp_path / "project"
    write_demo_project(folder, n_images=3, n_labelled=1, shape=(96, 96))
    return folder
