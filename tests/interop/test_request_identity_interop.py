"""Request identity both ways, with the real peers.

- Signing by Restate: restate-server 1.7.12 with a private key drives a Durably app that has the matching
  `identity_keys`; requests without a valid token are refused and run nothing.
- Signing by Durably: `durably serve --request-identity-key` drives a restate-sdk 1.2.0 deployment that has
  the matching `identity_keys`; without the key the deployment refuses it.
- Discovery of a deployment that answers with an error does not echo the target's body to the caller.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import durably
from durably.protocol.request_identity import RequestSigner, generate_private_key, load_private_key
from durably.server.remote.deployments import DiscoveryError
from durably.testing import TestRuntime

from .conftest import ROOT, SDK_VENVS, Deployment, RestateServer, SdkDeployment, free_port, wait_until

pytestmark = pytest.mark.interop

RAN: Counter[str] = Counter()
guarded = durably.Service("IdentityGreeter")


@guarded.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    RAN[name] += 1  # outside a step on purpose: a forged request would make this happen
    return await ctx.run_typed("hello", lambda: f"Hello {name}!")


PEM, PUBLIC = generate_private_key()
SIGNER = RequestSigner(load_private_key(PEM))


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("identity") / "identity.pem"
    path.write_bytes(PEM)
    return path


@pytest.fixture(scope="module")
def guarded_deployment() -> Iterator[Deployment]:
    dep = Deployment(durably.app(services=[guarded], identity_keys=[PUBLIC]))
    dep.start()
    yield dep
    dep.stop()


@pytest.fixture(scope="module")
def signing_restate(tmp_path_factory: pytest.TempPathFactory, key_file: Path,
                    guarded_deployment: Deployment) -> Iterator[RestateServer]:
    server = RestateServer(tmp_path_factory.mktemp("restate-signing"),
                           {"RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(key_file)})
    try:
        server.register(guarded_deployment.url)
        yield server
    finally:
        server.stop()


def test_restate_signs_and_the_durably_app_serves(signing_restate: RestateServer) -> None:
    # The server derives the same publickeyv1_ string from the PEM as Durably does.
    assert f'kid: "{PUBLIC}"' in signing_restate.log.read_text()
    name = f"ada-{uuid.uuid4()}"
    resp = httpx.post(f"{signing_restate.ingress}/IdentityGreeter/greet", json=name, timeout=60)
    assert (resp.status_code, resp.json()) == (200, f"Hello {name}!")
    assert RAN[name] == 1


def _forged_invoke(path_signed: str | None, signer: Any = SIGNER, **claims: int) -> dict[str, str]:
    """Identity headers: none, or a token for `path_signed` (with claims overridden)."""
    if path_signed is None:
        return {}
    headers = dict(signer.headers(path_signed))
    if claims:
        payload = jwt.decode(headers["x-restate-jwt-v1"], options={"verify_signature": False})
        payload.update(claims)
        headers["x-restate-jwt-v1"] = jwt.encode(payload, signer._key, algorithm="EdDSA",
                                                 headers={"kid": signer.public_key})
    return headers


@pytest.mark.parametrize("case", ["no token", "another path", "expired", "another key"])
def test_requests_without_a_valid_token_are_refused(guarded_deployment: Deployment, case: str) -> None:
    from durably.protocol import protocol_pb2 as pb
    from durably.protocol.framing import encode_message
    from durably.protocol.ids import InvocationId

    path = "/invoke/IdentityGreeter/greet"
    headers = {
        "no token": _forged_invoke(None),
        "another path": _forged_invoke("/invoke/IdentityGreeter/other"),
        "expired": _forged_invoke(path, exp=int(time.time()) - 300, nbf=int(time.time()) - 500),
        "another key": _forged_invoke(path, RequestSigner(Ed25519PrivateKey.generate())),
    }[case]
    name = f"forged-{uuid.uuid4()}"
    inv = InvocationId.random()
    inp = pb.InputCommandMessage()
    inp.value.content = json.dumps(name).encode()
    body = encode_message(pb.StartMessage(id=inv.to_bytes(), debug_id=str(inv), known_entries=1)) + \
        encode_message(inp)
    with httpx.Client(base_url=guarded_deployment.url, timeout=30) as http:
        resp = http.post(path, content=body, headers={"content-type": "application/vnd.restate.invocation.v5",
                                                      **headers})
        assert resp.status_code == 401
        assert resp.json()["code"] == 401
        assert http.get("/discover", headers=headers).status_code == 401
        assert http.get("/health").status_code == 200
    assert RAN[name] == 0


# ---- durably serve signs, the restate-sdk verifies ----


class Serve:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.port, self.admin = free_port(), free_port()
        self.log_path = tmp / f"serve-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durably.cli.main", "serve", "examples/greeter.py", "--port", str(self.port),
                 "--admin-port", str(self.admin), "--data-dir", str(tmp / f"data-{self.port}"), *args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(f"{self.ingress}/restate/health").status_code == 200, 30, "durably serve")

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, DURABLY_ADMIN_URL=f"http://127.0.0.1:{self.admin}")
        return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module", params=sorted(SDK_VENVS))
def verifying_sdk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkDeployment]:
    dep = SdkDeployment(tmp_path_factory.mktemp("sdk-identity"), {"RESTATE_APP_IDENTITY_KEYS": PUBLIC},
                        version=request.param)
    yield dep
    dep.stop()


@pytest.mark.system
def test_durably_signs_and_the_restate_sdk_accepts(verifying_sdk: SdkDeployment, key_file: Path,
                                                   tmp_path: Path) -> None:
    serve = Serve(tmp_path, "--request-identity-key", str(key_file))
    try:
        out = serve.cli("deployments", "register", verifying_sdk.url)
        assert out.returncode == 0, out.stderr
        resp = httpx.post(f"{serve.ingress}/SdkGreeter/greet", json="Ada", timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json()["hello"] == "Hello Ada!"
    finally:
        serve.stop()
    assert "signed with" in serve.log_path.read_text()


@pytest.mark.system
def test_without_the_key_the_restate_sdk_refuses_durably(verifying_sdk: SdkDeployment, tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        out = serve.cli("deployments", "register", verifying_sdk.url)
    finally:
        serve.stop()
    assert out.returncode == 1
    assert "answered 401" in out.stderr and "--request-identity-key" in out.stderr


# ---- discovery errors ----


async def leaky(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A URL that answers discovery with an internal page."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":  # the fixture waits for it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": b"<h1>SECRET-INTERNAL-PAGE</h1> db=10.0.0.7 user=root"})


@pytest.fixture(scope="module")
def leaky_target() -> Iterator[Deployment]:
    dep = Deployment(leaky)  # type: ignore[arg-type]
    dep.start()
    yield dep
    dep.stop()


async def test_discovery_errors_report_status_not_body(leaky_target: Deployment, caplog) -> None:
    from durably.server.http.admin import Admin

    caplog.set_level(logging.WARNING)
    async with TestRuntime(durably.app(services=[guarded])) as rt:
        assert rt.engine is not None
        with pytest.raises(DiscoveryError) as err:
            await rt.engine.register_deployment(leaky_target.url)
        assert "SECRET" not in str(err.value) and "403" in str(err.value)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                     base_url="http://admin") as admin:
            resp = await admin.post("/deployments", json={"uri": leaky_target.url})
    assert resp.status_code == 502
    assert "answered 403" in resp.json()["message"]
    assert "SECRET" not in resp.text and "10.0.0.7" not in resp.text
    assert "SECRET-INTERNAL-PAGE" in caplog.text  # the operator still sees what the target said
