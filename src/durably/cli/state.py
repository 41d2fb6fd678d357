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
    """(state as bytes, state as JSON values, version) of a state that fits one page."""
    body = admin.state(obj, key)
    if "next_cursor" in body:
        click.echo(f"durably: {obj}/{key} has more state names than one page (1000): edit and --merge work on "
                   "smaller states; replace the whole state with `durably state set` instead", err=True)
        sys.exit(EXIT_FAILED)
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
@click.option("--json", "as_json", is_flag=True,
              help="Print the admin API's JSON (with the version, or the next_cursor of a page).")
@click.option("--limit", type=click.IntRange(1, 1000), default=None, help="Names per page (default and most: 1000).")
@click.option("--after", metavar="CURSOR", default=None, help="Start after this cursor (a page's next_cursor).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor to the end and print all the state.")
@admin_option
def get_state(obj: str, key: str, as_json: bool, limit: int | None, after: str | None, all_pages: bool,
              admin_url: str | None) -> None:
    """Print the state of OBJECT/KEY as JSON, a page at a time.

    A key may hold very many names: one page (1000 names, about 1 MiB) is printed, in name order, and if
    more follow the command says how to get them (`--after CURSOR`, or `--all`).
    """
    with reporting(), admin_client(admin_url) as admin:
        body = admin.state(obj, key, after, limit)
        if all_pages and not as_json:
            page = body
            while "next_cursor" in page:
                page = admin.state(obj, key, page["next_cursor"], limit)
                body["state"].update(page["state"])
                body.setdefault("binary", {}).update(page.get("binary", {}))
            body.pop("next_cursor", None)
    if as_json:
        json_out(body)
        return
    json_out(body["state"])
    for name in body.get("binary", {}):
        click.echo(f"({name}: binary, not JSON; see --json)", err=True)
    if "next_cursor" in body:
        click.echo(f"more names follow (--all for all of them); the next page: "
                   f"durably state get {obj} {key} --after {body['next_cursor']}", err=True)


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
