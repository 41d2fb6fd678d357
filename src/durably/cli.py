"""The `durably` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from durably.loader import AppLoadError, load_app


@click.group()
@click.version_option(package_name="durably")
def main() -> None:
    """Durable execution for Python."""


@main.command()
@click.argument("app_ref", metavar="APP")
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
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def serve(app_ref: str, host: str, port: int, admin_port: int, data_dir: Path, synchronous: str,
          in_memory: bool, always_replay: bool, log_level: str) -> None:
    """Serve APP (module:app or path/to/file.py) with the embedded runtime."""
    from durably.server.runtime import DurablyServer, ServerConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = load_app(app_ref)
    except AppLoadError as e:
        raise click.ClickException(str(e)) from e
    config = ServerConfig(host=host, port=port, admin_port=admin_port, data_dir=data_dir,
                          synchronous=synchronous.upper(), in_memory=in_memory, always_replay=always_replay)
    server = DurablyServer(app, config)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Unix
        runner = asyncio.run
    try:
        runner(server.serve())
    except OSError as e:
        click.echo(f"durably: cannot serve: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
