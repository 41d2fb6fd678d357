"""Issue 20: `durably endpoint` bound beyond loopback without `identity_keys` warns at start, naming the option
(unsigned requests are still accepted, as in restate-sdk)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import durably
from durably.hosting.endpoint_server import warn_if_unsigned

REPO = Path(__file__).resolve().parents[1]


def test_the_warning_depends_on_the_interface_and_the_keys(caplog: pytest.LogCaptureFixture) -> None:
    plain = durably.app([])
    signed = durably.app([], identity_keys=["publickeyv1_2G8dCQhArfvGpzPw5Vx2ALciR4xCLHfS5YaT93XjNxX9"])
    with caplog.at_level(logging.WARNING, logger="durably"):
        assert warn_if_unsigned(plain, "0.0.0.0")
        assert warn_if_unsigned(plain, "10.1.2.3")
        assert warn_if_unsigned(plain, "myhost.internal")
        assert not warn_if_unsigned(plain, "127.0.0.1")
        assert not warn_if_unsigned(plain, "::1")
        assert not warn_if_unsigned(plain, "localhost")
        assert not warn_if_unsigned(signed, "0.0.0.0")
    assert "identity_keys" in caplog.text and "0.0.0.0" in caplog.text


def test_durably_endpoint_on_all_interfaces_warns_at_start(tmp_path: Path) -> None:
    app = tmp_path / "plain_app.py"
    app.write_text("import durably\ns = durably.Service('S')\n\n@s.handler()\nasync def h(ctx: durably.Context) -> "
                   "str:\n    return 'ok'\n\napp = durably.app([s])\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log = tmp_path / "endpoint.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "endpoint", str(app), "--host", "0.0.0.0",
                                 "--port", str(port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "identity_keys" not in log.read_text() or "serving" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert "WARNING" in text and "listening on 0.0.0.0 without identity_keys" in text, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
