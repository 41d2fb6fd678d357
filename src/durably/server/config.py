"""The configuration of a Durably server: `ServerConfig`, the one object every way of starting one builds.

    durably serve --port 8081          flags, DURABLY_* variables and a TOML file (durably.cli.settings)
    DURABLY_EMBEDDED=1 python app.py   the app's own ASGI server, settings from DURABLY_* (durably.hosting.embedded)

Both end here, and `durably.server.process.runtime.DurablyServer(app, config)` runs what this says, so a
setting (and every guard it turns on) means the same in every mode. Defaults are `durably serve`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from durably.sdk.options import InvocationRetryPolicy
from durably.server.ingest.subscriptions import KafkaCluster
from durably.server.process.limits import DEFAULT_MAX_BODY, ResourceLimits
from durably.server.process.shutdown import DEFAULT_GRACE_S


@dataclass
class ServerConfig:
    """Settings of a Durably server (`durably serve`, or an app served embedded)."""

    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 9070
    data_dir: Path = field(default_factory=lambda: Path("durably-data"))
    synchronous: str = "FULL"
    in_memory: bool = False
    always_replay: bool = False
    body_limit: int = DEFAULT_MAX_BODY
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line (server/observe/log_format.py)
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    metrics: bool = True
    # How long completed invocations are kept unless their handler or service says otherwise.
    retention: timedelta = timedelta(days=1)
    # Restate's [default-retry-policy]: None keeps Restate's defaults (see server/process/retry_config.py).
    default_retry_policy: InvocationRetryPolicy | None = None
    # Restate 1.7's concurrency rules per scope / limit key, pattern -> limit (see server/engine/flow_control.py).
    concurrency_rules: dict[str, int] = field(default_factory=dict)
    # Security (see SECURITY.md and server/process/listeners.py): the admin API's own bind address, bearer
    # tokens, TLS, the key that signs requests to remote deployments, extra headers never journaled.
    admin_host: str = "127.0.0.1"
    admin_token: str | None = field(default=None, repr=False)
    ingress_token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    request_identity_key: Path | None = None
    secret_headers: tuple[str, ...] = ()
    # Host names a listener answers to besides localhost and loopback addresses (DNS rebinding; see
    # server/http/host_check.py): NAME or NAME:PORT, lower-case, "*" for any.
    allowed_hosts: tuple[str, ...] = ()
    # Graceful stop: how long running steps may take to finish after SIGTERM/SIGINT (server/process/shutdown.py).
    shutdown_grace: float = DEFAULT_GRACE_S
    # Refuse new invocations from outside, finish the ones in the store (DrainingIngress in
    # server/process/shutdown.py).
    drain: bool = False
    # Kafka clusters subscriptions may read, by name (`--kafka-cluster NAME=HOST:PORT[,...]`, each with its
    # extra client properties from `--kafka-cluster-option`; see server/process/kafka.py).
    kafka_clusters: dict[str, KafkaCluster] = field(default_factory=dict)
    # Partitions of the invocation key space, one process each (`--partitions N`, server/partitions/): 1 is one
    # process with one store, as before partitions; the count is fixed when a data directory is created.
    partitions: int = 1
    # With partitions > 1, each partition process keeps to its own CPUs (server/partitions/cpus.py).
    pin_partitions: bool = True
