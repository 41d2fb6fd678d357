"""The supervisor of `durably serve --partitions N`: N partition processes, one admin listener, no engine.

    supervisor (this process)       holds the data directory's lock, serves the admin API (fanning out to the
      |                             partitions, server/partitions/fanout.py), restarts partitions that die
      +- partition 0 .. N-1         `python -m durably.server.partitions.child`: the app, an engine and a store
                                    each, all on the shared ingress port, each with an internal unix socket

- "durably is serving" is printed once every partition serves (its internal listener answers its health).
- A partition that exits on its own is restarted, with a delay that doubles on each crash in a row (up to
  `MAX_BACKOFF_S`) so a crash loop does not spin; one that served for `STABLE_S` starts the count afresh.
- A partition that cannot start the first time (a taken port, an app that does not load) stops the whole
  server with exit code 1: restarting would not help, and the message it printed says why.
- SIGTERM/SIGINT stops gracefully: each partition drains (server/process/shutdown.py) and exits, then the
  supervisor exits 0. A second signal is passed on, which stops the partitions at once.
- SIGKILL of the supervisor takes the partitions with it (PR_SET_PDEATHSIG, and their stdin pipe closing).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import uvicorn

from durably.server.config import ServerConfig
from durably.server.partitions.balance import create_shares, mark_down
from durably.server.partitions.child import GROUP_SERVING, ChildSpec
from durably.server.partitions.fanout import AdminFanout
from durably.server.partitions.forward import HEALTH_PATH, Clients
from durably.server.partitions.layout import check_partitions, socket_dir
from durably.server.process.listeners import (
    QuietServer,
    guarded,
    host_checked,
    listen_tcp,
    protections,
    tls_options,
    url,
)
from durably.server.store.datadir import DataDirError, DataDirLock

log = logging.getLogger("durably.server")

MAX_BACKOFF_S = 15.0
FIRST_BACKOFF_S = 0.25
STABLE_S = 30.0
KILL_AFTER_GRACE_S = 30.0
_POLL_S = 0.05
# How long the supervisor waits for every partition to confirm it knows all serve (see `_all_told`).
GROUP_CONFIRM_S = 5.0


class SupervisorError(RuntimeError):
    """The partitioned server could not start; the message says why."""


@dataclass
class _Partition:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    serving: bool = False
    crashes: int = 0  # in a row
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)


class Supervisor:
    """Starts, watches and stops the partition processes of one data directory."""

    def __init__(self, app_ref: str | None, config: ServerConfig) -> None:
        self.app_ref = app_ref
        self.config = config
        self.count = config.partitions
        self.root = config.data_dir
        self.parts = [_Partition(i) for i in range(self.count)]
        self.clients = Clients(self.root, self.count, config.limits.keep_alive_timeout)
        self._stop = asyncio.Event()
        self._signals = 0

    # ---- processes ----

    def _spawn(self, part: _Partition) -> None:
        spec = ChildSpec(self.app_ref, self.config, self.root, part.index, self.count, os.getpid())
        # Its own process group: a Ctrl-C at the terminal reaches the supervisor only, which passes it on once
        # (two signals would mean "stop at once" to a partition).
        proc = subprocess.Popen([sys.executable, "-m", "durably.server.partitions.child"], stdin=subprocess.PIPE,
                                process_group=0)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(spec))
        proc.stdin.flush()  # and kept open: its end is how the partition sees the supervisor go
        part.proc, part.started_at, part.serving, part.restart_at = proc, time.monotonic(), False, None
        part.pids.append(proc.pid)

    def _tell_serving(self, part: _Partition) -> None:
        """Tell a partition that every partition serves: its ingress health answers 200 from now on."""
        proc = part.proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(GROUP_SERVING)
            proc.stdin.flush()
        except (OSError, ValueError):  # it died meanwhile (its restart tells the next one)
            pass

    async def _is_serving(self, part: _Partition, group: bool = False) -> bool:
        """Whether the partition serves (and, with `group`, knows that every partition does)."""
        try:
            r = await self.clients.get(part.index).get(HEALTH_PATH, timeout=2.0)
        except Exception:  # not listening yet, or restarting
            return False
        if r.status_code != 200:
            return False
        return not group or r.json().get("group") is True

    async def _all_told(self) -> None:
        """Tell every partition that all serve, and wait until each says it knows (at most a few seconds), so that
        once "durably is serving" is in the log the ingress health answers 200 wherever a client lands."""
        for part in self.parts:
            self._tell_serving(part)
        deadline = time.monotonic() + GROUP_CONFIRM_S
        for part in self.parts:
            while not await self._is_serving(part, group=True):
                if time.monotonic() > deadline:
                    log.warning("partition %d did not confirm that every partition serves; its ingress health "
                                "may answer 503 for a moment", part.index)
                    return
                await asyncio.sleep(_POLL_S)

    def _signal_all(self, sig: int) -> None:
        for part in self.parts:
            if part.proc is not None and part.proc.poll() is None:
                try:
                    part.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: drain every partition; the second time, stop them at once."""
        self._signals += 1
        self._stop.set()
        self._signal_all(signal.SIGTERM)

    async def _start_all(self) -> bool:
        for part in self.parts:
            self._spawn(part)
        while not all(p.serving for p in self.parts):
            for part in self.parts:
                assert part.proc is not None
                code = part.proc.poll()
                if code is not None:
                    self._signal_all(signal.SIGTERM)
                    await self._wait_all()
                    raise SupervisorError(f"partition {part.index} could not start (exit code {code}); see its "
                                          "message above")
                if not part.serving and await self._is_serving(part):
                    part.serving = True
            if self._stop.is_set():  # a stop asked for while starting: the partitions drain as usual
                await self._wait_all()
                return False
            await asyncio.sleep(_POLL_S)
        return True

    async def _wait_all(self) -> None:
        # The partitions stop within their grace; one that does not (stuck in native code) is killed, so that
        # the supervisor always exits and never leaves a partition behind.
        deadline = time.monotonic() + self.config.shutdown_grace + KILL_AFTER_GRACE_S
        while True:
            if not any(p.proc is not None and p.proc.poll() is None for p in self.parts):
                break
            if time.monotonic() > deadline:
                log.warning("partitions still running %g s after the grace period: killing them",
                            KILL_AFTER_GRACE_S)
                self._signal_all(signal.SIGKILL)
                deadline = float("inf")
            await asyncio.sleep(_POLL_S)
        for part in self.parts:
            if part.proc is not None and part.proc.stdin is not None:
                part.proc.stdin.close()

    async def _watch(self) -> None:
        """Restart partitions that exit, until a stop is asked for."""
        while not self._stop.is_set():
            now = time.monotonic()
            for part in self.parts:
                proc = part.proc
                if proc is None:
                    continue
                if part.restart_at is not None:
                    if now >= part.restart_at:
                        log.info("restarting partition %d", part.index)
                        self._spawn(part)
                    continue
                code = proc.poll()
                if code is None:
                    if not part.serving and await self._is_serving(part):
                        part.serving = True
                        self._tell_serving(part)
                        log.info("partition %d (pid %d) serves again", part.index, proc.pid)
                    continue
                if proc.stdin is not None:
                    proc.stdin.close()
                if part.serving and now - part.started_at >= STABLE_S:
                    part.crashes = 0
                part.crashes += 1
                delay = min(FIRST_BACKOFF_S * 2 ** (part.crashes - 1), MAX_BACKOFF_S)
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                log.warning("partition %d (pid %d) stopped unexpectedly (%s); restarting it in %.2f s (%d crash%s "
                            "in a row); requests it owns get 503 until then", part.index, proc.pid, how, delay,
                            part.crashes, "" if part.crashes == 1 else "es")
                part.serving = False
                part.restart_at = now + delay
                mark_down(self.root, part.index)
            try:
                await asyncio.wait_for(self._stop.wait(), _POLL_S)
            except TimeoutError:
                pass

    # ---- the whole ----

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT; raises SupervisorError or DataDirError when it cannot start."""
        cfg = self.config
        try:
            tls = tls_options(cfg)
        except ValueError as e:
            raise SupervisorError(str(e)) from None
        check_partitions(self.root, self.count)
        lock = DataDirLock.acquire(self.root)
        try:
            socket_dir(self.root).mkdir(mode=0o700, exist_ok=True)
            create_shares(self.root, self.count)
            await self._serve(tls)
        finally:
            await self.clients.close()
            lock.release()

    async def _serve(self, tls: dict[str, object]) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        from durably.server.http.connection_limits import protocol_class

        try:
            admin_sock = listen_tcp(cfg.admin_host, cfg.admin_port)
        except OSError as e:
            raise SupervisorError(f"cannot listen on {cfg.admin_host}:{cfg.admin_port} (admin): {e.strerror}; pick "
                                  "another with --admin-host/--admin-port") from None
        fanout = AdminFanout(self.clients, self.count)
        _, admin_app = host_checked(*guarded(None, fanout, cfg), cfg)
        admin = QuietServer(uvicorn.Config(admin_app, lifespan="off", log_level="warning", access_log=False,
                                            timeout_graceful_shutdown=5, http=protocol_class(cfg.limits, "admin"),  # type: ignore[arg-type]
                                            timeout_keep_alive=cfg.limits.keep_alive_timeout, **tls))
        try:
            started = await self._start_all()
        except BaseException:
            admin_sock.close()
            raise
        if not started:
            admin_sock.close()
            log.info("stopped while starting")
            return
        admin_task = asyncio.create_task(admin.serve(sockets=[admin_sock]))
        while True:
            if admin.started or admin_task.done():
                break
            await asyncio.sleep(0.01)
        await self._all_told()
        pids = ", ".join(str(p.proc.pid) for p in self.parts if p.proc is not None)
        log.info("durably is serving %s on %s (admin API on %s), data in %s, in %d partitions (pids %s)%s",
                 self.app_ref or "no app of its own (remote deployments only)", url(cfg.host, cfg.port, cfg),
                 url(cfg.admin_host, cfg.admin_port, cfg), cfg.data_dir, self.count, pids,
                 protections(cfg) + (" (draining: no new invocations)" if cfg.drain else ""))
        await self._watch()
        log.info("shutting down: draining %d partitions", self.count)
        await self._wait_all()
        admin.should_exit = True
        await asyncio.gather(admin_task, return_exceptions=True)
        log.info("all partitions stopped")


def run_supervisor(app_ref: str | None, config: ServerConfig) -> int:
    """Serve `app_ref` in `config.partitions` processes; the exit code (1 when it could not start)."""
    sup = Supervisor(app_ref, config)
    try:
        asyncio.run(sup.serve())
    except (SupervisorError, DataDirError, OSError) as e:
        print(f"durably: cannot serve: {e}", file=sys.stderr, flush=True)
        return 1
    return 0
