"""A consumed Kafka record, and how it becomes an invocation of the subscription's sink.

`KafkaRecord` is what the consumer hands to the engine's `deliver` callback. It carries the record (topic,
partition, offset, timestamp, key, value, headers) and its dedup identity `(subscription id, topic,
partition, offset)`: `idempotency_key` is that identity as one string, for the invocation's idempotency key,
so a record delivered again after a crash never starts a second invocation.

`invocation_for(record, sink, target)` maps a record to the invocation to create, as Restate does: the value
is the input, the record key is the object/workflow key of a keyed sink (a keyless record there is refused
with `RecordRefused`), and Kafka metadata travels in the request headers under Restate's names.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from durably.server.ingest.subscriptions import HandlerLookup, ServiceSink, SinkTarget, Subscription

__all__ = [
    "HEADER_KEY",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_SUBSCRIPTION_ID",
    "HEADER_TIMESTAMP",
    "HEADER_TOPIC",
    "Deliver",
    "KafkaInvocation",
    "KafkaRecord",
    "RecordRefused",
    "SinkUnavailable",
    "StagedDeliver",
    "invocation_deliver",
    "invocation_for",
    "restate_headers",
]

# Restate's names for Kafka metadata in an invocation's headers (`ctx.request().headers`), from its Kafka
# ingress: `generate_events_attributes` in restatedev/restate crates/ingress-kafka/src/consumer_task.rs and
# crates/ingress-kafka/src/builder.rs. The key is base64, URL-safe alphabet with padding (the Rust
# `BASE64_URL_SAFE` engine); the timestamp is milliseconds since the epoch and absent when the record has none.
HEADER_OFFSET = "kafka.offset"
HEADER_TOPIC = "kafka.topic"
HEADER_PARTITION = "kafka.partition"
HEADER_TIMESTAMP = "kafka.timestamp"
HEADER_KEY = "kafka.key"
HEADER_SUBSCRIPTION_ID = "restate.subscription.id"

# Metadata a record header may not overwrite: a producer must not be able to forge where a record came from.
_RESERVED_PREFIXES = ("kafka.", "restate.")


class RecordRefused(Exception):
    """Raised by a `deliver` callback for a record that can never become an invocation.

    The consumer logs it, counts it, and moves on to the partition's next record (the offset is committed as
    handled), so one bad record never wedges a partition. Any other exception is retried.
    """


# What a consumer calls for each record; see `consumer.SubscriptionConsumer` for the contract.
Deliver = Callable[["KafkaRecord"], Awaitable[None]]


class StagedDeliver(Protocol):
    """A `deliver` callback whose creation and durability can be separated, so the consumer can pipeline a
    partition (see `durably.server.ingest.pipeline`)."""

    def __call__(self, record: KafkaRecord) -> Awaitable[None]: ...

    def begin(self, record: KafkaRecord) -> Awaitable[None]:
        """Create the record's invocation now; the result resolves once it is durably recorded.

        Raises `RecordRefused` for a record that can never be an invocation, anything else to be retried.
        """
        ...


class SinkUnavailable(RuntimeError):
    """The subscription's sink handler is not registered (any more): the record waits, it is not dropped.

    Like any error other than `RecordRefused`, the consumer retries it with backoff; the partition resumes
    when the handler is registered again, or stops when the subscription is deleted.
    """


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record of a subscription's topic, as handed to the `deliver` callback."""

    subscription_id: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def dedup_key(self) -> tuple[str, str, int, int]:
        """`(subscription id, topic, partition, offset)`: the same record always has the same identity."""
        return (self.subscription_id, self.topic, self.partition, self.offset)

    @property
    def idempotency_key(self) -> str:
        """The dedup identity as one string, for the invocation's idempotency key.

        Topic names cannot contain `/` and subscription ids are base62, so the form is unambiguous.
        """
        return f"kafka/{self.subscription_id}/{self.topic}/{self.partition}/{self.offset}"

    def __repr__(self) -> str:
        # Values can be large or private: show where the record is, not what it says.
        return (f"KafkaRecord({self.subscription_id} {self.topic}/{self.partition}@{self.offset}, "
                f"key={'none' if self.key is None else f'{len(self.key)}B'}, "
                f"value={'none' if self.value is None else f'{len(self.value)}B'})")


