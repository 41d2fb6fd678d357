"""`durably invoke` shows progress (issue 24 item 3, issue 20's CLI minor): the real CLI against a real `durably
serve` (tests/system/apps/flaky.py, whose `charge` step fails a given number of times, 200 ms apart).

On a terminal (stderr is a pseudo-terminal here) it prints the invocation id at once and a live status line
(attempt N, backing off until T, the last error); with --json or without a terminal, only the result; Ctrl-C
detaches without cancelling and prints the command that attaches again, which then gets the result.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import REPO_ROOT, ServerFactory, ServerProcess, wait_until

pytestmark = pytest.mark.system


def env_of(server: ServerProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env.update(DURABLY_INGRESS_URL=server.url, DURABLY_ADMIN_URL=f"http://127.0.0.1:{server.admin_port}",
               COLUMNS="200")
    return env


class Terminal:
    """`durably ARGS` with stderr on a pseudo-terminal (stdout a pipe); what it wrote to the terminal so far."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        self.master, slave = pty.openpty()
        # SIGINT as in a foreground job: a test run started in the background (`cmd &` in a script) has it
        # ignored, and the child would inherit that, so Ctrl-C would never reach it.
        self.proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", *args], stdout=subprocess.PIPE,
                                     stderr=slave, stdin=subprocess.DEVNULL, env=env_of(server), cwd=REPO_ROOT,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        os.close(slave)
        self.seen = b""

    def read(self) -> str:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            self.seen += chunk
        return self.seen.decode(errors="replace")

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self.read()
        os.close(self.master)
        return self.proc.returncode, out.decode(), self.seen.decode(errors="replace")


def test_a_retrying_invocation_shows_its_id_attempts_backoff_and_last_error(durably_serve: ServerFactory,
                                                                            tmp_path: Path) -> None:
    server = durably_serve.start("flaky")
    # It backs off until the test has seen a backoff on the status line: a busy machine cannot hide them all.
    term = Terminal(server, "invoke", "Flaky/pay_when_allowed", json.dumps({"dir": str(tmp_path)}))
    wait_until(lambda: re.search(r"invocation id: inv_\w+", term.read()), 15, "the invocation id")
    wait_until(lambda: "backing off until" in term.read(), 15, "a backoff on the status line")
    (tmp_path / "allowed").touch()
    code, out, shown = term.finish()
    assert code == 0, shown
    assert out == '"charged"\n'
    assert re.search(r"backing-off: attempt \d+, backing off until \d\d:\d\d:\d\d\.\d{3}, "
                     r"last error: 500 RuntimeError\('card declined \(try \d+\)'\)", shown), shown
    assert shown.index("invocation id:") < shown.index("backing off")


def test_json_and_a_pipe_print_only_the_result(durably_serve: ServerFactory, tmp_path: Path) -> None:
    server = durably_serve.start("flaky")
    body = json.dumps({"dir": str(tmp_path), "fails": 2})
    piped = subprocess.run([sys.executable, "-m", "durably.cli.main", "invoke", "Flaky/pay", body], env=env_of(server),
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert piped.returncode == 0 and piped.stdout == '"charged"\n'
    assert "attempt" not in piped.stderr and "backing off" not in piped.stderr
    (tmp_path / "charges").unlink()
    term = Terminal(server, "invoke", "Flaky/pay", body, "--json")
    code, out, shown = term.finish()
    assert code == 0 and out == '"charged"\n'
    assert "backing off" not in shown and "attempt" not in shown


def test_ctrl_c_detaches_without_cancelling_and_says_how_to_attach(durably_serve: ServerFactory,
                                                                   tmp_path: Path) -> None:
    server = durably_serve.start("flaky")
    # It keeps backing off until the test allows it to finish: the Ctrl-C cannot come after its end.
    term = Terminal(server, "invoke", "Flaky/pay_when_allowed", json.dumps({"dir": str(tmp_path)}))
    found = wait_until(lambda: re.search(r"invocation id: (inv_\w+)", term.read()), 15, "the invocation id")
    inv = found.group(1)  # type: ignore[union-attr]
    wait_until(lambda: "backing off until" in term.read(), 15, "the first backoff")
    term.proc.send_signal(signal.SIGINT)
    code, out, shown = term.finish()
    assert code == 130 and out == ""
    assert f"detached: {inv} goes on (nothing was cancelled). Attach again with:" in shown
    assert f"durably invoke --attach {inv}" in shown
    admin = f"http://127.0.0.1:{server.admin_port}"
    assert httpx.get(f"{admin}/invocations/{inv}", timeout=10).json()["status"] != "completed"
    (tmp_path / "allowed").touch()
    started = time.monotonic()
    again = subprocess.run([sys.executable, "-m", "durably.cli.main", "invoke", "--attach", inv], env=env_of(server),
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and again.stdout == '"charged"\n', again.stderr
    assert time.monotonic() - started < 30
    # One attempt per run of the step: the failed ones before the detach and after it, and the one that charged.
    attempts = httpx.get(f"{admin}/invocations/{inv}", timeout=10).json()["attempts"]
    assert attempts >= 2 and attempts == int((tmp_path / "charges").read_text())
