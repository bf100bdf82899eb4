"""How many notebooks this machine can grade at once: its cores, and its free memory divided by the
memory limit of one kernel (``--memory-mb``); no fixed cap. A container's limits (cgroup v2) count."""
from __future__ import annotations

import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cores() -> int:
    """The cores this process may use (its CPU affinity, and a container's CPU quota)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota, _, period = _read(_CGROUP / "cpu.max").partition(" ")
    if quota.isdigit() and period.isdigit() and int(period) > 0:
        n = min(n, max(1, int(quota) // int(period)))
    return max(1, n)


def free_memory() -> int | None:
    """Bytes of memory available to new processes (Linux: MemAvailable, and a container's limit), else None."""
    free = None
    for line in _read(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemAvailable:"):
            free = int(line.split()[1]) * 1024
    limit, used = _read(_CGROUP / "memory.max"), _read(_CGROUP / "memory.current")
    if limit.isdigit() and used.isdigit():
        free = min(free if free is not None else int(limit), int(limit) - int(used))
    if free is None and hasattr(os, "sysconf"):
        try:  # elsewhere (macOS): the physical memory, as an upper bound
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            pass
    return free


def default_jobs(memory_mb: int) -> int:
    """Notebooks to grade at once: one per core, as many as the free memory holds kernels of ``memory_mb``."""
    free = free_memory()
    by_memory = free // (memory_mb * 2 ** 20) if free is not None and memory_mb > 0 else cores()
    return max(1, min(cores(), by_memory))
