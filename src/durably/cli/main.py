"""The `durably` command: serve an app, call its handlers, inspect and manage invocations.

    durably serve module:app                         run the server (ingress :8080, admin API :9070)
    durably invoke Service/handler '"json"'          call a handler (or Object/key/handler)
    durably invocations list|describe|cancel|...     the admin API's invocations
    durably services list                            the served services and handlers
    durably state get|set|edit|clear OBJECT KEY      a virtual object's state
    durably backup --data-dir D OUT                  a consistent copy of a data directory, even while served
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from durably.cli.limits import LIMIT_OPTIONS, limit_options, resource_limits
from durably.cli.security import ADMIN_TOKEN_ENV, INGRESS_TOKEN_ENV, keys, security_options
from durably.clients.http import (
    ACTIONS,
    DEFAULT_ADMIN_URL,
    DEFAULT_INGRESS_URL,
    AdminClient,
    BadURL,
    ClientError,
    IngressClient,
    RequestFailed,
    ServerUnreachable,
    TimedOut,
    target_path,
)
from durably.hosting.loader import AppLoadError, load_app
from durably.sdk.service import App
from durably.server import config as serve_config

# Exit codes: 1 for a failed request (the server said no), 2 for usage and connection problems.
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2
STATUSES = ("scheduled", "inboxed", "invoked", "suspended", "backing-off", "paused", "completed")
ADMIN_ENV = "DURABLY_ADMIN_URL"
INGRESS_ENV = "DURABLY_INGRESS_URL"


@click.group()
@click.version_option(package_name="durably")
def main() -> None:
    """Durable execution for Python."""


def _retry_flags(fn: Any) -> Any:
    """`--default-retry-*`: the server-wide invocation retry policy (Restate's [default-retry-policy])."""
    helps = {
        "max_attempts": "Attempts per invocation, the first included, or 'unlimited' (default 70).",
        "on_max_attempts": "What happens when they are spent: pause (default) or kill.",
        "initial_interval": "Delay before the first retry (default 500ms).",
        "max_interval": "Longest delay between retries (default 1m).",
        "exponentiation_factor": "Growth of the delay per retry (default 2.0).",
    }
    for name, text in reversed(helps.items()):
        fn = click.option("--default-retry-" + name.replace("_", "-"), "retry_" + name, metavar="VALUE",
                          help=text + " Env: RESTATE_/DURABLY_DEFAULT_RETRY_POLICY__" + name.upper() + ".")(fn)
    return fn


def _default_retry_policy(flags: dict[str, str | None]) -> Any:
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
                settings[name.removeprefix("retry_")] = parse_flag(name.removeprefix("retry_"), value)
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


@main.command()
@click.argument("app_ref", metavar="[APP]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind ingress and admin to.")
@click.option("--port", default=8080, show_default=True, help="Ingress port.")
@click.option("--admin-port", default=9070, show_default=True, help="Admin API port.")
@click.option("--data-dir", default="durably-data", show_default=True, type=click.Path(path_type=Path),
              help="Where the SQLite store lives.")
@click.option("--synchronous", default="full", show_default=True,
              type=click.Choice(["full", "normal", "off"], case_sensitive=False),
              help="SQLite durability: full fsyncs every commit (survives power loss).")
@click.option("--in-memory", is_flag=True, help="Keep everything in memory (nothing survives a restart).")
@click.option("--always-replay", is_flag=True,
              help="Suspend after every journal append so every step is replayed (for testing handlers).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="info logs one line per invocation lifecycle event; warning only problems.")
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="json: one JSON object per line (ts, level, logger, message, invocation_id, event, ...).")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Count and serve Prometheus metrics at the admin API's /metrics.")
@click.option("--retention", default="1d", show_default=True, metavar="DURATION",
              help="Keep completed invocations this long (30m, 12h, 7d) unless a handler or service sets "
              "journal_retention / idempotency_retention.")
@click.option("--drain", is_flag=True,
              help="Finish the invocations in the store but take no new ones (503), when moving to a cluster.")
@click.option("--shutdown-grace", default=30.0, show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long running steps may take to finish (a second signal stops at once).")
@_retry_flags
@click.option("--concurrency-limit", "concurrency_limits", multiple=True, metavar="PATTERN=N",
              help="Restate 1.7 flow control: at most N invocations run at once per matching scope or limit "
                   "key ('*=100', 'checkout=50', 'checkout/*=5', 'checkout/*/*=2'). Repeatable. Env: "
                   "DURABLY_CONCURRENCY_LIMITS (comma-separated).")
@security_options
@limit_options
def serve(app_ref: str, host: str, port: int, admin_port: int, data_dir: Path, synchronous: str,
          in_memory: bool, always_replay: bool, log_level: str, log_format: str, metrics: bool,
          retention: str, shutdown_grace: float, concurrency_limits: tuple[str, ...], **options: Any) -> None:
    """Serve APP (module:app, path/to/file.py[:app] or a package) with the embedded runtime.

    Without APP it is a pure server, like restate-server: ingress, admin API and the remote deployments
    registered with `durably deployments register URL`.
    """
    from durably.server.observe.log_format import configure_logging
    from durably.server.process.runtime import DurablyServer, ServerConfig

    # The --default-retry-* flags arrive as retry_*, the limit flags (cli_limits.py) by their names, the security
    # flags (cli_security.py) as ServerConfig fields.
    retry = {k: v for k, v in options.items() if k.startswith("retry_")}
    security = {k: v for k, v in options.items() if not k.startswith("retry_") and k not in LIMIT_OPTIONS}
    configure_logging(log_level, log_format)
    try:
        app = load_app(app_ref) if app_ref else App()
    except AppLoadError as e:
        raise click.ClickException(str(e)) from e
    config = ServerConfig(host=host, port=port, admin_port=admin_port, data_dir=data_dir,
                          synchronous=synchronous.upper(), in_memory=in_memory, always_replay=always_replay,
                          metrics=metrics, retention=_retention(retention), shutdown_grace=shutdown_grace,
                          default_retry_policy=_default_retry_policy(retry),
                          concurrency_rules=_concurrency_rules(concurrency_limits),
                          body_limit=options.pop("max_body"), limits=resource_limits(options), **security)
    server = DurablyServer(app, config)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Unix
        runner = asyncio.run
    from durably.server.process.runtime import StartupError
    from durably.server.store.datadir import DataDirError

    try:
        runner(server.serve())
    except (OSError, StartupError, DataDirError) as e:
        click.echo(f"durably: cannot serve: {e}", err=True)
        sys.exit(1)


# Every serve flag is also DURABLY_<NAME> and a --config file key; --dump-config prints the result.
serve_config.apply(serve)


def _retention(text: str) -> timedelta:
    from durably.server.http.delay import parse_delay

    try:
        return parse_delay(text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--retention") from None


@main.command(short_help="Copy a data directory consistently, even while it is served.")
@click.option("--data-dir", default="durably-data", show_default=True, type=click.Path(path_type=Path),
              help="The data directory to back up.")
@click.argument("out", type=click.Path(path_type=Path))
def backup(data_dir: Path, out: Path) -> None:
    """Write a consistent copy of --data-dir (database and WAL) to the new directory OUT.

    Safe while `durably serve` runs. Restore by serving the copy: `durably serve app --data-dir OUT`.
    """
    from durably.server.store.backup import backup as run_backup
    from durably.server.store.datadir import DataDirError

    try:
        result = run_backup(data_dir, out)
    except DataDirError as e:
        click.echo(f"durably: cannot back up: {e}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"backed up {data_dir} to {result.path}: {result.invocations} invocations, "
               f"{result.size_bytes / 1e6:.1f} MB, database {result.database_id}")
    click.echo(f"restore by serving the copy: durably serve APP --data-dir {result.path}")


# ---- talking to a running server ----


@contextmanager
def _reporting() -> Iterator[None]:
    """Turn client errors into one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except ServerUnreachable as e:
        click.echo(f"durably: no durably server at {e.url}: start one with `durably serve module:app`", err=True)
        click.echo(f"  ({e.reason})", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except BadURL as e:
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except TimedOut as e:
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_FAILED)
    except RequestFailed as e:
        if e.invocation_id:
            click.echo(f"invocation id: {e.invocation_id}", err=True)
        click.echo(f"error {e.code}: {e.message}", err=True)
        if e.status == 401:
            click.echo(f"  (set {ADMIN_TOKEN_ENV} or {INGRESS_TOKEN_ENV} to the server's token)", err=True)
        sys.exit(EXIT_FAILED)
    except ClientError as e:  # e.g. the server went away in the middle of the request
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_FAILED)


def _admin_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--admin", "admin_url", metavar="URL", default=None,
                        help=f"Admin API URL [env {ADMIN_ENV}; default {DEFAULT_ADMIN_URL}].")(f)


def _admin(admin_url: str | None) -> AdminClient:
    """The admin client: this command's --admin, else the group's, else the environment, else the default."""
    ctx = click.get_current_context()
    group_url = ctx.parent.params.get("admin_url") if ctx.parent is not None else None
    return AdminClient(admin_url or group_url or os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN_URL,
                       token=os.environ.get(ADMIN_TOKEN_ENV) or None)


def _json_out(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _clip(text: str, width: int) -> str:
    text = _one_line(text)
    if width < 4 or len(text) <= width:
        return text
    return text[: width - 3] + "..."


def _when(ts: str | None, style: str = "full") -> str:
    """An RFC 3339 time from the server in local time: full (with ms), short (list) or time (of day, ms)."""
    if not ts:
        return ""
    try:
        t = datetime.fromisoformat(ts).astimezone()
    except ValueError:
        return ts
    if style == "time":
        return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
    if style == "short":
        now = datetime.now().astimezone()
        if t.date() == now.date():
            return t.strftime("%H:%M:%S")
        return t.strftime("%b %d %H:%M") if t.year == now.year else t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _table(headers: list[str], rows: list[list[str]], *, flex: int | None = None, flex_max: int = 80,
           right: frozenset[int] = frozenset(), indent: str = "") -> list[str]:
    """Plain aligned columns; the `flex` column is clipped to `flex_max` and so that lines fit the terminal."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if flex is not None:
        others = sum(w + 2 for i, w in enumerate(widths) if i != flex) + len(indent)
        room = min(max(shutil.get_terminal_size((120, 24)).columns - others, 20), flex_max)
        widths[flex] = max(min(widths[flex], room), len(headers[flex]))
        rows = [[_clip(c, room) if i == flex else c for i, c in enumerate(r)] for r in rows]

    def line(cells: list[str]) -> str:
        out = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return (indent + "  ".join(out)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _failure_text(code: Any, message: Any) -> str:
    return f"{code} {message}" if message else str(code)


# ---- durably invoke ----


@main.command(short_help="Call a handler through the ingress.")
@click.argument("target")
@click.argument("body", required=False)
@click.option("--send", is_flag=True, help="Do not wait: print the invocation id and status.")
@click.option("--delay", metavar="DURATION", help="With --send: start after this long (10s, 5m, 1h, PT10S).")
@click.option("--idempotency-key", metavar="KEY", help="Same key, same invocation: a retry returns its result.")
@click.option("--ingress", "ingress_url", metavar="URL", default=DEFAULT_INGRESS_URL, envvar=INGRESS_ENV,
              show_default=True, show_envvar=True, help="Ingress URL of the server.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop waiting for the result after this long (the invocation goes on). Default: no limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw response body.")
def invoke(target: str, body: str | None, send: bool, delay: str | None, idempotency_key: str | None,
           ingress_url: str, timeout: float | None, as_json: bool) -> None:
    """Call a handler: TARGET is Service/handler or Object/key/handler; BODY is JSON ('-' reads stdin).

    \b
    durably invoke Greeter/greet '"Alice"'
    durably invoke Counter/alice/add 5
    echo '{"to": "bob"}' | durably invoke Mailer/send_mail - --send --delay 10m
    """
    if delay and not send:
        raise click.UsageError("--delay needs --send (a delayed call cannot be waited for here)")
    payload: bytes | None = None
    if body is not None:
        payload = sys.stdin.buffer.read() if body == "-" else body.encode()
    try:
        target_path(target)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="TARGET") from None
    with _reporting():
        try:
            with IngressClient(ingress_url, timeout, token=os.environ.get(INGRESS_TOKEN_ENV) or None) as ingress:
                if send:
                    reply = ingress.send(target, payload, delay=delay, idempotency_key=idempotency_key)
                    if as_json:
                        _json_out(reply)
                        return
                    line = f"{reply.get('invocationId')}  {reply.get('status')}"
                    if reply.get("executionTime"):
                        line += f"  starts at {_when(reply['executionTime'])}"
                    click.echo(line)
                    return
                result = ingress.call(target, payload, idempotency_key=idempotency_key)
        except RequestFailed as e:
            if e.status == 400 and payload and not _is_json(payload):
                e.message += " (BODY must be JSON: quote strings, e.g. '\"Alice\"')"
            raise
        except TimedOut:
            # The server keeps running the invocation; only this caller stopped waiting.
            click.echo(f"durably: no result within {timeout} s; the invocation goes on "
                       "(see `durably invocations list`)", err=True)
            sys.exit(EXIT_FAILED)
    if result.invocation_id:
        click.echo(f"invocation id: {result.invocation_id}", err=True)
    if as_json:
        out = result.body if result.body.endswith(b"\n") or not result.body else result.body + b"\n"
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
        return
    if not result.body:
        return
    try:
        click.echo(json.dumps(result.json(), indent=2, ensure_ascii=False))
    except ValueError:  # not JSON (a handler with its own serde): show it as it came
        sys.stdout.buffer.write(result.body if result.body.endswith(b"\n") else result.body + b"\n")
        sys.stdout.flush()


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


# ---- durably invocations ----


@main.group()
@_admin_option
def invocations(admin_url: str | None) -> None:
    """List, describe and manage invocations through the admin API."""


@invocations.command("list")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only invocations in this status.")
@click.option("--service", help="Only invocations of this service.")
@click.option("--handler", help="Only invocations of this handler.")
@click.option("--key", help="Only invocations on this object or workflow key.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def list_invocations(status: str | None, service: str | None, handler: str | None, key: str | None, limit: int,
                     as_json: bool, admin_url: str | None) -> None:
    """Invocations, newest first."""
    with _reporting(), _admin(admin_url) as admin:
        rows = admin.invocations(status=status and status.lower(), service=service, handler=handler, key=key,
                                 limit=limit)
    if as_json:
        _json_out({"invocations": rows})
        return
    if not rows:
        click.echo("no invocations")
        return
    table = [[r["id"], r.get("target", ""), r.get("status", ""), str(r.get("attempts", "")),
              _when(r.get("created_at"), "short"), _outcome_summary(r)] for r in rows]
    for line in _table(["ID", "TARGET", "STATUS", "ATTEMPTS", "CREATED", "OUTPUT / LAST ERROR"], table, flex=5,
                       flex_max=60, right=frozenset({3})):
        click.echo(line)


def _outcome_summary(inv: dict[str, Any]) -> str:
    """One cell: the failure, the output, the last error, or when it is due."""
    if "failure_code" in inv:
        return "failed " + _failure_text(inv["failure_code"], inv.get("failure_message"))
    if "output" in inv:
        return _compact(inv["output"])
    last = inv.get("last_error")
    if isinstance(last, dict):
        return "last error " + _failure_text(last.get("code"), last.get("message"))
    if inv.get("status") == "scheduled" and inv.get("execution_time"):
        return f"starts {_when(inv['execution_time'], 'short')}"
    return ""


@invocations.command("describe")
@click.argument("invocation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def describe_invocation(invocation_id: str, as_json: bool, admin_url: str | None) -> None:
    """One invocation: its status, result and journal."""
    with _reporting(), _admin(admin_url) as admin:
        inv = admin.invocation(invocation_id)
    if as_json:
        _json_out(inv)
        return
    for line in describe_lines(inv):
        click.echo(line)


def describe_lines(inv: dict[str, Any]) -> list[str]:
    """The human-readable description of an invocation as the admin API returns it."""
    status = inv.get("status", "")
    if status == "completed":
        status += " (failed)" if "failure_code" in inv else " (succeeded)"
    attempts = str(inv.get("attempts", 0))
    if inv.get("retry_count"):
        attempts += f" ({inv['retry_count']} failed)"
    fields: list[tuple[str, str]] = [("id", inv.get("id", "")), ("target", inv.get("target", "")),
                                     ("status", status)]
    if inv.get("idempotency_key"):
        fields.append(("idempotency key", inv["idempotency_key"]))
    fields.append(("attempts", attempts))
    for label, name in (("created", "created_at"), ("scheduled for", "execution_time"), ("modified", "modified_at"),
                        ("next retry", "next_retry_at"), ("completed", "completed_at"),
                        ("kept until", "retention_until")):
        if inv.get(name):
            fields.append((label, _when(inv[name])))
    if inv.get("waiting"):
        waiting = inv["waiting"]
        fields.append(("waiting", ", ".join(map(str, waiting)) if isinstance(waiting, list) else str(waiting)))
    last = inv.get("last_error")
    if isinstance(last, dict) and "failure_code" not in inv and "output" not in inv:
        fields.append(("last error", _failure_text(last.get("code"), last.get("message"))))
    if "failure_code" in inv:
        fields.append(("failure", _failure_text(inv["failure_code"], inv.get("failure_message"))))
        for k, v in (inv.get("failure_metadata") or {}).items():
            fields.append(("  metadata", f"{k}={v}"))
    elif "output" in inv:
        fields.append(("output", json.dumps(inv["output"], indent=2, ensure_ascii=False)))
    width = max(len(label) for label, _ in fields) + 2
    lines = []
    for label, value in fields:
        first, *more = str(value).splitlines() or [""]
        lines.append(f"{label + ':':<{width}}{first}")
        lines.extend(" " * width + extra for extra in more)
    journal = inv.get("journal") or []
    lines.append("")
    lines.append(f"journal ({len(journal)} {'entry' if len(journal) == 1 else 'entries'}):")
    rows = [[str(e.get("index", "")), e.get("type", ""), e.get("name", ""), _entry_detail(e),
             _when(e.get("appended_at"), "time")] for e in journal]
    lines.extend(_table(["#", "TYPE", "NAME", "RESULT", "TIME"], rows, flex=3, right=frozenset({0}), indent="  "))
    return lines


def _entry_detail(e: dict[str, Any]) -> str:
    """The result column of one journal entry."""
    if "failure" in e:
        f = e["failure"]
        return "failure " + _failure_text(f.get("code"), f.get("message"))
    kind = e.get("type", "")
    parts: list[str] = []
    if "target" in e:
        parts.append(f"-> {e['target']}")
    if "parameter" in e:
        parts.append(_compact(e["parameter"]))
    if "key" in e:
        parts.append(f"{e['key']} = {_compact(e['value'])}" if "value" in e else e["key"])
    if "promise" in e:
        parts.append(f"promise {e['promise']}")
    if "awakeable_id" in e:
        parts.append(e["awakeable_id"])
    if "wake_up_time" in e:
        parts.append(f"until {_when(e['wake_up_time'])}")
    if "signal" in e:
        # Signal 1 is the cancellation, as in Restate.
        parts.append("cancel" if e["signal"] == 1 and kind == "signal" else f"signal {e['signal']}")
    if "invocation_id" in e:
        parts.append(e["invocation_id"])
    if "keys" in e:
        parts.append(_compact(e["keys"]))
    if "value" in e and "key" not in e and not (kind == "input" and e["value"] is None):
        parts.append(_compact(e["value"]))
    return " ".join(parts)


def _action_command(action: str, done: str) -> click.Command:
    def run(invocation_ids: tuple[str, ...], admin_url: str | None) -> None:
        failed = False
        with _reporting(), _admin(admin_url) as admin:
            for inv_id in invocation_ids:
                try:
                    status = admin.action(inv_id, action)
                except RequestFailed as e:
                    if e.status not in (400, 404, 409):
                        raise  # not about this invocation: stop here
                    click.echo(f"error {e.code}: {e.message}", err=True)
                    failed = True
                    continue
                if action == "pause" and status == 200:
                    click.echo(f"{inv_id} was already paused")
                else:
                    click.echo(f"{done} {inv_id}")
        if failed:
            sys.exit(EXIT_FAILED)

    helps = {
        "cancel": "Cancel: the handler gets a 409 TerminalError at its next await and can compensate.",
        "kill": "Kill: end it now without running any more user code; callers get 409 \"killed\".",
        "pause": "Pause: stop running or retrying it until it is resumed.",
        "resume": "Resume a paused invocation with a fresh retry budget.",
        "purge": "Purge a completed invocation: delete it and its journal.",
    }
    cmd = click.Command(action, callback=run, help=helps[action], params=[
        click.Argument(["invocation_ids"], metavar="ID...", nargs=-1, required=True),
    ])
    return _admin_option(cmd)  # type: ignore[return-value]


for _action, _done in zip(ACTIONS, ("cancelled", "killed", "paused", "resumed", "purged"), strict=True):
    invocations.add_command(_action_command(_action, _done))


# ---- durably services ----


@main.group()
@_admin_option
def services(admin_url: str | None) -> None:
    """The services the server runs."""


@services.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def list_services(as_json: bool, admin_url: str | None) -> None:
    """Services with their type and handlers."""
    with _reporting(), _admin(admin_url) as admin:
        found = admin.services()
    if as_json:
        _json_out({"services": found})
        return
    if not found:
        click.echo("no services")
        return
    rows = [[s["name"], s.get("ty", ""), ", ".join(_handler_text(h) for h in s.get("handlers", []))]
            for s in sorted(found, key=lambda s: s["name"])]
    for line in _table(["NAME", "TYPE", "HANDLERS"], rows):
        click.echo(line)


def _handler_text(h: dict[str, Any]) -> str:
    notes = [h["ty"].lower()] if h.get("ty") else []
    if h.get("public") is False:
        notes.append("private")
    return f"{h['name']} ({', '.join(notes)})" if notes else h["name"]


# ---- durably deployments ----


@main.group()
@_admin_option
def deployments(admin_url: str | None) -> None:
    """Remote deployments: services written with any Restate SDK, driven by this server."""


@deployments.command("register")
@click.argument("uri")
@click.option("--use-http-11", is_flag=True, help="Talk HTTP/1.1 request/response instead of HTTP/2 streams.")
@click.option("--force", is_flag=True, help="Discover again and replace a deployment with the same URI.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Send this header on every request.")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def register_deployment(uri: str, use_http_11: bool, force: bool, headers: tuple[str, ...], as_json: bool,
                        admin_url: str | None) -> None:
    """Discover the deployment at URI and route its services to it."""
    extra = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} is not NAME:VALUE", param_hint="--header")
        extra[name.strip()] = value.strip()
    with _reporting(), _admin(admin_url) as admin:
        status, body = admin.register_deployment(uri, use_http_11=use_http_11, force=force, additional_headers=extra)
    if as_json:
        _json_out(body)
        return
    verb = "registered" if status == 201 else "already registered"
    click.echo(f"{verb} {body['id']} at {uri}")
    for svc in body.get("services", []):
        click.echo(f"  {svc['name']} ({svc.get('ty', '').lower()}): "
                   + ", ".join(_handler_text(h) for h in svc.get("handlers", [])))


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def list_deployments(as_json: bool, admin_url: str | None) -> None:
    """Registered deployments with their services."""
    with _reporting(), _admin(admin_url) as admin:
        found = admin.deployments()
    if as_json:
        _json_out({"deployments": found})
        return
    if not found:
        click.echo("no deployments")
        return
    rows = [[d["id"], d["uri"], d.get("protocol_type", ""), ", ".join(s["name"] for s in d.get("services", []))]
            for d in found]
    for line in _table(["ID", "URI", "PROTOCOL", "SERVICES"], rows):
        click.echo(line)


@deployments.command("remove")
@click.argument("deployment_id", metavar="ID")
@click.option("--force", is_flag=True, help="Remove even with invocations pinned to it (Restate requires this).")
@_admin_option
def remove_deployment(deployment_id: str, force: bool, admin_url: str | None) -> None:
    """Forget a deployment: its services stop being invocable here."""
    with _reporting(), _admin(admin_url) as admin:
        admin.remove_deployment(deployment_id, force=force)
    click.echo(f"removed {deployment_id}")


# ---- durably rules ----


@main.group()
@_admin_option
def rules(admin_url: str | None) -> None:
    """Concurrency rules per scope and limit key (Restate 1.7's `restate rules`), kept in the store.

    Patterns given to `durably serve --concurrency-limit` take the flag's value again at every start.
    """


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@_admin_option
def list_rules(as_json: bool, admin_url: str | None) -> None:
    """The rules, and how many invocations each budget in use runs now."""
    with _reporting(), _admin(admin_url) as admin:
        book = admin.rules()
    if as_json:
        _json_out(book)
        return
    if not book["rules"]:
        click.echo("no rules")
    else:
        for line in _table(["PATTERN", "CONCURRENCY"], [[r["pattern"], str(r["concurrency"])] for r in book["rules"]]):
            click.echo(line)
    if book.get("usage"):
        click.echo("")
        rows = [[u["level"], str(u["used"]), "" if u["limit"] is None else str(u["limit"])] for u in book["usage"]]
        for line in _table(["IN USE", "RUNNING", "LIMIT"], rows):
            click.echo(line)


@rules.command("set")
@click.argument("pattern")
@click.option("--concurrency", type=click.IntRange(min=1), required=True, help="At most this many at once.")
@_admin_option
def set_rule(pattern: str, concurrency: int, admin_url: str | None) -> None:
    """Create or change the rule for PATTERN ('*', 'scope', 'scope/*', 'scope/l1/*'...)."""
    with _reporting(), _admin(admin_url) as admin:
        admin.set_rule(pattern, concurrency)
    click.echo(f"{pattern}: concurrency {concurrency}")


@rules.command("delete")
@click.argument("pattern")
@_admin_option
def delete_rule(pattern: str, admin_url: str | None) -> None:
    """Remove the rule for PATTERN."""
    with _reporting(), _admin(admin_url) as admin:
        admin.delete_rule(pattern)
    click.echo(f"deleted {pattern}")


# ---- commands kept in modules of their own ----

def _add_commands() -> None:
    from durably.cli.endpoint import endpoint
    from durably.cli.run import run

    main.add_command(run)
    main.add_command(endpoint)


_add_commands()

main.add_command(keys)

# Operator commands living in modules of their own (imported last: they use the helpers above).
from durably.cli.state import state  # noqa: E402

main.add_command(state)

if __name__ == "__main__":
    main()
