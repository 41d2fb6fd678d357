"""Processes the benchmarks start: each in its own session, with a log file, stopped or killed as a group."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Proc:
    """A subprocess in its own session, so that it and its children can be stopped or killed together."""

    name: str
    cmd: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **self.env, **(extra_env or {})}
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(self.cmd, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

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
