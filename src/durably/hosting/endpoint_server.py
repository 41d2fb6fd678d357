"""`durably endpoint APP`: serve an app as a Restate deployment with hypercorn, set up for Restate's invoker.

What it sets that a hand-configured hypercorn does not:

- No request-count GOAWAY. Hypercorn closes an HTTP/2 connection after 1,000 requests by default; Restate then
  retries the streams it had open on it and, for a busy virtual-object key, waits out its inactivity timeout.
- Long keep-alive, so Restate's pooled connections are not closed between bursts.
- Larger HTTP/2 flow-control windows (per stream and per connection) so journals and large payloads stream
  without a window update per 64 KiB, and more concurrent streams per connection (each running attempt is one).
- `workers` processes sharing the listening sockets; a worker that dies is replaced.
- Graceful drain on SIGTERM/SIGINT: the sockets close, idle connections get a GOAWAY, running attempts have
  `graceful_timeout` seconds to finish; a stream still open after that is cut, and Restate retries the attempt
  from its journal on another connection (committed steps are not run again).
- TLS with `certfile`/`keyfile` (ALPN offers h2 and http/1.1).

Without TLS it speaks HTTP/2 cleartext (prior knowledge, as Restate connects) and HTTP/1.1 on the same port.
The connections are hypercorn's protocols run by `durably.hosting.h2_server` (its own accept loop, so the
HTTP/2 windows come from a subclass passed explicitly, not from a patch of hypercorn).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

log = logging.getLogger("durably.endpoint")

# Hypercorn counts requests per connection and sends GOAWAY past this; "never" in practice.
NO_REQUEST_LIMIT = 2**62
DEFAULT_STREAM_WINDOW = 4 * 1024 * 1024
DEFAULT_CONNECTION_WINDOW = 16 * 1024 * 1024
H2_DEFAULT_WINDOW = 65_535  # HTTP/2's initial window (the same as durably.hosting.h2_server's)
RESTART_BACKOFF_S = 0.5


@dataclass
class EndpointOptions:
    """Settings of `durably endpoint`."""

    app_ref: str = ""
    host: str = "127.0.0.1"
    port: int = 9080
    workers: int = 1
    certfile: Path | None = None
    keyfile: Path | None = None
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 300.0
    max_concurrent_streams: int = 1000
    stream_window: int = DEFAULT_STREAM_WINDOW
    connection_window: int = DEFAULT_CONNECTION_WINDOW
    log_level: str = "info"


def hypercorn_config(opts: EndpointOptions) -> Any:
    """The hypercorn Config for these options (see the module docstring for why each setting)."""
    from durably.hosting.h2_server import EndpointConfig

    config = EndpointConfig()
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    config.bind = [f"{host}:{opts.port}"]
    config.keep_alive_max_requests = NO_REQUEST_LIMIT
    config.keep_alive_timeout = opts.keep_alive_timeout
    config.h2_max_concurrent_streams = opts.max_concurrent_streams
    config.h2_stream_window = opts.stream_window
    config.h2_connection_window = opts.connection_window
    config.graceful_timeout = opts.graceful_timeout
    config.workers = opts.workers
    config.loglevel = opts.log_level.upper()
    config.accesslog = None
    if opts.certfile is not None:
        config.certfile = str(opts.certfile)
        config.keyfile = str(opts.keyfile) if opts.keyfile is not None else None
    return config


def _configure_logging(level: str) -> None:
    # Only durably's loggers: hypercorn logs through its own handlers, and a root handler would print it twice.
    ours = logging.getLogger("durably")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(level.upper())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def warn_if_unsigned(app: Any, host: str) -> bool:
    """Log a warning when the endpoint listens beyond loopback and accepts unsigned requests (the app has no
    `identity_keys`), as restate-sdk does by default; returns whether it warned."""
    if _is_loopback(host) or getattr(app, "identity_keys", None):
        return False
    log.warning("durably endpoint: listening on %s without identity_keys: anyone who reaches this port can invoke "
                "the handlers. Set durably.app(..., identity_keys=[\"publickeyv1_...\"]) to the Restate server's "
                "request-identity public key so only it is accepted (see SECURITY.md)", host)
    return True


def _worker(opts: EndpointOptions, sockets: Any, shutdown_event: EventType | None) -> None:
    """One worker process (or the only one): load the app, serve until told to stop."""
    from hypercorn.utils import check_multiprocess_shutdown_event

    from durably.hosting.loader import load_app

    _configure_logging(opts.log_level)
    app = load_app(opts.app_ref)
    trigger = None
    if shutdown_event is not None:  # a worker of several: the parent owns the signals
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        trigger = partial(check_multiprocess_shutdown_event, shutdown_event, asyncio.sleep)
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Unix
        loop_factory = None
    code = 0
    try:
        # Not closed: closing the runner joins the executor's threads, and a sync `ctx.run` closure that never
        # returned holds one forever. Once the drain is over its attempt is Restate's to retry, so we leave.
        asyncio.Runner(loop_factory=loop_factory).run(serve_app(app, opts, sockets=sockets, shutdown_trigger=trigger))
    except BaseException:
        log.exception("durably endpoint: worker %d failed", os.getpid())
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def serve_app(app: Any, opts: EndpointOptions, sockets: Any = None,
                    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Serve `app` on this event loop with `durably endpoint`'s settings (one worker; `opts.workers` is ignored).

    Without `shutdown_trigger` it stops on SIGTERM/SIGINT. Tests and embedding programs use this directly.
    """
    from hypercorn.utils import wrap_app

    from durably.hosting.h2_server import serve

    config = hypercorn_config(opts)
    config.workers = 1
    stopping = asyncio.Event()
    if shutdown_trigger is None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

    async def trigger() -> None:
        if shutdown_trigger is not None:
            await shutdown_trigger()
            stopping.set()
        await stopping.wait()

    try:
        await serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                    sockets if sockets is not None else config.create_sockets(), trigger)
    except Exception as e:
        if not stopping.is_set():
            raise
        # A task group of hypercorn's protocols can trip while the streams left after the graceful timeout are
        # cut; the drain is over either way.
        log.warning("durably endpoint: error while closing the connections left at the end of the drain: %r", e)


