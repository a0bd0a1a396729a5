"""CPU threads for torch: as many as the cores this process may really use, and none spinning idle.

Torch's CPU kernels run on an OpenMP pool sized to the machine's cores by default. Two effects make
that slow where cores are shared (a laptop running the app and a training job, a CI runner, a node
with a CPU quota): OpenMP threads spin while they wait for each other, and a pool larger than the
cores that are really free turns every parallel region into a wait for a descheduled thread (a
1-second training epoch took 80 s with several such processes on 2 cores). Both are fixed by the
environment, which OpenMP reads once, when torch is first imported: so call
:func:`configure_environment` at the start of a process, before anything imports torch. Child
processes (job workers, the app's worker pool) inherit it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

#: Environment variable that fixes the number of torch CPU threads (e.g. ``1`` on a shared machine).
THREADS_ENV = "MCP_TORCH_THREADS"


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup CPU quota (v2 ``cpu.max`` or v1 CFS files); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, math.ceil(limit))
    return max(1, n)


def torch_threads() -> int:
    """The torch CPU thread count: ``$MCP_TORCH_THREADS`` when set, else :func:`available_cpus`."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass  # a typo in the variable should not stop the app; fall back to the cores
    return available_cpus()


def configure_environment(threads: int | None = None) -> int:
    """Set the OpenMP/MKL environment of this process and its children; returns the thread count.

    Values the user already set (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OMP_WAIT_POLICY``) are
    kept. The wait policy takes effect in this process only if torch has not been imported yet.

    Parameters
    ----------
    threads
        Threads per process; default :func:`torch_threads`. Also exported as ``$MCP_TORCH_THREADS``
        so that child processes use the same number.
    """
    n = max(1, threads) if threads is not None else torch_threads()
    if threads is not None:
        os.environ[THREADS_ENV] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # waiting threads sleep instead of spinning
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    if "torch" in sys.modules:  # too late for the wait policy, not for the pool size
        sys.modules["torch"].set_num_threads(n)
    return n
