"""The typed async ingress client: restate-sdk's `create_client`, against any Restate-compatible ingress.

```python
async with durably.create_client("http://127.0.0.1:8080") as client:
    print(await client.service_call(greet, "Ada"))                  # the handler function types the call
    handle = await client.object_send(add, "counter-1", 5, idempotency_key="req-7")
    print(await client.attach(handle, add))                         # wait for what was sent
```

Durably's own ingress and Restate's answer the same paths, so the same code drives both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from durably.client_types import HandlerType, HttpError, RestateClient, RestateClientSendHandle, RestateScopedClient
from durably.sdk.serde import DefaultSerde, JsonSerde, Serde
from durably.sdk.service import Handler, handler_of

I = TypeVar("I")  # noqa: E741 - restate-sdk's names
O = TypeVar("O")  # noqa: E741


def _seg(s: str) -> str:
    return quote(s, safe="")


class Client(RestateClient):
    """The client `create_client` yields; `http` is the httpx client it sends with."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.http = http
        self.headers = dict(headers or {})

    def scope(self, scope: str) -> RestateScopedClient:
        """A client whose calls and sends go through the ingress's scoped paths (`/restate/scope/...`)."""
        return ScopedClient(self, scope)

    # ---- the one request every call and send makes ----

    async def post(self, service: str, handler: str, body: bytes, *, key: str | None = None, send: bool = False,
                   delay: timedelta | None = None, idempotency_key: str | None = None,
                   headers: dict[str, str] | None = None, scope: str | None = None,
                   limit_key: str | None = None, content_type: str | None = "application/json") -> httpx.Response:
        """POST to a handler (call or send); raises HttpError for an error status."""
        target = "/".join(_seg(p) for p in ([service, key, handler] if key is not None else [service, handler]))
        if scope is not None:
            path = f"/restate/scope/{_seg(scope)}/{'send' if send else 'call'}/{target}"
        else:
            path = f"/{target}" + ("/send" if send else "")
        params = {"delay": str(int(delay.total_seconds() * 1000))} if send and delay is not None else None
        hdrs = dict(headers or {})
        if body and content_type and not any(k.lower() == "content-type" for k in hdrs):
            hdrs["content-type"] = content_type
        if idempotency_key is not None:
            hdrs["idempotency-key"] = idempotency_key
        if limit_key is not None:
            hdrs["x-restate-limit-key"] = limit_key
        resp = await self.http.post(path, content=body, headers=hdrs, params=params)
        _raise_for(resp)
        return resp

    async def _typed(self, tpe: HandlerType[I, O], arg: Any, key: str | None, *, send: bool = False,
                     send_delay: timedelta | None = None, idempotency_key: str | None = None,
                     headers: dict[str, str] | None = None, scope: str | None = None,
                     limit_key: str | None = None) -> Any:
        h = handler_of(tpe)
        body = h.input_serde.serialize(arg) if h.takes_input else b""
        resp = await self.post(h.service.name, h.name, body, key=key, send=send, delay=send_delay,
                               idempotency_key=idempotency_key, headers=headers, scope=scope, limit_key=limit_key,
                               content_type=h.accept if h.accept != "*/*" else "application/json")
        if send:
            return _send_handle(resp)
        return h.output_serde.deserialize(resp.content)

    # ---- typed calls and sends ----

    async def service_call(self, tpe: HandlerType[I, O], arg: I, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> O:
        """Call a service handler and wait for its result (decoded with the handler's output serde)."""
        return await self._typed(tpe, arg, None, idempotency_key=idempotency_key, headers=headers)

    async def service_send(self, tpe: HandlerType[I, O], arg: I, send_delay: timedelta | None = None,
                           idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a service handler without waiting."""
        return await self._typed(tpe, arg, None, send=True, send_delay=send_delay, idempotency_key=idempotency_key,
                                 headers=headers)

    async def object_call(self, tpe: HandlerType[I, O], key: str, arg: I, idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> O:
        """Call a virtual-object handler on `key` and wait for its result."""
        return await self._typed(tpe, arg, key, idempotency_key=idempotency_key, headers=headers)

    async def object_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                          idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a virtual-object handler on `key` without waiting."""
        return await self._typed(tpe, arg, key, send=True, send_delay=send_delay, idempotency_key=idempotency_key,
                                 headers=headers)

    async def workflow_call(self, tpe: HandlerType[I, O], key: str, arg: I, idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> O:
        """Call a workflow handler on `key` and wait for its result."""
        return await self.object_call(tpe, key, arg, idempotency_key, headers)

    async def workflow_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                            idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a workflow handler on `key` without waiting."""
        return await self.object_send(tpe, key, arg, send_delay, idempotency_key, headers)

    async def generic_call(self, service: str, handler: str, arg: bytes, key: str | None = None,
                           idempotency_key: str | None = None, headers: dict[str, str] | None = None,
                           scope: str | None = None, limit_key: str | None = None) -> bytes:
        """Call any handler by name with raw bytes; returns the raw result."""
        resp = await self.post(service, handler, arg, key=key, idempotency_key=idempotency_key, headers=headers,
                               scope=scope, limit_key=limit_key)
        return resp.content

    async def generic_send(self, service: str, handler: str, arg: bytes, key: str | None = None,
                           send_delay: timedelta | None = None, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None, scope: str | None = None,
                           limit_key: str | None = None) -> RestateClientSendHandle:
        """Start any handler by name with raw bytes, without waiting."""
        resp = await self.post(service, handler, arg, key=key, send=True, delay=send_delay,
                               idempotency_key=idempotency_key, headers=headers, scope=scope, limit_key=limit_key)
        return _send_handle(resp)

    # ---- attaching (beyond restate-sdk's client: the ingress's attach paths) ----

    async def attach(self, invocation: RestateClientSendHandle | str, tpe: HandlerType[Any, O] | None = None,
                     serde: Serde[O] | None = None) -> O:
        """Wait for an invocation's result (by send handle or id), decoded with `tpe`'s output serde."""
        inv_id = invocation.invocation_id if isinstance(invocation, RestateClientSendHandle) else invocation
        return await self._get(f"/restate/invocation/{_seg(inv_id)}/attach", _output_serde(tpe, serde))

    async def attach_idempotent(self, tpe: HandlerType[Any, O], idempotency_key: str,
                                key: str | None = None) -> O:
        """Wait for the result of the invocation a call or send with `idempotency_key` started."""
        h = handler_of(tpe)
        parts = [h.service.name, key, h.name, idempotency_key] if key is not None else [
            h.service.name, h.name, idempotency_key]
        return await self._get(f"/restate/invocation/{'/'.join(_seg(p) for p in parts)}/attach", h.output_serde)

    async def workflow_attach(self, tpe: HandlerType[Any, O], key: str) -> O:
        """Wait for the result of workflow `key` (`tpe` is its main handler)."""
        h = handler_of(tpe)
        return await self._get(f"/restate/workflow/{_seg(h.service.name)}/{_seg(key)}/attach", h.output_serde)

    async def _get(self, path: str, serde: Serde[Any]) -> Any:
        resp = await self.http.get(path)
        _raise_for(resp)
        return serde.deserialize(resp.content)


def _output_serde(tpe: HandlerType[Any, Any] | None, serde: Serde[Any] | None) -> Serde[Any]:
    if serde is not None:
        return serde
    if tpe is not None:
        h: Handler = handler_of(tpe)
        return h.output_serde
    return DefaultSerde()


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        raise HttpError(resp.status_code, resp.reason_phrase, resp.text)


def _send_handle(resp: httpx.Response) -> RestateClientSendHandle:
    data = JsonSerde().deserialize(resp.content) or {}
    return RestateClientSendHandle(str(data.get("invocationId", "")), resp.status_code)


class ScopedClient(RestateScopedClient):
    """`client.scope(key)`: the client's calls with the scope and an optional limit key."""

    def __init__(self, client: Client, scope_key: str) -> None:
        self.client = client
        self.scope_key = scope_key

    async def service_call(self, tpe: HandlerType[I, O], arg: I, limit_key: str | None = None,
                           idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a service handler in this scope."""
        return await self.client._typed(tpe, arg, None, idempotency_key=idempotency_key, headers=headers,
                                        scope=self.scope_key, limit_key=limit_key)

    async def service_send(self, tpe: HandlerType[I, O], arg: I, send_delay: timedelta | None = None,
                           limit_key: str | None = None, idempotency_key: str | None = None,
                           headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a service handler in this scope."""
        return await self.client._typed(tpe, arg, None, send=True, send_delay=send_delay,
                                        idempotency_key=idempotency_key, headers=headers, scope=self.scope_key,
                                        limit_key=limit_key)

    async def object_call(self, tpe: HandlerType[I, O], key: str, arg: I, limit_key: str | None = None,
                          idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a virtual-object handler on `key` in this scope."""
        return await self.client._typed(tpe, arg, key, idempotency_key=idempotency_key, headers=headers,
                                        scope=self.scope_key, limit_key=limit_key)

    async def object_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                          limit_key: str | None = None, idempotency_key: str | None = None,
                          headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a virtual-object handler on `key` in this scope."""
        return await self.client._typed(tpe, arg, key, send=True, send_delay=send_delay,
                                        idempotency_key=idempotency_key, headers=headers, scope=self.scope_key,
                                        limit_key=limit_key)

    async def workflow_call(self, tpe: HandlerType[I, O], key: str, arg: I, limit_key: str | None = None,
                            idempotency_key: str | None = None, headers: dict[str, str] | None = None) -> O:
        """Call a workflow handler on `key` in this scope."""
        return await self.object_call(tpe, key, arg, limit_key, idempotency_key, headers)

    async def workflow_send(self, tpe: HandlerType[I, O], key: str, arg: I, send_delay: timedelta | None = None,
                            limit_key: str | None = None, idempotency_key: str | None = None,
                            headers: dict[str, str] | None = None) -> RestateClientSendHandle:
        """Start a workflow handler on `key` in this scope."""
        return await self.object_send(tpe, key, arg, send_delay, limit_key, idempotency_key, headers)


def resolve_ingress(ingress: str | None, headers: dict[str, str] | None) -> tuple[str, dict[str, str] | None]:
    """The ingress URL and default headers `create_client` uses.

    Given a URL, that URL and `headers` as they are. Without one, from the environment, in this order:
    `DURABLY_INGRESS_URL` (with `DURABLY_INGRESS_TOKEN`, if set, as `Authorization: Bearer ...`), then
    restate-sdk 1.3's `RESTATE_INGRESS_KEY` (a Restate Cloud ingress key, which names the Cloud
    environment's URL and its token; parsed by restate-sdk, so that must be installed). An `Authorization`
    header in `headers` is kept over the token. Raises ValueError when nothing names an ingress.
    """
    if ingress:
        return ingress, headers
    url = os.environ.get("DURABLY_INGRESS_URL", "").strip()
    token = os.environ.get("DURABLY_INGRESS_TOKEN")
    bearer: str | None = None
    if url:
        if token is not None:
            if not token.strip():
                raise ValueError("DURABLY_INGRESS_TOKEN is set but empty: set the ingress token, or unset it")
            bearer = f"Bearer {token.strip()}"
    elif os.environ.get("RESTATE_INGRESS_KEY", "").strip():
        url, bearer = _restate_cloud_key()
    else:
        raise ValueError("create_client(): no ingress URL: pass one, or set DURABLY_INGRESS_URL (and "
                         "DURABLY_INGRESS_TOKEN for a server started with an ingress token), or RESTATE_INGRESS_KEY "
                         "with a Restate Cloud ingress key")
    if bearer is None:
        return url, headers
    merged = dict(headers or {})
    if not any(name.lower() == "authorization" for name in merged):
        merged["Authorization"] = bearer
    return url, merged


def _restate_cloud_key() -> tuple[str, str]:
    """(URL, bearer) of the Restate Cloud ingress key in RESTATE_INGRESS_KEY, read by restate-sdk's parser.

    The key's format is restate-sdk's and only Restate Cloud issues it; Durably does not reimplement it.
    """
    try:
        from restate._internal import IngressKey  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("RESTATE_INGRESS_KEY holds a Restate Cloud ingress key, which restate-sdk (1.3 or later) "
                         "parses: install it (pip install 'restate-sdk>=1.3'), or set DURABLY_INGRESS_URL and "
                         "DURABLY_INGRESS_TOKEN instead") from None
    try:
        key = IngressKey.from_env()
    except Exception as e:  # restate-sdk's ConnectError says what is wrong with the key
        raise ValueError(f"RESTATE_INGRESS_KEY: {e}") from None
    if key is None:
        raise ValueError("RESTATE_INGRESS_KEY is empty")
    return key.ingress_url(), key.bearer()


@asynccontextmanager
async def create_client(ingress: str | None = None, headers: dict[str, str] | None = None,
                        journal_value_codec: Any = None) -> AsyncIterator[Client]:
    """A typed client for the ingress at `ingress` (Durably's or Restate's), closed on exit.

    `headers` go with every request. Calls wait as long as the handler takes (no read timeout). Without
    `ingress`, the URL and a bearer token come from the environment (`resolve_ingress`):
    `DURABLY_INGRESS_URL` and `DURABLY_INGRESS_TOKEN`, or restate-sdk's `RESTATE_INGRESS_KEY`.
    """
    ingress, headers = resolve_ingress(ingress, headers)
    if journal_value_codec is not None:
        raise NotImplementedError("journal value codecs (restate-sdk's experimental encryption hook) are not "
                                  "supported by Durably; leave journal_value_codec unset")
    timeout = httpx.Timeout(None, connect=10.0)
    async with httpx.AsyncClient(base_url=ingress.rstrip("/"), headers=headers, timeout=timeout) as http:
        yield Client(http, headers)


__all__ = ["Client", "ScopedClient", "create_client", "resolve_ingress"]
