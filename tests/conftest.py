"""Shared fixtures: synthetic data and the real third-party files in ../shared/fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_core.threads import configure_environment

# One torch thread per process, none spinning: the suite runs several torch processes at once (itself, job
# workers, the app and its worker pool, the remote server's jobs) on CI's 2 cores. Set before anything imports
# torch, and inherited by every process the tests start.
configure_environment(threads=1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The shared real-file fixtures folder; skips the test when it is absent (a user's clone)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


@pytest.fixture
def sample():
    """A small 2-class, 2-channel synthetic image with its ground-truth label set."""
    from mcp_core.synthetic import make_sample

    return make_sample(seed=1, shape=(128, 128))


@pytest.fixture(scope="session")
def dask_client():
    """A dask LocalCluster of 2 CPU worker processes, shared by the cluster tests (closed at the end)."""
    from distributed import Client

    from mcp_core.cluster import local_cluster

    with local_cluster(2, gpus=[]) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=300)
        yield client


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium; skips when it is not installed (.ci/run installs it)."""
    from app.browser import make_driver, need_chromium

    need_chromium()
    driver = make_driver(tmp_path / "downloads")
    yield driver
    driver.quit()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests first: under pytest-xdist a minutes-long test collected late runs alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
