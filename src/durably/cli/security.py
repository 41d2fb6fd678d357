"""`durably serve`'s security flags (listener, tokens, TLS, request signing) and the token variables the
commands that talk to a server read (`durably keys` makes the signing key: durably.cli.keys)."""

from __future__ import annotations

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
    ]
    for option in reversed(options):
        f = option(f)
    return f
