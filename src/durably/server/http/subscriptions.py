"""The admin API's Kafka subscription routes, with Restate's paths, bodies and status codes.

    POST   /subscriptions {"source": "kafka://<cluster>/<topic>", "sink": "service://<Service>/<handler>",
                           "options": {...}}                     201 with the subscription (and its id),
                                                                 `Location: subscriptions/{id}` (relative)
    GET    /subscriptions[?sink=...&source=...]                  200 {"subscriptions": [...]}
    GET    /subscriptions/{id}                                   200 the subscription; 404 if none
    DELETE /subscriptions/{id}                                   202; 404 if none

A subscription is `{"id", "source", "sink", "options"}`. As on restate-server 1.7.12: a body that is not JSON
answers 400; JSON that is not a subscription request (a wrong type, a missing source or sink, a string that
is not a URI at all) answers 422; a request naming another URI scheme, an unknown cluster or a sink that is
not a registered handler answers 400; each with a message saying which part. Without the Kafka client
installed, creating one answers 400 naming the `durably[kafka]` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from durably.sdk.asgi import BodyTooLarge, read_body, respond, respond_json
from durably.sdk.asgi import error as send_error
from durably.server.engine.engine import EngineStopped
from durably.server.http.shapes import parse_json
from durably.server.ingest import SubscriptionError, parse_subscription_id
from durably.server.process.kafka import KafkaExtraMissing, KafkaSubscriptions

if TYPE_CHECKING:
    from durably.server.http.admin import Request

__all__ = ["SubscriptionRoutes"]


class SubscriptionRoutes:
    """Route handlers for `/subscriptions` over one server's `KafkaSubscriptions`."""

    def __init__(self, subscriptions: KafkaSubscriptions, body_limit: int) -> None:
        self.subscriptions = subscriptions
        self.body_limit = body_limit

    async def collection(self, req: Request) -> None:
        """`GET /subscriptions` (filters `sink`, `source`) and `POST /subscriptions`."""
        if req.method == "GET":
            subs = self.subscriptions.list(sink=req.query.get("sink"), source=req.query.get("source"))
            await respond_json(req.send, 200, {"subscriptions": [s.to_json() for s in subs]})
            return
        try:
            raw = await read_body(req.scope, req.receive, self.body_limit)
        except BodyTooLarge:
            await send_error(req.send, 413, f"request body exceeds the admin API's limit of {self.body_limit} "
                             "bytes", "admin")
            return
        try:
            body = parse_json(raw or b"")
        except ValueError as e:
            await send_error(req.send, 400, f"bad subscription request: {e}; send {{\"source\": "
                             "\"kafka://<cluster>/<topic>\", \"sink\": \"service://<Service>/<handler>\"}", "admin")
            return
        try:
            sub = await self.subscriptions.create(body)
        except SubscriptionError as e:
            await send_error(req.send, e.status, f"bad subscription {e.field}: {e.message}", "admin")
            return
        except KafkaExtraMissing as e:
            await send_error(req.send, 400, str(e), "admin")
            return
        except EngineStopped as e:
            await send_error(req.send, 503, str(e), "admin")
            return
        await respond_json(req.send, 201, sub.to_json(), [(b"location", f"subscriptions/{sub.id}".encode())])

    async def item(self, req: Request, sub_id: str) -> None:
        """`GET /subscriptions/{id}` and `DELETE /subscriptions/{id}`."""
        try:
            parse_subscription_id(sub_id)
        except SubscriptionError as e:
            await send_error(req.send, 400, e.message, "admin")
            return
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            await send_error(req.send, 404, f"subscription {sub_id} not found", "admin")
        elif req.method == "GET":
            await respond_json(req.send, 200, sub.to_json())
        else:
            try:
                await self.subscriptions.delete(sub_id)
            except EngineStopped as e:
                await send_error(req.send, 503, str(e), "admin")
                return
            await respond(req.send, 202)
