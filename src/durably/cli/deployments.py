"""`durably deployments register|list|remove`: remote deployments, services written with any Restate SDK."""

from __future__ import annotations

import click

from durably.cli.connect import admin_client, admin_option, reporting
from durably.cli.output import handler_text, json_out, table


@click.group()
@admin_option
def deployments(admin_url: str | None) -> None:
    """Remote deployments: services written with any Restate SDK, driven by this server."""


@deployments.command("register")
@click.argument("uri")
@click.option("--use-http-11", is_flag=True, help="Talk HTTP/1.1 request/response instead of HTTP/2 streams.")
@click.option("--force", is_flag=True, help="Discover again and replace a deployment with the same URI.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Send this header on every request.")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def register_deployment(uri: str, use_http_11: bool, force: bool, headers: tuple[str, ...], as_json: bool,
                        admin_url: str | None) -> None:
    """Discover the deployment at URI and route its services to it."""
    extra = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} is not NAME:VALUE", param_hint="--header")
        extra[name.strip()] = value.strip()
    with reporting(), admin_client(admin_url) as admin:
        status, body = admin.register_deployment(uri, use_http_11=use_http_11, force=force, additional_headers=extra)
    if as_json:
        json_out(body)
        return
    verb = "registered" if status == 201 else "already registered"
    click.echo(f"{verb} {body['id']} at {uri}")
    for svc in body.get("services", []):
        click.echo(f"  {svc['name']} ({svc.get('ty', '').lower()}): "
                   + ", ".join(handler_text(h) for h in svc.get("handlers", [])))


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def list_deployments(as_json: bool, admin_url: str | None) -> None:
    """Registered deployments with their services."""
    with reporting(), admin_client(admin_url) as admin:
        found = admin.deployments()
    if as_json:
        json_out({"deployments": found})
        return
    if not found:
        click.echo("no deployments")
        return
    rows = [[d["id"], d["uri"], d.get("protocol_type", ""), ", ".join(s["name"] for s in d.get("services", []))]
            for d in found]
    for line in table(["ID", "URI", "PROTOCOL", "SERVICES"], rows):
        click.echo(line)


@deployments.command("remove")
@click.argument("deployment_id", metavar="ID")
@click.option("--force", is_flag=True, help="Remove even with invocations pinned to it (Restate requires this).")
@admin_option
def remove_deployment(deployment_id: str, force: bool, admin_url: str | None) -> None:
    """Forget a deployment: its services stop being invocable here."""
    with reporting(), admin_client(admin_url) as admin:
        admin.remove_deployment(deployment_id, force=force)
    click.echo(f"removed {deployment_id}")
