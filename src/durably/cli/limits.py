"""The resource-limit options of `durably serve` (defaults live in `durably.server.process.limits`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from durably.server.process.limits import DEFAULT_MAX_BODY, ResourceLimits

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


_D = ResourceLimits()
_SECONDS = click.FloatRange(min=0, min_open=True)
_OPTIONS: list[tuple[str, Any, str]] = [
    ("--header-timeout", _SECONDS, "Seconds a client has to send a request's headers (then 408 and close)."),
    ("--body-timeout", _SECONDS, "Seconds a client has to send a request's body after its headers (then 408)."),
    ("--keep-alive-timeout", _SECONDS, "Seconds an idle keep-alive connection stays open."),
    ("--max-connections", click.IntRange(min=1), "Open connections per listener (ingress, admin); "
     "connections past it are answered 503 and closed."),
    ("--max-body", ByteSize(), "One request body, at most (then 413)."),
    ("--max-header-bytes", ByteSize(), "Request line and headers, at most (then 431)."),
    ("--max-headers", click.IntRange(min=1), "Header fields per request, at most (then 431)."),
    ("--max-inflight-body", ByteSize(), "Request bodies the ingress holds at once (then 503 with Retry-After)."),
    ("--journal-entry-limit", ByteSize(), "One journal entry, at most: a bigger ctx.run result fails the step."),
    ("--run-threads", click.IntRange(min=1), "Threads for sync ctx.run closures, stuck ones included; past "
     "it new sync steps fail their attempt (retried)."),
    ("--loop-stall-threshold", _SECONDS, "Log the invocation that blocks the event loop for this many seconds."),
    ("--stuck-report-interval", _SECONDS, "Seconds between log lines about threads stuck in aborted steps."),
]


# The keyword arguments the options arrive as.
LIMIT_OPTIONS = frozenset(flag[2:].replace("-", "_") for flag, _, _ in _OPTIONS)


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the resource-limit options to a command (they arrive as keyword arguments)."""
    for flag, kind, text in reversed(_OPTIONS):
        name = flag[2:].replace("-", "_")
        default = DEFAULT_MAX_BODY if name == "max_body" else getattr(_D, name)
        f = click.option(flag, name, type=kind, default=default, show_default=True, help=text)(f)
    return f


def resource_limits(values: dict[str, Any]) -> ResourceLimits:
    """The ResourceLimits of the options given to a command."""
    known = {f.name for f in fields(ResourceLimits)}
    return ResourceLimits(**{k: v for k, v in values.items() if k in known})
