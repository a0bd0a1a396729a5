"""Fixtures of the security battery: a small demo project, headless Chromium."""

from __future__ import annotations

import pytest

from mcp_core.synthetic import write_demo_project


@pytest.fixture
def project(tmp_path):
    """A 3-image demo project (one image labelled) in ``tmp_path/project``."""
    folder = tmp_path / "project"
    write_demo_project(folder, n_images=3, n_labelled=1, shape=(96, 96))
    return folder


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium; skips when it is not installed (.ci/run installs it)."""
    from app.browser import make_driver, need_chromium

    need_chromium()
    driver = make_driver(tmp_path / "downloads")
    yield driver
    driver.quit()
