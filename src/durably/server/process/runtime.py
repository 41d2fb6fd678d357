"""`durably serve`: the engine, the ingress and the admin API in one process, as a `ServerConfig` says."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from durably.sdk.service import App
from durably.server.config import ServerConfig
from durably.server.engine.engine import Engine, EngineOptions
from durably.server.http.admin import Admin
from durably.server.http.connection_limits import protocol_class
from durably.server.http.ingress import Ingress
from durably.server.observe.metrics import LoopMonitor, TimedIngress
from durably.server.observe.tracing import from_environment as tracing_from_environment
from durably.server.partitions.balance import open_shares
from durably.server.partitions.forward import Clients, Forwarder, UdsPeerLink
from durably.server.partitions.internal import InternalApp
from durably.server.partitions.layout import PartitionRole, check_partitions, listen_unix
from durably.server.partitions.map import PartitionMap
from durably.server.partitions.router import PartitionRouter
from durably.server.partitions.uiview import PeerViews
from durably.server.process.kafka import KafkaSubscriptions
from durably.server.process.limits import BodyBudget, engine_limits, fit_connection_cap, raise_nofile_limit
from durably.server.process.listeners import (
    QuietServer,
    guarded,
    host_checked,
    listen_tcp,
    protections,
    security_options,
    tls_options,
    url,
)
from durably.server.process.memory_return import set_mmap_threshold, trim_soon
from durably.server.process.shutdown import DrainingIngress, drain
from durably.server.store import MemoryStore, SQLiteStore, Store

log = logging.getLogger("durably.server")


def loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """How a server process runs its main coroutine: on uvloop where it is installed (a dependency on Unix),
    else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Unix
        return asyncio.run
    return uvloop.run


class StartupError(RuntimeError):
    """The server could not start (e.g. a port is taken)."""


def _draining(ingress: Any, cfg: ServerConfig) -> Any:
    return DrainingIngress(ingress) if cfg.drain else ingress


