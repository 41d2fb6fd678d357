"""The CLI's small synchronous clients of a running server's ingress and admin API, usable on their own
(restate-sdk's typed async client is `durably.clients.typed`, exported as `durably.client`):

    with AdminClient("http://127.0.0.1:9070") as admin:
        for inv in admin.invocations(status="paused"):
            admin.action(inv["id"], "resume")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from durably.clients import restate_query

__all__ = [
    "ACTIONS", "DEFAULT_ADMIN_URL", "DEFAULT_INGRESS_URL", "AdminClient", "BadURL", "CallResult", "ClientError",
    "IngressClient", "RequestFailed", "ServerUnreachable", "TimedOut", "target_path",
]

DEFAULT_INGRESS_URL = "http://127.0.0.1:8080"
DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"
ACTIONS = ("cancel", "kill", "pause", "resume", "purge")


class ClientError(Exception):
    """Base class of the errors this module raises."""


class ServerUnreachable(ClientError):
    """Nothing answers at the URL (connection refused, unknown host, ...)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no durably server at {url}: {reason}")
        self.url = url
        self.reason = reason


class BadURL(ClientError):
    """The URL cannot be used (malformed, or not http/https)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class TimedOut(ClientError):
    """The server did not answer in time (a call goes on running on the server)."""

    def __init__(self, url: str, timeout: float | None) -> None:
        super().__init__(f"{url} did not answer within {timeout} s")
        self.url = url
        self.timeout = timeout


class RequestFailed(ClientError):
    """The server answered with an error: Restate's `{"code", "message"}`, or the HTTP status."""

    def __init__(self, status: int, code: int, message: str, invocation_id: str | None = None) -> None:
        super().__init__(f"error {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.invocation_id = invocation_id

    @classmethod
    def from_response(cls, resp: httpx.Response) -> RequestFailed:
        """Read the error from a response, whatever its body is."""
        code, message = resp.status_code, ""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "message" in body:
            message = str(body["message"])
            if isinstance(body.get("code"), int):
                code = body["code"]
        else:
            message = resp.text.strip() or resp.reason_phrase or "request failed"
        return cls(resp.status_code, code, message, resp.headers.get("x-restate-id"))


def target_path(target: str) -> str:
    """The ingress path of `Service/handler` or `Object/key/handler` (the key URL-encoded).

    Everything between the first and the last slash is the key, so keys may contain slashes.
    """
    parts = target.strip().strip("/").split("/")
    if len(parts) < 2 or not all(parts[:1] + parts[-1:]):
        raise ValueError(f"bad target {target!r}: use Service/handler or Object/key/handler")
    service, handler = parts[0], parts[-1]
    if len(parts) == 2:
        return f"/{quote(service, safe='')}/{quote(handler, safe='')}"
    key = "/".join(parts[1:-1])
    return f"/{quote(service, safe='')}/{quote(key, safe='')}/{quote(handler, safe='')}"


class _Client:
    def __init__(self, url: str, timeout: float | None, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        if not self.url.startswith(("http://", "https://")):
            raise BadURL(url, "use http://host:port")
        # The server's --admin-token / --ingress-token, sent as a bearer token on every request.
        headers = {"authorization": f"Bearer {token}"} if token else None
        try:
            self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=5.0),
                                      headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise BadURL(url, str(e)) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ServerUnreachable(self.url, str(e) or type(e).__name__) from None
        except httpx.TimeoutException:
            raise TimedOut(self.url, self.timeout) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise BadURL(self.url, str(e)) from None
        except httpx.TransportError as e:  # the server went away mid-request, or spoke something else than HTTP
            raise ClientError(f"{self.url} broke off the request: {e or type(e).__name__}") from None

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class CallResult:
    """What a call returned: the raw body, its content type and the invocation id."""

    body: bytes
    content_type: str
    invocation_id: str | None

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); raises ValueError if it is not JSON."""
        return json.loads(self.body) if self.body else None


class IngressClient(_Client):
    """Calls handlers through the ingress (`timeout` None waits as long as the handler takes)."""

    def __init__(self, url: str = DEFAULT_INGRESS_URL, timeout: float | None = None,
                 token: str | None = None) -> None:
        super().__init__(url, timeout, token)

    def __enter__(self) -> IngressClient:
        return self

    def _post(self, target: str, body: bytes | None, idempotency_key: str | None, suffix: str,
              params: dict[str, str] | None = None) -> httpx.Response:
        headers = {}
        if body:
            headers["content-type"] = "application/json"
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        resp = self._request("POST", target_path(target) + suffix, content=body or b"", headers=headers,
                             params=params)
        if resp.status_code >= 300:
            err = RequestFailed.from_response(resp)
            if resp.status_code == 404 and resp.headers.get("x-restate-error-source") == "admin":
                err = RequestFailed(404, 404, f"{self.url} is a durably admin API, not the ingress", None)
            raise err
        return resp

    def call(self, target: str, body: bytes | None = None, *, idempotency_key: str | None = None) -> CallResult:
        """Invoke and wait for the result; raises RequestFailed with the handler's failure."""
        resp = self._post(target, body, idempotency_key, "")
        return CallResult(resp.content, resp.headers.get("content-type", ""), resp.headers.get("x-restate-id"))

    def send(self, target: str, body: bytes | None = None, *, delay: str | None = None,
             idempotency_key: str | None = None) -> dict[str, Any]:
        """Start an invocation without waiting: `{"invocationId", "status"[, "executionTime"]}`."""
        params = {"delay": delay} if delay else None
        return self._post(target, body, idempotency_key, "/send", params).json()


    def attach(self, invocation_id: str) -> CallResult:
        """Wait for an existing invocation's result (Restate's `GET /restate/invocation/{id}/attach`)."""
        path = f"/restate/invocation/{quote(invocation_id, safe='')}/attach"
        resp = self._request("GET", path)
        if resp.status_code >= 300:
            raise RequestFailed.from_response(resp)
        return CallResult(resp.content, resp.headers.get("content-type", ""),
                          resp.headers.get("x-restate-id") or invocation_id)


