"""Request identity: a Durably app with `identity_keys` runs only requests signed by a key it knows."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import durably
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import encode_message
from durably.protocol.ids import InvocationId
from durably.protocol.request_identity import (
    IdentityError,
    IdentityVerifier,
    KeyFormatError,
    RequestSigner,
    b58decode,
    b58encode,
    generate_private_key,
    load_private_key,
)

ran: Counter[str] = Counter()
svc = durably.Service("Guarded")


@svc.handler()
async def effect(ctx: durably.Context, name: str) -> str:
    ran.update([name])  # what a forged request would make happen
    return f"ran {name}"


PEM, PUBLIC = generate_private_key()
SIGNER = RequestSigner(load_private_key(PEM))
OTHER = RequestSigner(Ed25519PrivateKey.generate())


def token(signer: RequestSigner, path: str, **claims: int | str | None) -> dict[str, str]:
    """Identity headers as the signer makes them, with some claims replaced."""
    headers = dict(signer.headers(path))
    if claims:
        payload = jwt.decode(headers["x-restate-jwt-v1"], options={"verify_signature": False})
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        headers["x-restate-jwt-v1"] = jwt.encode(payload, signer._key, algorithm="EdDSA",
                                                 headers={"kid": signer.public_key})
    return headers


def test_base58_round_trip_and_leading_zeros() -> None:
    for data in (b"", b"\0", b"\0\0\x01", bytes(range(32)), b"Hello World!"):
        assert b58decode(b58encode(data)) == data
    assert b58encode(b"Hello World!") == "2NEpo7TZRRrLZSi2U"


def test_generated_key_matches_its_public_string() -> None:
    assert PUBLIC.startswith("publickeyv1_")
    assert SIGNER.public_key == PUBLIC


@pytest.mark.parametrize("bad", ["AfQwmw", "publickeyv1_0OIl", "publickeyv1_2NEpo7TZRRrLZSi2U", ""])
def test_bad_identity_keys_fail_when_the_app_is_built(bad: str) -> None:
    with pytest.raises(KeyFormatError):
        durably.app(services=[svc], identity_keys=[bad])


def test_signed_tokens_carry_restates_claims() -> None:
    headers = dict(SIGNER.headers("/invoke/Guarded/effect"))
    assert headers["x-restate-signature-scheme"] == "v1"
    head = jwt.get_unverified_header(headers["x-restate-jwt-v1"])
    assert (head["alg"], head["kid"], head["typ"]) == ("EdDSA", PUBLIC, "JWT")
    claims = jwt.decode(headers["x-restate-jwt-v1"], options={"verify_signature": False})
    assert claims["aud"] == "/invoke/Guarded/effect"
    assert claims["exp"] - claims["iat"] == 60 and claims["iat"] - claims["nbf"] == 60
    assert abs(claims["iat"] - time.time()) < 5


# Built when the test runs (tokens made at collection could expire before a long suite gets here).
REFUSALS = {
    "no scheme": (lambda: {}, "/invoke/Guarded/effect", "missing header x-restate-signature-scheme"),
    "unsigned": (lambda: {"x-restate-signature-scheme": "unsigned"}, "/invoke/Guarded/effect", "unsigned request"),
    "unknown scheme": (lambda: {"x-restate-signature-scheme": "v2"}, "/invoke/Guarded/effect", "unknown"),
    "no token": (lambda: {"x-restate-signature-scheme": "v1"}, "/invoke/Guarded/effect",
                 "missing header x-restate-jwt-v1"),
    "garbage": (lambda: {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": "not.a.jwt"}, "/discover",
                "invalid token"),
    "other path": (lambda: token(SIGNER, "/invoke/Guarded/other"), "/invoke/Guarded/effect",
                   "it is for ./invoke/Guarded/other"),
    "no iat": (lambda: token(SIGNER, "/discover", iat=None), "/discover", "no .iat. claim"),
    "exp not a number": (lambda: token(SIGNER, "/discover", exp="soon"), "/discover", ".exp. is not a number"),
    "expired": (lambda: token(SIGNER, "/discover", exp=int(time.time()) - 120), "/discover", "expired"),
    "not yet valid": (lambda: token(SIGNER, "/discover", nbf=int(time.time()) + 120), "/discover",
                      "not yet valid"),
    "other key": (lambda: token(OTHER, "/discover"), "/discover", "not signed by any"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_verifier_refuses(case: str) -> None:
    make, path, why = REFUSALS[case]
    with pytest.raises(IdentityError, match=why):
        IdentityVerifier([PUBLIC]).verify(make(), path)


def test_verifier_accepts_any_configured_key_and_mounted_paths() -> None:
    verifier = IdentityVerifier([OTHER.public_key, PUBLIC])
    verifier.verify(token(SIGNER, "/invoke/Guarded/effect"), "/invoke/Guarded/effect")
    # A deployment mounted under a prefix: Restate signs the whole path, restate-sdk checks from /invoke on.
    verifier.verify(token(SIGNER, "/api/invoke/Guarded/effect"), "/api/invoke/Guarded/effect")
    verifier.verify(token(SIGNER, "/invoke/Guarded/effect"), "/api/invoke/Guarded/effect")
    # A kid that names no key: every key is tried.
    verifier.verify(token(OTHER, "/discover", iat=int(time.time())), "/discover")


def _invoke_body(name: str) -> bytes:
    inv = InvocationId.random()
    start = pb.StartMessage(id=inv.to_bytes(), debug_id=str(inv), known_entries=1)
    inp = pb.InputCommandMessage()
    inp.value.content = json.dumps(name).encode()
    return encode_message(start) + encode_message(inp)


@pytest.fixture
async def deployment():
    app = durably.app(services=[svc], identity_keys=[PUBLIC])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deployment") as http:
        yield http


async def test_health_stays_open(deployment: httpx.AsyncClient) -> None:
    assert (await deployment.get("/health")).status_code == 200


@pytest.mark.parametrize("case", ["none", "other key", "other path"])
async def test_discover_without_a_valid_token_is_401_in_restates_shape(deployment: httpx.AsyncClient,
                                                                       case: str) -> None:
    headers = {"none": dict, "other key": lambda: token(OTHER, "/discover"),
               "other path": lambda: token(SIGNER, "/invoke/Guarded/effect")}[case]()
    resp = await deployment.get("/discover", headers=headers)
    assert resp.status_code == 401
    body = resp.json()
    assert body["code"] == 401 and body["message"].startswith("request identity check failed")
    assert headers.get("x-restate-jwt-v1", "no token") not in resp.text


async def test_forged_invocation_runs_nothing(deployment: httpx.AsyncClient) -> None:
    ctype = "application/vnd.restate.invocation.v5"
    for headers in ({}, token(OTHER, "/invoke/Guarded/effect"), token(SIGNER, "/invoke/Guarded/greet")):
        resp = await deployment.post("/invoke/Guarded/effect", content=_invoke_body("forged"),
                                     headers={"content-type": ctype, **headers})
        assert resp.status_code == 401
    assert ran["forged"] == 0
    # Unknown handlers are refused the same way: a caller without a token learns nothing about the app.
    assert (await deployment.post("/invoke/Nope/nope", headers={"content-type": ctype})).status_code == 401


async def test_signed_requests_are_served(deployment: httpx.AsyncClient) -> None:
    resp = await deployment.get("/discover", headers=token(SIGNER, "/discover"))
    assert resp.status_code == 200
    assert [s["name"] for s in resp.json()["services"]] == ["Guarded"]
    resp = await deployment.post("/invoke/Guarded/effect", content=_invoke_body("signed"),
                                 headers={"content-type": "application/vnd.restate.invocation.v5",
                                          **token(SIGNER, "/invoke/Guarded/effect")})
    assert resp.status_code == 200
    assert ran["signed"] == 1
    assert b'"ran signed"' in resp.content  # the Output command in the response stream


def test_private_key_file_errors_are_clear(tmp_path) -> None:
    with pytest.raises(KeyFormatError, match="cannot read"):
        RequestSigner.from_pem_file(tmp_path / "missing.pem")
    (tmp_path / "two.pem").write_bytes(PEM + PEM)
    with pytest.raises(KeyFormatError, match="exactly one"):
        RequestSigner.from_pem_file(tmp_path / "two.pem")
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFormatError, match="not an unencrypted PEM"):
        RequestSigner.from_pem_file(tmp_path / "junk.pem")


def test_keys_generate_writes_a_private_pem_and_prints_its_public_key(tmp_path) -> None:
    from click.testing import CliRunner

    from durably.cli.main import main

    runner = CliRunner()
    path = tmp_path / "identity.pem"
    made = runner.invoke(main, ["keys", "generate", str(path)])
    assert made.exit_code == 0, made.output
    public = made.output.strip()
    assert public.startswith("publickeyv1_")
    assert path.stat().st_mode & 0o777 == 0o600
    assert RequestSigner.from_pem_file(path).public_key == public
    assert runner.invoke(main, ["keys", "public", str(path)]).output.strip() == public
    again = runner.invoke(main, ["keys", "generate", str(path)])
    assert again.exit_code != 0 and "--force" in again.output
    assert RequestSigner.from_pem_file(path).public_key == public  # not overwritten
    replaced = runner.invoke(main, ["keys", "generate", "--force", str(path)])
    assert replaced.exit_code == 0 and replaced.output.strip() != public
