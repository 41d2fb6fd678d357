"""Which CPUs each partition process of `durably serve --partitions N` keeps to (`--pin-partitions`, on by default).

Every partition is a busy single-threaded event loop. Left to itself, the kernel moves them between cores as
load shifts (and on a machine where the clients or other programs run too, it does so all the time), and
every move costs the partition its warm caches. Measured on a 2-core VM with wrk on the same machine,
`--partitions 2` pinned served 10% more journaled steps/s (async closures), 17% more with sync closures and
5% more echo invocations/s than the same two processes unpinned (`bench/partitions_bench.py`). One process
(`--partitions 1`) is never pinned: it has the machine to itself and gains nothing (measured: echo latency at
one connection got worse when pinned).

The CPUs are the ones the server may use (`os.sched_getaffinity`, so `taskset`, cgroup cpusets and container
CPU limits expressed as cpusets are respected), split into N contiguous groups as evenly as they go; with more
partitions than CPUs the partitions take the CPUs in turn.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("durably.server")


def partition_cpus(available: set[int] | frozenset[int], index: int, count: int) -> set[int]:
    """The CPUs of partition `index` of `count`, out of `available` (see the module docstring)."""
    if not available:
        raise ValueError("no CPUs to split")
    if not 0 <= index < count:
        raise ValueError(f"partition {index} of {count}")
    cpus = sorted(available)
    n = len(cpus)
    if count >= n:
        return {cpus[index % n]}
    return set(cpus[index * n // count:(index + 1) * n // count])


def describe(cpus: set[int]) -> str:
    """`0-3,8`: the compact list form `taskset -c` and /proc/<pid>/status use."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    out = [str(a) if a == b else f"{a}-{b}" for a, b in runs]
    return ",".join(out)


def pin_partition(index: int, count: int) -> set[int] | None:
    """Keep this process (the calling thread and every thread it starts later) to its partition's CPUs.

    Returns the CPUs, or None where the platform cannot pin (not Linux) or the kernel refused: the partition
    then runs unpinned, which is slower but correct, and says so in the log.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpus = partition_cpus(os.sched_getaffinity(0), index, count)
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError) as e:
        log.warning("partition %d: could not keep to its own CPUs (%s); it runs on any", index, e)
        return None
    return cpus
