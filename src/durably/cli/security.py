"""`durably serve`'s security flags (listener, tokens, TLS, request signing) and the token variables the
commands that talk to a server read (`durably keys` makes the signing key: durably.cli.keys)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

ADMIN_TOKEN_ENV = "DURABLY_ADMIN_TOKEN"
INGRESS_TOKEN_ENV = "DURABLY_INGRESS_TOKEN"

_FILE = click.Path(path_type=Path, dir_okay=False)


def security_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`durably serve`'s security flags; they arrive as keyword arguments named like ServerConfig's fields."""
    options = [
        click.option("--admin-host", default="127.0.0.1", show_default=True, envvar="DURABLY_ADMIN_HOST",
                     help="Interface for the admin API, independent of --host (keep it private)."),
        click.option("--admin-token", envvar=ADMIN_TOKEN_ENV, show_envvar=True, default=None, metavar="TOKEN",
                     help="Require 'Authorization: Bearer TOKEN' on the admin API (health excepted). Prefer the "
                          "env var: flags show in `ps`."),
        click.option("--ingress-token", envvar=INGRESS_TOKEN_ENV, show_envvar=True, default=None, metavar="TOKEN",
                     help="Require 'Authorization: Bearer TOKEN' on the ingress (health excepted)."),
        click.option("--tls-cert", type=_FILE, envvar="DURABLY_TLS_CERT", default=None,
                     help="Serve ingress and admin API over HTTPS with this PEM certificate (chain)."),
        click.option("--tls-key", type=_FILE, envvar="DURABLY_TLS_KEY", default=None,
                     help="The PEM private key of --tls-cert."),
        click.option("--request-identity-key", type=_FILE, envvar="DURABLY_REQUEST_IDENTITY_KEY", default=None,
                     help="Sign requests to remote deployments with this ed25519 PEM key, as the Restate server "
                          "does (see `durably keys generate`)."),
        click.option("--secret-header", "secret_headers", multiple=True, metavar="NAME",
                     envvar="DURABLY_SECRET_HEADERS",
                     help="A request header handlers see but the journal never stores (repeatable; added to "
                          "authorization, proxy-authorization, cookie, x-restate-jwt-v1)."),
        click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME[:PORT]",
                     help="A Host name the listeners answer to besides localhost and loopback addresses (DNS "
                          "rebinding guard: others get 421). Repeatable; * allows any. A listener not on loopback "
                          "is checked only when this is given. Env: space- or comma-separated."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def token_setting(value: str | None, env: str) -> str | None:
    """A token setting as the server must see it: click reads a variable set to "" as unset, but an operator
    who wrote `DURABLY_ADMIN_TOKEN=` meant a token, so it stays "" (and the start is refused, not open)."""
    if value is None and os.environ.get(env) == "":
        return ""
    return value
