"""Kafka subscriptions in Restate's shapes: the clusters they read, the request that creates one, its id.

A subscription connects a topic of a configured Kafka cluster to a handler:

    {"source": "kafka://my-cluster/orders", "sink": "service://Orders/process",
     "options": {"auto.offset.reset": "earliest"}}

`new_subscription` validates such a request (the source's cluster must be configured, the sink must be a
registered handler, the options must be librdkafka consumer properties a subscription may set) and mints its
`sub_...` id; every mistake raises `SubscriptionError` naming the part that is wrong (`field`), which the admin
API answers with 400. `Subscription.to_json()` is both the API's response body and the form to store.

Options follow Restate: they are Kafka consumer properties applied over the cluster's own; `group.id`
defaults to the subscription id (one consumer group per subscription) and is kept in the stored options, so
the group survives restarts; `auto.offset.reset` is the client's (librdkafka's default is `latest`: a new
subscription sees only records produced after it starts unless the request says `earliest`).

Clusters are configured, not created over the API: `KafkaCluster.parse("NAME=HOST:PORT[,HOST:PORT...]")` is
the `--kafka-cluster` flag's form, and `properties` carries extra client settings (SASL, TLS, ...) passed to
the client unchanged, as Restate passes a cluster's `additional_options`.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from durably.sdk.service import HandlerKind, ServiceKind

__all__ = [
    "SUBSCRIPTION_ID_PREFIX",
    "HandlerLookup",
    "KafkaCluster",
    "KafkaSource",
    "ServiceSink",
    "SinkTarget",
    "Subscription",
    "SubscriptionError",
    "filter_subscriptions",
    "new_subscription",
    "new_subscription_id",
    "parse_clusters",
    "parse_sink",
    "parse_source",
    "parse_subscription_id",
]

SUBSCRIPTION_ID_PREFIX = "sub_"

log = logging.getLogger("durably.ingest")

# Restate's resource ids: prefix, a version digit, then the ULID (u128) in fixed-width base62 with the
# "alternative" alphabet, of the integer's big-endian bytes read back as little-endian (its `to_be()` quirk).
_ID_VERSION = "1"
_ID_B62_LEN = 22
_B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_RE = re.compile(rf"^{SUBSCRIPTION_ID_PREFIX}{_ID_VERSION}[0-9a-zA-Z]{{{_ID_B62_LEN}}}$")

# Kafka's own rule for topic names.
_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
# Cluster names appear in URIs, flags and metric labels: keep them to a plain identifier.
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SERVICE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.$-]*$")
_HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]*$")
_BROKER_RE = re.compile(r"^(?:[A-Za-z_]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$")

_OFFSET_RESETS = ("smallest", "earliest", "beginning", "largest", "latest", "end", "error")

# Options a subscription request may not set. The cluster decides where to connect; loading native code or
# redirecting the client is the operator's call (the cluster's properties), never an API request's.
_REFUSED_OPTIONS = frozenset({
    "bootstrap.servers", "metadata.broker.list", "plugin.library.paths", "ssl.engine.location",
    "ssl.providers", "oauthbearer.method", "sasl.kerberos.kinit.cmd", "ssl.ca.location",
    "ssl.certificate.location", "ssl.key.location", "ssl.keystore.location", "ssl.crl.location",
})
# The consumer commits offsets itself, only after a record's invocation is recorded: Restate ignores these
# with a warning; they are dropped here the same way.
_IGNORED_OPTIONS = frozenset({"enable.auto.commit", "enable.auto.offset.store", "enable.partition.eof"})

DEFAULT_CLIENT_ID = "durably"


class SubscriptionError(ValueError):
    """A subscription request, id or cluster setting that cannot be accepted.

    `field` names the part that is wrong: "source", "sink", "options", "id", "body" or "cluster".
    The message says what is wrong in words an API caller can act on. `status` is the admin API's answer, as
    restate-server's: 422 when the body is JSON but not a subscription request (a wrong type, a missing
    field, a string that is not a URI at all), 400 when it is one that cannot be accepted (a URI of another
    scheme, an unknown cluster or handler, a bad option value).
    """

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


# ---- clusters -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaCluster:
    """A Kafka cluster subscriptions can name in `kafka://<name>/<topic>`.

    `properties` are extra client settings (e.g. `security.protocol`, `sasl.mechanism`, `sasl.username`,
    `sasl.password`, `ssl.ca.location`) passed to the Kafka client as they are.
    """

    name: str
    bootstrap_servers: tuple[str, ...]
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _CLUSTER_RE.match(self.name):
            raise SubscriptionError("cluster", f"invalid Kafka cluster name {self.name!r}: use letters, digits, "
                                    "'.', '_' and '-'")
        if not self.bootstrap_servers:
            raise SubscriptionError("cluster", f"Kafka cluster {self.name!r} has no bootstrap servers")
        for server in self.bootstrap_servers:
            if not _BROKER_RE.match(server):
                raise SubscriptionError("cluster", f"Kafka cluster {self.name!r}: {server!r} is not HOST:PORT")
        for key, value in self.properties.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SubscriptionError("cluster", f"Kafka cluster {self.name!r}: property {key!r} must be a "
                                        "string set to a string")
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))

    def __reduce__(self) -> tuple[type[KafkaCluster], tuple[str, tuple[str, ...], dict[str, str]]]:
        # Pickled (the spec of a partition process of --partitions N) with its properties as a plain dict.
        return (KafkaCluster, (self.name, self.bootstrap_servers, dict(self.properties)))

    @classmethod
    def parse(cls, text: str, properties: Mapping[str, str] | None = None) -> KafkaCluster:
        """Parse the flag form `NAME=HOST:PORT[,HOST:PORT...]` (as `durably serve --kafka-cluster`)."""
        name, sep, servers = text.partition("=")
        if not sep or not name.strip() or not servers.strip():
            raise SubscriptionError("cluster", f"--kafka-cluster expects NAME=HOST:PORT[,HOST:PORT...], got {text!r}")
        hosts = tuple(s.strip() for s in servers.split(",") if s.strip())
        return cls(name.strip(), hosts, dict(properties or {}))

    @classmethod
    def from_config(cls, name: str, settings: Mapping[str, Any]) -> KafkaCluster:
        """Build from a TOML/JSON table: `brokers` (a list or a comma-separated string) and client properties.

        This is Restate's shape for a cluster: `{"name": ..., "brokers": [...], "<property>": "<value>", ...}`
        (a `name` key, if present, must agree with `name`).
        """
        rest = dict(settings)
        if "name" in rest and rest.pop("name") != name:
            raise SubscriptionError("cluster", f"Kafka cluster {name!r}: its table names another cluster")
        brokers = rest.pop("brokers", rest.pop("bootstrap.servers", None))
        if isinstance(brokers, str):
            servers = tuple(s.strip() for s in brokers.split(",") if s.strip())
        elif isinstance(brokers, list | tuple) and all(isinstance(b, str) for b in brokers):
            servers = tuple(brokers)
        else:
            raise SubscriptionError("cluster", f"Kafka cluster {name!r} needs `brokers`: a list of HOST:PORT")
        props: dict[str, str] = {}
        for key, value in rest.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int | float):
                value = str(value)
            props[str(key)] = value
        return cls(name, servers, props)

    def client_config(self) -> dict[str, str]:
        """The client settings this cluster contributes: bootstrap servers, then its extra properties."""
        return {"bootstrap.servers": ",".join(self.bootstrap_servers), **self.properties}

    def describe(self) -> dict[str, Any]:
        """A JSON view for operators (the UI, `GET` endpoints): secrets in `properties` are masked."""
        shown = {k: ("***" if _is_secret(k) else v) for k, v in self.properties.items()}
        return {"name": self.name, "brokers": list(self.bootstrap_servers), "properties": shown}


def _is_secret(key: str) -> bool:
    k = key.lower()
    return any(word in k for word in ("password", "secret", "token", "jaas", "key.pem", "private"))


def parse_clusters(flags: Iterable[str], properties: Mapping[str, Mapping[str, str]] | None = None
                   ) -> dict[str, KafkaCluster]:
    """Parse repeated `NAME=HOST:PORT[,...]` flags into clusters by name; `properties[NAME]` adds client settings.

    A name given twice, or properties for a cluster no flag names, is an error (a typo would otherwise be
    silently ignored).
    """
    properties = properties or {}
    clusters: dict[str, KafkaCluster] = {}
    for flag in flags:
        cluster = KafkaCluster.parse(flag)
        if cluster.name in clusters:
            raise SubscriptionError("cluster", f"Kafka cluster {cluster.name!r} is configured twice")
        clusters[cluster.name] = KafkaCluster(cluster.name, cluster.bootstrap_servers,
                                              dict(properties.get(cluster.name, {})))
    unknown = sorted(set(properties) - set(clusters))
    if unknown:
        raise SubscriptionError("cluster", f"properties given for unconfigured Kafka cluster(s) {unknown}")
    return clusters


# ---- source and sink ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSource:
    """`kafka://<cluster>/<topic>`."""

    cluster: str
    topic: str

    @property
    def uri(self) -> str:
        return f"kafka://{self.cluster}/{self.topic}"


@dataclass(frozen=True)
class ServiceSink:
    """`service://<Service>/<handler>`."""

    service: str
    handler: str

    @property
    def uri(self) -> str:
        return f"service://{self.service}/{self.handler}"


@dataclass(frozen=True)
class SinkTarget:
    """What the handler lookup says about a sink: its service's kind and the handler's kind.

    Records to an object or workflow sink are keyed: the record key is the object/workflow key.
    """

    service_kind: ServiceKind
    handler_kind: HandlerKind = None

    @property
    def keyed(self) -> bool:
        return self.service_kind in ("object", "workflow")


# (service, handler) -> the target, or None when no registered service has that handler.
HandlerLookup = Callable[[str, str], SinkTarget | None]


# What a URI parser (restate-server's `http::Uri`) accepts at all: an optional `scheme://authority` then
# URI characters; `scheme:` without `//` is no URI it parses.
_URI_CHARS_RE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _split_uri(uri: object, scheme: str, what: str, example: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri:
        raise SubscriptionError(what, f"expected a URI of the form {example}", 422)
    scheme_match = _SCHEME_RE.match(uri)
    after_scheme = uri[scheme_match.end():] if scheme_match else None
    if not _URI_CHARS_RE.match(uri) or (after_scheme is not None and (not after_scheme.startswith("//")
                                                                      or after_scheme.startswith("///"))):
        raise SubscriptionError(what, f"malformed URI {uri!r}: expected {example}", 422)
    prefix = f"{scheme}://"
    if not uri.startswith(prefix):
        raise SubscriptionError(what, f"malformed URI {uri!r}: expected {example}")
    rest = uri[len(prefix):]
    if any(c in rest for c in "?#") or any(c.isspace() for c in rest):
        raise SubscriptionError(what, f"malformed URI {uri!r}: expected {example} (no query, fragment or spaces)")
    parts = rest.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise SubscriptionError(what, f"malformed URI {uri!r}: expected {example}")
    return parts[0], parts[1]


def parse_source(uri: object, clusters: Mapping[str, KafkaCluster] | Iterable[str] | None = None) -> KafkaSource:
    """Parse `kafka://<cluster>/<topic>`; with `clusters` given, the cluster must be one of them."""
    cluster, topic = _split_uri(uri, "kafka", "source", "kafka://<cluster>/<topic>")
    if not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise SubscriptionError("source", f"malformed URI {uri!r}: {topic!r} is not a valid Kafka topic name "
                                "(letters, digits, '.', '_', '-'; at most 249)")
    if clusters is not None:
        names = set(clusters)
        if cluster not in names:
            configured = ", ".join(sorted(names)) or "none"
            raise SubscriptionError("source", f"unknown Kafka cluster {cluster!r} in {uri!r} (configured clusters: "
                                    f"{configured}; add one with --kafka-cluster NAME=HOST:PORT)")
    return KafkaSource(cluster, topic)


def parse_sink(uri: object, lookup: HandlerLookup | None = None) -> tuple[ServiceSink, SinkTarget | None]:
    """Parse `service://<Service>/<handler>`; with `lookup` given, it must name a registered handler."""
    service, handler = _split_uri(uri, "service", "sink", "service://<Service>/<handler>")
    if not _SERVICE_RE.match(service) or not _HANDLER_RE.match(handler):
        raise SubscriptionError("sink", f"malformed URI {uri!r}: service and handler must be identifiers")
    sink = ServiceSink(service, handler)
    if lookup is None:
        return sink, None
    target = lookup(service, handler)
    if target is None:
        raise SubscriptionError("sink", f"{uri!r} is not a registered handler (register a deployment or "
                                "service that has it first)")
    return sink, target


# ---- ids ------------------------------------------------------------------------------------------------


def new_subscription_id(now_ms: int | None = None) -> str:
    """Mint a `sub_1...` id from a fresh ULID (48-bit millisecond time, 80 random bits), as Restate does."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    ulid = ((ms & ((1 << 48) - 1)) << 80) | secrets.randbits(80)
    swapped = int.from_bytes(ulid.to_bytes(16, "big"), "little")
    digits = []
    for _ in range(_ID_B62_LEN):
        swapped, d = divmod(swapped, 62)
        digits.append(_B62[d])
    return SUBSCRIPTION_ID_PREFIX + _ID_VERSION + "".join(reversed(digits))


