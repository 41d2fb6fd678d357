"""A clear error when an integration's framework is not installed."""

from __future__ import annotations

import importlib


def require(module: str, extra: str, framework: str) -> None:
    """Import `module` or raise ImportError naming the extra that installs it."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"durably.ext.{extra.split('-')[0]} needs {framework}, which is not installed. "
            # durably is installed from a checkout (it is not on PyPI): the extra comes from there too.
            f"Install it from your durably checkout with: pip install -e '.[{extra}]'") from e
