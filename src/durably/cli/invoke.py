"""`durably invoke TARGET [BODY]`: call a handler through the ingress, wait for its result or just send it.

On a terminal (stderr is a TTY, no `--json`) it shows progress: the invocation id at once, then one status
line kept up to date from the admin API (attempt N, backing off until T, the last error) while it waits;
Ctrl-C stops waiting without cancelling and prints the command that attaches again (`--attach ID`).
Elsewhere (a pipe, a script, `--json`) it prints the result and nothing else on stdout.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from typing import Any

import click

from durably.cli.connect import ADMIN_ENV, EXIT_FAILED, INGRESS_ENV, reporting
from durably.cli.output import clip, json_out, when
from durably.cli.security import ADMIN_TOKEN_ENV, INGRESS_TOKEN_ENV
from durably.clients.http import (
    DEFAULT_ADMIN_URL,
    DEFAULT_INGRESS_URL,
    AdminClient,
    CallResult,
    ClientError,
    IngressClient,
    RequestFailed,
    TimedOut,
    target_path,
)

# How often the status line asks the admin API (a light request: the record and one journal entry).
STATUS_POLL_S = 0.3
# The exit code after Ctrl-C detached (the shell's for SIGINT); the invocation goes on.
EXIT_DETACHED = 130


@click.command(short_help="Call a handler through the ingress.")
@click.argument("target", required=False)
@click.argument("body", required=False)
@click.option("--attach", "attach_id", metavar="INVOCATION_ID",
              help="Wait for the result of an invocation already started (instead of TARGET).")
@click.option("--admin", "admin_url", metavar="URL", default=None,
              help=f"Admin API URL for the progress line [env {ADMIN_ENV}; default {DEFAULT_ADMIN_URL}].")
@click.option("--send", is_flag=True, help="Do not wait: print the invocation id and status.")
@click.option("--delay", metavar="DURATION", help="With --send: start after this long (10s, 5m, 1h, PT10S).")
@click.option("--idempotency-key", metavar="KEY", help="Same key, same invocation: a retry returns its result.")
@click.option("--ingress", "ingress_url", metavar="URL", default=DEFAULT_INGRESS_URL, envvar=INGRESS_ENV,
              show_default=True, show_envvar=True, help="Ingress URL of the server.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop waiting for the result after this long (the invocation goes on). Default: no limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw response body.")
def invoke(target: str | None, body: str | None, attach_id: str | None, admin_url: str | None, send: bool,
           delay: str | None, idempotency_key: str | None, ingress_url: str, timeout: float | None,
           as_json: bool) -> None:
    """Call a handler: TARGET is Service/handler or Object/key/handler; BODY is JSON ('-' reads stdin).

    On a terminal it prints the invocation id at once and a live status line while the invocation retries;
    Ctrl-C stops waiting (the invocation goes on) and says how to attach again.

    \b
    durably invoke Greeter/greet '"Alice"'
    durably invoke Counter/alice/add 5
    echo '{"to": "bob"}' | durably invoke Mailer/send_mail - --send --delay 10m
    durably invoke --attach inv_1abc...
    """
    live = sys.stderr.isatty() and not as_json
    admin = admin_url or os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN_URL
    if attach_id is not None:
        if target is not None or send:
            raise click.UsageError("--attach takes an invocation id instead of TARGET (and cannot --send)")
        with reporting(), IngressClient(ingress_url, timeout,
                                        token=os.environ.get(INGRESS_TOKEN_ENV) or None) as ingress:
            result = _wait(ingress, attach_id, admin, timeout, live)
        _print_result(result, as_json, live)
        return
    if target is None:
        raise click.UsageError("give a TARGET (Service/handler), or --attach INVOCATION_ID")
    if delay and not send:
        raise click.UsageError("--delay needs --send (a delayed call cannot be waited for here)")
    payload: bytes | None = None
    if body is not None:
        payload = sys.stdin.buffer.read() if body == "-" else body.encode()
    try:
        target_path(target)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="TARGET") from None
    with reporting():
        try:
            with IngressClient(ingress_url, timeout, token=os.environ.get(INGRESS_TOKEN_ENV) or None) as ingress:
                if send:
                    reply = ingress.send(target, payload, delay=delay, idempotency_key=idempotency_key)
                    if as_json:
                        json_out(reply)
                        return
                    line = f"{reply.get('invocationId')}  {reply.get('status')}"
                    if reply.get("executionTime"):
                        line += f"  starts at {when(reply['executionTime'])}"
                    click.echo(line)
                    return
                if live:
                    # Started with a send, so the id is known at once; then wait on it with a status line.
                    inv_id = ingress.send(target, payload, idempotency_key=idempotency_key)["invocationId"]
                    click.echo(f"invocation id: {inv_id}", err=True)
                    result = _wait(ingress, inv_id, admin, timeout, live)
                    _print_result(result, as_json, live)
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
    _print_result(result, as_json, False)


def _print_result(result: CallResult, as_json: bool, live: bool) -> None:
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


def _status_line(inv: dict[str, Any]) -> str:
    """One line: status, attempt, backoff, last error."""
    parts = [f"{inv.get('status', '?')}: attempt {inv.get('attempts', 0)}"]
    if inv.get("status") == "backing-off" and inv.get("next_retry_at"):
        parts.append(f"backing off until {when(inv['next_retry_at'], 'time')}")
    err = inv.get("last_error")
    if isinstance(err, dict) and inv.get("status") != "completed":
        parts.append(f"last error: {err.get('code')} {err.get('message', '')}")
    return ", ".join(parts)


def _wait(ingress: IngressClient, inv_id: str, admin_url: str, timeout: float | None, live: bool) -> CallResult:
    """Attach to the invocation; on a terminal, keep a status line up to date meanwhile. Ctrl-C detaches."""
    outcome: dict[str, Any] = {}

    def attach() -> None:
        try:
            outcome["result"] = ingress.attach(inv_id)
        except BaseException as e:  # handed to the main thread, which reports it
            outcome["error"] = e

    waiter = threading.Thread(target=attach, name="durably-attach", daemon=True)
    waiter.start()
    shown = ""
    width = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
    try:
        with AdminClient(admin_url, timeout=5, token=os.environ.get(ADMIN_TOKEN_ENV) or None) as admin:
            while waiter.is_alive():
                if live:
                    try:
                        line = clip(_status_line(admin.invocation_status(inv_id)), width)
                    except ClientError:
                        line = shown  # no admin API (or not allowed): the wait goes on without a status
                    if line != shown:
                        sys.stderr.write("\r\x1b[K" + line)
                        sys.stderr.flush()
                        shown = line
                waiter.join(STATUS_POLL_S)
    except KeyboardInterrupt:
        if shown:
            sys.stderr.write("\n")
        click.echo(f"detached: {inv_id} goes on (nothing was cancelled). Attach again with:\n"
                   f"  durably invoke --attach {inv_id}", err=True)
        sys.exit(EXIT_DETACHED)
    if shown:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    if "error" in outcome:
        if isinstance(outcome["error"], TimedOut):
            click.echo(f"durably: no result within {timeout} s; the invocation goes on "
                       f"(attach again with `durably invoke --attach {inv_id}`)", err=True)
            sys.exit(EXIT_FAILED)
        raise outcome["error"]
    return outcome["result"]
