"""The `durably` command: one module per command group, a thin adapter over the `ServerConfig` that
`durably serve` builds (see durably.cli.main for the commands and durably.cli.serve for the config's way in)."""

from durably.cli.main import main

__all__ = ["main"]
