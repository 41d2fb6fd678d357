"""The `durably` command: one module per command group, a thin adapter over the `ServerConfig` that
`durably serve` builds (see durably.cli.main for the commands and durably.cli.serve for the config's way in)."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `durably.cli:main` (the console script) is loaded on first use instead of imported here: a package that
    # imports its own durably.cli.main makes `python -m durably.cli.main` run that module twice, and runpy warns
    # on stderr that it "may result in unpredictable behaviour".
    if name == "main":
        from durably.cli.main import main

        # Importing the submodule bound the package's `main` to it; the command is what `durably.cli:main` names.
        globals()["main"] = main
        return main
    raise AttributeError(f"module 'durably.cli' has no attribute {name!r}")


__all__ = ["main"]
