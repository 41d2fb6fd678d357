"""Discovery does not trust the deployment: a bad manifest is a 400 that says what is wrong, a huge one is cut off.

A small fake deployment (raw HTTP/1.1 on a local port, so registered with `use_http_11`; discovery over
HTTP/2 reads the answer through the same code) answers `GET /<case>/discover` with each bad manifest;
the admin API in process registers `http://127.0.0.1:<port>/<case>`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

import durably
from durably.server.http.admin import Admin
from durably.server.process.limits import MAX_MANIFEST_BYTES
from durably.testing import TestRuntime

APP = durably.app(services=[durably.Service("Local")])

CTYPE = b"application/vnd.restate.endpointmanifest.v3+json"
GOOD_SERVICE = {"name": "Remote", "ty": "SERVICE", "handlers": [{"name": "run"}]}


def manifest(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"protocolMode": "BIDI_STREAM", "minProtocolVersion": 5, "maxProtocolVersion": 7,
                            "services": [GOOD_SERVICE]}
    base.update(fields)
    return base


# case -> (manifest JSON, words the 400's message must contain)
BAD: dict[str, tuple[Any, tuple[str, ...]]] = {
    "list": ([GOOD_SERVICE], ("manifest must be a JSON object", "list")),
    "string": ("hello", ("manifest must be a JSON object", "string")),
    "number": (42, ("manifest must be a JSON object", "number")),
    "min-version-string": (manifest(minProtocolVersion="5"), ("minProtocolVersion", "integer", "'5'")),
    "max-version-string": (manifest(maxProtocolVersion="7"), ("maxProtocolVersion", "integer", "'7'")),
    "max-version-bool": (manifest(maxProtocolVersion=True), ("maxProtocolVersion", "integer")),
    "mode-bad": (manifest(protocolMode="CARRIER_PIGEON"), ("protocolMode", "CARRIER_PIGEON")),
    "services-missing": ({"protocolMode": "BIDI_STREAM", "minProtocolVersion": 5, "maxProtocolVersion": 7},
                         ("services",)),
    "services-object": (manifest(services={"Remote": GOOD_SERVICE}), ("services", "list")),
    "service-slash": (manifest(services=[{**GOOD_SERVICE, "name": "a/b"}]), ("service name 'a/b'",)),
    "service-empty-name": (manifest(services=[{**GOOD_SERVICE, "name": ""}]), ("service name ''",)),
    "service-name-number": (manifest(services=[{**GOOD_SERVICE, "name": 7}]), ("services[0].name", "string")),
    "service-not-object": (manifest(services=["Remote"]), ("services[0]", "object")),
    "service-ty-bad": (manifest(services=[{**GOOD_SERVICE, "ty": "ACTOR"}]), ("services[0].ty", "ACTOR")),
    "handlers-missing": (manifest(services=[{"name": "Remote", "ty": "SERVICE"}]), ("services[0].handlers",)),
    "handler-slash": (manifest(services=[{**GOOD_SERVICE, "handlers": [{"name": "x/y"}]}]),
                      ("handler name 'x/y'", "Remote")),
    "handler-ty-bad": (manifest(services=[{**GOOD_SERVICE, "handlers": [{"name": "run", "ty": "SOLO"}]}]),
                       ("handlers[0].ty", "SOLO")),
    "duplicate-service": (manifest(services=[GOOD_SERVICE, GOOD_SERVICE]), ("'Remote'", "twice")),
    "timeout-string": (manifest(services=[{**GOOD_SERVICE, "inactivityTimeout": "1m"}]),
                       ("services[0].inactivityTimeout", "milliseconds")),
}


class FakeDeployment:
    """Answers discovery per case; counts the body bytes it managed to send."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeDeployment:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def uri(self, case: str) -> str:
        return f"http://127.0.0.1:{self.port}/{case}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            case = head.split(b" ", 2)[1].decode().strip("/").split("/")[0]
            self.sent[case] = 0
            if case == "oversized":  # declares 300 MB and sends it
                await self._stream(writer, case, f"content-length: {300 * 1024 * 1024}\r\n".encode(), chunked=False)
            elif case == "endless":  # chunked, never ends
                await self._stream(writer, case, b"transfer-encoding: chunked\r\n", chunked=True)
            else:
                body = json.dumps(BAD[case][0]).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + CTYPE + b"\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what the oversized cases expect
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, case: str, framing: bytes, chunked: bool) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + CTYPE + b"\r\n" + framing + b"\r\n")
        chunk = b'{"services": [' + b" " * (256 * 1024)
        while True:
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            writer.write(data)
            await writer.drain()
            self.sent[case] += len(chunk)
            chunk = b" " * (256 * 1024)


@asynccontextmanager
async def admin_and_deployment() -> AsyncIterator[tuple[httpx.AsyncClient, FakeDeployment]]:
    async with TestRuntime(APP) as rt, FakeDeployment() as fake:
        assert rt.engine is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin",
                                     timeout=60) as client:
            yield client, fake


@pytest.mark.parametrize("case", sorted(BAD))
async def test_a_bad_manifest_is_a_400_that_names_the_fault(case: str) -> None:
    async with admin_and_deployment() as (client, fake):
        r = await client.post("/deployments", json={"uri": fake.uri(case), "use_http_11": True})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["code"] == 400 and "Traceback" not in body["message"]
        for words in BAD[case][1]:
            assert words in body["message"], body["message"]
        # Nothing was registered, and the admin API still answers.
        assert (await client.get("/deployments")).json()["deployments"] == []
        assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize("case", ["oversized", "endless"])
async def test_a_manifest_past_the_cap_is_cut_off_with_a_400(case: str) -> None:
    async with admin_and_deployment() as (client, fake):
        r = await asyncio.wait_for(
            client.post("/deployments", json={"uri": fake.uri(case), "use_http_11": True}), 60)
        assert r.status_code == 400, r.text
        message = r.json()["message"]
        assert "manifest" in message and f"{MAX_MANIFEST_BYTES} bytes" in message, message
        # The reading stopped near the cap: the deployment could not push much more than that.
        assert fake.sent[case] <= MAX_MANIFEST_BYTES + 8 * 1024 * 1024, fake.sent[case]
        assert (await client.get("/deployments")).json()["deployments"] == []


async def test_a_good_manifest_still_registers() -> None:
    async with admin_and_deployment() as (client, fake):
        BAD["good"] = (manifest(), ())
        try:
            r = await client.post("/deployments", json={"uri": fake.uri("good"), "use_http_11": True})
        finally:
            del BAD["good"]
        assert r.status_code == 201, r.text
        assert [s["name"] for s in r.json()["services"]] == ["Remote"]
