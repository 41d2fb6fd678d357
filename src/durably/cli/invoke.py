"""`durably invoke TARGET [BODY]`: call a handler through the ingress, wait for its result or just send it."""

from __future__ import annotations

import json
import os
import sys

import click

from durably.cli.connect import EXIT_FAILED, INGRESS_ENV, reporting
from durably.cli.output import json_out, when
from durably.cli.security import INGRESS_TOKEN_ENV
from durably.clients.http import DEFAULT_INGRESS_URL, IngressClient, RequestFailed, TimedOut, target_path


@click.command(short_help="Call a handler through the ingress.")
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