def restate_headers(record: KafkaRecord) -> dict[str, str]:
    """The invocation headers for a record: Kafka metadata under Restate's names, then the record's headers.

    Record headers whose value is valid UTF-8 are passed under their own names (a header with no value, a
    binary value, or a name under `kafka.`/`restate.` is left out); with duplicate names the last one wins,
    as Kafka's `lastHeader`. Restate 1.7's own consumer forwards only the metadata; the record headers are an
    addition (they are how producers pass trace context and correlation ids).
    """
    headers: dict[str, str] = {}
    for name, value in record.headers:
        if value is None or not name or name.lower().startswith(_RESERVED_PREFIXES):
            continue
        try:
            headers[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    headers[HEADER_OFFSET] = str(record.offset)
    headers[HEADER_TOPIC] = record.topic
    headers[HEADER_PARTITION] = str(record.partition)
    if record.timestamp_ms is not None:
        headers[HEADER_TIMESTAMP] = str(record.timestamp_ms)
    headers[HEADER_SUBSCRIPTION_ID] = record.subscription_id
    if record.key is not None:
        headers[HEADER_KEY] = base64.urlsafe_b64encode(record.key).decode("ascii")
    return headers


@dataclass(frozen=True, slots=True)
class KafkaInvocation:
    """The invocation a record becomes: target, input, headers and the idempotency key that dedups it."""

    service: str
    handler: str
    key: str | None
    input: bytes
    headers: Mapping[str, str]
    idempotency_key: str


def invocation_for(record: KafkaRecord, sink: ServiceSink, target: SinkTarget) -> KafkaInvocation:
    """Map a record to the invocation of `sink`; raise `RecordRefused` if it cannot be one.

    For an object or workflow sink the record key, decoded as UTF-8, is the key (Restate requires valid
    UTF-8 too); a record without a key is refused. A record without a value (a tombstone) has empty input.
    """
    key: str | None = None
    if target.keyed:
        if record.key is None:
            raise RecordRefused(f"{record.topic}/{record.partition}@{record.offset} has no key, but "
                                f"{sink.uri} is a keyed handler ({target.service_kind}): the record key is "
                                "its key")
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordRefused(f"{record.topic}/{record.partition}@{record.offset}: the record key is not "
                                f"valid UTF-8, so it cannot be the key of {sink.uri}") from None
    return KafkaInvocation(
        service=sink.service,
        handler=sink.handler,
        key=key,
        input=record.value or b"",
        headers=restate_headers(record),
        idempotency_key=record.idempotency_key,
    )


def invocation_deliver(subscription: Subscription, lookup: HandlerLookup,
                       submit: Callable[[KafkaInvocation], Awaitable[None]] | None = None, *,
                       create: Callable[[KafkaInvocation], Awaitable[None]] | None = None) -> Deliver:
    """A `deliver` callback for `subscription`: each record becomes a `KafkaInvocation` for the engine.

    Give either `submit` or `create`. `submit(invocation)` must return only once the invocation is durably
    recorded. `create(invocation)` must create it before it returns (so invocations are ordered as the calls)
    and return an awaitable that resolves once it is durably recorded: the callback is then a `StagedDeliver`,
    which the consumer pipelines. Either must treat a second submission with the same `idempotency_key` as
    done (no second invocation). The sink is looked up per record, so a redeployment that turns a service into
    an object is followed; a sink that is no longer registered raises `SinkUnavailable` (retried).
    """
    sink = subscription.sink

    def invocation(record: KafkaRecord) -> KafkaInvocation:
        target = lookup(sink.service, sink.handler)
        if target is None:
            raise SinkUnavailable(f"{sink.uri} is not a registered handler")
        return invocation_for(record, sink, target)

    if create is not None:
        return _Staged(invocation, create)
    if submit is None:
        raise TypeError("invocation_deliver needs submit or create")
    submit_ = submit

    async def deliver(record: KafkaRecord) -> None:
        await submit_(invocation(record))

    return deliver


class _Staged:
    """`invocation_deliver` with `create`: a `StagedDeliver`."""

    def __init__(self, invocation: Callable[[KafkaRecord], KafkaInvocation],
                 create: Callable[[KafkaInvocation], Awaitable[None]]) -> None:
        self._invocation = invocation
        self._create = create

    def begin(self, record: KafkaRecord) -> Awaitable[None]:
        return self._create(self._invocation(record))

    async def __call__(self, record: KafkaRecord) -> None:
        await self.begin(record)
