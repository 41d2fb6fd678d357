"""restate-sdk's `restate.client_types`: the interface of the typed ingress client (`durably.create_client`)."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

I = TypeVar("I")  # noqa: E741 - restate-sdk's names for a handler's input and output types
O = TypeVar("O")  # noqa: E741

HandlerType = Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]]


class RestateClientSendHandle:
    """What a send returns: the invocation id of the started invocation and the ingress's status code."""

    def __init__(self, invocation_id: str, status_code: int) -> None:
        self.invocation_id = invocation_id
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"RestateClientSendHandle({self.invocation_id!r}, {self.status_code})"


class HttpError(Exception):
    """The ingress answered with an error status: `status_code`, the reason and the body (Restate's JSON)."""

    def __init__(self, status_code: int, message: str, body: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


class RestateScopedClient(abc.ABC):
    """Calls and sends within one scope (`client.scope(key)`); each may carry a concurrency `limit_key`."""

    @abc.abstractmethod
    async def service_call(self, tpe: HandlerType[I, O], arg: I, limit_key: str | None = None,
                           idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a service handler in this scope and wait for its result."""

    @abc.abstractmethod
    async def service_send(self, tpe: HandlerType[I, O], arg: I, send_delay: timedelta | None = None,
                           limit_key: str | None = None, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a service handler in this scope without waiting."""

    @abc.abstractmethod
    async def object_call(self, tpe: HandlerType[I, O], key: str, arg: I, limit_key: str | None = None,
                          idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a virtual-object handler on `key` in this scope."""

    @abc.abstractmethod
    async def object_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                          limit_key: str | None = None, idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a virtual-object handler on `key` in this scope without waiting."""

    @abc.abstractmethod
    async def workflow_call(self, tpe: HandlerType[I, O], key: str, arg: I, limit_key: str | None = None,
                            idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a workflow handler on `key` in this scope."""

    @abc.abstractmethod
    async def workflow_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                            limit_key: str | None = None, idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a workflow handler on `key` in this scope without waiting."""


class RestateClient(abc.ABC):
    """Calls handlers through a Restate-compatible ingress, typed by the handler functions themselves."""

    @abc.abstractmethod
    def scope(self, scope: str) -> RestateScopedClient:
        """A client whose calls and sends run within `scope`."""

    @abc.abstractmethod
    async def service_call(self, tpe: HandlerType[I, O], arg: I, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> O:
        """Call a service handler and wait for its result."""

    @abc.abstractmethod
    async def service_send(self, tpe: HandlerType[I, O], arg: I, send_delay: timedelta | None = None,
                           idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a service handler without waiting (optionally after `send_delay`)."""

    @abc.abstractmethod
    async def object_call(self, tpe: HandlerType[I, O], key: str, arg: I, idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> O:
        """Call a virtual-object handler on `key` and wait for its result."""

    @abc.abstractmethod
    async def object_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                          idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a virtual-object handler on `key` without waiting."""

    @abc.abstractmethod
    async def workflow_call(self, tpe: HandlerType[I, O], key: str, arg: I, idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> O:
        """Call a workflow handler on `key` (its main handler runs once per key) and wait for the result."""

    @abc.abstractmethod
    async def workflow_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                            idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a workflow handler on `key` without waiting."""

    @abc.abstractmethod
    async def generic_call(self, service: str, handler: str, arg: bytes, key: str | None = None,
                           idempotency_key: str | None = None, headers: dict[str, str] | None = None,
                           scope: str | None = None, limit_key: str | None = None) -> bytes:
        """Call any handler by name with raw bytes; returns the raw result."""

    @abc.abstractmethod
    async def generic_send(self, service: str, handler: str, arg: bytes, key: str | None = None,
                           send_delay: timedelta | None = None, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None, scope: str | None = None,
                           limit_key: str | None = None) -> RestateClientSendHandle:
        """Start any handler by name with raw bytes, without waiting."""