def serve_endpoint(opts: EndpointOptions) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    from durably.hosting.loader import load_app

    _configure_logging(opts.log_level)
    # Load once here so a bad reference fails before any socket or process exists.
    warn_if_unsigned(load_app(opts.app_ref), opts.host)
    config = hypercorn_config(opts)
    sockets = config.create_sockets()
    scheme = "https" if opts.certfile else "http"
    log.info("durably endpoint: serving %s on %s://%s:%d with %d worker(s) (HTTP/2 and HTTP/1.1)",
             opts.app_ref, scheme, opts.host, opts.port, opts.workers)
    if opts.workers <= 1:
        _worker(opts, sockets, None)
        return 0
    return _supervise(opts, sockets)


def _supervise(opts: EndpointOptions, sockets: Any) -> int:
    """Run `opts.workers` processes on the shared sockets; replace any that dies; drain all on SIGTERM/SIGINT."""
    ctx = multiprocessing.get_context("spawn")
    shutdown_event = ctx.Event()
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        shutdown_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_worker, args=(opts, sockets, shutdown_event), daemon=False)
        proc.start()
        log.info("durably endpoint: worker %d started", proc.pid)
        return proc

    workers = [spawn() for _ in range(opts.workers)]
    from multiprocessing.connection import wait

    while not stopping:
        wait([p.sentinel for p in workers], timeout=1.0)
        for i, proc in enumerate(workers):
            if proc.exitcode is not None and not stopping:
                log.warning("durably endpoint: worker %d exited with %s; starting another", proc.pid, proc.exitcode)
                shutdown_event.wait(RESTART_BACKOFF_S)  # a worker that dies at start must not spin
                if not stopping:
                    workers[i] = spawn()
    log.info("durably endpoint: draining (up to %.0f s for running attempts)", opts.graceful_timeout)
    code = 0
    for proc in workers:
        proc.join(opts.graceful_timeout + 10)
        if proc.exitcode is None:
            proc.terminate()
            proc.join(5)
        if proc.exitcode not in (0, None, -signal.SIGTERM):
            code = 1
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.close()
    return code

