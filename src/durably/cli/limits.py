"""The resource-limit options of `durably serve` (defaults live in `durably.server.process.limits`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from durably.server.process.limits import FLAGS, ResourceLimits

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1000**3, "gib": 1024**3}


class ByteSize(click.ParamType):
    """A size in bytes: 1048576, 64KiB, 32MiB, 1GiB."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            self.fail(f"{value!r} is not a size (e.g. 65536, 64KiB, 32MiB)", param, ctx)
        n = int(match.group(1)) * _UNITS[match.group(2).lower()]
        if n < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return n


_SECONDS = click.FloatRange(min=0, min_open=True)
_KINDS: dict[str, click.ParamType] = {"seconds": _SECONDS, "count": click.IntRange(min=1), "size": ByteSize()}

# The keyword arguments the options arrive as.
LIMIT_OPTIONS = frozenset(flag.name for flag in FLAGS)


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the resource-limit options to a command (they arrive as keyword arguments)."""
    for flag in reversed(FLAGS):
        f = click.option(flag.flag, flag.name, type=_KINDS[flag.kind], default=flag.default, show_default=True,
                         help=flag.help)(f)
    return f


def resource_limits(values: dict[str, Any]) -> ResourceLimits:
    """The ResourceLimits of the options given to a command."""
    known = {f.name for f in fields(ResourceLimits)}
    return ResourceLimits(**{k: v for k, v in values.items() if k in known})
