"""Every resource limit in one place: its default, its `durably serve` flag, and the check that enforces it.

A limit has a default (below, and in the README's "Resource limits"), a flag with an environment variable and
a TOML key (`durably.cli.limits` turns `FLAGS` into click options), and a clear status code or error when hit:

- connections and headers (408, 431, 503): enforced in the HTTP protocol, `durably.server.http.connection_limits`;
- one request body (413) and the bodies held at once (503 with Retry-After): `BodyBudget` below;
- one journal entry: `run_result_too_large` and `command_too_large` below;
- the state an invocation starts with: `EagerStateLimit` below (no flag: past it, state is read lazily);
- threads for sync steps: `durably.server.engine.threads`; open files: `raise_nofile_limit` below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb

log = logging.getLogger("durably.server")

MiB = 1024 * 1024
# One request body at the ingress (a ServerConfig field of its own, `--max-body`): 413 past it.
DEFAULT_MAX_BODY = 32 * MiB
# One request body at the admin API: 413 past it.
ADMIN_BODY_LIMIT = 1024 * 1024
# One discovery manifest read from a deployment (`POST /deployments`): 400 past it, and reading stops there.
# Real manifests are kilobytes (a few hundred handlers with their metadata stay under 1 MiB).
MAX_MANIFEST_BYTES = 8 * MiB
# One journal entry (`--journal-entry-limit`).
DEFAULT_ENTRY_LIMIT = 32 * MiB
# One page of a journal in the admin API's describe and the UI: at most this many bytes of entries (and at
# most `journal_limit` entries), always at least one entry. Past `JOURNAL_VALUE_PREVIEW`, an entry is cut:
# its value is shown truncated, with the URL that returns it whole (`GET /invocations/{id}/journal/{index}`).
JOURNAL_PAGE_BYTES = 1 * MiB
JOURNAL_VALUE_PREVIEW = 4 * 1024
# The code of the step failure of a run result over the entry limit; 500 like any TerminalError without one.
ENTRY_TOO_LARGE_CODE = 500


@dataclass(frozen=True)
class EagerStateLimit:
    """How much of a key's state an invocation starts with ("eager state"), in name order.

    Past either bound the Start message says the state is partial, and the handler reads the rest one name at
    a time when it asks for it (as with `state_preload=False`): a key with a million state names costs a
    call no more than a key with a few hundred.
    """

    entries: int = 1000
    bytes: int = 4 * MiB


DEFAULT_EAGER_STATE_LIMIT = EagerStateLimit()


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


@dataclass(frozen=True)
class LimitFlag:
    """One limit's `durably serve` flag: its name, what kind of value it takes, and its help text."""

    flag: str
    kind: str  # "seconds" (> 0), "count" (>= 1) or "size" (bytes, with units: 64KiB, 32MiB)
    help: str

    @property
    def name(self) -> str:
        """The keyword (and ResourceLimits field, except max_body) the flag's value arrives as."""
        return self.flag[2:].replace("-", "_")

    @property
    def default(self) -> float | int:
        """The flag's default."""
        return DEFAULT_MAX_BODY if self.name == "max_body" else getattr(ResourceLimits(), self.name)


FLAGS: tuple[LimitFlag, ...] = (
    LimitFlag("--header-timeout", "seconds", "Seconds a client has to send a request's headers (then 408 and close)."),
    LimitFlag("--body-timeout", "seconds",
              "Seconds a client has to send a request's body after its headers (then 408)."),
    LimitFlag("--keep-alive-timeout", "seconds", "Seconds an idle keep-alive connection stays open."),
    LimitFlag("--max-connections", "count", "Open connections per listener (ingress, admin); "
              "connections past it are answered 503 and closed."),
    LimitFlag("--max-body", "size", "One request body, at most (then 413)."),
    LimitFlag("--max-header-bytes", "size", "Request line and headers, at most (then 431)."),
    LimitFlag("--max-headers", "count", "Header fields per request, at most (then 431)."),
    LimitFlag("--max-inflight-body", "size",
              "Request bodies the ingress holds at once (then 503 with Retry-After)."),
    LimitFlag("--journal-entry-limit", "size",
              "One journal entry, at most: a bigger ctx.run result fails the step."),
    LimitFlag("--run-threads", "count", "Threads for sync ctx.run closures, stuck ones included; past "
              "it new sync steps fail their attempt (retried)."),
    LimitFlag("--loop-stall-threshold", "seconds",
              "Log the invocation that blocks the event loop for this many seconds."),
    LimitFlag("--stuck-report-interval", "seconds",
              "Seconds between log lines about threads stuck in aborted steps."),
)


