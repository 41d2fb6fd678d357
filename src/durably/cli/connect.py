"""Talking to a running server: the --admin option, the admin client, and the one place where a client error
becomes a line on stderr and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from durably.cli.security import ADMIN_TOKEN_ENV, INGRESS_TOKEN_ENV
from durably.clients.http import (
    DEFAULT_ADMIN_URL,
    AdminClient,
    BadURL,
    ClientError,
    RequestFailed,
    ServerUnreachable,
    TimedOut,
)

# Exit codes: 1 for a failed request (the server said no), 2 for usage and connection problems.
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2
ADMIN_ENV = "DURABLY_ADMIN_URL"
INGRESS_ENV = "DURABLY_INGRESS_URL"


@contextmanager
def reporting() -> Iterator[None]:
    """Turn client errors into one line on stderr and an exit code, never a traceback."""
    try:
        yield
    except ServerUnreachable as e:
        click.echo(f"durably: no durably server at {e.url}: start one with `durably serve module:app`", err=True)
        click.echo(f"  ({e.reason})", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except BadURL as e:
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except TimedOut as e:
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_FAILED)
    except RequestFailed as e:
        if e.invocation_id:
            click.echo(f"invocation id: {e.invocation_id}", err=True)
        click.echo(f"error {e.code}: {e.message}", err=True)
        if e.status == 401:
            click.echo(f"  (set {ADMIN_TOKEN_ENV} or {INGRESS_TOKEN_ENV} to the server's token)", err=True)
        sys.exit(EXIT_FAILED)
    except ClientError as e:  # e.g. the server went away in the middle of the request
        click.echo(f"durably: {e}", err=True)
        sys.exit(EXIT_FAILED)


def admin_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """`--admin URL`, on a command group and on each of its commands."""
    return click.option("--admin", "admin_url", metavar="URL", default=None,
                        help=f"Admin API URL [env {ADMIN_ENV}; default {DEFAULT_ADMIN_URL}].")(f)


def admin_client(admin_url: str | None) -> AdminClient:
    """The admin client: this command's --admin, else the group's, else the environment, else the default."""
    ctx = click.get_current_context()
    group_url = ctx.parent.params.get("admin_url") if ctx.parent is not None else None
    return AdminClient(admin_url or group_url or os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN_URL,
                       token=os.environ.get(ADMIN_TOKEN_ENV) or None)
