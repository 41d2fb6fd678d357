"""`durably invocations list|describe|cancel|kill|pause|resume|purge`: the admin API's invocations."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from durably.cli.connect import EXIT_FAILED, admin_client, admin_option, reporting
from durably.cli.output import compact, failure_text, json_out, table, when
from durably.clients.http import ACTIONS, RequestFailed

STATUSES = ("scheduled", "inboxed", "invoked", "suspended", "backing-off", "paused", "completed")


@click.group()
@admin_option
def invocations(admin_url: str | None) -> None:
    """List, describe and manage invocations through the admin API."""


@invocations.command("list")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only invocations in this status.")
@click.option("--service", help="Only invocations of this service.")
@click.option("--handler", help="Only invocations of this handler.")
@click.option("--key", help="Only invocations on this object or workflow key.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def list_invocations(status: str | None, service: str | None, handler: str | None, key: str | None, limit: int,
                     as_json: bool, admin_url: str | None) -> None:
    """Invocations, newest first."""
    with reporting(), admin_client(admin_url) as admin:
        rows = admin.invocations(status=status and status.lower(), service=service, handler=handler, key=key,
                                 limit=limit)
    if as_json:
        json_out({"invocations": rows})
        return
    if not rows:
        click.echo("no invocations")
        return
    cells = [[r["id"], r.get("target", ""), r.get("status", ""), str(r.get("attempts", "")),
              when(r.get("created_at"), "short"), _outcome_summary(r)] for r in rows]
    for line in table(["ID", "TARGET", "STATUS", "ATTEMPTS", "CREATED", "OUTPUT / LAST ERROR"], cells, flex=5,
                      flex_max=60, right=frozenset({3})):
        click.echo(line)


def _outcome_summary(inv: dict[str, Any]) -> str:
    """One cell: the failure, the output, the last error, or when it is due."""
    if "failure_code" in inv:
        return "failed " + failure_text(inv["failure_code"], inv.get("failure_message"))
    if "output" in inv:
        return compact(inv["output"])
    last = inv.get("last_error")
    if isinstance(last, dict):
        return "last error " + failure_text(last.get("code"), last.get("message"))
    if inv.get("status") == "scheduled" and inv.get("execution_time"):
        return f"starts {when(inv['execution_time'], 'short')}"
    return ""


@invocations.command("describe")
@click.argument("invocation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def describe_invocation(invocation_id: str, as_json: bool, admin_url: str | None) -> None:
    """One invocation: its status, result and journal."""
    with reporting(), admin_client(admin_url) as admin:
        inv = admin.invocation(invocation_id)
    if as_json:
        json_out(inv)
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
    if "partition" in inv:  # a server of --partitions N: the partition that owns it
        fields.append(("partition", str(inv["partition"])))
    if inv.get("idempotency_key"):
        fields.append(("idempotency key", inv["idempotency_key"]))
    fields.append(("attempts", attempts))
    for label, name in (("created", "created_at"), ("scheduled for", "execution_time"), ("modified", "modified_at"),
                        ("next retry", "next_retry_at"), ("completed", "completed_at"),
                        ("kept until", "retention_until")):
        if inv.get(name):
            fields.append((label, when(inv[name])))
    if inv.get("waiting"):
        waiting = inv["waiting"]
        fields.append(("waiting", ", ".join(map(str, waiting)) if isinstance(waiting, list) else str(waiting)))
    last = inv.get("last_error")
    if isinstance(last, dict) and "failure_code" not in inv and "output" not in inv:
        fields.append(("last error", failure_text(last.get("code"), last.get("message"))))
    cancel = next((e for e in inv.get("journal") or () if e.get("type") == "signal" and e.get("signal") == 1), None)
    if cancel is not None and inv.get("status") != "completed":
        # As on restate-server 1.7: the handler sees the cancellation at its next await. One that fails before
        # any keeps being retried (then paused), with the cancellation pending; only kill ends it at once.
        fields.append(("cancel", f"requested {when(cancel.get('appended_at'))}; the handler sees it at its next "
                                 "await (an attempt that fails before one is retried as before: kill ends it now)"))
    if "failure_code" in inv:
        fields.append(("failure", failure_text(inv["failure_code"], inv.get("failure_message"))))
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
             when(e.get("appended_at"), "time")] for e in journal]
    lines.extend(table(["#", "TYPE", "NAME", "RESULT", "TIME"], rows, flex=3, right=frozenset({0}), indent="  "))
    return lines


def _entry_detail(e: dict[str, Any]) -> str:
    """The result column of one journal entry."""
    if "failure" in e:
        f = e["failure"]
        return "failure " + failure_text(f.get("code"), f.get("message"))
    kind = e.get("type", "")
    parts: list[str] = []
    if "target" in e:
        parts.append(f"-> {e['target']}")
    if "parameter" in e:
        parts.append(compact(e["parameter"]))
    if "key" in e:
        parts.append(f"{e['key']} = {compact(e['value'])}" if "value" in e else e["key"])
    if "promise" in e:
        parts.append(f"promise {e['promise']}")
    if "awakeable_id" in e:
        parts.append(e["awakeable_id"])
    if "wake_up_time" in e:
        parts.append(f"until {when(e['wake_up_time'])}")
    if "signal" in e:
        # Signal 1 is the cancellation, as in Restate.
        parts.append("cancel" if e["signal"] == 1 and kind == "signal" else f"signal {e['signal']}")
    if "invocation_id" in e:
        parts.append(e["invocation_id"])
    if "keys" in e:
        parts.append(compact(e["keys"]))
    if "value" in e and "key" not in e and not (kind == "input" and e["value"] is None):
        parts.append(compact(e["value"]))
    return " ".join(parts)


def _action_command(action: str, done: str) -> click.Command:
    def run(invocation_ids: tuple[str, ...], admin_url: str | None) -> None:
        failed = False
        with reporting(), admin_client(admin_url) as admin:
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
    return admin_option(cmd)  # type: ignore[return-value]


for _action, _done in zip(ACTIONS, ("cancelled", "killed", "paused", "resumed", "purged"), strict=True):
    invocations.add_command(_action_command(_action, _done))