class DurablyServer:
    """Runs an app embedded: SQLite store, engine, ingress and admin API on one event loop.

    With a `partition` role it is one partition process of `durably serve --partitions N`
    (server/partitions/): its own store under the data directory, the shared ingress port, and an internal
    unix socket instead of the admin listener (the supervisor owns that one and asks every partition).
    """

    def __init__(self, app: App, config: ServerConfig, partition: PartitionRole | None = None) -> None:
        self.app = app
        self.config = config
        self.partition = partition
        self.engine: Engine | None = None
        self.subscriptions: KafkaSubscriptions | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()

    def request_stop(self) -> None:
        """Begin a graceful stop; asked again, stop at once."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def serve(self, ready: asyncio.Event | None = None, handle_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT or `request_stop`.

        `handle_signals=False` leaves SIGTERM/SIGINT to whoever owns the loop (an ASGI server running the
        app embedded calls `request_stop` from its lifespan shutdown instead).
        """
        cfg = self.config
        try:  # before the store: a bad key or certificate fails the start with nothing opened
            security, tls = security_options(cfg), tls_options(cfg)
        except ValueError as e:
            raise StartupError(str(e)) from None
        role = self.partition
        if role is None and not cfg.in_memory:
            check_partitions(cfg.data_dir, 1)  # a directory made by --partitions N > 1 is refused, not misread
        store_dir = cfg.data_dir if role is None else role.store_dir
        store: Store = MemoryStore() if cfg.in_memory else SQLiteStore(store_dir, cfg.synchronous)
        set_mmap_threshold()
        limits = cfg.limits
        limits = replace(limits, max_connections=fit_connection_cap(limits.max_connections, 2, raise_nofile_limit()))
        options = EngineOptions(always_replay=cfg.always_replay, metrics=cfg.metrics, retention=cfg.retention,
                                tracing=tracing_from_environment(), **security, **engine_limits(limits))
        if cfg.default_retry_policy is not None:
            options.default_retry_policy = cfg.default_retry_policy
        options.concurrency_rules = dict(cfg.concurrency_rules)
        peers = None
        if role is not None:
            role.clear_drained()
            options.partitions = PartitionMap(role.count, role.index)
            peers = Clients(role.root, role.count, limits.keep_alive_timeout)
        engine = Engine(self.app, store, options)
        self.engine = engine
        if peers is not None:  # cross-partition messages: the engine's outbox delivers through the sockets
            engine.attach_peers(UdsPeerLink(peers))
        if handle_signals:
            # The process is ours (durably serve, a partition): what exists before the engine starts (modules, the
            # app, the server's objects) lives as long as the process, so the cyclic GC stops scanning it. Without
            # this every full collection walked some 70,000 such objects: 30 ms pauses, 12% of the time at
            # steps10@32; after it 4 ms, and 14-19% more steps/s. Before the engine starts, so that nothing it
            # recovers (invocations that finish and go) is frozen. Not in embedded mode, where the process and its
            # objects are the user's.
            gc.collect()
            gc.freeze()
        await engine.start()
        # Kafka subscriptions: the stored ones' consumers start now (each retries an unreachable broker);
        # a draining server takes no new invocations, from Kafka neither.
        subscriptions = KafkaSubscriptions(engine, cfg.kafka_clusters)
        self.subscriptions = subscriptions
        await subscriptions.start(consume=not cfg.drain)
        plain = Ingress(engine, cfg.body_limit, BodyBudget(limits.max_inflight_body, trim_soon))
        if role is not None:
            plain.readiness = role.readiness
        ingress: object = plain
        monitor = None
        if engine.stats is not None:
            ingress = TimedIngress(ingress, engine.stats)
            monitor = LoopMonitor(engine.stats)
            monitor.start()
        admin = Admin(engine, subscriptions=subscriptions)
        local_ingress = _draining(ingress, cfg)
        if role is not None and peers is not None:
            internal_app = InternalApp(engine, local_ingress, admin, role.index, role.group_serving.is_set)
            admin.ui.peers = PeerViews(peers, role.index, role.count)  # the UI's list and overview: every partition
            routed = PartitionRouter(local_ingress, options.partitions, engine.services.get, Forwarder(peers))
            ingress_app, admin_app = host_checked(*guarded(routed, admin, cfg), cfg)
        else:
            ingress_app, admin_app = host_checked(*guarded(local_ingress, admin, cfg), cfg)
        # A shared ingress port: this partition's connections are counted where the others see them (even shares).
        shares = open_shares(role.root, role.index, role.count) if role is not None else None
        servers = [
            QuietServer(uvicorn.Config(ingress_app, host=cfg.host, port=cfg.port,
                                        lifespan="off", log_level="warning", access_log=False,
                                        timeout_graceful_shutdown=5, proxy_headers=False, server_header=False,
                                        date_header=False, http=protocol_class(limits, "ingress", shares),  # type: ignore[arg-type]
                                        timeout_keep_alive=limits.keep_alive_timeout, **tls)),
            QuietServer(uvicorn.Config(admin_app, host=cfg.admin_host, port=cfg.admin_port, lifespan="off",
                                        log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                                        http=protocol_class(limits, "admin"),  # type: ignore[arg-type]
                                        timeout_keep_alive=limits.keep_alive_timeout, **tls)),
        ]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests) or not Unix
                pass
        sockets: list[socket.socket] = []
        # Each listener, and the flags that move it: a failure names the one that could not listen.
        listeners = ((cfg.host, cfg.port, "ingress", "--host/--port"),
                     (cfg.admin_host, cfg.admin_port, "admin", "--admin-host/--admin-port"))
        if role is not None:  # the supervisor owns the admin listener; this partition's is its internal socket
            servers[1] = QuietServer(uvicorn.Config(internal_app, lifespan="off", log_level="warning",
                                                     access_log=False, timeout_graceful_shutdown=5,
                                                     proxy_headers=False, server_header=False, date_header=False,
                                                     timeout_keep_alive=limits.keep_alive_timeout))
            listeners = (listeners[0], (str(role.socket), 0, "internal", "--data-dir"))
        for host, port, what, flags in listeners:
            try:
                # Bound here, so a taken port is a clear error rather than uvicorn exiting the process.
                if what == "internal":
                    sockets.append(listen_unix(Path(host)))
                else:
                    sockets.append(listen_tcp(host, port, shared=role is not None,
                                              spread=role.count if role is not None else 0))
            except OSError as e:
                for sock in sockets:
                    sock.close()
                await subscriptions.close()
                await engine.stop()
                raise StartupError(f"cannot listen on {host}:{port} ({what}): {e.strerror}; pick another with "
                                   f"{flags}") from None
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets, strict=True)]
        while not all(s.started for s in servers):
            done = [i for i, t in enumerate(tasks) if t.done()]
            if done:  # a server failed to start (uvicorn logged why)
                await subscriptions.close()
                await engine.stop()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                host, port, what, flags = listeners[done[0]]
                raise StartupError(f"cannot listen on {host}:{port} ({what}); pick another with {flags}")
            await asyncio.sleep(0.01)
        if role is not None:  # the supervisor says "durably is serving" once every partition does
            log.info("partition %d of %d (pid %d) is serving on %s, data in %s", role.index, role.count,
                     os.getpid(), url(cfg.host, cfg.port, cfg), role.store_dir)
        else:
            log.info("durably is serving %s on %s (admin API on %s), data in %s%s",
                     ", ".join(self.app.services) or "no app of its own (remote deployments only)",
                     url(cfg.host, cfg.port, cfg), url(cfg.admin_host, cfg.admin_port, cfg),
                     "memory" if cfg.in_memory else cfg.data_dir,
                     protections(cfg) + (" (draining: no new invocations)" if cfg.drain else ""))
        if ready is not None:
            ready.set()
        stop_wait = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
        # Consumers first: records in flight finish and their offsets are committed, then the engine drains.
        await subscriptions.close()
        if stop_wait.done():
            await drain(engine, cfg.shutdown_grace, self._force)
            if role is not None:  # the shared ingress port answers 503 until every partition has drained
                await role.hold_until_all_drained(cfg.shutdown_grace, self._force)
        if monitor is not None:
            monitor.stop()
        for s in servers:
            s.should_exit = True
        # Stopping the engine answers waiting callers (503) so their connections can close.
        await engine.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_wait.cancel()
        if peers is not None:
            await peers.close()
