"""`durably endpoint` advertises its larger HTTP/2 flow-control windows, read off the wire by an h2 client.

Restate's invoker streams journals and large payloads over these windows; with HTTP/2's default 64 KiB it
waits a round trip for a WINDOW_UPDATE every 64 KiB. The server must send, right after the preface, a
SETTINGS frame with INITIAL_WINDOW_SIZE = the stream window and a WINDOW_UPDATE on stream 0 that raises the
connection window to the connection window. It speaks HTTP/1.1 on the same port.
"""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx

import durably
from durably.hosting.endpoint_server import DEFAULT_CONNECTION_WINDOW, DEFAULT_STREAM_WINDOW, H2_DEFAULT_WINDOW

from .conftest import Deployment

svc = durably.Service("Windows")


@svc.handler()
async def echo(ctx: durably.Context, text: str) -> str:
    return text


APP = durably.app(services=[svc])


def server_preamble(port: int) -> tuple[dict[int, int], int, int]:
    """(the server's SETTINGS, its connection-window increment, the stream window h2 now uses to send to it)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    settings: dict[int, int] = {}
    increment = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        got_settings = got_update = False
        while not (got_settings and got_update) and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings.update({code: change.new_value for code, change in event.changed_settings.items()})
                    got_settings = True
                elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
                    increment += event.delta
                    got_update = True
            sock.sendall(conn.data_to_send())
        window = conn.remote_settings.initial_window_size
    return settings, increment, window


def h2c_upgrade(port: int) -> tuple[bytes, int | None]:
    """An HTTP/1.1 request with `Upgrade: h2c`: (the status line, the HTTP/2 status of stream 1's answer)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = conn.initiate_upgrade_connection()
    request = (b"GET /discover HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    status = None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        line, _, rest = data.partition(b"\r\n")
        rest = rest.partition(b"\r\n\r\n")[2]
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            for event in conn.receive_data(rest):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                    status = int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
            if status is None:
                rest = sock.recv(65536)
                if not rest:
                    break
    return line, status


def test_the_endpoint_advertises_its_windows_and_speaks_both_http_versions() -> None:
    dep = Deployment(APP)
    dep.start()
    try:
        settings, increment, window = server_preamble(dep.port)
        assert settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE) == DEFAULT_STREAM_WINDOW, settings
        assert window == DEFAULT_STREAM_WINDOW
        assert increment == DEFAULT_CONNECTION_WINDOW - H2_DEFAULT_WINDOW
        # HTTP/1.1 on the same port (h2c prior knowledge above); discovery over both.
        with httpx.Client(http1=True, http2=False) as c:
            assert c.get(f"{dep.url}/discover").status_code == 200
        with httpx.Client(http1=False, http2=True) as c:
            r = c.get(f"{dep.url}/discover")
            assert r.status_code == 200 and r.http_version == "HTTP/2"
        line, status = h2c_upgrade(dep.port)
        assert line.startswith(b"HTTP/1.1 101"), line
        assert status == 200
    finally:
        dep.stop()
