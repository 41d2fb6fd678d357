"""The `durably` command: one module per command group over the configuration object `durably serve` shares."""

from durably.cli.main import main

__all__ = ["main"]
