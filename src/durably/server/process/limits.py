"""The resource limits of `durably serve`: one place for their defaults (the README's "Resource limits")."""

from __future__ import annotations

from dataclasses import dataclass

from durably.server.process.entry_limit import DEFAULT_ENTRY_LIMIT

MiB = 1024 * 1024
# One request body (the ingress's DEFAULT_BODY_LIMIT; a ServerConfig field of its own).
DEFAULT_MAX_BODY = 32 * MiB


@dataclass(frozen=True)
class ResourceLimits:
    """Every limit has a default, a `serve` flag and a clear status code when hit."""

    # Connections (each listener, ingress and admin, has its own cap).
    header_timeout: float = 10.0  # s from connection (or end of the previous response) to complete headers: 408
    body_timeout: float = 60.0  # s from complete headers to the end of the body: 408
    keep_alive_timeout: float = 5.0  # s an idle keep-alive connection stays open
    max_connections: int = 4096  # open connections per listener; past it: 503 and closed
    # Requests.
    max_header_bytes: int = 64 * 1024  # request line plus header block: 431
    max_headers: int = 100  # header fields: 431
    max_inflight_body: int = 256 * MiB  # request bodies held at once by the ingress: 503 with Retry-After
    # Journal and user code.
    journal_entry_limit: int = DEFAULT_ENTRY_LIMIT  # one journal entry; a bigger run result fails the step
    run_threads: int = 256  # threads for sync ctx.run closures, stuck ones included; then the step is retried
    loop_stall_threshold: float = 1.0  # s the event loop may be blocked before the culprit is logged
    stuck_report_interval: float = 60.0  # s between log lines about threads stuck in aborted steps


def engine_limits(limits: ResourceLimits) -> dict[str, object]:
    """The limits the engine applies, as EngineOptions fields."""
    return {"journal_entry_limit": limits.journal_entry_limit, "run_threads": limits.run_threads,
            "loop_stall_threshold": limits.loop_stall_threshold,
            "stuck_report_interval": limits.stuck_report_interval}
