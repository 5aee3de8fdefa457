"""Print how many pytest-xdist workers scripts/test.sh should start and how many threads each gets.

One worker per core this process may really use: the CPU affinity, lowered by a cgroup CPU quota
(containers often show every host core but may use only a few), and by memory (about 4 GiB per
worker: a notebook kernel and a model each), at most 4. Output: "WORKERS THREADS".
"""

import os
from pathlib import Path

GIB_PER_WORKER, MAX_WORKERS = 4, 4


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The whole CPUs of the cgroup v2 (``cpu.max``: "QUOTA PERIOD") or v1 (``cpu/cpu.cfs_quota_us``,
    ``cpu/cpu.cfs_period_us``) limit, at least 1; None without a limit."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu/cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    return None if quota in ("max", "-1") else max(1, int(quota) // int(period))


def workers_and_threads(cores: int, memory_gib: float) -> tuple[int, int]:
    workers = max(1, min(cores, MAX_WORKERS, int(memory_gib // GIB_PER_WORKER)))
    return workers, max(1, cores // workers)


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    cores = min(cores, cgroup_cpus() or cores)
    memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    print(*workers_and_threads(cores, memory_gib))


if __name__ == "__main__":
    main()
