"""What a browser holds for the web UI, and what the UI sends it: the sign-in session, one-shot flash notes,
the sign-in throttle and the UI's security headers.

- **Session.** Signing in with the admin token gives an opaque cookie, never the token: an expiry and a random
  nonce, signed (HMAC-SHA256) with a secret made when the process starts. It is `HttpOnly`,
  `SameSite=Strict`, `Secure` over TLS, with `Max-Age`; it expires after `SESSION_SECONDS`, and a restart
  (a new secret) signs everyone out. Only the admin listener accepts it.
- **Flash notes.** After a form, the UI redirects to a page with `?msg=`/`?err=` text; the page shows that text
  only when the browser also holds the short-lived signed cookie the redirect set for exactly that text, so a
  link cannot put words in the UI's mouth.
- **Throttle.** Sign-in attempts per client address: a burst of `SIGN_IN_BURST`, then one per
  `SIGN_IN_REFILL_S` seconds; past it 429 with `Retry-After`.
- **Headers.** Every /ui response carries a Content-Security-Policy (`frame-ancestors 'none'`, nothing loaded
  from elsewhere, forms post only here) and `X-Frame-Options: DENY`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from durably.sdk.asgi import Send

SESSION_COOKIE = "durably_ui_session"
FLASH_COOKIE = "durably_ui_flash"
# Before sessions, the UI's cookie held the admin token itself: never accepted now, cleared at sign-in, and
# removed from requests the ingress passes on like the others.
LEGACY_COOKIE = "durably_admin_token"
DURABLY_COOKIES = frozenset({SESSION_COOKIE, FLASH_COOKIE, LEGACY_COOKIE})

SESSION_SECONDS = 8 * 3600
FLASH_SECONDS = 60
SIGN_IN_BURST = 5
SIGN_IN_REFILL_S = 10.0
_TRACKED_CLIENTS = 10_000

# The pages are rendered on the server; their scripts and styles are inline, and nothing comes from elsewhere.
UI_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self' 'unsafe-inline'; "
     b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "
     b"base-uri 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class Signer:
    """Signs short strings with a secret of this process (purpose-bound, so one kind never passes for another)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}|{payload}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, purpose: str, payload: str) -> str:
        """`payload.signature` (payload must be cookie-safe: no `;`, `,`, spaces)."""
        return f"{payload}.{self._mac(purpose, payload)}"

    def verify(self, purpose: str, value: str) -> str | None:
        """The payload of a value `sign` made for `purpose`, else None."""
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(mac.encode(), self._mac(purpose, payload).encode()):
            return None
        return payload


class UiSessions:
    """The UI's sign-in sessions: signed, expiring, never holding the token."""

    def __init__(self, signer: Signer | None = None, now: Callable[[], float] = time.time) -> None:
        self.signer = signer or Signer()
        self.now = now

    def new(self) -> str:
        """A fresh session's cookie value."""
        expiry = int(self.now()) + SESSION_SECONDS
        return self.signer.sign("session", f"{expiry}.{secrets.token_urlsafe(16)}")

    def valid(self, value: str) -> bool:
        """Whether a cookie value is a session this process made that has not expired."""
        payload = self.signer.verify("session", value)
        if payload is None:
            return False
        expiry, _, _ = payload.partition(".")
        return expiry.isdigit() and int(expiry) > self.now()


class FlashNotes:
    """Vouches for the flash text of one redirect: the text goes in the URL, its signed digest in a cookie."""

    def __init__(self, signer: Signer | None = None, now: Callable[[], float] = time.time) -> None:
        self.signer = signer or Signer()
        self.now = now

    @staticmethod
    def _digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:18]).decode()

    def cookie_value(self, text: str) -> str:
        """The cookie value that vouches for `text` for `FLASH_SECONDS`."""
        return self.signer.sign("flash", f"{int(self.now()) + FLASH_SECONDS}.{self._digest(text)}")

    def genuine(self, values: Iterable[str], text: str) -> bool:
        """Whether one of the cookie values vouches for exactly `text`, and has not expired."""
        for value in values:
            payload = self.signer.verify("flash", value)
            if payload is None:
                continue
            expiry, _, digest = payload.partition(".")
            if expiry.isdigit() and int(expiry) > self.now() and hmac.compare_digest(digest, self._digest(text)):
                return True
        return False


class SignInThrottle:
    """A token bucket per client address: `SIGN_IN_BURST` attempts, then one per `SIGN_IN_REFILL_S` seconds."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """Spend one attempt of `client`: 0 if allowed, else the seconds until the next one is."""
        now = self.now()
        tokens, at = self._buckets.pop(client, (float(SIGN_IN_BURST), now))
        tokens = min(float(SIGN_IN_BURST), tokens + (now - at) / SIGN_IN_REFILL_S)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) * SIGN_IN_REFILL_S
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > _TRACKED_CLIENTS:  # an address flood forgets the oldest, not the memory
            self._buckets.popitem(last=False)
        return wait


def cookie_header(name: str, value: str, max_age: int, secure: bool, path: str = "/") -> tuple[bytes, bytes]:
    """A `Set-Cookie` header of ours: HttpOnly, SameSite=Strict, Max-Age, Secure over TLS."""
    flags = f"; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
    return b"set-cookie", f"{name}={value}{flags}".encode("latin-1")


def cookie_values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    """Every value the request's `Cookie` headers give `name` (a browser may send several)."""
    out = []
    for k, v in headers:
        if k.lower() != b"cookie":
            continue
        for part in v.decode("latin-1").split(";"):
            n, eq, value = part.strip().partition("=")
            if eq and n == name:
                out.append(value.strip().strip('"'))
    return out


def without_cookies(header: str, names: frozenset[str]) -> str:
    """A `Cookie` header value without the cookies named (the others kept as they were sent)."""
    kept = [p for p in header.split(";") if p.strip().partition("=")[0].strip() not in names]
    return ";".join(kept).strip()


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """`send` that adds `extra` headers to the response."""

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def is_tls(scope: dict[str, Any]) -> bool:
    """Whether the request came over TLS (cookies then get `Secure`)."""
    return scope.get("scheme") == "https"