class AdminClient(_Client):
    """The admin API: services, invocations and the operator actions."""

    def __init__(self, url: str = DEFAULT_ADMIN_URL, timeout: float | None = 30.0, token: str | None = None) -> None:
        super().__init__(url, timeout, token)

    def __enter__(self) -> AdminClient:
        return self

    def _json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        resp = self._request("GET", path, params=params)
        if resp.status_code != 200:
            self._raise(resp, path)
        return resp.json()

    def _raise(self, resp: httpx.Response, path: str) -> None:
        err = RequestFailed.from_response(resp)
        if resp.status_code in (404, 405) and resp.headers.get("x-restate-error-source") != "admin":
            # Most likely the ingress port (or something else entirely) was given as the admin URL.
            err = RequestFailed(resp.status_code, err.code, f"{self.url} does not look like a durably admin API "
                                f"({path} answered: {err.message}); is it the ingress URL?")
        raise err

    def health(self) -> bool:
        """Whether the admin API answers its health check."""
        return self._request("GET", "/health").status_code == 200

    def services(self) -> list[dict[str, Any]]:
        """Every service of the served app."""
        return self._json("/services")["services"]

    def service(self, name: str) -> dict[str, Any]:
        """One service; RequestFailed 404 if there is none of that name."""
        return self._json(f"/services/{quote(name, safe='')}")

    def invocations(self, *, status: str | None = None, service: str | None = None, handler: str | None = None,
                    key: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Invocations, newest first, optionally filtered."""
        params = {k: v for k, v in {"status": status, "service": service, "handler": handler, "key": key,
                                    "limit": limit}.items() if v is not None}
        resp = self._request("GET", "/invocations", params=params)
        if resp.status_code in (404, 405):  # a Restate server: the same data through its SQL endpoint
            return [restate_query.invocation_json(r) for r in self._query(restate_query.list_query(**params))]
        if resp.status_code != 200:
            self._raise(resp, "/invocations")
        return resp.json()["invocations"]

    def invocation_status(self, invocation_id: str) -> dict[str, Any]:
        """One invocation's record (status, attempts, next retry, last error) with one journal entry at most."""
        return self._json(f"/invocations/{quote(invocation_id, safe='')}", {"journal_limit": 1})

    def invocation(self, invocation_id: str) -> dict[str, Any]:
        """One invocation with its whole journal: a durably server's pages followed, or a Restate server's /query."""
        path = f"/invocations/{quote(invocation_id, safe='')}"
        resp = self._request("GET", path)
        if resp.status_code not in (404, 405) or resp.content:  # Restate answers these with no body
            if resp.status_code != 200:
                self._raise(resp, path)
            inv: dict[str, Any] = resp.json()
            journal = list(inv.get("journal") or [])
            while "journal_next_offset" in inv:
                inv = self._json(path, {"journal_offset": inv["journal_next_offset"]})
                journal.extend(inv.get("journal") or [])
            inv["journal"] = journal
            inv.pop("journal_next_offset", None)
            inv["journal_offset"] = 0
            return inv
        inv_sql, journal_sql = restate_query.describe_queries(invocation_id)
        rows = self._query(inv_sql)
        if not rows:
            raise RequestFailed(404, 404, f"invocation {invocation_id} not found")
        out = restate_query.invocation_json(rows[0])
        out["journal"] = [restate_query.journal_json(r) for r in self._query(journal_sql)]
        return out

    def _query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SQL query on a Restate server's `POST /query`."""
        resp = self._request("POST", "/query", json={"query": sql}, headers={"accept": "application/json"})
        if resp.status_code != 200:
            if resp.status_code in (404, 405):
                raise RequestFailed(resp.status_code, resp.status_code, f"{self.url} has neither a durably "
                                    "invocations API nor Restate's /query: is it an admin URL?")
            self._raise(resp, "/query")
        return resp.json().get("rows", [])

    def action(self, invocation_id: str, action: str) -> int:
        """cancel, kill, pause, resume or purge an invocation; returns the status (200 or 202)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        path = f"/invocations/{quote(invocation_id, safe='')}/{action}"
        resp = self._request("PATCH", path)
        if resp.status_code >= 300:
            self._raise(resp, path)
        return resp.status_code

    def state(self, service: str, key: str, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """A page of a key's state: `{"service", "object_key", "version"?, "state": {name: JSON value},
        "binary"?, "next_cursor"?}`, names in order, strictly after the cursor `after`.

        `version` is there when the page is the whole state; `next_cursor` when more follows (pass it as
        `after`). A page holds at most `limit` names (the server's default and cap: 1000) and about 1 MiB.
        """
        params: dict[str, Any] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        return self._json(f"/services/{quote(service, safe='')}/state/{quote(key, safe='')}", params or None)

    def set_state(self, service: str, key: str, new_state: dict[str, bytes], version: str | None = None) -> None:
        """Replace a key's whole state (Restate's request); with `version`, only if it is still that version."""
        body: dict[str, Any] = {"object_key": key, "new_state": {k: list(v) for k, v in new_state.items()}}
        if version is not None:
            body["version"] = version
        path = f"/services/{quote(service, safe='')}/state"
        resp = self._request("POST", path, json=body)
        if resp.status_code >= 300:
            self._raise(resp, path)

    def deployments(self) -> list[dict[str, Any]]:
        """Registered remote deployments."""
        return self._json("/deployments")["deployments"]

    def register_deployment(self, uri: str, *, use_http_11: bool = False, force: bool = False,
                            additional_headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """Discover a deployment and register its services; returns (201 created | 200 known, body)."""
        body: dict[str, Any] = {"uri": uri, "use_http_11": use_http_11, "force": force}
        if additional_headers:
            body["additional_headers"] = additional_headers
        resp = self._request("POST", "/deployments", json=body)
        if resp.status_code >= 300:
            self._raise(resp, "/deployments")
        return resp.status_code, resp.json()

    def remove_deployment(self, deployment_id: str, force: bool = False) -> None:
        """Forget a deployment (its services stop being invocable). A Restate server removes only with `force`."""
        path = f"/deployments/{quote(deployment_id, safe='')}"
        resp = self._request("DELETE", path, params={"force": "true"} if force else None)
        if resp.status_code == 501:
            raise RequestFailed(501, 501, "this server (Restate) removes a deployment only when forced: add --force "
                                "(invocations still running on it then fail)")
        if resp.status_code >= 300:
            self._raise(resp, path)

    def subscriptions(self, sink: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
        """Kafka subscriptions `{"id", "source", "sink", "options"}`, filtered by exact sink/source URIs."""
        params = {k: v for k, v in (("sink", sink), ("source", source)) if v is not None}
        return self._json("/subscriptions", params or None)["subscriptions"]

    def create_subscription(self, source: str, sink: str, options: dict[str, str] | None = None) -> dict[str, Any]:
        """Subscribe `sink` (service://Service/handler) to `source` (kafka://cluster/topic); the new subscription."""
        body: dict[str, Any] = {"source": source, "sink": sink}
        if options:
            body["options"] = options
        resp = self._request("POST", "/subscriptions", json=body)
        if resp.status_code >= 300:
            self._raise(resp, "/subscriptions")
        return resp.json()

    def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription: its consumer stops (handled offsets committed) and it is forgotten."""
        path = f"/subscriptions/{quote(subscription_id, safe='')}"
        resp = self._request("DELETE", path)
        if resp.status_code >= 300:
            self._raise(resp, path)

    def rules(self) -> dict[str, Any]:
        """The concurrency rule book and its usage: `{"rules": [{"pattern", "concurrency"}], "usage": [...]}`."""
        return self._json("/rules")

    def set_rule(self, pattern: str, concurrency: int) -> None:
        """Create or change a concurrency rule (Restate's `restate rules set PATTERN --concurrency N`)."""
        resp = self._request("PUT", "/rules", json={"pattern": pattern, "concurrency": concurrency})
        if resp.status_code >= 300:
            self._raise(resp, "/rules")

    def delete_rule(self, pattern: str) -> None:
        """Remove a concurrency rule; RequestFailed 404 if there is none for the pattern."""
        resp = self._request("DELETE", "/rules", params={"pattern": pattern})
        if resp.status_code >= 300:
            self._raise(resp, "/rules")
