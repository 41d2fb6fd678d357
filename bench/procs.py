"""The processes the benchmarks start: free ports, the `durably` command, and starting a server process, waiting
until it answers and stopping it (each in its own session, with a log file, stopped or killed as a group).

Every script in bench/ takes these from here; bench/ is not a package, so the scripts find this module through
sys.path (their own folder, or its parent for bench/compare/).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# What a probe of a process that is not up yet raises (refused or reset connections, timeouts, a store file
# not created yet); wait_until treats these as "not yet".
NOT_YET = (urllib.error.URLError, ConnectionError, TimeoutError, OSError, sqlite3.Error)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def durably_cmd(*args: str) -> list[str]:
    """The `durably` command of this Python's environment with `args`: its console script where installed,
    else `python -m durably.cli.main`."""
    durably_bin = Path(sys.executable).parent / "durably"
    head = [str(durably_bin)] if durably_bin.exists() else [sys.executable, "-m", "durably.cli.main"]
    return [*head, *args]


def serve_cmd(app_ref: str, port: int, admin_port: int, data_dir: Path, *extra: str,
              synchronous: str | None = "full") -> list[str]:
    """`durably serve` of `app_ref` on the given ports and data dir, logging warnings only; `extra` goes last."""
    sync = ["--synchronous", synchronous] if synchronous else []
    return durably_cmd("serve", app_ref, "--port", str(port), "--admin-port", str(admin_port), "--data-dir",
                       str(data_dir), *sync, "--log-level", "warning", *extra)


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 60.0) -> tuple[int, Any]:
    """One HTTP request with a JSON body; returns (status, decoded JSON or text). HTTP errors are returned."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 200 (connection errors raise: wait_until counts them as "not yet")."""
    return request("GET", url, timeout=timeout)[0] == 200


def wait_until(check: Callable[[], T], timeout: float, what: str, proc: Proc | None = None,
               interval: float = 0.05) -> T:
    """Call check() until it returns something truthy and return that; raise RuntimeError after `timeout` s, or
    at once if `proc` exits meanwhile. Errors of a service that is not up yet (NOT_YET) count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check_alive()
        try:
            got = check()
            if got:
                return got
        except NOT_YET as e:
            last_error = e
        time.sleep(interval)
    error = f" (last error: {last_error})" if last_error is not None else ""
    tail = f"\n{proc.log_tail()}" if proc is not None else ""
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{error}{tail}")


@dataclass
class Proc:
    """A subprocess in its own session, so that it and its children can be stopped or killed together."""

    name: str
    cmd: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() just before the last start's Popen

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **self.env, **(extra_env or {})}
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(self.cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise RuntimeError with the log's tail if the process was started and has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def wait_healthy(self, url: str, timeout: float = 30.0, interval: float = 0.05) -> float:
        """Poll GET `url` until it answers 200; return the seconds since the start (Popen) to that answer."""
        wait_until(lambda: healthy(url), timeout, f"{self.name} ({url})", self, interval)
        return time.monotonic() - self.started_at

    def kill(self) -> None:
        """SIGKILL the process and everything in its session: a crash, nothing gets to clean up."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole session if it lingers; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"    warning: {self.name} did not stop within {timeout:.0f} s of SIGTERM; killing it")
        self.kill()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {self.name} log)"
