"""`durably state get|set|edit|clear OBJECT KEY`: look at and fix a virtual object's (or workflow's) state.

Values are shown and taken as JSON, the default serde's format. Changes go through the admin API's
`POST /services/{name}/state` with the version that was read, so an edit never overwrites a change the
object made in between.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import click

from durably.cli.connect import EXIT_FAILED, admin_client, admin_option, reporting
from durably.cli.output import json_out
from durably.clients.http import AdminClient


def _encode(values: Any) -> dict[str, bytes]:
    """{name: JSON value} as the bytes the default JSON serde writes."""
    if not isinstance(values, dict):
        raise click.BadParameter("the state must be a JSON object of names to values, e.g. '{\"value\": 5}'")
    return {str(k): json.dumps(v, separators=(",", ":")).encode() for k, v in values.items()}


def _current(admin: AdminClient, obj: str, key: str) -> tuple[dict[str, bytes], dict[str, Any], str]:
    """(state as bytes, state as JSON values, version)."""
    body = admin.state(obj, key)
    raw = _encode(body["state"])
    raw.update({k: base64.b64decode(v) for k, v in body.get("binary", {}).items()})
    return raw, body["state"], body["version"]


@click.group()
@admin_option
def state(admin_url: str | None) -> None:
    """A virtual object's or workflow's state, by OBJECT (service name) and KEY."""


@state.command("get")
@click.argument("obj", metavar="OBJECT")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON (with the version).")
@admin_option
def get_state(obj: str, key: str, as_json: bool, admin_url: str | None) -> None:
    """Print the state of OBJECT/KEY as JSON."""
    with reporting(), admin_client(admin_url) as admin:
        body = admin.state(obj, key)
    if as_json:
        json_out(body)
        return
    json_out(body["state"])
    for name in body.get("binary", {}):
        click.echo(f"({name}: binary, not JSON; see --json)", err=True)


@state.command("set")
@click.argument("obj", metavar="OBJECT")
@click.argument("key")
@click.argument("values", metavar="JSON")
@click.option("--merge", is_flag=True, help="Change only the names given; keep the others.")
@admin_option
def set_state(obj: str, key: str, values: str, merge: bool, admin_url: str | None) -> None:
    """Replace the state of OBJECT/KEY with JSON, an object of names to values ('-' reads stdin).

    \b
    durably state set Counter alice '{"value": 5}'
    durably state set Cart bob '{"items": []}' --merge
    """
    text = sys.stdin.read() if values == "-" else values
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="JSON") from None
    new = _encode(parsed)
    with reporting(), admin_client(admin_url) as admin:
        version = None
        if merge:
            raw, _, version = _current(admin, obj, key)
            new = {**raw, **new}
        admin.set_state(obj, key, new, version)
    click.echo(f"set {', '.join(sorted(new)) or 'nothing'} on {obj}/{key}")


@state.command("edit")
@click.argument("obj", metavar="OBJECT")
@click.argument("key")
@admin_option
def edit_state(obj: str, key: str, admin_url: str | None) -> None:
    """Open the state of OBJECT/KEY in $EDITOR as JSON and save what you write back.

    The save is refused if the object changed the state while you were editing.
    """
    with reporting(), admin_client(admin_url) as admin:
        raw, values, version = _current(admin, obj, key)
        edited = click.edit(json.dumps(values, indent=2, ensure_ascii=False) + "\n", extension=".json")
        if edited is None:
            click.echo("no change")
            return
        try:
            parsed = json.loads(edited)
        except ValueError as e:
            click.echo(f"durably: not saved: the edited text is not JSON ({e})", err=True)
            sys.exit(EXIT_FAILED)
        if parsed == values:
            click.echo("no change")
            return
        new = _encode(parsed)
        # Binary (non-JSON) values are not shown in the editor; keep them.
        new.update({k: v for k, v in raw.items() if k not in values and k not in new})
        admin.set_state(obj, key, new, version)
    click.echo(f"saved {obj}/{key}")


@state.command("clear")
@click.argument("obj", metavar="OBJECT")
@click.argument("key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@admin_option
def clear_state(obj: str, key: str, yes: bool, admin_url: str | None) -> None:
    """Delete all state of OBJECT/KEY."""
    if not yes:
        click.confirm(f"delete all state of {obj}/{key}?", abort=True)
    with reporting(), admin_client(admin_url) as admin:
        admin.set_state(obj, key, {})
    click.echo(f"cleared {obj}/{key}")
