"""`ctx.scope(key)`: calls and sends that carry a scope and, per call, a limit key (restate-sdk's ScopedContext).

A scope groups invocations for flow control (concurrency limits per scope and per limit-key level) and is
part of the target's identity for idempotent requests and workflows. The runtime checks the format: 1 to
36 characters of `[a-zA-Z0-9_.-]` for a scope and for each of the one or two `/`-separated limit-key levels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from durably.sdk.context import CallFuture, Context, SendHandle

T = TypeVar("T")

# How the scope and limit key travel in an invocation's journaled input headers (see server/engine/flow_control.py);
# `ctx.request()` reports them as `scope` and `limit_key` instead of headers.
SCOPE_HEADER = "x-restate-scope"
LIMIT_KEY_HEADER = "x-restate-limit-key"
FLOW_HEADERS = frozenset({SCOPE_HEADER, LIMIT_KEY_HEADER})


class ScopedContext:
    """The calls of a context, all within one scope; each takes an optional `limit_key`."""

    def __init__(self, ctx: Context, scope: str) -> None:
        self._ctx = ctx
        self.scope = scope

    def service_call(self, tpe: Callable[..., Awaitable[T]], arg: Any = None, limit_key: str | None = None,
                     idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> CallFuture[T]:
        """Call a service handler within this scope."""
        return self._ctx.service_call(tpe, arg, idempotency_key, headers, scope=self.scope, limit_key=limit_key)

    def service_send(self, tpe: Callable[..., Awaitable[Any]], arg: Any = None, send_delay: timedelta | None = None,
                     limit_key: str | None = None, idempotency_key: str | None = None,
                     headers: dict[str, str] | None = None) -> SendHandle:
        """Start a service handler within this scope without waiting for it."""
        return self._ctx.service_send(tpe, arg, send_delay, idempotency_key, headers, scope=self.scope,
                                      limit_key=limit_key)

    def object_call(self, tpe: Callable[..., Awaitable[T]], key: str, arg: Any = None, limit_key: str | None = None,
                    idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> CallFuture[T]:
        """Call a virtual-object handler within this scope."""
        return self._ctx.object_call(tpe, key, arg, idempotency_key, headers, scope=self.scope, limit_key=limit_key)

    def object_send(self, tpe: Callable[..., Awaitable[Any]], key: str, arg: Any = None,
                    send_delay: timedelta | None = None, limit_key: str | None = None,
                    idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> SendHandle:
        """Start a virtual-object handler within this scope without waiting for it."""
        return self._ctx.object_send(tpe, key, arg, send_delay, idempotency_key, headers, scope=self.scope,
                                     limit_key=limit_key)

    def workflow_call(self, tpe: Callable[..., Awaitable[T]], key: str, arg: Any = None,
                      limit_key: str | None = None, idempotency_key: str | None = None,
                      headers: dict[str, str] | None = None) -> CallFuture[T]:
        """Call a workflow handler within this scope."""
        return self._ctx.workflow_call(tpe, key, arg, idempotency_key, headers, scope=self.scope,
                                       limit_key=limit_key)

    def workflow_send(self, tpe: Callable[..., Awaitable[Any]], key: str, arg: Any = None,
                      send_delay: timedelta | None = None, limit_key: str | None = None,
                      idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> SendHandle:
        """Start a workflow handler within this scope without waiting for it."""
        return self._ctx.workflow_send(tpe, key, arg, send_delay, idempotency_key, headers, scope=self.scope,
                                       limit_key=limit_key)
