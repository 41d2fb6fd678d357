"""`durably backup --data-dir D OUT`: a consistent copy of a data directory, even while it is served."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from durably.cli.connect import EXIT_FAILED


@click.command(short_help="Copy a data directory consistently, even while it is served.")
@click.option("--data-dir", default="durably-data", show_default=True, type=click.Path(path_type=Path),
              help="The data directory to back up.")
@click.argument("out", type=click.Path(path_type=Path))
def backup(data_dir: Path, out: Path) -> None:
    """Write a consistent copy of --data-dir (database and WAL) to the new directory OUT.

    Safe while `durably serve` runs. Restore by serving the copy: `durably serve app --data-dir OUT`.
    """
    from durably.server.store.backup import backup as run_backup
    from durably.server.store.datadir import DataDirError

    try:
        result = run_backup(data_dir, out)
    except DataDirError as e:
        click.echo(f"durably: cannot back up: {e}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"backed up {data_dir} to {result.path}: {result.invocations} invocations, "
               f"{result.size_bytes / 1e6:.1f} MB, database {result.database_id}")
    click.echo(f"restore by serving the copy: durably serve APP --data-dir {result.path}")
