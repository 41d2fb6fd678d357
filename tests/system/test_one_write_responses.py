"""Through a real `durably serve`: responses stay whole now that the head waits for the body (issue 21).

The unit tests are in tests/test_one_write_responses.py; here many keep-alive requests, a request with
`Expect: 100-continue` (the interim answer must not be held) and one with `Connection: close`.
"""

from __future__ import annotations

import socket

import httpx

from .conftest import ServerFactory


def test_served_answers_are_whole_over_keep_alive_expect_100_and_close(durably_serve: ServerFactory) -> None:
    server = durably_serve.start("objects")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(50):
            r = client.post("/Greeter/greet", json=f"n{i}")
            assert r.status_code == 200 and r.json()["greeting"] == f"hello N{i}"
        r = client.post("/Greeter/greet", json="x", headers={"connection": "close"})
        assert r.status_code == 200 and r.json()["greeting"] == "hello X"
        r = client.post("/Greeter/refuse", json="y")
        assert r.status_code == 422 and "no greeting for y" in r.json()["message"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        body = b'"cont"'
        s.sendall(b"POST /Greeter/greet HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                  b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body))
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        s.sendall(body)
        answer = b""
        while b"hello CONT" not in answer:
            chunk = s.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK")
