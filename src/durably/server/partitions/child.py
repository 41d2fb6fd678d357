"""A partition process of `durably serve --partitions N`: `python -m durably.server.partitions.child`.

The supervisor (server/partitions/supervisor.py) starts it with its stdin a pipe that carries the
`ChildSpec` (pickled) and then stays open. The process loads the app itself and runs today's runtime
(server/process/runtime.py) as one partition. It must not outlive the supervisor: the kernel sends it SIGKILL
when the supervisor dies (PR_SET_PDEATHSIG, set before the app is loaded), and as a second guard the end of
its stdin (the supervisor's end of the pipe closed) stops it gracefully.

Exit codes: 0 after a graceful stop, 1 when it cannot start (the message is on stderr, which is the
supervisor's), anything else is a crash the supervisor restarts.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from durably.server.config import ServerConfig
from durably.server.partitions.cpus import describe, pin_partition

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """What a partition process needs to know: the app, the settings, which partition, and who started it."""

    app_ref: str | None
    config: ServerConfig
    root: Path
    index: int
    count: int
    supervisor_pid: int


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies; exit now if it already has (it died before we asked)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the stdin watch below still stops us
    if os.getppid() != parent_pid:
        os._exit(1)


# What the supervisor writes on the pipe once every partition serves (again, after a restart of this one).
GROUP_SERVING = b"serving\n"


def watch_parent(fd: int, group_serving: threading.Event) -> None:
    """Set `group_serving` when the supervisor says every partition serves; stop this process at the end of
    the pipe."""
    # Reads until EOF: the supervisor closed its end (it stopped, or died where PDEATHSIG does not exist). With
    # os.read on the descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds the buffer's lock,
    # and the interpreter aborts on it at exit ("Fatal Python error: _enter_buffered_busy") after a graceful stop.
    tail = b""  # the end of what was read before: the line may come split over two reads
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            window = tail + chunk
            if GROUP_SERVING in window:
                group_serving.set()
            tail = window[-(len(GROUP_SERVING) - 1):]
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    """Run one partition as the spec on stdin says."""
    # Unbuffered, so that nothing after the spec is read ahead into a buffer the watcher below would not see.
    with os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
        spec: ChildSpec = pickle.load(stdin)
    die_with_parent(spec.supervisor_pid)
    # Before any thread starts: threads inherit the CPUs of the thread that starts them.
    cpus = pin_partition(spec.index, spec.count) if spec.config.pin_partitions else None
    group_serving = threading.Event()
    threading.Thread(target=watch_parent, args=(sys.stdin.fileno(), group_serving), name="durably-parent-watch",
                     daemon=True).start()
    from durably.hosting.loader import AppLoadError, load_app
    from durably.sdk.service import App
    from durably.server.observe.log_format import configure_logging
    from durably.server.partitions.layout import PartitionRole
    from durably.server.process.runtime import DurablyServer, StartupError, loop_runner
    from durably.server.store.datadir import DataDirError

    configure_logging(spec.config.log_level, spec.config.log_format, spec.index)
    if cpus is not None:
        logging.getLogger("durably.server").info("partition %d keeps to CPUs %s", spec.index, describe(cpus))
    try:
        app = load_app(spec.app_ref) if spec.app_ref else App()
    except AppLoadError as e:
        print(f"durably: cannot serve: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    server = DurablyServer(app, spec.config, PartitionRole(spec.root, spec.index, spec.count, group_serving))
    try:
        loop_runner()(server.serve())
    except (OSError, StartupError, DataDirError) as e:
        print(f"durably: cannot serve: partition {spec.index}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
