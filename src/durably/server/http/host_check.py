"""The `Host` check that stops DNS rebinding: a listener on loopback answers only names that mean loopback.

A web page on `evil.example` can make its own name resolve to 127.0.0.1 after it loaded ("DNS rebinding");
the browser then sends the page's requests to the loopback listener as same-origin ones, with
`Host: evil.example:9070` and a matching `Origin`, and lets the page read the answers. Without a token the
admin API, and the UI's forms, would be the page's. The request's `Host` is the one thing such a page cannot
choose, so a listener bound to loopback accepts only:

- `localhost` and loopback addresses (`127.0.0.1` and the rest of 127.0.0.0/8, `[::1]`), any port;
- the address the listener is bound to;
- names given with `--allowed-host` (`DURABLY_ALLOWED_HOST`, `allowed_host` in the config file): `NAME` (any
  port) or `NAME:PORT`; `*` turns the check off.

Others get 421 (Misdirected Request) in Restate's error shape, naming the flag. A listener bound to another
interface is checked only when `--allowed-host` is given. Health paths are never checked (they tell nothing,
and a load balancer's probe uses whatever name it has). A request without `Host` (HTTP/1.0) passes: browsers
always send one.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from durably.sdk.asgi import Receive, Send, error

log = logging.getLogger("durably.http")

ALLOWED_HOST_FLAG = "--allowed-host"
_LOOPBACK_NAMES = frozenset({"localhost"})


def split_host(value: str) -> tuple[str, str | None]:
    """(lower-cased name without brackets, port or None) of a `Host` header value or an allowed-host entry."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6] or [v6]:port
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") and rest[1:] else None
    if value.count(":") == 1:
        name, _, port = value.partition(":")
        return name, port or None
    return value, None  # a name, or a bare IPv6 address


def is_loopback(name: str) -> bool:
    """Whether a host name or address means this machine's loopback interface."""
    name = name.strip().lower().strip("[]")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_host_list(values: Iterable[str]) -> tuple[str, ...]:
    """The `--allowed-host` entries, lower-cased; each value may hold several, separated by commas or spaces."""
    out: list[str] = []
    for value in values:
        for item in value.replace(",", " ").split():
            name, port = split_host(item)
            if not name or (port is not None and not port.isdigit()):
                raise ValueError(f"bad {ALLOWED_HOST_FLAG} {item!r}: give NAME or NAME:PORT (e.g. durably.internal "
                                 "or durably.internal:9070), or * for any")
            out.append(item.strip().lower())
    return tuple(out)


class HostCheck:
    """Wraps a listener's ASGI app: refuses requests whose `Host` is not one this listener may be called by."""

    def __init__(self, app: Any, bind_host: str, allowed: Iterable[str], source: str,
                 open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.source = source
        self.open_paths = open_paths
        self.bind = bind_host.strip().lower().strip("[]")
        entries = [split_host(a) for a in allowed]
        self.any_host = any(name == "*" for name, _ in entries)
        self.names = frozenset(name for name, port in entries if port is None)
        self.name_ports = frozenset(entries) - {(n, None) for n in self.names}
        self._seen: dict[bytes, bool] = {}

    @staticmethod
    def needed(bind_host: str, allowed: Iterable[str]) -> bool:
        """Whether a listener bound to `bind_host` checks `Host`: on loopback always, elsewhere when told names."""
        return is_loopback(bind_host) or any(True for _ in allowed)

    def accepts(self, host: str) -> bool:
        """Whether a request with this `Host` value may be served."""
        if self.any_host:
            return True
        name, port = split_host(host)
        if port is not None and not port.isdigit():
            return False
        if name == self.bind or is_loopback(name) or name in self.names:
            return True
        return (name, port) in self.name_ports

    def _accepts_cached(self, host: bytes) -> bool:
        # Clients send the same Host on every request: the answer is remembered for a few of them.
        seen = self._seen
        ok = seen.get(host)
        if ok is None:
            ok = self.accepts(host.decode("latin-1"))
            if len(seen) >= 64:
                seen.clear()  # many names (a scan, a rebinding attempt): start over rather than grow
            seen[host] = ok
        return ok

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.open_paths:
            await self.app(scope, receive, send)
            return
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        if host is None or self._accepts_cached(host):
            await self.app(scope, receive, send)
            return
        shown = host.decode("latin-1")[:100]
        log.info("refused %s %s on the %s: Host %r is not one of its names (DNS rebinding?)", scope["method"],
                 scope["path"][:200], self.source, shown)
        await error(send, 421, f"this {self.source} does not answer to the name {shown!r}: it answers to localhost "
                    f"and loopback addresses; allow other names with {ALLOWED_HOST_FLAG} NAME (DURABLY_ALLOWED_HOST)",
                    self.source)
