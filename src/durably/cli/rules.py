"""`durably rules list|set|delete`: concurrency rules per scope and limit key, kept in the store."""

from __future__ import annotations

import click

from durably.cli.connect import admin_client, admin_option, reporting
from durably.cli.output import json_out, table


@click.group()
@admin_option
def rules(admin_url: str | None) -> None:
    """Concurrency rules per scope and limit key (Restate 1.7's `restate rules`), kept in the store.

    Patterns given to `durably serve --concurrency-limit` take the flag's value again at every start.
    """


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the admin API's JSON.")
@admin_option
def list_rules(as_json: bool, admin_url: str | None) -> None:
    """The rules, and how many invocations each budget in use runs now."""
    with reporting(), admin_client(admin_url) as admin:
        book = admin.rules()
    if as_json:
        json_out(book)
        return
    if not book["rules"]:
        click.echo("no rules")
    else:
        for line in table(["PATTERN", "CONCURRENCY"], [[r["pattern"], str(r["concurrency"])] for r in book["rules"]]):
            click.echo(line)
    if book.get("usage"):
        click.echo("")
        rows = [[u["level"], str(u["used"]), "" if u["limit"] is None else str(u["limit"])] for u in book["usage"]]
        for line in table(["IN USE", "RUNNING", "LIMIT"], rows):
            click.echo(line)


@rules.command("set")
@click.argument("pattern")
@click.option("--concurrency", type=click.IntRange(min=1), required=True, help="At most this many at once.")
@admin_option
def set_rule(pattern: str, concurrency: int, admin_url: str | None) -> None:
    """Create or change the rule for PATTERN ('*', 'scope', 'scope/*', 'scope/l1/*'...)."""
    with reporting(), admin_client(admin_url) as admin:
        admin.set_rule(pattern, concurrency)
    click.echo(f"{pattern}: concurrency {concurrency}")


@rules.command("delete")
@click.argument("pattern")
@admin_option
def delete_rule(pattern: str, admin_url: str | None) -> None:
    """Remove the rule for PATTERN."""
    with reporting(), admin_client(admin_url) as admin:
        admin.delete_rule(pattern)
    click.echo(f"deleted {pattern}")
