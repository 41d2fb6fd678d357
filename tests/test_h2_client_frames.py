"""The remote invoker's HTTP/2 client (server/remote/h2client.py) on the wire: bodies larger than the peer's
flow-control windows go in frames of the peer's size and arrive whole, per-request ids are never-indexed
header literals, and what it changes in how frames are handled stays invisible (a DATA frame's repr)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import hyperframe.frame
from hpack import NeverIndexedHeaderTuple

from durably.server.remote.h2client import H2Connection, data_frame_body_repr


def hyperframe_repr_body(frame: hyperframe.frame.DataFrame) -> str:
    """What hyperframe itself shows for a frame's body: its generic repr of the serialized body."""
    return hyperframe.frame.Frame._body_repr(frame)


def test_a_data_frames_repr_is_hyperframes_own_text() -> None:
    frames = []
    for size in (0, 1, 9, 10, 11, 100, 100 * 1024):
        frames.append(hyperframe.frame.DataFrame(1, bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)))
        for pad in (0, 3, 20):
            padded = hyperframe.frame.DataFrame(3, b"\xab" * size, flags=["PADDED"])
            padded.pad_length = pad
            frames.append(padded)
    frames.append(hyperframe.frame.DataFrame(5, memoryview(b"0123456789abcdef")))
    for frame in frames:
        assert data_frame_body_repr(frame) == hyperframe_repr_body(frame), (len(frame.data), frame.flags)
        assert repr(frame).endswith(": " + hyperframe_repr_body(frame))


class H2Server:
    """An HTTP/2 server with h2's defaults (64 KiB windows, 16 KiB frames) that echoes each request body back,
    granting flow-control credit only as it reads, as hypercorn does."""

    def __init__(self) -> None:
        self.headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.frames: list[int] = []  # the length of every DATA frame received
        self.bodies: dict[int, bytearray] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        pending: dict[int, bytes] = {}  # what is left to send back on each stream
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    self.headers[event.stream_id] = list(event.headers)
                    self.bodies[event.stream_id] = bytearray()
                elif isinstance(event, h2.events.DataReceived):
                    self.frames.append(len(event.data))
                    self.bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    conn.send_headers(event.stream_id, [(b":status", b"200")])
                    pending[event.stream_id] = bytes(self.bodies[event.stream_id])
            for sid, rest in list(pending.items()):
                while rest and (n := min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)) > 0:
                    conn.send_data(sid, rest[:n])
                    rest = rest[n:]
                pending[sid] = rest
                if not rest:
                    conn.end_stream(sid)
                    del pending[sid]
            writer.write(conn.data_to_send())
        writer.close()


async def test_bodies_larger_than_the_peers_windows_go_in_its_frame_size_and_come_back_whole() -> None:
    server = H2Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    conn = await H2Connection.connect("127.0.0.1", port)
    try:
        bodies = [bytes([i]) * (300 * 1024 + i) for i in range(4)]

        async def one(i: int) -> bytes:
            stream = await conn.request("POST", "/invoke/S/h", [("content-type", "application/x"),
                                                                ("x-restate-invocation-id", f"inv_{i}")])
            await stream.send(bodies[i])
            stream.end()
            status, _ = await stream.response()
            assert status == 200
            got = bytearray()
            while (chunk := await stream.read()) is not None:
                got += chunk
            return bytes(got)

        answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(4))), 30)
    finally:
        conn.close()
        listener.close()
    assert answers == bodies
    assert max(server.frames) <= 16384  # the server's SETTINGS_MAX_FRAME_SIZE, never exceeded
    for sid, headers in server.headers.items():
        kinds = {bytes(k): type(h) for h in headers for k in [h[0]]}
        # An id that changes on every request is a never-indexed literal; a repeated value may be indexed.
        assert kinds[b"x-restate-invocation-id"] is NeverIndexedHeaderTuple, sid
        assert kinds[b"content-type"] is not NeverIndexedHeaderTuple, sid


def test_importing_the_client_patches_nothing_until_a_connection_is_made() -> None:
    import subprocess
    import sys

    code = ("import hyperframe.frame as f; before = f.DataFrame._body_repr\n"
            "from durably.server.remote.h2client import H2Connection, data_frame_body_repr\n"
            "assert f.DataFrame._body_repr is before\n"
            "import asyncio\n"
            "async def main():\n    H2Connection('localhost:1')\n"
            "asyncio.run(main())\n"
            "assert f.DataFrame._body_repr is data_frame_body_repr\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