def parse_subscription_id(text: object) -> str:
    """Check that `text` is a well-formed subscription id and return it (the admin API answers 400 if not)."""
    if not isinstance(text, str) or not _ID_RE.match(text):
        raise SubscriptionError("id", f"{str(text)[:80]!r} is not a subscription id (sub_1 and 22 base62 "
                                "characters)")
    value = 0
    for ch in text[len(SUBSCRIPTION_ID_PREFIX) + 1:]:
        value = value * 62 + _B62.index(ch)
    if value >= 1 << 128:
        raise SubscriptionError("id", f"{text!r} is not a subscription id (out of range)")
    return text


# ---- subscriptions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """A validated subscription: what the API answers and what is stored (`to_json` / `from_json`)."""

    id: str
    source: KafkaSource
    sink: ServiceSink
    options: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def group_id(self) -> str:
        """The consumer group: `group.id` from the options (defaulted to the subscription id at creation)."""
        return self.options.get("group.id", self.id)

    def to_json(self) -> dict[str, Any]:
        """Restate's response shape: `{"id", "source", "sink", "options"}`."""
        return {"id": self.id, "source": self.source.uri, "sink": self.sink.uri, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subscription:
        """Load a stored subscription (no cluster or handler checks: those held when it was created)."""
        sub_id = parse_subscription_id(data.get("id"))
        source = parse_source(data.get("source"))
        sink, _ = parse_sink(data.get("sink"))
        options = data.get("options") or {}
        if not isinstance(options, Mapping):
            raise SubscriptionError("options", "stored options are not an object")
        return cls(sub_id, source, sink, {str(k): str(v) for k, v in options.items()})

    def consumer_config(self, cluster: KafkaCluster) -> dict[str, str]:
        """The Kafka client settings for this subscription's consumer: the cluster's, then the options.

        The consumer adds its own fixed settings on top (manual offset commits).
        """
        if cluster.name != self.source.cluster:
            raise SubscriptionError("source", f"subscription {self.id} reads cluster {self.source.cluster!r}, "
                                    f"not {cluster.name!r}")
        config = cluster.client_config()
        config.update(self.options)
        config.setdefault("group.id", self.id)
        return config


def _check_options(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SubscriptionError("options", "must be an object of Kafka consumer properties (strings)", 422)
    options: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise SubscriptionError("options", f"option {key!r} must be a string set to a string, like "
                                    '"auto.offset.reset": "earliest"', 422)
        if key in _REFUSED_OPTIONS or key.endswith("_cb") or key.endswith(".cb"):
            raise SubscriptionError("options", f"option {key!r} cannot be set by a subscription (configure it on "
                                    "the Kafka cluster instead)")
        if key in _IGNORED_OPTIONS:
            log.warning("Kafka subscription option %r is ignored: the consumer commits offsets itself, only after "
                        "each record's invocation is recorded", key)
            continue
        options[key] = value
    reset = options.get("auto.offset.reset")
    if reset is not None and reset not in _OFFSET_RESETS:
        raise SubscriptionError("options", f"auto.offset.reset must be one of {', '.join(_OFFSET_RESETS)}, "
                                f"got {reset!r}")
    if "group.id" in options and not options["group.id"].strip():
        raise SubscriptionError("options", "group.id must not be empty")
    return options


def new_subscription(body: object, clusters: Mapping[str, KafkaCluster], lookup: HandlerLookup,
                     *, subscription_id: str | None = None) -> tuple[Subscription, SinkTarget]:
    """Validate a `POST /subscriptions` body and build the subscription with a fresh id.

    Returns the subscription and what the sink handler is (keyed or not). Raises `SubscriptionError` whose
    `field` says which part is wrong: the body's shape, the source (malformed URI, unknown cluster), the
    sink (malformed URI, not a registered handler), or the options.
    """
    if not isinstance(body, Mapping):
        raise SubscriptionError("body", 'expected a JSON object {"source": ..., "sink": ..., "options": {...}}',
                                422)
    # Other fields are ignored, as restate-server ignores them.
    if "source" not in body:
        raise SubscriptionError("source", "missing: expected kafka://<cluster>/<topic>", 422)
    if "sink" not in body:
        raise SubscriptionError("sink", "missing: expected service://<Service>/<handler>", 422)
    source = parse_source(body["source"], clusters)
    sink, target = parse_sink(body["sink"], lookup)
    assert target is not None
    cluster = clusters[source.cluster]
    options = _check_options(body.get("options"))
    sub_id = subscription_id or new_subscription_id()
    # Restate: one consumer group per subscription, named by its id, unless the request or the cluster
    # names one. Stored in the options so the group (and its committed offsets) survives restarts.
    if "group.id" not in options and "group.id" not in cluster.properties:
        options["group.id"] = sub_id
    if "client.id" not in options and "client.id" not in cluster.properties:
        options["client.id"] = DEFAULT_CLIENT_ID
    return Subscription(sub_id, source, sink, options), target


def filter_subscriptions(subs: Iterable[Subscription], *, sink: str | None = None, source: str | None = None
                         ) -> list[Subscription]:
    """`GET /subscriptions?sink=...&source=...`: exact matches on the URIs, as Restate filters."""
    return [s for s in subs if (sink is None or s.sink.uri == sink) and (source is None or s.source.uri == source)]