def engine_limits(limits: ResourceLimits) -> dict[str, object]:
    """The limits the engine applies, as EngineOptions fields."""
    return {"journal_entry_limit": limits.journal_entry_limit, "run_threads": limits.run_threads,
            "loop_stall_threshold": limits.loop_stall_threshold,
            "stuck_report_interval": limits.stuck_report_interval}


# ---- one journal entry ----
#
# Every journal entry is held in memory while its invocation runs, written in one SQLite row and sent in
# one frame to a remote deployment, so one entry may not grow without bound. A `ctx.run` result over the
# limit fails the step with a terminal error (the handler sees TerminalError at its await, as for any failed
# step); any other command over it fails the attempt, which is retried per the invocation's policy.

def size_text(n: int) -> str:
    """A byte count for people: `200.0 MiB (209715200 bytes)`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def run_result_too_large(msg: pb.ProposeRunCompletionMessage, name: Callable[[], str], limit: int) -> str | None:
    """Why a proposed run result may not be journaled, or None if it fits. `name()` gives the run's name."""
    if len(msg.value) <= limit or msg.WhichOneof("result") != "value":
        return None
    run_name = name()  # looked up only for the message: it scans the journal
    what = f"run '{run_name}'" if run_name else "a run"
    return (f"the result of {what} is {size_text(len(msg.value))}, over the journal entry limit of "
            f"{size_text(limit)}: return a smaller value (e.g. store the data elsewhere and journal a "
            "reference), or raise the limit with --journal-entry-limit")


def command_too_large(type_id: int, msg: Message, limit: int) -> str | None:
    """Why a command may not be journaled, or None if it fits."""
    size = msg.ByteSize()
    if size <= limit:
        return None
    return (f"the {m.type_name(type_id)} command is {size_text(size)}, over the journal entry limit of "
            f"{size_text(limit)} (raise it with --journal-entry-limit)")


# ---- request bodies held at once (--max-inflight-body) ----
#
# Each body may be up to the body limit (32 MiB), and a dozen concurrent ones used to take the process to
# gigabytes. The ingress reserves a request's body against this budget before it buffers it (the declared
# length at once, chunks as they come otherwise) and gives it back when the request is answered. A request
# that does not fit is answered 503 with Retry-After, which Restate's clients retry.

# Bytes of bodies handled before an idle moment gives memory back.
TRIM_AFTER = 64 * 1024 * 1024


class OverBudget(Exception):
    """A request body does not fit in what is left of the budget."""


class BodyBudget:
    """Bytes of request bodies held now, against a limit. Use from the event loop only."""

    def __init__(self, limit: int, on_idle: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self.in_use = 0
        self.refused = 0
        # Called when no body is held any more after many bytes were (to give memory back).
        self.on_idle = on_idle
        self.since_trim = 0

    def lease(self) -> BodyLease:
        """A lease for one request; release it when the request is answered."""
        return BodyLease(self)

    def refusal(self) -> str:
        """The message of a 503 when the budget is spent."""
        return (f"the server holds {size_text(self.in_use)} of request bodies, its limit is "
                f"{size_text(self.limit)} (--max-inflight-body): retry later")


class BodyLease:
    """The bytes one request holds."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def reserve(self, n: int) -> None:
        """Hold n more bytes, or raise OverBudget."""
        b = self.budget
        if b.in_use + n > b.limit:
            b.refused += 1
            raise OverBudget(b.refusal())
        b.in_use += n
        self.held += n

    def release(self) -> None:
        """Give back everything this request held."""
        b = self.budget
        b.in_use -= self.held
        b.since_trim += self.held
        self.held = 0
        if b.in_use == 0 and b.since_trim >= TRIM_AFTER:
            b.since_trim = 0
            b.on_idle()


# ---- open files ----
#
# Every connection is a file descriptor. Many systems start processes with a soft limit of 1024 while the
# hard limit is far higher; a server that stays at 1024 fails `accept()` once clients hold that many sockets,
# and then drops every new request on both listeners without a word. Like most servers we raise the soft
# limit to the hard limit at start, and make sure the connection caps of both listeners fit below it, with
# room for the store, logs and outgoing connections to deployments.

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
