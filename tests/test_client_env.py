"""`create_client()` without an ingress URL: the URL and a bearer token come from the environment."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import durably
from durably.clients.typed import resolve_ingress

svc = durably.Service("EnvGreeter")


@svc.handler()
async def hi(ctx: durably.Context, name: str) -> str:
    return name


def test_explicit_url_wins_and_keeps_its_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLY_INGRESS_URL", "http://env:1")
    monkeypatch.setenv("DURABLY_INGRESS_TOKEN", "secret")
    assert resolve_ingress("http://given:2/", {"x": "1"}) == ("http://given:2/", {"x": "1"})


def test_url_and_token_from_durably_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTATE_INGRESS_KEY", raising=False)
    monkeypatch.setenv("DURABLY_INGRESS_URL", "http://env:1")
    monkeypatch.setenv("DURABLY_INGRESS_TOKEN", "secret")
    assert resolve_ingress(None, None) == ("http://env:1", {"Authorization": "Bearer secret"})
    # An Authorization header given by the caller is kept.
    assert resolve_ingress(None, {"authorization": "Bearer mine"}) == ("http://env:1",
                                                                      {"authorization": "Bearer mine"})
    monkeypatch.delenv("DURABLY_INGRESS_TOKEN")
    assert resolve_ingress(None, None) == ("http://env:1", None)


def test_nothing_set_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DURABLY_INGRESS_URL", "DURABLY_INGRESS_TOKEN", "RESTATE_INGRESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="DURABLY_INGRESS_URL"):
        resolve_ingress(None, None)


def test_an_empty_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLY_INGRESS_URL", "http://env:1")
    monkeypatch.setenv("DURABLY_INGRESS_TOKEN", "")
    with pytest.raises(ValueError, match="DURABLY_INGRESS_TOKEN is set but empty"):
        resolve_ingress(None, None)


def test_a_restate_cloud_key_without_restate_sdk_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLY_INGRESS_URL", raising=False)
    monkeypatch.setenv("RESTATE_INGRESS_KEY", "rstcloudv1_abc")
    monkeypatch.setitem(__import__("sys").modules, "restate._internal", None)  # restate-sdk not installed
    with pytest.raises(ValueError, match="Restate Cloud ingress key"):
        resolve_ingress(None, None)


async def test_create_client_calls_the_ingress_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []

    class Ingress(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append((self.path, self.headers.get("authorization")))
            body = b'"hi"'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingress)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DURABLY_INGRESS_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("DURABLY_INGRESS_TOKEN", "tok")
        monkeypatch.delenv("RESTATE_INGRESS_KEY", raising=False)
        async with durably.create_client() as client:
            assert await client.service_call(hi, "Ada") == "hi"
        assert seen == [("/EnvGreeter/hi", "Bearer tok")]
    finally:
        server.shutdown()
        thread.join(5)
