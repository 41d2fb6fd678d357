"""Issue 23: the endpoint's HTTP/2 server writes a response body chunk to the socket inside the app's `send`,
not in a later turn of a writer task: a worker SIGKILLed in between would lose a step's proposed result, and
the longer the loop's turns (a busy worker), the wider that window."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
from hypercorn.utils import wrap_app

from durably.hosting.h2_server import EndpointConfig, serve
from durably.sdk.asgi import lifespan

HOLD_S = 1.0  # how long the app keeps the event loop busy right after sending a chunk


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"proposal", "more_body": True})
    time.sleep(HOLD_S)  # noqa: ASYNC251 - the loop is busy (e.g. another step's closure): no other task runs meanwhile
    HELD.append(time.monotonic())
    await send({"type": "http.response.body", "body": b""})


HELD: list[float] = []


def test_a_body_chunk_reaches_the_socket_before_the_app_gives_the_loop_back() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = EndpointConfig()
    config.bind = [f"127.0.0.1:{port}"]
    sock.close()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def until_stopped() -> None:
        await stop.wait()

    server = threading.Thread(target=lambda: loop.run_until_complete(
        serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, config.create_sockets(), until_stopped)),
        daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":path", "/"), (":scheme", "http"),
                                   (":authority", "x")], end_stream=True)
        client.sendall(conn.data_to_send())
        arrived = None
        while arrived is None:
            data = client.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived) and event.data == b"proposal":
                    arrived = time.monotonic()
            client.sendall(conn.data_to_send())
        client.close()
        # On the wire while the app still held the loop, not after it let go.
        assert not HELD or arrived < HELD[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        server.join(10)
