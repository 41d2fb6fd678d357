"""restate-sdk's `restate.endpoint`: `app(services=[...])`, and the `Endpoint` builder behind it."""

from __future__ import annotations

from typing import Literal

from durably.sdk.service import App, ServiceDefinition, app


class Endpoint:
    """Collects services and turns them into the ASGI app (`Endpoint().bind(a, b).app()`)."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceDefinition] = {}
        self.protocol: Literal["bidi", "request_response"] | None = None
        self.identity_keys: list[str] = []

    def bind(self, *services: ServiceDefinition) -> Endpoint:
        """Add services (a name may be bound once)."""
        for svc in services:
            if not isinstance(svc, ServiceDefinition):
                raise ValueError(f"invalid service type {svc!r}: bind a Service, VirtualObject or Workflow")
            if svc.name in self.services:
                raise ValueError(f"service {svc.name} already exists")
            self.services[svc.name] = svc
        return self

    def streaming_protocol(self) -> Endpoint:
        """Kept for restate-sdk code: Durably's endpoint streams over HTTP/2 and answers request/response
        over HTTP/1.1 on its own, whichever the server uses."""
        self.protocol = "bidi"
        return self

    def request_response_protocol(self) -> Endpoint:
        """Kept for restate-sdk code (see `streaming_protocol`)."""
        self.protocol = "request_response"
        return self

    def identity_key(self, identity_key: str) -> Endpoint:
        """Accept only requests signed by this `publickeyv1_...` key (Restate's request identity; see SECURITY.md)."""
        from durably.protocol.request_identity import parse_public_key

        parse_public_key(identity_key)  # a malformed key fails here, not on the first request
        self.identity_keys.append(identity_key)
        return self

    def app(self) -> App:
        """The ASGI application serving the bound services."""
        return app(list(self.services.values()), identity_keys=self.identity_keys or None)


__all__ = ["App", "Endpoint", "app"]
