"""`durably run CMD...`: run a program that serves a Durably app (e.g. `python __main__.py`) with the embedded
runtime inside it, by setting DURABLY_EMBEDDED=1 and the runtime's settings in its environment (see
`durably.hosting.embedded`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from durably.hosting import embedded
from durably.sdk.endpoint import ENV_EMBEDDED


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--host", default=None,
              help="Interface of the ingress [default 127.0.0.1]; the admin API keeps DURABLY_ADMIN_HOST (127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Ingress port [default 8080].")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=None, help="Admin API port [default 9070].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the SQLite store lives [default ./durably-data].")
@click.option("--synchronous", type=click.Choice(["full", "normal", "off"], case_sensitive=False), default=None,
              help="SQLite durability [default full].")
@click.option("--in-memory", is_flag=True, help="Keep everything in memory (nothing survives a restart).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(host: str | None, port: int | None, admin_port: int | None, data_dir: Path | None,
        synchronous: str | None, in_memory: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND with the embedded runtime in the app it serves.

    \b
    durably run python __main__.py          # the script's own hypercorn call
    durably run uvicorn app:app --port 9080
    durably run --port 8081 -- hypercorn app:app

    The app then also serves ingress (8080) and admin (9070) from that process, with SQLite in
    ./durably-data, exactly as `durably serve`, on the same settings: every `durably serve` setting is read from
    its DURABLY_* variable (tokens, limits, ...) or the DURABLY_CONFIG file; the flags here set a few of them.
    """
    env = dict(os.environ)
    env[ENV_EMBEDDED] = "1"
    for name, value in ((embedded.ENV_HOST, host), (embedded.ENV_PORT, port),
                        (embedded.ENV_ADMIN_PORT, admin_port), (embedded.ENV_DATA_DIR, data_dir),
                        (embedded.ENV_SYNCHRONOUS, synchronous)):
        if value is not None:
            env[name] = str(value)
    if in_memory:
        env[embedded.ENV_IN_MEMORY] = "1"
    program = shutil.which(command[0], path=env.get("PATH"))
    if program is None:
        click.echo(f"durably run: {command[0]}: command not found", err=True)
        sys.exit(127)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process: signals (SIGTERM, Ctrl-C) and the exit code go straight to the program.
    os.execve(program, list(command), env)
