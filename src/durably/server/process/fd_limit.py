"""Open-file limits: raise the soft RLIMIT_NOFILE and fit the connection caps under it.

Every connection is a file descriptor. Many systems start processes with a soft limit of 1024 while the
hard limit is far higher; a server that stays at 1024 fails `accept()` once clients hold that many sockets,
and then drops every new request on both listeners without a word. Like most servers we raise the soft
limit to the hard limit at start, and make sure the connection caps of both listeners fit below it, with
room for the store, logs and outgoing connections to deployments.
"""

from __future__ import annotations

import logging

log = logging.getLogger("durably.server")

# Descriptors kept free of client connections: the store (database, WAL, shm), logs, deployments.
RESERVED_FDS = 128
# A soft limit to aim for when the hard limit is unlimited (setrlimit refuses RLIM_INFINITY on some systems).
_UNLIMITED_TARGET = 1 << 20


def raise_nofile_limit() -> int | None:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now (None if unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("raised the open-file limit from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, e)
    return None if soft == resource.RLIM_INFINITY else soft


def fit_connection_cap(cap: int, listeners: int, nofile: int | None) -> int:
    """The per-listener connection cap that fits `listeners` listeners under `nofile` descriptors."""
    if nofile is None:
        return cap
    room = max(1, (nofile - RESERVED_FDS) // listeners)
    if cap > room:
        log.warning("--max-connections %d does not fit the open-file limit of %d for %d listeners: using %d "
                    "(raise the hard limit, e.g. `ulimit -Hn`, for more)", cap, nofile, listeners, room)
        return room
    return cap
