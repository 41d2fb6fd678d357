"""`durably services list`: the services a server runs, with their handlers."""

from __future__ import annotations

import click

from durably.cli.connect import admin_client, admin_option, reporting
from durably.cli.output import handler_text, json_out, table


@click.group()
@admin_option
def services(admin_url: str | None) -> None:
    """The services the server runs."""


@services.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def list_services(as_json: bool, admin_url: str | None) -> None:
    """Services with their type and handlers."""
    with reporting(), admin_client(admin_url) as admin:
        found = admin.services()
    if as_json:
        json_out({"services": found})
        return
    if not found:
        click.echo("no services")
        return
    rows = [[s["name"], s.get("ty", ""), ", ".join(handler_text(h) for h in s.get("handlers", []))]
            for s in sorted(found, key=lambda s: s["name"])]
    for line in table(["NAME", "TYPE", "HANDLERS"], rows):
        click.echo(line)
