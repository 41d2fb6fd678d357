"""Issue 20: `durably serve`'s listeners: "cannot listen" names the one port that is taken (and its flag), not both;
`--host` help says the admin listener does not follow it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import durably
from durably.server.config import ServerConfig
from durably.server.process.runtime import DurablyServer, StartupError


def taken() -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def free() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("which", ["ingress", "admin"])
async def test_cannot_listen_names_the_taken_port_only(tmp_path: Path, which: str) -> None:
    holder, busy = taken()
    other = free()
    try:
        port, admin_port = (busy, other) if which == "ingress" else (other, busy)
        config = ServerConfig(port=port, admin_port=admin_port, data_dir=tmp_path / "d")
        with pytest.raises(StartupError) as e:
            await DurablyServer(durably.app([]), config).serve(handle_signals=False)
        message = str(e.value)
        assert f"127.0.0.1:{busy} ({which})" in message and str(other) not in message, message
        assert ("--admin-port" in message) == (which == "admin"), message
    finally:
        holder.close()


def test_host_help_says_the_admin_listener_does_not_follow_it() -> None:
    from click.testing import CliRunner

    from durably.cli.main import main

    out = " ".join(CliRunner().invoke(main, ["serve", "--help"], env={}).output.split())
    host_help = out.split("--host TEXT", 1)[1].split("--port", 1)[0]
    assert "admin API does not follow it" in host_help and "--admin-host" in host_help, host_help
