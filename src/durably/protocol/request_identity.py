"""Restate's request identity (scheme v1): the server signs each request to a deployment with a short JWT.

The Restate server holds an ed25519 private key (a PKCS#8 PEM file) and sends, with every discovery and
invocation request,

    x-restate-signature-scheme: v1
    x-restate-jwt-v1: <JWT, alg EdDSA, kid publickeyv1_...; claims aud (the request path), iat, nbf, exp>

with `nbf`/`exp` one minute either side of `iat`. A deployment configured with the matching public keys
(`publickeyv1_` + base58 of the 32 raw key bytes) refuses every other request. Both sides live here: the
verifier for `durably.app(..., identity_keys=[...])` and the signer for `durably serve --request-identity-key`.

The cryptography comes from libraries: `cryptography` loads, generates and signs with keys, PyJWT reads and
writes the tokens, and libsodium (PyNaCl) checks signatures on the hot path. This module only fixes the key
format, the headers and the claims. Keys are parsed once; tokens are verified on every request (a token is
never cached on the verifying side: it is what proves this request).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import Algorithm
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

KEY_PREFIX = "publickeyv1_"
SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
SCHEME_V1 = "v1"
SCHEME_UNSIGNED = "unsigned"
# The Restate server signs tokens valid from 60 s before to 60 s after their issue time.
TOKEN_WINDOW_S = 60
# Clock skew tolerated on top of that window when checking exp and nbf.
LEEWAY_S = 5

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


class IdentityError(Exception):
    """A request without a valid identity token; the message says why (it never contains the token)."""


class KeyFormatError(ValueError):
    """A public or private key that cannot be used."""


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet), as Restate writes public keys."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The bytes of a base58 string; ValueError on a character outside the alphabet."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(f"{c!r} is not a base58 character")
        n = n * 58 + _B58_INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_string(key: Ed25519PublicKey) -> str:
    """`publickeyv1_<base58>` of a public key: what a deployment's `identity_keys` lists."""
    return KEY_PREFIX + b58encode(_raw(key))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A `publickeyv1_...` string as a key; KeyFormatError says what is wrong with it."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise KeyFormatError(f"identity keys start with {KEY_PREFIX!r} (got {str(text)[:20]!r}...): use the key the "
                             "Restate server logs at start, or the one `durably keys generate` prints")
    try:
        raw = b58decode(text[len(KEY_PREFIX):])
    except ValueError as e:
        raise KeyFormatError(f"identity key {text!r} is not valid base58: {e}") from None
    if len(raw) != 32:
        raise KeyFormatError(f"identity key {text!r} decodes to {len(raw)} bytes; an ed25519 key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def normalise_path(path: str) -> str:
    """The audience a request path is checked against: from `/invoke/...` or `/discover` on, as Restate's SDKs.

    A deployment mounted under a prefix (`/prefix/invoke/S/h`) checks `/invoke/S/h`.
    """
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == "invoke":
        return "/" + "/".join(parts[-3:])
    if len(parts) >= 2 and parts[-1] == "discover":
        return "/discover"
    return path


class _Ed25519Verify(Algorithm):
    """PyJWT's EdDSA verification done by libsodium (PyNaCl): about 2.5x faster than OpenSSL's on the hot path."""

    def prepare_key(self, key: Any) -> Any:
        return key  # a nacl VerifyKey, built once per configured key

    def sign(self, msg: bytes, key: Any) -> bytes:
        raise NotImplementedError("verification only")

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        try:
            key.verify(msg, sig)
        except (BadSignatureError, ValueError):
            return False
        return True

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError


class IdentityVerifier:
    """Checks the identity headers of requests against a deployment's `identity_keys`.

    Keys are decoded once; every request's token is checked in full (signature, audience, times): a verified
    token is never remembered, so nothing about one request vouches for another.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        # kid -> key: a token names its signing key, so one signature check usually suffices.
        self.keys: dict[str, VerifyKey] = {}
        for k in keys:
            self.keys[k] = VerifyKey(_raw(parse_public_key(k)))
        if not self.keys:
            raise KeyFormatError("no identity keys given")
        self._jws = jwt.PyJWS(algorithms=[])
        self._jws.register_algorithm("EdDSA", _Ed25519Verify())

    def verify(self, headers: Mapping[str, str], path: str) -> None:
        """Return if the request carries a valid token for `path`; raise IdentityError otherwise."""
        scheme = headers.get(SCHEME_HEADER)
        if scheme is None:
            raise IdentityError(f"missing header {SCHEME_HEADER}: this deployment only accepts signed requests")
        if scheme == SCHEME_UNSIGNED:
            raise IdentityError("unsigned request: this deployment only accepts requests signed with its keys")
        if scheme != SCHEME_V1:
            raise IdentityError(f"unknown {SCHEME_HEADER} {scheme[:40]!r}")
        token = headers.get(JWT_HEADER)
        if not token:
            raise IdentityError(f"missing header {JWT_HEADER}")
        if len(self.keys) == 1:
            candidates = list(self.keys.values())
        else:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.InvalidTokenError as e:
                raise IdentityError(f"malformed token: {e}") from None
            first = self.keys.get(kid) if isinstance(kid, str) else None
            candidates = [first] if first is not None else list(self.keys.values())
        payload: bytes | None = None
        for key in candidates:
            try:
                payload = self._jws.decode_complete(token, key, algorithms=["EdDSA"])["payload"]
                break
            except jwt.InvalidSignatureError:
                continue  # another key may have signed it
            except jwt.InvalidTokenError as e:
                raise IdentityError(f"invalid token: {e}") from None
        if payload is None:
            raise IdentityError("invalid token: not signed by any of this deployment's keys")
        _check_claims(payload, path)


def _check_claims(payload: bytes, path: str) -> None:
    """Restate's rules: aud, exp, iat and nbf present; the audience is this path; now within nbf..exp."""
    try:
        claims = json.loads(payload)
    except ValueError:
        raise IdentityError("invalid token: the claims are not JSON") from None
    if not isinstance(claims, dict):
        raise IdentityError("invalid token: the claims are not an object")
    for name in ("aud", "exp", "iat", "nbf"):
        if name not in claims:
            raise IdentityError(f"invalid token: no {name!r} claim")
        if name != "aud" and (not isinstance(claims[name], int | float) or isinstance(claims[name], bool)):
            raise IdentityError(f"invalid token: {name!r} is not a number")
    now = time.time()
    if claims["exp"] <= now - LEEWAY_S:
        raise IdentityError("invalid token: it has expired")
    if claims["nbf"] > now + LEEWAY_S:
        raise IdentityError("invalid token: it is not yet valid (nbf)")
    aud = claims["aud"]
    given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    audience = normalise_path(path)
    # The full path as well: Restate signs the path it sends, a mount prefix included.
    if audience not in given and path not in given:
        raise IdentityError(f"invalid token: it is for {str(aud)[:200]!r}, not {audience!r}")


class RequestSigner:
    """Signs requests to deployments the way the Restate server does (scheme v1)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = public_key_string(key.public_key())
        self._header = {"typ": "JWT", "kid": self.public_key}
        # Claims have one-second resolution and ed25519 signatures are deterministic, so a token signed for a
        # path within the same second is byte for byte the one signing again would give: keep it that second.
        self._second = 0
        self._tokens: dict[str, str] = {}

    @classmethod
    def from_pem_file(cls, path: str | Path) -> RequestSigner:
        """Load a PKCS#8 PEM ed25519 private key (as `durably keys generate` or `openssl genpkey` writes it)."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise KeyFormatError(f"cannot read the request identity key {path}: {e.strerror}") from None
        return cls(load_private_key(data, str(path)))

    def headers(self, path: str) -> list[tuple[str, str]]:
        """The identity headers for a request to `path` (the URL path, without the query)."""
        now = int(time.time())
        if now != self._second:
            self._second, self._tokens = now, {}
        token = self._tokens.get(path)
        if token is None:
            claims = {"aud": path, "exp": now + TOKEN_WINDOW_S, "iat": now, "nbf": now - TOKEN_WINDOW_S}
            token = self._tokens[path] = jwt.encode(claims, self._key, algorithm="EdDSA", headers=self._header)
        return [(SCHEME_HEADER, SCHEME_V1), (JWT_HEADER, token)]


def load_private_key(data: bytes, where: str = "the key") -> Ed25519PrivateKey:
    """An ed25519 private key from PEM bytes; KeyFormatError if it is anything else."""
    if data.count(b"-----BEGIN") != 1:
        raise KeyFormatError(f"{where}: expected exactly one PEM private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFormatError(f"{where} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"{where} is a {type(key).__name__}; request identity needs an ed25519 key")
    return key


def generate_private_key() -> tuple[bytes, str]:
    """A new ed25519 key: (PKCS#8 PEM of the private key, its `publickeyv1_` public key)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, public_key_string(key.public_key())
