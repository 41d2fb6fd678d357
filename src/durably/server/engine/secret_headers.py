"""Request headers that handlers see but the journal never stores.

Restate forwards the caller's headers to the handler (`ctx.request().headers`) and journals them with the
input. Credentials among them would then sit in the data directory for the journal's retention, readable
through the admin API and in every backup. So the engine writes the input without the headers named here
and keeps the complete request only in memory, with the invocation's in-memory journal:

- attempts that run while the invocation stays in memory (the first one, and retries while it is active or
  backing off) see every header;
- once the invocation leaves memory (it suspends, waits for a delayed start or for its key, the server
  restarts) it is replayed from the store, and its attempts see the request without these headers.

A handler must therefore use such a header only inside a `ctx.run` step (e.g. to call another system on the
caller's behalf) and never branch on it outside one: the step's result is journaled, so a replay does not
need the header again.
"""

from __future__ import annotations

from durably.protocol import protocol_pb2 as pb

# Credentials that commonly travel in headers, and Restate's request identity token.
DEFAULT_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-restate-jwt-v1"})


def secret_header_set(extra: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """The default secret headers plus `extra` names (case-insensitive)."""
    return DEFAULT_SECRET_HEADERS | {h.strip().lower() for h in extra if h.strip()}


def input_messages(headers: list[tuple[str, str]], body: bytes,
                   secret: frozenset[str]) -> tuple[pb.InputCommandMessage, pb.InputCommandMessage]:
    """(the input as journaled, without secret headers; the input attempts in memory see, with them)."""
    stored = pb.InputCommandMessage()
    stored.value.content = body
    kept = False
    for k, v in headers:
        if k.lower() in secret:
            kept = True
        else:
            stored.headers.add(key=k, value=v)
    if not kept:
        return stored, stored
    live = pb.InputCommandMessage()
    for k, v in headers:
        live.headers.add(key=k, value=v)
    live.value.content = body
    return stored, live
