"""`durably subscriptions list|create|delete`: Kafka subscriptions, over the admin API's `/subscriptions`."""

from __future__ import annotations

import click

from durably.cli.connect import admin_client, admin_option, reporting
from durably.cli.output import json_out, table


@click.group()
@admin_option
def subscriptions(admin_url: str | None) -> None:
    """Kafka subscriptions: records of a topic invoke a handler (clusters come from serve --kafka-cluster)."""


@subscriptions.command("list")
@click.option("--sink", help="Only subscriptions of this sink (service://Service/handler).")
@click.option("--source", help="Only subscriptions of this source (kafka://cluster/topic).")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def list_subscriptions(sink: str | None, source: str | None, as_json: bool, admin_url: str | None) -> None:
    """Subscriptions with their source, sink and options."""
    with reporting(), admin_client(admin_url) as admin:
        found = admin.subscriptions(sink=sink, source=source)
    if as_json:
        json_out({"subscriptions": found})
        return
    if not found:
        click.echo("no subscriptions")
        return
    rows = [[s["id"], s["source"], s["sink"], ", ".join(f"{k}={v}" for k, v in sorted(s.get("options", {}).items()))]
            for s in found]
    for line in table(["ID", "SOURCE", "SINK", "OPTIONS"], rows):
        click.echo(line)


@subscriptions.command("create")
@click.argument("source")
@click.argument("sink")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A Kafka consumer option (auto.offset.reset=earliest, group.id=...). Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def create_subscription(source: str, sink: str, options: tuple[str, ...], as_json: bool,
                        admin_url: str | None) -> None:
    """Subscribe SINK (service://Service/handler) to SOURCE (kafka://cluster/topic)."""
    opts: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{option!r} is not KEY=VALUE", param_hint="--option")
        opts[key.strip()] = value.strip()
    with reporting(), admin_client(admin_url) as admin:
        sub = admin.create_subscription(source, sink, opts)
    if as_json:
        json_out(sub)
        return
    click.echo(f"created {sub['id']}: {sub['source']} -> {sub['sink']}")


@subscriptions.command("delete")
@click.argument("subscription_id", metavar="ID")
@admin_option
def delete_subscription(subscription_id: str, admin_url: str | None) -> None:
    """Delete a subscription: its consumer stops and its handled offsets are committed."""
    with reporting(), admin_client(admin_url) as admin:
        admin.delete_subscription(subscription_id)
    click.echo(f"deleted {subscription_id}")
