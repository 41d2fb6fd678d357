"""`durably serve [APP]`: the server, built from one `ServerConfig` (durably.server.config).

A setting's way in, as uvicorn's CLI does it:

    flag  >  DURABLY_<NAME>  >  --config FILE key  >  default     click resolves which (durably.cli.settings)
    -> serve(**settings)                                          the command's keyword arguments
    -> server_config(settings)                                    the one ServerConfig
    -> DurablyServer(app, config).serve()                         durably.server.process.runtime

Embedded mode (`DURABLY_EMBEDDED=1`, `durably run`) has no command line; `embedded_config` resolves the same
settings from DURABLY_* variables and the DURABLY_CONFIG file (durably.cli.settings.from_environment) and calls
the same `server_config`, so every setting has the same default and a bad value the same refusal in both modes.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from durably.cli import settings as serve_settings
from durably.cli.limits import LIMIT_OPTIONS, limit_options, resource_limits
from durably.cli.security import ADMIN_TOKEN_ENV, INGRESS_TOKEN_ENV, security_options, token_setting
from durably.hosting.loader import AppLoadError, load_app
from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.service import App
from durably.server.config import ServerConfig

log = logging.getLogger("durably.cli.serve")

# The flags' defaults are ServerConfig's, written as the flags take them.
DEFAULTS = ServerConfig()
# Settings embedded mode does not take, by setting name, and why; each is ignored with a warning when set
# (README, "Two ways to run the same app"). Every other setting means what it means to `durably serve`.
EMBEDDED_IGNORED: dict[str, str] = {
    "app": "embedded mode serves the app of the program it runs in",
    "partitions": "embedded mode runs in the app's own process; use `durably serve --partitions N` for more",
    "pin_partitions": "embedded mode runs in the app's own process, which is never pinned",
}
_RETRY_PREFIX = "retry_"


def retry_options(fn: Any) -> Any:
    """`--default-retry-*`: the server-wide invocation retry policy (Restate's [default-retry-policy])."""
    helps = {
        "max_attempts": "Attempts per invocation, the first included, or 'unlimited' (default 70).",
        "on_max_attempts": "What happens when they are spent: pause (default) or kill.",
        "initial_interval": "Delay before the first retry (default 500ms).",
        "max_interval": "Longest delay between retries (default 1m).",
        "exponentiation_factor": "Growth of the delay per retry (default 2.0).",
    }
    for name, text in reversed(helps.items()):
        fn = click.option("--default-retry-" + name.replace("_", "-"), _RETRY_PREFIX + name, metavar="VALUE",
                          help=text + " Env: RESTATE_/DURABLY_DEFAULT_RETRY_POLICY__" + name.upper() + ".")(fn)
    return fn


def retry_policy(flags: dict[str, str | None]) -> InvocationRetryPolicy | None:
    """The default retry policy of the `--default-retry-*` flags (as `retry_*`) over the RESTATE_/DURABLY_
    environment variables; None when nothing is set (Restate's defaults apply)."""
    from durably.server.process.retry_config import (
        RetryConfigError,
        default_retry_policy,
        parse_flag,
        settings_from_env,
    )

    try:
        settings = settings_from_env(os.environ)
        for name, value in flags.items():
            if value is not None:
                settings[name.removeprefix(_RETRY_PREFIX)] = parse_flag(name.removeprefix(_RETRY_PREFIX), value)
        return default_retry_policy(settings) if settings else None
    except RetryConfigError as e:
        raise click.ClickException(f"bad default retry policy: {e}") from e


def _concurrency_rules(flags: tuple[str, ...]) -> dict[str, int]:
    from durably.server.engine.flow_control import FlowControlError, parse_rules

    env = [x for x in os.environ.get("DURABLY_CONCURRENCY_LIMITS", "").split(",") if x.strip()]
    try:
        return parse_rules([*env, *flags])  # flags come last: they win over the environment
    except FlowControlError as e:
        raise click.ClickException(str(e)) from e


def _retention(text: str) -> timedelta:
    from durably.server.http.delay import parse_delay

    try:
        return parse_delay(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--retention") from None


def _allowed_hosts(values: tuple[str, ...]) -> tuple[str, ...]:
    from durably.server.http.host_check import allowed_host_list

    try:
        return allowed_host_list(values)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--allowed-host") from None


def _kafka_clusters(flags: tuple[str, ...], options: tuple[str, ...]) -> dict[str, Any]:
    """`--kafka-cluster NAME=HOST:PORT[,...]` (repeatable) with `--kafka-cluster-option NAME:KEY=VALUE`
    (repeatable): the clusters subscriptions may read, each with its extra Kafka client properties."""
    from durably.server.ingest import SubscriptionError, parse_clusters

    properties: dict[str, dict[str, str]] = {}
    for option in options:
        name, sep, rest = option.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not name.strip() or not key.strip():
            raise click.BadParameter(f"expected NAME:KEY=VALUE (e.g. local:security.protocol=SASL_SSL), got "
                                     f"{option!r}", param_hint="--kafka-cluster-option")
        properties.setdefault(name.strip(), {})[key.strip()] = value
    try:
        return parse_clusters(flags, properties)
    except SubscriptionError as e:
        raise click.BadParameter(e.message, param_hint="--kafka-cluster") from None


def server_config(settings: dict[str, Any]) -> ServerConfig:
    """The ServerConfig of `serve`'s settings, as click resolved them from flags, environment, file and defaults.

    Two settings also merge variables of their own here: the retry policy (RESTATE_/DURABLY_DEFAULT_RETRY_POLICY__*,
    under its flags) and the concurrency rules (DURABLY_CONCURRENCY_LIMITS, before its flags).
    """
    limits = {name: settings[name] for name in LIMIT_OPTIONS}
    return ServerConfig(
        host=settings["host"], port=settings["port"], admin_port=settings["admin_port"],
        data_dir=settings["data_dir"], synchronous=settings["synchronous"].upper(), in_memory=settings["in_memory"],
        always_replay=settings["always_replay"], log_level=settings["log_level"], log_format=settings["log_format"],
        metrics=settings["metrics"],
        retention=_retention(settings["retention"]), shutdown_grace=settings["shutdown_grace"],
        drain=settings["drain"],
        default_retry_policy=retry_policy({k: v for k, v in settings.items() if k.startswith(_RETRY_PREFIX)}),
        concurrency_rules=_concurrency_rules(settings["concurrency_limits"]),
        body_limit=limits.pop("max_body"), limits=resource_limits(limits),
        # security_options (durably.cli.security) names its flags' arguments after these fields.
        admin_host=settings["admin_host"], admin_token=token_setting(settings["admin_token"], ADMIN_TOKEN_ENV),
        ingress_token=token_setting(settings["ingress_token"], INGRESS_TOKEN_ENV), tls_cert=settings["tls_cert"],
        tls_key=settings["tls_key"],
        request_identity_key=settings["request_identity_key"], secret_headers=settings["secret_headers"],
        allowed_hosts=_allowed_hosts(settings["allowed_hosts"]),
        kafka_clusters=_kafka_clusters(settings["kafka_clusters"], settings["kafka_cluster_options"]),
        partitions=settings["partitions"], pin_partitions=settings["pin_partitions"],
    )


def embedded_config() -> ServerConfig:
    """The ServerConfig of embedded mode: `serve`'s settings from DURABLY_* variables, the DURABLY_CONFIG file
    and the defaults, through the same `server_config`. Raises `durably.cli.settings.SettingsError` with the
    message `durably serve` prints for the same bad value."""
    resolved = serve_settings.from_environment(serve)
    values = dict(resolved.values)
    for param in serve.params:
        name = serve_settings.setting_name(param)
        if name in EMBEDDED_IGNORED and param.name in resolved.given:
            log.warning("%s (or %r in the config file) is ignored in embedded mode: %s",
                        serve_settings.env_name(name), name, EMBEDDED_IGNORED[name])
            values[param.name] = param.default  # type: ignore[index]
    try:
        return server_config(values)
    except click.ClickException as e:
        raise serve_settings.SettingsError(e.format_message()) from None


def run(app: App, config: ServerConfig) -> None:
    """Serve `app` as `config` says until SIGTERM/SIGINT; if it cannot start, say why and exit 1."""
    from durably.server.process.runtime import DurablyServer, StartupError, loop_runner
    from durably.server.store.datadir import DataDirError

    server = DurablyServer(app, config)
    try:
        loop_runner()(server.serve())
    except (OSError, StartupError, DataDirError) as e:
        click.echo(f"durably: cannot serve: {e}", err=True)
        sys.exit(1)


def _serve_partitioned(app_ref: str | None, config: ServerConfig) -> None:
    """`--partitions N > 1`: a supervisor and N partition processes (durably.server.partitions.supervisor)."""
    if config.in_memory:
        raise click.UsageError("--in-memory keeps the data in one process's memory; --partitions needs a --data-dir "
                               "(use --partitions 1 with --in-memory)")
    from durably.server.partitions.supervisor import run_supervisor

    sys.exit(run_supervisor(app_ref, config))


@click.command()
@click.argument("app_ref", metavar="[APP]", required=False)
@click.option("--host", default=DEFAULTS.host, show_default=True,
              help="Interface the ingress listens on. The admin API does not follow it: see --admin-host.")
@click.option("--port", default=DEFAULTS.port, show_default=True, help="Ingress port.")
@click.option("--admin-port", default=DEFAULTS.admin_port, show_default=True, help="Admin API port.")
@click.option("--data-dir", default=str(DEFAULTS.data_dir), show_default=True, type=click.Path(path_type=Path),
              help="Where the SQLite store lives.")
@click.option("--synchronous", default=DEFAULTS.synchronous.lower(), show_default=True,
              type=click.Choice(["full", "normal", "off"], case_sensitive=False),
              help="SQLite durability: full fsyncs every commit (survives power loss).")
@click.option("--in-memory", is_flag=True, help="Keep everything in memory (nothing survives a restart).")
@click.option("--always-replay", is_flag=True,
              help="Suspend after every journal append so every step is replayed (for testing handlers).")
@click.option("--log-level", default=DEFAULTS.log_level, show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="info logs one line per invocation lifecycle event; warning only problems.")
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="json: one JSON object per line (ts, level, logger, message, invocation_id, event, ...).")
@click.option("--metrics/--no-metrics", default=DEFAULTS.metrics, show_default=True,
              help="Count and serve Prometheus metrics at the admin API's /metrics.")
# ServerConfig.retention (one day), as the flag writes it.
@click.option("--retention", default="1d", show_default=True, metavar="DURATION",
              help="Keep completed invocations this long (30m, 12h, 7d) unless a handler or service sets "
              "journal_retention / idempotency_retention.")
@click.option("--partitions", default=DEFAULTS.partitions, show_default=True, type=click.IntRange(1, 1024),
              metavar="N",
              help="Run N partition processes (one core and one SQLite store each) under one supervisor. The "
                   "count is fixed when the data directory is created; 1 is one process, as before partitions.")
@click.option("--pin-partitions/--no-pin-partitions", default=DEFAULTS.pin_partitions, show_default=True,
              help="With --partitions N > 1, keep each partition process to its own share of the CPUs the server "
                   "may use (faster: the kernel does not move the busy loops between cores).")
@click.option("--drain", is_flag=True,
              help="Finish the invocations in the store but take no new ones (503), when moving to a cluster.")
@click.option("--shutdown-grace", default=DEFAULTS.shutdown_grace, show_default=True, type=click.FloatRange(min=0),
              metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long running steps may take to finish (a second signal stops at once).")
@retry_options
@click.option("--concurrency-limit", "concurrency_limits", multiple=True, metavar="PATTERN=N",
              help="Restate 1.7 flow control: at most N invocations run at once per matching scope or limit "
                   "key ('*=100', 'checkout=50', 'checkout/*=5', 'checkout/*/*=2'). Repeatable. Env: "
                   "DURABLY_CONCURRENCY_LIMITS (comma-separated).")
@click.option("--kafka-cluster", "kafka_clusters", multiple=True, metavar="NAME=HOST:PORT[,HOST:PORT...]",
              help="A Kafka cluster subscriptions can read as kafka://NAME/<topic>. Repeatable; in a --config "
                   "file a list, in DURABLY_KAFKA_CLUSTER space-separated.")
@click.option("--kafka-cluster-option", "kafka_cluster_options", multiple=True, metavar="NAME:KEY=VALUE",
              help="An extra Kafka client property of cluster NAME (SASL, TLS: security.protocol, sasl.mechanism, "
                   "sasl.username, ...), passed to the client as Restate passes additional_options. Repeatable.")
@security_options
@limit_options
def serve(app_ref: str | None, **settings: Any) -> None:
    """Serve APP (module:app, path/to/file.py[:app] or a package) with the embedded runtime.

    Without APP it is a pure server, like restate-server: ingress, admin API and the remote deployments
    registered with `durably deployments register URL`.
    """
    from durably.server.observe.log_format import configure_logging

    config = server_config(settings)
    configure_logging(config.log_level, config.log_format)
    if config.partitions > 1:
        _serve_partitioned(app_ref, config)
        return
    try:
        app = load_app(app_ref) if app_ref else App()
    except AppLoadError as e:
        raise click.ClickException(str(e)) from e
    run(app, config)


# Every serve flag is also DURABLY_<NAME> and a --config file key; --dump-config prints the result.
serve_settings.apply(serve)
